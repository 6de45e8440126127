"""Kefu's JSON for the HTTP APIs: one compact UTF-8 encoder, the conversation rows and events of the ops console's
API, and the default that the WebSocket frames' encoder (:func:`channels.frames.encode_frame`) shares.

Pure functions (no I/O); the servers that send these bodies are :mod:`channels.ops` and :mod:`channels.server`.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from dialogue.types import ConversationSummary, Event


def json_default(value: Any) -> Any:
    """What ``json.dumps`` writes for a value JSON has no type for: a date as ISO 8601, a set or tuple as a list,
    anything else as its ``str`` (an event's data may hold them; a body never fails to encode)."""
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def summary_to_json(summary: ConversationSummary) -> dict[str, Any]:
    """The core fields of a conversation row of the ops console's ``GET /api/conversations``."""
    return {
        "id": summary.id,
        "language": summary.language,
        "turns": summary.turn_count,
        "state": summary.state,
        "handed_off": summary.handed_off,
        "last_intent": summary.last_intent,
        "created_at": summary.created_at.isoformat(),
        "updated_at": summary.updated_at.isoformat(),
    }


def event_to_json(event: Event) -> dict[str, Any]:
    """One event of the ops console's ``GET /api/conversations/<id>``."""
    return {
        "seq": event.seq,
        "turn": event.turn,
        "type": event.type,
        "message_id": event.message_id,
        "timestamp": event.timestamp.isoformat(),
        "data": event.data,
    }


def encode_json(value: Any) -> bytes:
    """Serialise a JSON API body."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=json_default).encode("utf-8")
