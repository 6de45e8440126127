"""Agent presence and round-robin auto-assignment.

``users.status`` is what an agent chose in the console's header: ``online``, ``away`` or ``offline`` (default
``online``, so an agent who never touches the selector keeps counting as staffed when signed in, as before).
``users.last_seen_at`` is when their console last made a request (recorded at most every few seconds): a console
unseen for longer than ``dialogue.handoff.PRESENCE_TIMEOUT`` counts as offline whatever the status says.
``users.last_assigned_at`` is when auto-assignment last gave the agent a conversation: the round-robin takes the
online agent assigned least recently.

``conversations.routed_wait`` is the ``handoffs`` count of the last wait auto-assignment has routed: a waiting
conversation is auto-assigned once per wait (``handoffs > routed_wait``), so a colleague who unassigns it on purpose
is not overruled a moment later, and a new wait is routed again. Existing conversations count as routed: the
feature starts with the conversations queued after the upgrade.

Revision ID: 0011_presence
Revises: 0010_user_locale
Create Date: 2026-12-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_presence"
down_revision: str | None = "0010_user_locale"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _user_columns() -> tuple[sa.Column[object], ...]:
    """New Column objects each time: a Column belongs to one table, and a process may migrate twice."""
    return (
        sa.Column("status", sa.String(16), nullable=False, server_default="online"),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_assigned_at", sa.DateTime(timezone=True), nullable=True),
    )


def upgrade() -> None:
    for column in _user_columns():
        op.add_column("users", column)
    op.add_column("conversations", sa.Column("routed_wait", sa.Integer(), nullable=False, server_default="0"))
    op.execute("UPDATE conversations SET routed_wait = handoffs")  # constant SQL


def downgrade() -> None:
    op.drop_column("conversations", "routed_wait")
    for column in reversed(_user_columns()):
        op.drop_column("users", column.name)
