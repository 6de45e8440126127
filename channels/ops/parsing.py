"""Reading what staff send, pure (no I/O): query parameters and JSON bodies checked field by field, refused with
an :class:`~channels.ops.api.ApiError` that names the field, never its value.

Every check happens here, before a handler reaches the backend, so a typo never lists everything and a malformed
value never reaches the store.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from channels.ops.api import ApiError
from dialogue.canned import CannedReplyInvalid, check_reply
from dialogue.types import ConversationFilter

TAG_RE: Final = re.compile(r"[^\s\x00-\x1f\x7f<>\"'`]{1,32}")
INTENT_RE: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
LANGUAGE_RE: Final = re.compile(r"[a-z]{2}(-[A-Za-z0-9]{1,8})?")
CURSOR_RE: Final = re.compile(r"[A-Za-z0-9_.:=+/-]{1,400}")
SCENARIO_NAME_RE: Final = re.compile(r"[A-Za-z0-9_.-]{1,80}")
MAX_LIMIT: Final = 200
DEFAULT_LIMIT: Final = 50
MAX_QUERY_CHARS: Final = 200
MAX_TAGS: Final = 10
MAX_NOTE_CHARS: Final = 2000  # dialogue.store.MAX_NOTE_CHARS
VIEWS: Final = ("all", "mine", "unassigned")  # the inbox's tabs (?view=)
FILTER_PARAMS: Final = frozenset(
    {"since", "until", "created_since", "created_until", "language", "intent", "low_confidence", "fallback", "safety",
     "handoff", "tag", "reviewed", "flagged", "q", "limit", "cursor", "view"}
)


# ------------------------------------------------------------------------------------------------ query strings
def one(query: Mapping[str, Sequence[str]], name: str) -> str | None:
    """The last value of a query parameter, trimmed; ``None`` when absent or blank."""
    values = query.get(name)
    if not values:
        return None
    value = values[-1].strip()
    return value or None


def query_bool(query: Mapping[str, Sequence[str]], name: str) -> bool | None:
    raw = one(query, name)
    if raw is None:
        return None
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ApiError("bad_request", f"query parameter '{name}' must be true or false")


def bounded_int(raw: str | None, name: str, default: int, low: int, high: int) -> int:
    """A non-negative decimal between ``low`` and ``high`` (``default`` when absent)."""
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9:
        raise ApiError("bad_request", f"'{name}' must be a non-negative integer")
    value = int(raw)
    if not low <= value <= high:
        raise ApiError("bad_request", f"'{name}' must be between {low} and {high}")
    return value


def when(raw: str | None, name: str, *, end_of_day: bool = False) -> dt.datetime | None:
    """ISO 8601 date or date-time; naive values are UTC. A bare date as an upper bound means the end of that day."""
    if raw is None:
        return None
    try:
        if len(raw) == 10:
            day = dt.date.fromisoformat(raw)
            start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
            return start + dt.timedelta(days=1) if end_of_day else start
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise ApiError("bad_request", f"query parameter '{name}' must be an ISO 8601 date or date-time") from None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


def view_filter(raw: str | None, username: str) -> dict[str, Any]:
    """``?view=`` -> the :class:`ConversationFilter` fields that narrow a list or the queue to it."""
    view = raw or "all"
    if view not in VIEWS:
        raise ApiError("bad_request", "'view' must be all, mine or unassigned")
    if view == "mine":
        return {"assignee": username}
    if view == "unassigned":
        return {"assigned": False}
    return {}


def parse_conversation_query(query: Mapping[str, Sequence[str]]) -> tuple[ConversationFilter, int, str | None]:
    """``GET /api/conversations`` parameters -> (filter, limit, cursor). Unknown parameters are refused (a typo
    must not silently list everything)."""
    unknown = set(query) - FILTER_PARAMS
    if unknown:
        raise ApiError("bad_request", f"unknown query parameter(s): {', '.join(sorted(unknown))[:200]}")
    language = one(query, "language")
    if language is not None and not LANGUAGE_RE.fullmatch(language):
        raise ApiError("bad_request", "'language' must be a language code such as en or zh")
    intent = one(query, "intent")
    if intent is not None and not INTENT_RE.fullmatch(intent):
        raise ApiError("bad_request", "'intent' must be 1-64 characters of [A-Za-z0-9_.-]")
    handoff = one(query, "handoff")
    if handoff is not None and handoff not in ("waiting", "agent", "any", "none"):
        raise ApiError("bad_request", "'handoff' must be waiting, agent, any or none")
    tag = one(query, "tag")
    if tag is not None and not TAG_RE.fullmatch(tag):
        raise ApiError("bad_request", "'tag' must be 1-32 characters without spaces or quotes")
    text = one(query, "q")
    if text is not None and len(text) > MAX_QUERY_CHARS:
        raise ApiError("bad_request", f"'q' must be at most {MAX_QUERY_CHARS} characters")
    cursor = one(query, "cursor")
    if cursor is not None and not CURSOR_RE.fullmatch(cursor):
        raise ApiError("bad_request", "'cursor' is malformed")
    filt = ConversationFilter(
        since=when(one(query, "since"), "since"),
        until=when(one(query, "until"), "until", end_of_day=True),
        created_since=when(one(query, "created_since"), "created_since"),
        created_until=when(one(query, "created_until"), "created_until", end_of_day=True),
        language=language,
        intent=intent,
        low_confidence=query_bool(query, "low_confidence"),
        fallback=query_bool(query, "fallback"),
        safety=query_bool(query, "safety"),
        handoff=handoff,
        tag=tag,
        reviewed=query_bool(query, "reviewed"),
        flagged=query_bool(query, "flagged"),
        query=text,
    )
    return filt, bounded_int(one(query, "limit"), "limit", DEFAULT_LIMIT, 1, MAX_LIMIT), cursor


# -------------------------------------------------------------------------------------------------- JSON bodies
def tags(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_TAGS:
        raise ApiError("bad_request", f"'{name}' must be a list of at most {MAX_TAGS} tags")
    found = []
    for tag in value:
        if not isinstance(tag, str) or not TAG_RE.fullmatch(tag.strip()):
            raise ApiError("bad_request", f"'{name}': a tag is 1-32 characters without spaces or quotes")
        found.append(tag.strip())
    return found


def optional_bool(body: Mapping[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise ApiError("bad_request", f"'{name}' must be true, false or null")
    return value


def staff_text(body: Mapping[str, Any], cap: int) -> str:
    """The ``text`` of a staff request (an agent's message, a note): trimmed, non-empty, at most ``cap`` characters."""
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ApiError("bad_request", "'text' must be a non-empty string")
    if len(text.strip()) > cap:
        raise ApiError("too_large", f"'text' is longer than {cap} characters")
    return text.strip()


def reply_id(raw: Any) -> int:
    """A canned reply's id, from a body (an int) or a query (digits); ids never go into paths, so the route
    table's role walk needs no id of its own."""
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 9:
        return int(raw)
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 < raw < 10**9:
        return raw
    raise ApiError("bad_request", "'id' must be the id of a canned reply")


def canned_fields(body: Mapping[str, Any], languages: Sequence[str]) -> tuple[str, str, str]:
    """A canned reply's (language, title, text). Checked here as well as in the store so the error names the rule
    (and 413 is never the answer)."""
    try:
        return check_reply(body.get("language"), body.get("title"), body.get("text"), languages)
    except CannedReplyInvalid as exc:
        raise ApiError("bad_request", exc.reason) from None


def check_entities(text: str, raw: Any, known: Sequence[str]) -> list[dict[str, Any]]:
    """Validate a correction's entities: known names, in-bounds spans whose text is the value, no overlaps."""
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > 20:
        raise ApiError("bad_request", "'entities' must be a list of at most 20 entities")
    entities: list[dict[str, Any]] = []
    for item in raw:
        if not isinstance(item, dict):
            raise ApiError("bad_request", "each entity must be an object")
        name, start, end = item.get("entity"), item.get("start"), item.get("end")
        if not isinstance(name, str) or (known and name not in known):
            raise ApiError("bad_request", "unknown entity name")
        if (
            not isinstance(start, int)
            or not isinstance(end, int)
            or isinstance(start, bool)
            or isinstance(end, bool)
            or not 0 <= start < end <= len(text)
        ):
            raise ApiError("bad_request", "entity 'start'/'end' must be a span inside the text")
        value = text[start:end]
        if item.get("value") not in (None, value):
            raise ApiError("bad_request", "entity 'value' must be the text between 'start' and 'end'")
        entities.append({"entity": name, "value": value, "start": start, "end": end})
    entities.sort(key=lambda e: e["start"])
    for before, after in itertools.pairwise(entities):
        if after["start"] < before["end"]:
            raise ApiError("bad_request", "entities must not overlap")
    return entities
