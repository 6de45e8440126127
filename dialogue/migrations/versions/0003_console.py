"""Ops console: review and hand-off columns on conversations, every intent seen, staff users and login sessions.

The console filters and pages through conversations by facts that otherwise live in the event log (lowest NLU
confidence, fallback turns, safety flags, every intent, the text). Reading the log for each list page would not
scale, so the store keeps them on the snapshot row (and ``conversation_intents``) in the same transaction as the
events; this migration adds them and fills them in from the events already stored.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_BATCH = 500  # conversations backfilled per round trip

# What the store counts (dialogue/store.py `_turn_facts`), frozen here as of this revision.
_FALLBACK_ACTION = "utter_fallback"
_OUT_OF_SCOPE = "out_of_scope"
_SEARCH_CAP = 32_000


def _new_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("reviewed", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("flagged", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("tags", _JSON, nullable=False, server_default=sa.text("'[]'")),
        sa.Column("min_confidence", sa.Float(), nullable=True),
        sa.Column("fallbacks", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("safety_flags", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("handoff_status", sa.String(16), nullable=False, server_default=""),
        sa.Column("agent", sa.String(64), nullable=True),
        sa.Column("handoff_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("handoffs", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("fallback_streak", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("search_text", sa.Text(), nullable=False, server_default=""),
    ]


def upgrade() -> None:
    # Plain ALTER TABLE (no batch "move and copy"): on SQLite a batch rebuild drops the conversations table,
    # and with foreign keys on that DELETE would cascade to every event.
    for column in _new_columns():
        op.add_column("conversations", column)
    # (updated_at, id) exists since 0001 (ix_conversations_updated_at): the list's keyset order.
    op.create_index("ix_conversations_created_at", "conversations", ["created_at"])
    op.create_index("ix_conversations_language", "conversations", ["language"])
    op.create_index("ix_conversations_handoff_status", "conversations", ["handoff_status"])
    op.create_index("ix_conversations_last_intent", "conversations", ["last_intent"])

    op.create_table(
        "conversation_intents",
        sa.Column(
            "conversation_id",
            sa.String(64),
            sa.ForeignKey("conversations.id", ondelete="CASCADE", name="fk_conversation_intents_conversation_id"),
            primary_key=True,
        ),
        sa.Column("intent", sa.String(64), primary_key=True),
    )
    op.create_index("ix_conversation_intents_intent", "conversation_intents", ["intent", "conversation_id"])

    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("username", name="uq_users_username"),
    )
    op.create_table(
        "sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column(
            "user_id",
            sa.Integer(),
            sa.ForeignKey("users.id", ondelete="CASCADE", name="fk_sessions_user_id"),
            nullable=False,
        ),
        sa.Column("csrf_token", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_sessions_user_id", "sessions", ["user_id"])
    op.create_index("ix_sessions_expires_at", "sessions", ["expires_at"])

    _backfill(op.get_bind())


def _turn_facts(data_by_type: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    confidences = [float(d["confidence"]) for t, d in data_by_type if t == "nlu_parse" and "confidence" in d]
    intents = {str(d["intent"])[:64] for t, d in data_by_type if t == "nlu_parse" and d.get("intent")}
    actions = [str(d.get("name")) for t, d in data_by_type if t == "action"]
    fallback = bool(actions) and (_FALLBACK_ACTION in actions or _OUT_OF_SCOPE in intents)
    safety = any(
        (t == "safety_input" and (d.get("blocked") or d.get("redactions") or d.get("flags")))
        or (t == "safety_output" and (d.get("toxic") or d.get("replaced")))
        for t, d in data_by_type
    )
    texts = [
        str(d.get("text", ""))
        for t, d in data_by_type
        if t in ("user_message", "bot_message", "agent_message") and d.get("text")
    ]
    return {"confidences": confidences, "intents": intents, "fallback": fallback, "safety": safety, "texts": texts}


def _backfill(conn: sa.Connection) -> None:
    """Derive the new columns of existing conversations from their events (a no-op on a fresh database)."""
    conversations = sa.table(
        "conversations",
        sa.column("id", sa.String()),
        sa.column("handed_off", sa.Boolean()),
        sa.column("updated_at", sa.DateTime(timezone=True)),
        sa.column("min_confidence", sa.Float()),
        sa.column("fallbacks", sa.Integer()),
        sa.column("safety_flags", sa.Integer()),
        sa.column("handoff_status", sa.String()),
        sa.column("handoff_at", sa.DateTime(timezone=True)),
        sa.column("handoffs", sa.Integer()),
        sa.column("search_text", sa.Text()),
    )
    events = sa.table(
        "events",
        sa.column("conversation_id", sa.String()),
        sa.column("seq", sa.Integer()),
        sa.column("turn", sa.Integer()),
        sa.column("type", sa.String()),
        sa.column("data", _JSON),
        sa.column("timestamp", sa.DateTime(timezone=True)),
    )
    intents_table = sa.table("conversation_intents", sa.column("conversation_id", sa.String()),
                             sa.column("intent", sa.String()))
    after = ""
    while True:
        rows = conn.execute(
            sa.select(conversations.c.id, conversations.c.handed_off, conversations.c.updated_at)
            .where(conversations.c.id > after)
            .order_by(conversations.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            return
        after = rows[-1].id
        ids = [r.id for r in rows]
        per_turn: dict[str, dict[int, list[tuple[str, dict[str, Any]]]]] = {}
        handoff_times: dict[str, list[Any]] = {}
        for e in conn.execute(
            sa.select(events.c.conversation_id, events.c.turn, events.c.type, events.c.data, events.c.timestamp)
            .where(events.c.conversation_id.in_(ids))
            .order_by(events.c.conversation_id, events.c.seq)
        ):
            turns = per_turn.setdefault(e.conversation_id, {})
            turns.setdefault(e.turn, []).append((e.type, dict(e.data or {})))
            if e.type == "handoff":
                handoff_times.setdefault(e.conversation_id, []).append(e.timestamp)
        updates: list[dict[str, Any]] = []
        intent_rows: list[dict[str, str]] = []
        for r in rows:
            facts = [_turn_facts(batch) for batch in per_turn.get(r.id, {}).values()]
            confidences = [c for f in facts for c in f["confidences"]]
            intents = sorted({i for f in facts for i in f["intents"]})
            text = "\n".join(t for f in facts for t in f["texts"]).lower()[:_SEARCH_CAP]
            times = handoff_times.get(r.id, [])
            updates.append(
                {
                    "b_id": r.id,
                    "min_confidence": min(confidences) if confidences else None,
                    "fallbacks": sum(f["fallback"] for f in facts),
                    "safety_flags": sum(f["safety"] for f in facts),
                    "handoff_status": "waiting" if r.handed_off else "",
                    "handoff_at": (times[-1] if times else r.updated_at) if r.handed_off else None,
                    "handoffs": max(len(times), 1 if r.handed_off else 0),
                    "search_text": text,
                }
            )
            intent_rows.extend({"conversation_id": r.id, "intent": i} for i in intents)
        conn.execute(
            conversations.update()
            .where(conversations.c.id == sa.bindparam("b_id"))
            .values(
                min_confidence=sa.bindparam("min_confidence"),
                fallbacks=sa.bindparam("fallbacks"),
                safety_flags=sa.bindparam("safety_flags"),
                handoff_status=sa.bindparam("handoff_status"),
                handoff_at=sa.bindparam("handoff_at"),
                handoffs=sa.bindparam("handoffs"),
                search_text=sa.bindparam("search_text"),
            ),
            updates,
        )
        if intent_rows:
            conn.execute(intents_table.insert(), intent_rows)


def downgrade() -> None:
    op.drop_index("ix_sessions_expires_at", table_name="sessions")
    op.drop_index("ix_sessions_user_id", table_name="sessions")
    op.drop_table("sessions")
    op.drop_table("users")
    op.drop_index("ix_conversation_intents_intent", table_name="conversation_intents")
    op.drop_table("conversation_intents")
    op.drop_index("ix_conversations_last_intent", table_name="conversations")
    op.drop_index("ix_conversations_handoff_status", table_name="conversations")
    op.drop_index("ix_conversations_language", table_name="conversations")
    op.drop_index("ix_conversations_created_at", table_name="conversations")
    # Native DROP COLUMN (SQLite >= 3.35): none of these columns is indexed any more or part of a constraint.
    for column in reversed(_new_columns()):
        op.drop_column("conversations", column.name)
