"""Staff profiles: the display name and the picture customers see next to an agent's messages.

``users.display_name`` (nullable: ``NULL`` means the username is shown, as before) is a short column of the row the
console reads on every request anyway. The picture's bytes are **not** in ``users``: that row is read on every
console request (the session lookup) and every login, and a 256 KiB blob there would ride along each time. They
live in ``user_avatars``, one row per account (``user_id`` is the key, so an account has at most one picture and
replacing it is one delete and one insert; the foreign key cascades), with their ``content_type`` and ``sha256``.

The chat port serves a picture by its digest (``GET /avatars/<sha256>``, indexed): a content address, so the URL
changes whenever the picture does and can be cached forever, and it says nothing of the account (no user id or
name in a public URL). A replaced or removed picture is deleted, not kept for old conversations: a photo of a
person is theirs to withdraw. Events keep the digest a customer was shown (``agent_avatar``), so a resumed history
whose picture is gone gets a 404 and the widget shows the initials instead; the display name (``agent_name``) is
kept in the event as it was. Two accounts may upload the same bytes, so the digest is indexed, not unique.

Revision ID: 0013_profile
Revises: 0012_attachments
Create Date: 2026-12-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_profile"
down_revision: str | None = "0012_attachments"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("users", sa.Column("display_name", sa.String(64), nullable=True))
    op.create_table(
        "user_avatars",
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("content_type", sa.String(32), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_user_avatars_sha256", "user_avatars", ["sha256"])


def downgrade() -> None:
    op.drop_index("ix_user_avatars_sha256", table_name="user_avatars")
    op.drop_table("user_avatars")
    op.drop_column("users", "display_name")
