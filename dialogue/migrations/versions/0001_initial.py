"""Initial schema: conversation snapshots and their append-only events.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# JSONB on PostgreSQL, JSON (text) elsewhere. SQLite only auto-increments an INTEGER PRIMARY KEY.
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "conversations",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("sender", sa.String(255), nullable=True),
        sa.Column("language", sa.String(16), nullable=False),
        sa.Column("state", sa.String(64), nullable=False),
        sa.Column("slots", _JSON, nullable=False),
        sa.Column("turn_count", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("handed_off", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("last_intent", sa.String(64), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    # The console lists conversations newest first; id breaks ties so pagination is stable.
    op.create_index("ix_conversations_updated_at", "conversations", ["updated_at", "id"])
    op.create_index("ix_conversations_sender", "conversations", ["sender"])

    op.create_table(
        "events",
        sa.Column("id", _BIGID, primary_key=True, autoincrement=True),
        sa.Column(
            "conversation_id",
            sa.String(64),
            sa.ForeignKey("conversations.id", ondelete="CASCADE", name="fk_events_conversation_id"),
            nullable=False,
        ),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("turn", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("data", _JSON, nullable=False),
        sa.Column("message_id", sa.String(128), nullable=True),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("conversation_id", "seq", name="uq_events_conversation_seq"),
        sa.UniqueConstraint("conversation_id", "type", "message_id", name="uq_events_conversation_type_message"),
    )
    op.create_index("ix_events_conversation_turn", "events", ["conversation_id", "turn"])


def downgrade() -> None:
    op.drop_index("ix_events_conversation_turn", table_name="events")
    op.drop_table("events")
    op.drop_index("ix_conversations_sender", table_name="conversations")
    op.drop_index("ix_conversations_updated_at", table_name="conversations")
    op.drop_table("conversations")
