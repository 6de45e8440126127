"""What a customer sees of a conversation's stored events: the ``history`` frame and the rating prompt sent again
on a resume, and the frames pushed while an agent holds (or staff resolved) the conversation.

Pure functions of :class:`~dialogue.types.Event` sequences, no I/O: the shell (:mod:`channels.server`) loads the
events and sends the frames. The frames themselves are built by :mod:`channels.frames`.

Attachments (``attachment`` events, :mod:`dialogue.store.attachments`) appear in the history as entries of their
sender's role with an ``attachment`` object, and an agent's are pushed as ``attachment`` frames; their download
link is the caller's ``attachment_url(id)`` (the shell makes it with the connection's download token, see
:func:`channels.uploads.download_token`): without one, the entry has no ``url``.

An agent's entries and frames name the agent as their event recorded them when sent (``agent_name``,
``agent_avatar``: :func:`channels.frames.event_agent_card`), not as their profile is now.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from channels.frames import (
    agent_field,
    agent_message_frame,
    attachment_frame,
    attachment_json,
    event_agent_card,
    handoff_frame,
    resolved_frame,
)
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
ATTACHMENT: Final = "attachment"  # the event type of dialogue.store.attachments (dialogue.store.ATTACHMENT)

#: ``attachment_url(attachment_id)``: the customer's download link of an attachment, or ``None``.
AttachmentUrl = Callable[[str], str | None]


def _url(attachment_url: AttachmentUrl | None, event: Event) -> str | None:
    attachment_id = event.data.get("id")
    if attachment_url is None or not isinstance(attachment_id, str) or not attachment_id:
        return None
    return attachment_url(attachment_id)


def push_frames(
    events: Iterable[Event], after_seq: int, *, attachment_url: AttachmentUrl | None = None
) -> tuple[list[dict[str, Any]], int]:
    """Frames to push to a customer for ``events`` with ``seq > after_seq`` (agent messages and attachments,
    takeover, handback, resolution; everything else reached the customer as a turn's reply or an upload's ack) and
    the highest ``seq`` seen."""
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
        elif event.type == ATTACHMENT and event.data.get("direction") == "agent":
            frames.append(attachment_frame(event, _url(attachment_url, event)))
    return frames, last


def history_frame(
    conversation_id: str,
    events: Iterable[Event],
    limit: int = MAX_HISTORY_MESSAGES,
    *,
    attachment_url: AttachmentUrl | None = None,
) -> dict[str, Any]:
    """The ``history`` frame: the visible transcript (user, bot and agent messages, attachments) of ``events``."""
    return {
        "type": "history", "conversation_id": conversation_id,
        "messages": transcript(events, limit, attachment_url=attachment_url),
    }


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


def resume_frames(
    conversation_id: str, events: Sequence[Event], *, attachment_url: AttachmentUrl | None = None
) -> list[dict[str, Any]]:
    """The frames after ``session`` on a proven resume of a stored conversation: its ``history`` (when it has
    visible messages), then its ``resolved`` frame again while the resolution awaits a rating. The live
    ``resolved`` frame reached only the sockets open when staff resolved it (and a resumed client's pushes start
    after the events it was sent), so without this a customer who reloaded the page would never be asked."""
    frames: list[dict[str, Any]] = []
    history = history_frame(conversation_id, events, attachment_url=attachment_url)
    if history["messages"]:
        frames.append(history)
    if awaiting_rating(events):
        frames.append(resolved_frame(conversation_id))
    return frames


def _attachment_entry(event: Event, attachment_url: AttachmentUrl | None) -> dict[str, Any]:
    """The history entry of an ``attachment`` event: its sender's role, the file name as ``text`` (what a client
    that knows no attachments shows), and the ``attachment`` object."""
    agent = event.data.get("direction") == "agent"
    entry: dict[str, Any] = {
        "role": "agent" if agent else "user",
        "text": str(event.data.get("filename", "")),
        "message_id": event.message_id or f"attachment-{event.seq}",
        "reply_to": None,
        "attachment": attachment_json(event.data, _url(attachment_url, event)),
    }
    card = event_agent_card(event.data) if agent else None
    if card is not None:
        entry["agent"] = card
    return entry


def transcript(
    events: Iterable[Event], limit: int = MAX_HISTORY_MESSAGES, *, attachment_url: AttachmentUrl | None = None
) -> list[dict[str, Any]]:
    """User/bot/agent messages and attachments of ``events`` in order (the last ``limit``), as history-frame
    entries; a customer's click on a button shows as the button's title, as the widget showed it (the payload is
    what was stored)."""
    roles = {USER_MESSAGE: "user", BOT_MESSAGE: "bot", AGENT_MESSAGE: "agent"}
    messages: list[dict[str, Any]] = []
    offered: dict[str, str] = {}  # payload -> title of the buttons under the latest bot message
    for event in sorted(events, key=lambda e: e.seq):
        if event.type == ATTACHMENT:
            messages.append(_attachment_entry(event, attachment_url))
            continue
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
