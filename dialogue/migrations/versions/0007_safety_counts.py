"""Blocks and redactions counted apart: two counters on each conversation, beside ``safety_flags``.

``safety_flags`` counts every turn where a safety filter did anything, and the dashboard showed it as "turns with a
safety block": a redacted e-mail address counted as a block. ``safety_blocks`` counts turns whose message was blocked
or whose reply was replaced by the output classifier; ``redactions`` turns where PII was redacted. Conversations
from before this migration start both at 0 (their events still hold the details).

Revision ID: 0007_safety_counts
Revises: 0006_login_attempts
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_safety_counts"
down_revision: str | None = "0006_login_attempts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("safety_blocks", "redactions")


def upgrade() -> None:
    for name in COLUMNS:
        op.add_column("conversations", sa.Column(name, sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    for name in COLUMNS:
        op.drop_column("conversations", name)
