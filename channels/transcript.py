"""What a customer sees of a conversation's stored events: the ``history`` frame and the rating prompt sent again
on a resume, and the frames pushed while an agent holds (or staff resolved) the conversation.

Pure functions of :class:`~dialogue.types.Event` sequences, no I/O: the shell (:mod:`channels.server`) loads the
events and sends the frames. The frames themselves are built by :mod:`channels.frames`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

from channels.frames import agent_field, agent_message_frame, handoff_frame, resolved_frame
from dialogue.types import (
    AGENT_MESSAGE,
    BOT_MESSAGE,
    HANDBACK,
    RATING,
    REOPENED,
    RESOLVED,
    TAKEOVER,
    USER_MESSAGE,
    Event,
    stored_buttons,
)

MAX_HISTORY_MESSAGES: Final = 100


def push_frames(events: Iterable[Event], after_seq: int) -> tuple[list[dict[str, Any]], int]:
    """Frames to push to a customer for ``events`` with ``seq > after_seq`` (agent messages, takeover, handback,
    resolution; everything else reached the customer as a turn's reply) and the highest ``seq`` seen."""
    frames: list[dict[str, Any]] = []
    last = after_seq
    for event in sorted(events, key=lambda e: e.seq):
        if event.seq <= after_seq:
            continue
        last = max(last, event.seq)
        if event.type == AGENT_MESSAGE and isinstance(event.data.get("text"), str):
            frames.append(agent_message_frame(event))
        elif event.type == TAKEOVER:
            frames.append(handoff_frame(event.conversation_id, "agent"))
        elif event.type == HANDBACK:
            frames.append(handoff_frame(event.conversation_id, "bot"))
        elif event.type == RESOLVED:
            frames.append(resolved_frame(event.conversation_id))
    return frames, last


def history_frame(conversation_id: str, events: Iterable[Event], limit: int = MAX_HISTORY_MESSAGES) -> dict[str, Any]:
    """The ``history`` frame: the visible transcript (user, bot and agent messages) of ``events``."""
    return {"type": "history", "conversation_id": conversation_id, "messages": transcript(events, limit)}


def awaiting_rating(events: Iterable[Event]) -> bool:
    """Whether the latest ``resolved`` of ``events`` is neither rated nor reopened since (by staff, or by a customer
    message): the same rule as the store's ``resolved_at`` / ``rating`` columns, read from the events the server
    already loads to resume, so resuming costs no extra query."""
    waiting = False
    for event in sorted(events, key=lambda e: e.seq):
        if event.type == RESOLVED:
            waiting = True
        elif event.type in (RATING, REOPENED):
            waiting = False
    return waiting


def resume_frames(conversation_id: str, events: Sequence[Event]) -> list[dict[str, Any]]:
    """The frames after ``session`` on a proven resume of a stored conversation: its ``history`` (when it has
    visible messages), then its ``resolved`` frame again while the resolution awaits a rating. The live
    ``resolved`` frame reached only the sockets open when staff resolved it (and a resumed client's pushes start
    after the events it was sent), so without this a customer who reloaded the page would never be asked."""
    frames: list[dict[str, Any]] = []
    history = history_frame(conversation_id, events)
    if history["messages"]:
        frames.append(history)
    if awaiting_rating(events):
        frames.append(resolved_frame(conversation_id))
    return frames


def transcript(events: Iterable[Event], limit: int = MAX_HISTORY_MESSAGES) -> list[dict[str, Any]]:
    """User/bot/agent messages of ``events`` in order (the last ``limit``), as history-frame entries; a customer's
    click on a button shows as the button's title, as the widget showed it (the payload is what was stored)."""
    roles = {USER_MESSAGE: "user", BOT_MESSAGE: "bot", AGENT_MESSAGE: "agent"}
    messages: list[dict[str, Any]] = []
    offered: dict[str, str] = {}  # payload -> title of the buttons under the latest bot message
    for event in sorted(events, key=lambda e: e.seq):
        role = roles.get(event.type)
        text = event.data.get("text")
        if role is None or not isinstance(text, str):
            continue
        if role == "user":
            text = offered.get(text, text)
        elif role == "bot":
            offered = {payload: title for title, payload in stored_buttons(event.data)}
        reply_to = event.data.get("reply_to")
        entry: dict[str, Any] = {
            "role": role,
            "text": text,
            "message_id": event.message_id or event.data.get("message_id"),
            "reply_to": reply_to if isinstance(reply_to, str) else None,
        }
        if role == "agent":
            entry.update(agent_field(event))
        messages.append(entry)
    return messages[-limit:] if limit > 0 else []
