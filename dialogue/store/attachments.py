"""Attachments: the files customers and agents send each other (migration 0012).

The bytes live in the ``attachments`` table, one row per file, never in ``conversations`` or ``events``: the
snapshot row is read on every turn and the event log on every resume and console poll, and neither should carry
megabytes. What the conversation records is an ``attachment`` event naming the file (id, name, type, size, who sent
it), appended in the same transaction as the row, so history, resume, the console and erasure see it like any
message; erasing a conversation deletes its files with it (``ON DELETE CASCADE``, and :mod:`dialogue.retention`
empties every table with a ``conversation_id``).

The store checks what it can without knowing file formats (which belong to the channel that received the upload,
``channels.uploads``): the type is one of :data:`ATTACHMENT_TYPES`, the size within :data:`MAX_ATTACHMENT_BYTES`, the
direction known, the name short; an agent's file needs the agent to hold the conversation, like an agent message.
The file name is redacted like every staff-visible text (its extension kept). The sha256 is stored for audits and
duplicate checks. Nothing here logs a name or a byte.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from dialogue import types as ev
from dialogue.errors import HandoffConflict, InvalidQuery
from dialogue.store.database import log
from dialogue.store.rows import _aware, _now, _row_to_event
from dialogue.store.rules import PREVIEW_CHARS, _check_agent
from dialogue.store.schema import attachments, conversations, events
from dialogue.store.staff import shown_agent
from dialogue.store.turns import TurnLog
from dialogue.types import HANDOFF_AGENT, Event, NewEvent
from safety.pii import redact_verbatim

#: The event a stored attachment appends: data ``{"id", "filename", "content_type", "size", "direction",
#: "agent"?}`` (no bytes).
ATTACHMENT: Final = ev.ATTACHMENT
CUSTOMER: Final = "customer"
AGENT: Final = "agent"
DIRECTIONS: Final = (CUSTOMER, AGENT)
#: The types the store accepts (the channels' ``channels.uploads.ATTACHMENT_TYPES``: a test keeps them equal).
ATTACHMENT_TYPES: Final = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf"})
MAX_ATTACHMENT_BYTES: Final = 25 * 1024 * 1024  # the store's own ceiling; the servers' limits are lower
MAX_FILENAME_CHARS: Final = 255

_META = [c for c in attachments.c if c.name != "data"]


@dataclass(frozen=True)
class Attachment:
    """A stored attachment, without its bytes (:meth:`Attachments.get_attachment` returns those beside it)."""

    id: str
    conversation_id: str
    direction: str
    filename: str = field(repr=False)  # the sender's words (redacted): never in a repr
    content_type: str = ""
    size: int = 0
    sha256: str = ""
    created_at: dt.datetime = field(default_factory=_now)
    uploader: str | None = None

    @property
    def image(self) -> bool:
        return self.content_type.startswith("image/")

    def event_data(self) -> dict[str, Any]:
        """The ``attachment`` event's data: what the conversation's log says of the file."""
        data: dict[str, Any] = {
            "id": self.id, "filename": self.filename, "content_type": self.content_type, "size": self.size,
            "direction": self.direction,
        }
        if self.direction == AGENT and self.uploader:
            data["agent"] = self.uploader
        return data


def _row_to_attachment(row: sa.Row[Any]) -> Attachment:
    m = row._mapping
    return Attachment(
        id=m["id"], conversation_id=m["conversation_id"], direction=m["direction"], filename=m["filename"],
        content_type=m["content_type"], size=int(m["size"]), sha256=m["sha256"], created_at=_aware(m["created_at"]),
        uploader=m["uploader"],
    )


def _stored_name(filename: str) -> str:
    """The name as stored: PII in it redacted (``passport 13800138000.jpg`` -> ``passport [PHONE].jpg``), the
    extension kept (a redaction must not swallow it: ``a@b.example.pdf`` -> ``[EMAIL].pdf``)."""
    stem, dot, suffix = filename.strip().rpartition(".")
    if not dot or not stem:
        return redact_verbatim(filename.strip())[0]
    return f"{redact_verbatim(stem)[0]}.{suffix}"


class Attachments(TurnLog):
    """Attachments of a conversation: stored with their event, read back by id."""

    async def add_attachment(
        self,
        conversation_id: str,
        *,
        direction: str,
        filename: str,
        content_type: str,
        data: bytes,
        uploader: str | None = None,
        message_id: str | None = None,
    ) -> tuple[Attachment, Event]:
        """Store a file and append its ``attachment`` event, in one transaction; returns both.

        ``direction`` is ``customer`` or ``agent``; an agent's file needs ``uploader`` to hold the conversation
        (:class:`~dialogue.errors.HandoffConflict` otherwise, as for an agent message). ``message_id`` (the
        client's upload id) makes a resent upload idempotent: the stored one is returned and nothing is added.
        :class:`~dialogue.errors.InvalidQuery` for a type, size, name or direction the store does not take;
        :class:`~dialogue.errors.ConversationNotFound` when the conversation does not exist. Like an agent
        message, it bumps ``version`` and ``updated_at`` and becomes the inbox's last message (a customer's file
        makes the conversation unread for its assignee).
        """
        cid = conversation_id
        op = "add_attachment"
        if direction not in DIRECTIONS:
            raise InvalidQuery("an attachment's direction is customer or agent", operation=op, conversation_id=cid)
        if content_type not in ATTACHMENT_TYPES:
            raise InvalidQuery("unsupported attachment type", operation=op, conversation_id=cid)
        if not data or len(data) > MAX_ATTACHMENT_BYTES:
            raise InvalidQuery(f"an attachment has 1..{MAX_ATTACHMENT_BYTES} bytes", operation=op,
                               conversation_id=cid)
        name = _stored_name(filename) if isinstance(filename, str) else ""
        if not name or len(name) > MAX_FILENAME_CHARS:
            raise InvalidQuery(f"an attachment's name has 1..{MAX_FILENAME_CHARS} characters", operation=op,
                               conversation_id=cid)
        if direction == AGENT:
            _check_agent(uploader or "", op)
        if message_id is not None and not 0 < len(message_id) <= 128:
            raise InvalidQuery("message id must be 1..128 characters", operation=op, conversation_id=cid)
        now = _now()
        attachment = Attachment(
            id=uuid.uuid4().hex, conversation_id=cid, direction=direction, filename=name, content_type=content_type,
            size=len(data), sha256=hashlib.sha256(data).hexdigest(), created_at=now,
            uploader=uploader if direction == AGENT else None,
        )
        async with self._write(op, cid) as conn:
            row = await self._lock_row(conn, cid, op)  # serialises uploads (and their replays) of a conversation
            if message_id is not None:
                replayed = await self._replayed(conn, cid, message_id)
                if replayed is not None:
                    return replayed
            if direction == AGENT and (row.handoff_status != HANDOFF_AGENT or row.agent != uploader):
                raise HandoffConflict(cid, row.agent, row.handoff_status, operation=op)
            await conn.execute(attachments.insert().values(
                id=attachment.id, conversation_id=cid, direction=direction, uploader=attachment.uploader,
                filename=name, content_type=content_type, size=attachment.size, sha256=attachment.sha256,
                created_at=now, data=bytes(data),
            ))
            shown = await shown_agent(conn, attachment.uploader) if attachment.uploader else {}
            new = NewEvent(ATTACHMENT, {**attachment.event_data(), **shown}, message_id)
            (stored,) = await self._insert_events(conn, cid, row.turn_count, [new], now, op)
            author = CUSTOMER if direction == CUSTOMER else AGENT
            values: dict[str, Any] = {
                "version": row.version + 1, "updated_at": now,
                "last_message": f"\N{PAPERCLIP} {name}"[:PREVIEW_CHARS], "last_message_by": author,
            }
            if direction == CUSTOMER:
                values["last_customer_seq"] = stored.seq
            elif row.first_agent_reply_at is None:
                values["first_agent_reply_at"] = now
            await conn.execute(conversations.update().where(conversations.c.id == cid).values(**values))
        log.info("conversation %s: %s attachment %s stored (%d bytes)", cid, direction, attachment.id, attachment.size)
        return attachment, stored

    async def _replayed(self, conn: AsyncConnection, cid: str, message_id: str) -> tuple[Attachment, Event] | None:
        """The attachment an earlier upload with this ``message_id`` stored, with its event (``None``: none)."""
        found = (await conn.execute(
            events.select().where(
                events.c.conversation_id == cid, events.c.type == ATTACHMENT, events.c.message_id == message_id
            )
        )).first()
        if found is None:
            return None
        event = _row_to_event(found)
        row = (await conn.execute(
            sa.select(*_META).where(attachments.c.id == str(event.data.get("id", "")))
        )).first()
        return (_row_to_attachment(row), event) if row is not None else None

    async def get_attachment(
        self, attachment_id: str, conversation_id: str | None = None
    ) -> tuple[Attachment, bytes] | None:
        """A stored attachment and its bytes (``None`` when there is none with that id, or it belongs to another
        conversation than ``conversation_id`` when one is given)."""
        query = sa.select(*[*_META, attachments.c.data]).where(attachments.c.id == attachment_id)
        if conversation_id is not None:
            query = query.where(attachments.c.conversation_id == conversation_id)
        async with self._read("get_attachment", conversation_id) as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        return _row_to_attachment(row), bytes(row._mapping["data"])

    async def list_attachments(self, conversation_id: str) -> list[Attachment]:
        """The conversation's attachments, oldest first, without their bytes."""
        query = (
            sa.select(*_META).where(attachments.c.conversation_id == conversation_id)
            .order_by(attachments.c.created_at, attachments.c.id)
        )
        async with self._read("list_attachments", conversation_id) as conn:
            rows = (await conn.execute(query)).all()
        return [_row_to_attachment(r) for r in rows]

