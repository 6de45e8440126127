"""The store's domain rules: limits, and the checks every write applies before it touches the database.

What a tag, an agent name, a role, a canned reply or a batch of new events must look like, and what assigning a
conversation changes, decided in one place so that every write path (the turn log, review, hand-off, the
workspace, staff accounts) enforces the same rules and raises the same errors. Staff-written text is PII-redacted
here (:func:`safety.pii.redact_verbatim`) before any write path sees it. Pure functions, no I/O.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import Any

from dialogue.canned import check_reply
from dialogue.errors import DuplicateMessage, InvalidQuery, StoreError
from dialogue.store.rows import _dumps, _now
from dialogue.types import EVENT_TYPES, ROLES, NewEvent
from safety.pii import redact_verbatim

_MAX_LIST = 1000
MAX_TAGS = 20
MAX_TAG_LENGTH = 32
MAX_NOTE_CHARS = 2000  # an internal note: as long as a message may be
PREVIEW_CHARS = 200  # characters of the last message kept for the inbox (migration 0009)
ASSIGNABLE_ROLES = ("agent", "admin")  # who a conversation can be assigned to
RESOLVED_STATUS = "resolved"  # handoff_statuses' value for a resolved conversation still to be rated


def _clean_tag(tag: str) -> str:
    """Tags are staff-written labels: trimmed, 1..32 printable characters, PII redacted like all staff text (a
    phone number typed as a tag is stored, and filtered by, as ``[PHONE]``)."""
    value = tag.strip() if isinstance(tag, str) else ""
    if not value or len(value) > MAX_TAG_LENGTH or any(unicodedata.category(ch)[0] == "C" for ch in value):
        raise InvalidQuery(f"a tag must be 1..{MAX_TAG_LENGTH} printable characters", operation="review")
    return redact_verbatim(value)[0]


def _check_agent(agent: str, operation: str) -> None:
    if not isinstance(agent, str) or not 1 <= len(agent) <= 64:
        raise StoreError("agent must be a username of 1..64 characters", operation=operation)


def _check_role(role: str, operation: str) -> None:
    if role not in ROLES:
        raise StoreError(f"role must be one of {', '.join(ROLES)}, got {role!r}", operation=operation)


def _clean_canned(language: str, title: str, text: str, languages: Sequence[str]) -> tuple[str, str, str]:
    """A canned reply's fields checked (:func:`dialogue.canned.check_reply`) and redacted like all staff text; a
    redaction that makes the title too long (a placeholder is longer than what it hides) is refused too."""
    language, title, text = check_reply(language, title, text, languages)
    title, text = redact_verbatim(title)[0], redact_verbatim(text)[0]
    return check_reply(language, title, text, languages)


def _assignment(row: Any, assignee: str) -> dict[str, Any]:
    """The column values that assign the (locked) row to ``assignee``; nothing when it already is. A new assignee
    has seen nothing yet (``assignee_seen_seq`` 0: unread while any customer message exists)."""
    if row.assignee == assignee:
        return {}
    return {"assignee": assignee, "assigned_at": _now(), "assignee_seen_seq": 0}


def _check_events(new_events: Sequence[NewEvent], conversation_id: str, operation: str) -> None:
    seen: set[tuple[str, str]] = set()
    for new in new_events:
        if new.type not in EVENT_TYPES:
            raise StoreError(f"unknown event type {new.type!r}", operation=operation, conversation_id=conversation_id)
        if not isinstance(new.data, dict):
            raise StoreError(
                f"event data must be a dict, got {type(new.data).__name__}",
                operation=operation,
                conversation_id=conversation_id,
            )
        try:
            _dumps(new.data)
        except (TypeError, ValueError) as exc:
            raise StoreError(
                f"{new.type} event data is not JSON-serialisable: {type(exc).__name__}",
                operation=operation,
                conversation_id=conversation_id,
            ) from None
        if new.message_id is not None:
            key = (new.type, new.message_id)
            if key in seen:
                raise DuplicateMessage(conversation_id, new.message_id, operation=operation)
            seen.add(key)
