"""The team's inbox: assignment, a last-message preview and an unread marker per conversation.

``assignee`` is the colleague a conversation is assigned to (claimed, or assigned by someone else), ``assigned_at``
when. It is a column of its own, not the ``agent`` column: ``agent`` means "holds it after a take-over, the bot is
paused and this person is typing", while an assignment can exist long before that (a waiting conversation claimed
from the queue, or handed to a colleague who is busy) and must not silence the bot or let the assignee's messages
through by itself.

``last_message`` / ``last_message_by`` are the last customer, bot or agent message's text (redacted as stored,
the first 200 characters) and who wrote it (``customer``, ``bot`` or ``agent``): kept up to date in the same
transaction that appends the message, so the inbox (polled every two seconds by every open console) reads one row
per conversation instead of searching the event log for each. ``last_customer_seq`` is the ``seq`` of the last
customer message and ``assignee_seen_seq`` the last ``seq`` the assignee has seen: the conversation is unread while
the first is larger. Existing conversations are backfilled from their events and count as seen.

Revision ID: 0009_inbox
Revises: 0008_workspace
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_inbox"
down_revision: str | None = "0008_workspace"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PREVIEW_CHARS = 200  # dialogue.store.PREVIEW_CHARS


def _columns() -> tuple[sa.Column[object], ...]:
    """New Column objects each time: a Column belongs to one table, and a process may migrate twice."""
    return (
        sa.Column("assignee", sa.String(64), nullable=True),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_message", sa.Text(), nullable=False, server_default=""),
        sa.Column("last_message_by", sa.String(16), nullable=False, server_default=""),
        sa.Column("last_customer_seq", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("assignee_seen_seq", sa.Integer(), nullable=False, server_default="0"),
    )


def upgrade() -> None:
    for column in _columns():
        op.add_column("conversations", column)
    op.create_index("ix_conversations_assignee", "conversations", ["assignee"])
    postgres = op.get_bind().dialect.name == "postgresql"
    text = "e.data->>'text'" if postgres else "json_extract(e.data, '$.text')"
    last = (
        "FROM events e WHERE e.conversation_id = conversations.id "
        "AND e.type IN ('user_message', 'bot_message', 'agent_message') ORDER BY e.seq DESC LIMIT 1"
    )
    who = (
        "CASE e.type WHEN 'user_message' THEN 'customer' WHEN 'bot_message' THEN 'bot' ELSE 'agent' END"
    )
    op.execute(
        "UPDATE conversations SET "  # constant SQL: nothing from outside goes into it
        f"last_message = COALESCE((SELECT substr({text}, 1, {PREVIEW_CHARS}) {last}), ''), "
        f"last_message_by = COALESCE((SELECT {who} {last}), ''), "
        "last_customer_seq = COALESCE((SELECT MAX(e.seq) FROM events e WHERE e.conversation_id = conversations.id "
        "AND e.type = 'user_message'), 0)"
    )
    # Old conversations are not "unread" for anybody; whoever holds one after a take-over is its assignee.
    op.execute("UPDATE conversations SET assignee_seen_seq = last_customer_seq")
    op.execute(
        "UPDATE conversations SET assignee = agent, assigned_at = handoff_at "
        "WHERE handoff_status = 'agent' AND agent IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_index("ix_conversations_assignee", table_name="conversations")
    for column in reversed(_columns()):
        op.drop_column("conversations", column.name)
