"""The support team's workspace: resolving a conversation, the customer's rating, first response, canned replies.

A conversation is *resolved* by staff (``resolved_at`` / ``resolved_by``; reopened: both cleared, and a customer
message after resolution reopens it too). When it is resolved the widget offers a rating, stored as ``rating`` (1-5)
and ``rating_comment`` (redacted like every customer text). ``first_agent_reply_at`` is when staff first wrote to the
customer after a hand-off, kept so the dashboard's first-response time needs no scan of the event log. Internal
notes are events of type ``note`` (never sent to the customer), so they need no table. ``canned_replies`` are the
team's saved answers per language; their text may name slots (``{order_id}``) filled from the conversation.

Revision ID: 0008_workspace
Revises: 0007_safety_counts
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_workspace"
down_revision: str | None = "0007_safety_counts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    ("resolved_at", sa.DateTime(timezone=True)),
    ("resolved_by", sa.String(64)),
    ("rating", sa.Integer()),
    ("rating_comment", sa.Text()),
    ("first_agent_reply_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    for name, kind in COLUMNS:
        op.add_column("conversations", sa.Column(name, kind, nullable=True))
    op.create_table(
        "canned_replies",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("language", sa.String(16), nullable=False),
        sa.Column("title", sa.String(64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("language", "title", name="uq_canned_replies_language_title"),
    )


def downgrade() -> None:
    op.drop_table("canned_replies")
    for name, _ in COLUMNS:
        op.drop_column("conversations", name)
