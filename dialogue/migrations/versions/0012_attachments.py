"""Attachments: the images and PDFs customers and agents send each other.

One row per file in ``attachments``, its bytes included (``data``), apart from ``conversations`` (read on every
turn) and ``events`` (read on every resume and console poll): the conversation's log gets an ``attachment`` event
that names the file by id, never its bytes. ``conversation_id`` cascades, so erasing a conversation erases its files;
``direction`` says who sent it (``customer`` or ``agent``), ``uploader`` which agent; ``sha256`` is the content's
digest (audits, duplicates); ``filename`` is the sanitised, redacted name the file is offered under.

Revision ID: 0012_attachments
Revises: 0011_presence
Create Date: 2026-12-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_attachments"
down_revision: str | None = "0011_presence"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "attachments",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("conversation_id", sa.String(64), sa.ForeignKey("conversations.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("uploader", sa.String(64), nullable=True),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("content_type", sa.String(64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_attachments_conversation_id", "attachments", ["conversation_id"])


def downgrade() -> None:
    op.drop_index("ix_attachments_conversation_id", table_name="attachments")
    op.drop_table("attachments")
