"""Rows to values: how a database row becomes a :mod:`dialogue.types` dataclass, and back to UTC.

Every concern of the store reads the same rows, so the conversions live once here: timestamps come back
timezone-aware UTC (SQLite returns naive ones; everything the store writes is UTC), JSON is written compact and as
UTF-8 text, and ``_SUMMARY_COLUMNS`` is the one column list behind every :class:`~dialogue.types.ConversationSummary`
(the console list, the hand-off queue, the summary a staff write returns), so they cannot drift apart. Pure
functions, no I/O.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import sqlalchemy as sa

from dialogue.canned import CannedReply
from dialogue.store.schema import conversations
from dialogue.types import Conversation, ConversationSummary, Event, User


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(value: dt.datetime) -> dt.datetime:
    """SQLite returns naive datetimes; everything the store writes is UTC."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _dumps(value: Any) -> str:
    # ensure_ascii=False: Chinese is stored as UTF-8 text, not \\u escapes (readable in psql / sqlite3).
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _row_to_conversation(row: sa.Row[Any]) -> Conversation:
    m = row._mapping
    return Conversation(
        id=m["id"],
        state=m["state"],
        slots=dict(m["slots"] or {}),
        language=m["language"],
        turn_count=m["turn_count"],
        handed_off=bool(m["handed_off"]),
        version=m["version"],
        created_at=_aware(m["created_at"]),
        updated_at=_aware(m["updated_at"]),
        sender=m["sender"],
        last_action=m["last_action"],
        handoff_status=m["handoff_status"],
        agent=m["agent"],
        fallback_streak=m["fallback_streak"],
        secret_hash=m["secret_hash"],
        handoff_at=_aware(m["handoff_at"]) if m.get("handoff_at") is not None else None,
    )


_c = conversations.c
# Everything a summary shows (not the slots or the search text: the list must stay cheap and free of PII).
_SUMMARY_COLUMNS = (
    _c.id, _c.language, _c.turn_count, _c.handed_off, _c.state, _c.created_at, _c.updated_at, _c.last_intent,
    _c.last_action, _c.reviewed, _c.flagged, _c.tags, _c.min_confidence, _c.fallbacks, _c.safety_flags,
    _c.handoff_status, _c.agent, _c.handoff_at, _c.handoffs, _c.resolved_at, _c.resolved_by, _c.rating,
    _c.assignee, _c.assigned_at, _c.sender, _c.last_message, _c.last_message_by,
    (_c.last_customer_seq > _c.assignee_seen_seq).label("unread"),
)


def _row_to_summary(row: Any) -> ConversationSummary:  # a Row of _SUMMARY_COLUMNS
    m = row._mapping
    return ConversationSummary(
        id=m["id"],
        language=m["language"],
        turn_count=m["turn_count"],
        handed_off=bool(m["handed_off"]),
        state=m["state"],
        created_at=_aware(m["created_at"]),
        updated_at=_aware(m["updated_at"]),
        last_intent=m["last_intent"],
        reviewed=bool(m["reviewed"]),
        flagged=bool(m["flagged"]),
        tags=tuple(m["tags"] or ()),
        min_confidence=m["min_confidence"],
        fallbacks=m["fallbacks"],
        safety_flags=m["safety_flags"],
        handoff_status=m["handoff_status"],
        agent=m["agent"],
        last_action=m["last_action"],
        handoff_at=_aware(m["handoff_at"]) if m["handoff_at"] is not None else None,
        handoffs=m["handoffs"],
        resolved_at=_aware(m["resolved_at"]) if m["resolved_at"] is not None else None,
        resolved_by=m["resolved_by"],
        rating=m["rating"],
        assignee=m["assignee"],
        assigned_at=_aware(m["assigned_at"]) if m["assigned_at"] is not None else None,
        unread=bool(m["unread"]),
        sender=m["sender"],
        preview=m["last_message"] or "",
        preview_by=m["last_message_by"] or "",
    )


def _row_to_user(row: sa.Row[Any]) -> User:
    m = row._mapping
    return User(
        id=m["id"],
        username=m["username"],
        role=m["role"],
        disabled=bool(m["disabled"]),
        created_at=_aware(m["created_at"]),
        password_hash=m["password_hash"],
        locale=m["locale"],
        display_name=m["display_name"],
        avatar=m["avatar"],  # user_avatars.sha256 (NULL: no picture), joined by staff._USERS
    )


def _row_to_canned(row: sa.Row[Any]) -> CannedReply:
    m = row._mapping
    return CannedReply(
        id=int(m["id"]),
        language=m["language"],
        title=m["title"],
        text=m["text"],
        created_by=m["created_by"],
        created_at=_aware(m["created_at"]),
    )


def _row_to_event(row: sa.Row[Any]) -> Event:
    m = row._mapping
    return Event(
        conversation_id=m["conversation_id"],
        seq=m["seq"],
        turn=m["turn"],
        type=m["type"],
        data=dict(m["data"] or {}),
        timestamp=_aware(m["timestamp"]),
        message_id=m["message_id"],
    )
