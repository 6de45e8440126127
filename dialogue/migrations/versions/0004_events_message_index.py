"""An index on events (conversation_id, message_id): the replay check of every turn stays one index probe.

Each turn asks whether its client message id was already processed (``Store.get(..., message_id=...)`` and
``Store.find_events_by_message_id``), filtering on ``(conversation_id, message_id)``. The only index that starts
with ``conversation_id`` and contains ``message_id`` is the unique ``(conversation_id, type, message_id)``, which
PostgreSQL can only use for the ``conversation_id`` prefix: it then read every event of the conversation, so turn
1,000 of a long conversation cost more than turn 10. With this index it is one probe, however long the log.

A plain ``CREATE INDEX`` (inside the migration's transaction, which the store holds with an advisory lock): on a
very large ``events`` table create it beforehand with ``CREATE INDEX CONCURRENTLY ix_events_conversation_message
ON events (conversation_id, message_id)`` and this migration finds it (``IF NOT EXISTS``).

Revision ID: 0004
Revises: 0003
Create Date: 2027-01-10
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_events_conversation_message"


def upgrade() -> None:
    op.create_index(INDEX, "events", ["conversation_id", "message_id"], if_not_exists=True)


def downgrade() -> None:
    op.drop_index(INDEX, table_name="events", if_exists=True)
