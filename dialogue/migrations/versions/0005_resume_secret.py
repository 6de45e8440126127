"""The conversation row keeps the sha256 of its resume secret, so a leaked conversation id alone resumes nothing.

Before this revision the conversation id was the only credential of a chat conversation: whoever knew it (a shared
screenshot, a support ticket, a log line) could read the whole history, write turns and receive the agent's messages.
The server now issues a random secret with the ``session`` frame and stores only its sha256 here (hex, 64 characters);
resuming a conversation needs the secret whose hash matches. The hash, not the secret, is stored so that a database
dump or a console screen does not hand out resume credentials either.

Rows created before this revision have no hash (NULL): they cannot be resumed from the chat channel any more (the
server answers a clear error frame), which is the safe reading of "no credential was ever issued".

Revision ID: 0005_resume_secret
Revises: 0004
Create Date: 2027-02-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_resume_secret"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("conversations", sa.Column("secret_hash", sa.String(64), nullable=True))


def downgrade() -> None:
    # Native DROP COLUMN (SQLite >= 3.35), never a batch "recreate": on SQLite that copies the table and drops the
    # old one, and with foreign keys on, dropping ``conversations`` cascades to every row of ``events``.
    op.drop_column("conversations", "secret_hash")
