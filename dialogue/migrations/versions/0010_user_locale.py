"""The staff console's language, remembered per account.

``users.locale`` is the language a staff member chose with the console's switch (``en`` or ``zh``), or NULL when
they never chose one: the console then follows the browser's language, as the login page always does. It is
stored with the account rather than in a cookie or the browser's storage so that the choice follows the person to
another computer, and so that every page gets it from the ``/api/me`` call it makes anyway.

Revision ID: 0010_user_locale
Revises: 0009_inbox
Create Date: 2026-12-14
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_user_locale"
down_revision: str | None = "0009_inbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("users", sa.Column("locale", sa.String(16), nullable=True))


def downgrade() -> None:
    op.drop_column("users", "locale")
