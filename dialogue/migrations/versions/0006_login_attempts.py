"""Staff login attempts, counted in the database so that every worker process throttles the same way.

Before this revision each process kept its own in-memory counter of failed logins, recorded after the password
check: concurrent guesses were all checked before the first failure was written, and each ``kefu serve`` worker
allowed the limit again. The ops console now records an attempt here when it starts and counts it in the same step
(:mod:`dialogue.staff_throttle`). ``key`` is the SHA-256 (hex) of a throttle key (the client address, or an account
name with the address), so the table holds neither addresses nor what was typed into the user-name field. Rows
older than the throttle window are deleted by the ops server; nothing else refers to them.

Revision ID: 0006_login_attempts
Revises: 0005_resume_secret
Create Date: 2027-02-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_login_attempts"
down_revision: str | None = "0005_resume_secret"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "login_attempts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("failed", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    # The count: rows of one key within the window. The purge: rows older than the window.
    op.create_index("ix_login_attempts_key_started_at", "login_attempts", ["key", "started_at"])
    op.create_index("ix_login_attempts_started_at", "login_attempts", ["started_at"])


def downgrade() -> None:
    op.drop_index("ix_login_attempts_started_at", table_name="login_attempts")
    op.drop_index("ix_login_attempts_key_started_at", table_name="login_attempts")
    op.drop_table("login_attempts")
