"""The store's tables as SQLAlchemy Core objects, for building queries.

The Alembic migrations in ``dialogue/migrations`` own the schema (:meth:`dialogue.store.Store.open` upgrades to
head); these definitions mirror ``migrations/versions/*.py`` so that every query names columns instead of strings.
A migration that adds a column adds it here too, with a comment naming the migration. Nothing else lives here, so
the shape of the data can be read in one place.

* ``conversations``: one snapshot row per conversation, with the console's denormalised facts.
* ``events``: the append-only log, ``seq`` gap-free per conversation.
* ``conversation_intents``: every intent seen per conversation (the console's intent filter).
* ``users`` / ``sessions``: staff accounts and their console logins.
* ``canned_replies``: the team's saved answers per language.
* ``attachments``: the files customers and agents send, bytes included (never in ``conversations`` or ``events``).
* ``user_avatars``: the picture of a staff account, bytes included (never in ``users``, read on every request).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_metadata = sa.MetaData()
conversations = sa.Table(
    "conversations",
    _metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("sender", sa.String(255), nullable=True),
    sa.Column("language", sa.String(16), nullable=False),
    sa.Column("state", sa.String(64), nullable=False),
    sa.Column("slots", _JSON, nullable=False),
    sa.Column("turn_count", sa.Integer(), nullable=False),
    sa.Column("handed_off", sa.Boolean(), nullable=False),
    sa.Column("last_intent", sa.String(64), nullable=True),
    sa.Column("last_action", sa.String(64), nullable=True),  # migration 0002: the policy reads it
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # migration 0003: review, hand-off and the console's denormalised facts
    sa.Column("reviewed", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("flagged", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("tags", _JSON, nullable=False, server_default=sa.text("'[]'")),
    sa.Column("min_confidence", sa.Float(), nullable=True),
    sa.Column("fallbacks", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("safety_flags", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("safety_blocks", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("redactions", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("handoff_status", sa.String(16), nullable=False, server_default=""),
    sa.Column("agent", sa.String(64), nullable=True),
    sa.Column("handoff_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("handoffs", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("fallback_streak", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("search_text", sa.Text(), nullable=False, server_default=""),
    sa.Column("secret_hash", sa.String(64), nullable=True),  # migration 0005: sha256 of the chat resume secret
    sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),  # migration 0008: the workspace
    sa.Column("resolved_by", sa.String(64), nullable=True),
    sa.Column("rating", sa.Integer(), nullable=True),
    sa.Column("rating_comment", sa.Text(), nullable=True),
    sa.Column("first_agent_reply_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("assignee", sa.String(64), nullable=True),  # migration 0009: the inbox
    sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_message", sa.Text(), nullable=False, server_default=""),
    sa.Column("last_message_by", sa.String(16), nullable=False, server_default=""),
    sa.Column("last_customer_seq", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("assignee_seen_seq", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("routed_wait", sa.Integer(), nullable=False, server_default="0"),  # migration 0011: auto-assignment
)
canned_replies = sa.Table(  # migration 0008: the team's saved answers per language
    "canned_replies",
    _metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("language", sa.String(16), nullable=False),
    sa.Column("title", sa.String(64), nullable=False),
    sa.Column("text", sa.Text(), nullable=False),
    sa.Column("created_by", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("language", "title", name="uq_canned_replies_language_title"),
)
conversation_intents = sa.Table(
    "conversation_intents",
    _metadata,
    sa.Column("conversation_id", sa.String(64), sa.ForeignKey("conversations.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("intent", sa.String(64), primary_key=True),
)
users = sa.Table(
    "users",
    _metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("username", sa.String(64), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("disabled", sa.Boolean(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("locale", sa.String(16), nullable=True),  # migration 0010
    sa.Column("status", sa.String(16), nullable=False, server_default="online"),  # migration 0011: presence
    sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_assigned_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("display_name", sa.String(64), nullable=True),  # migration 0013: the name customers see
)
sessions = sa.Table(
    "sessions",
    _metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("csrf_token", sa.String(128), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)
events = sa.Table(
    "events",
    _metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("conversation_id", sa.String(64), sa.ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False),
    sa.Column("seq", sa.Integer(), nullable=False),
    sa.Column("turn", sa.Integer(), nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("data", _JSON, nullable=False),
    sa.Column("message_id", sa.String(128), nullable=True),
    sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
)
attachments = sa.Table(  # migration 0012: the files of a conversation (its events name them, without the bytes)
    "attachments",
    _metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("conversation_id", sa.String(64), sa.ForeignKey("conversations.id", ondelete="CASCADE"),
              nullable=False, index=True),
    sa.Column("direction", sa.String(16), nullable=False),
    sa.Column("uploader", sa.String(64), nullable=True),
    sa.Column("filename", sa.String(255), nullable=False),
    sa.Column("content_type", sa.String(64), nullable=False),
    sa.Column("size", sa.Integer(), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("data", sa.LargeBinary(), nullable=False),
)
user_avatars = sa.Table(  # migration 0013: a staff account's picture, served by its digest on the chat port
    "user_avatars",
    _metadata,
    sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("sha256", sa.String(64), nullable=False, index=True),
    sa.Column("content_type", sa.String(32), nullable=False),
    sa.Column("size", sa.Integer(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("data", sa.LargeBinary(), nullable=False),
)
