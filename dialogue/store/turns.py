"""The turn log: creating and reading conversations, and appending events with the snapshot in one transaction.

A turn reads once (:meth:`TurnLog.get_for_message`: the snapshot and whether its client message id is already
stored, one statement) and writes once (:meth:`TurnLog.commit_turn`). Concurrency is optimistic: ``commit_turn``
carries the version the caller read; inside one transaction the row is locked (``SELECT ... FOR UPDATE`` on
PostgreSQL; ``BEGIN IMMEDIATE`` on SQLite), versions are compared (:class:`~dialogue.errors.ConcurrentUpdate` on
a mismatch), the events are appended with gap-free ``seq`` numbers and the snapshot is rewritten with
``version + 1`` (its ``UPDATE`` also guarded by ``WHERE version = :expected``). ``UNIQUE(conversation_id, type,
message_id)`` makes a client message id processable once (:class:`~dialogue.errors.DuplicateMessage`).

The write primitives every other concern builds on live here too: :meth:`TurnLog._lock_row`,
:meth:`TurnLog._append` (events outside a turn, with the console's columns and the inbox preview kept in the same
transaction) and :meth:`TurnLog._summary_in`.

Statements per turn. The statements a turn runs are built once, at import, with named parameters (building a
SQLAlchemy statement and its cache key costs more CPU than executing a cached one). A commit is: lock the row,
``max(seq)`` (on SQLite read in the same statement: ``BEGIN IMMEDIATE`` already excludes every other writer; on
PostgreSQL a ``FOR UPDATE`` may wait for another writer, after which only the locked row is re-read, a subquery would
keep the older snapshot), insert the events (the customer-reopened event in the same batch), update the row, and
insert the turn's intents with ``ON CONFLICT DO NOTHING`` (one statement instead of a select and an insert; other
dialects keep the select).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from dialogue import types as ev
from dialogue.errors import ConcurrentUpdate, ConversationExists, ConversationNotFound, DuplicateMessage, StoreError
from dialogue.store.database import Database, _cause, log
from dialogue.store.facts import _Facts, _given_facts, _turn_facts
from dialogue.store.rows import _SUMMARY_COLUMNS, _now, _row_to_conversation, _row_to_event, _row_to_summary
from dialogue.store.rules import PREVIEW_CHARS, _check_events
from dialogue.store.schema import conversation_intents, conversations, events
from dialogue.types import HANDOFF_NONE, HANDOFF_WAITING, Conversation, ConversationSummary, Event, NewEvent, TurnUpdate

_MESSAGE_AUTHORS = {ev.USER_MESSAGE: "customer", ev.BOT_MESSAGE: "bot", ev.AGENT_MESSAGE: "agent"}

# ---------------------------------------------------------------------- the turn's statements, built once
_cid = sa.bindparam("cid", type_=conversations.c.id.type)
_GET_FOR_MESSAGE = sa.select(
    conversations,
    sa.exists()
    .where(events.c.conversation_id == _cid, events.c.message_id == sa.bindparam("message_id"))
    .label("kefu_message_seen"),
).where(conversations.c.id == _cid)
# FOR UPDATE is rendered where the dialect has it (PostgreSQL, MySQL) and omitted on SQLite, whose write transactions
# start with BEGIN IMMEDIATE and so already exclude other writers.
_LOCK_ROW = conversations.select().where(conversations.c.id == _cid).with_for_update()
_LAST_SEQ = sa.select(sa.func.max(events.c.seq)).where(events.c.conversation_id == _cid)
_LOCK_ROW_AND_LAST_SEQ = (  # SQLite only (see the module docstring)
    sa.select(conversations, _LAST_SEQ.scalar_subquery().label("kefu_last_seq")).where(conversations.c.id == _cid)
)
_INSERT_EVENTS = events.insert()
_INSERT_CONVERSATION = conversations.insert()
# SET takes the columns of the parameters given; the row is named by these two, which are no column's name.
_UPDATE_TURN = conversations.update().where(
    conversations.c.id == sa.bindparam("kefu_cid", type_=conversations.c.id.type),
    conversations.c.version == sa.bindparam("kefu_expected_version", type_=conversations.c.version.type),
)
_ADD_INTENTS = {
    "postgresql": postgresql.insert(conversation_intents).on_conflict_do_nothing(),
    "sqlite": sqlite.insert(conversation_intents).on_conflict_do_nothing(),
}


def _inbox_values(stored: Sequence[Event]) -> dict[str, Any]:
    """The inbox columns a batch of stored events changes: the last message's text (as stored, so redacted) and
    author, and the ``seq`` of the last customer message (what makes the conversation unread for its assignee)."""
    values: dict[str, Any] = {}
    for event in stored:
        author = _MESSAGE_AUTHORS.get(event.type)
        if author is None:
            continue
        text = event.data.get("text")
        values.update(last_message=(text if isinstance(text, str) else "")[:PREVIEW_CHARS], last_message_by=author)
        if author == "customer":
            values["last_customer_seq"] = event.seq
    return values


def _first_message_id(new_events: Sequence[NewEvent]) -> str | None:
    """The id a duplicate most likely concerns: the user message's, else the first one in the batch."""
    users = [e.message_id for e in new_events if e.message_id is not None and e.type == "user_message"]
    ids = [e.message_id for e in new_events if e.message_id is not None]
    return users[0] if users else (ids[0] if ids else None)


class TurnLog(Database):
    """Conversations and their event log: the store's part the dialogue engine runs turns on."""

    # ------------------------------------------------------------------ conversations

    async def create_conversation(
        self,
        language: str,
        sender: str | None = None,
        conversation_id: str | None = None,
        *,
        state: str = "start",
        slots: dict[str, Any] | None = None,
        secret_hash: str | None = None,
    ) -> Conversation:
        """Insert a new conversation (version 0, no turns). ``conversation_id`` defaults to a random UUID.

        ``state`` is stored as given: callers running an FSM pass its initial state (``flows.initial_state``);
        the store knows no FSM, so the default ``"start"`` is only a placeholder. ``secret_hash`` is the sha256 (hex)
        of the chat channel's resume secret (``None``: the conversation cannot be resumed from the chat port).

        Raises :class:`~dialogue.errors.ConversationExists` when the given id is taken (the caller re-reads it: two
        copies of a first message racing to create the same id is normal, see ``DialogueEngine.handle_message``).
        """
        cid = conversation_id or str(uuid.uuid4())
        if len(cid) > 64:
            raise StoreError("conversation id longer than 64 characters", operation="create_conversation")
        now = _now()
        values = {
            "id": cid,
            "sender": sender,
            "language": language,
            "state": state,
            "slots": dict(slots or {}),
            "turn_count": 0,
            "handed_off": False,
            "last_intent": None,
            "last_action": None,
            "version": 0,
            "created_at": now,
            "updated_at": now,
            "secret_hash": secret_hash,
        }
        async with self._write("create_conversation", cid) as conn:
            try:
                await conn.execute(_INSERT_CONVERSATION, values)
            except sa_exc.IntegrityError:
                raise ConversationExists(cid) from None
        log.debug("created conversation %s", cid)
        return Conversation(
            id=cid,
            state=state,
            slots=dict(slots or {}),
            language=language,
            turn_count=0,
            handed_off=False,
            version=0,
            created_at=now,
            updated_at=now,
            sender=sender,
            secret_hash=secret_hash,
        )

    async def get(self, conversation_id: str) -> Conversation | None:
        """The snapshot of one conversation, or ``None``."""
        async with self._read("get", conversation_id) as conn:
            row = (await conn.execute(conversations.select().where(conversations.c.id == conversation_id))).first()
        return _row_to_conversation(row) if row is not None else None

    async def get_for_message(self, conversation_id: str, message_id: str) -> tuple[Conversation | None, bool]:
        """The snapshot of one conversation (or ``None``) and whether ``message_id`` is already stored in it.

        A turn's one read: the engine needs the snapshot and must know whether a client retried a message it
        already answered (then it answers from :meth:`find_events_by_message_id`, without running the turn
        again). One statement (an ``EXISTS`` probe on the ``(conversation_id, message_id)`` index) instead of two
        round trips for every fresh message.
        """
        async with self._read("get_for_message", conversation_id) as conn:
            row = (await conn.execute(_GET_FOR_MESSAGE, {"cid": conversation_id, "message_id": message_id})).first()
        if row is None:
            return None, False
        return _row_to_conversation(row), bool(row.kefu_message_seen)

    async def delete_conversation(self, conversation_id: str) -> bool:
        """Delete a conversation and (ON DELETE CASCADE) its events, e.g. for a data-erasure request."""
        async with self._write("delete_conversation", conversation_id) as conn:
            result = await conn.execute(conversations.delete().where(conversations.c.id == conversation_id))
        return bool(result.rowcount)

    # ------------------------------------------------------------------ writes

    async def commit_turn(self, update: TurnUpdate) -> list[Event]:
        """Append one turn's events and rewrite the snapshot, atomically.

        The events get ``turn = turn_count + 1`` and ``seq`` numbers continuing the conversation's log; the
        snapshot gets the update's state/slots/language/handoff/last_intent, ``turn_count + 1`` and
        ``version + 1``, and the console's columns are derived from the events in the same transaction: lowest
        confidence, fallback and safety turn counts, every intent, the search text, and ``handoff_status``
        ``"waiting"`` when the turn carries a ``handoff`` event (unless an agent already holds it). A customer
        message on a resolved conversation reopens it (a ``reopened`` event with reason ``customer`` follows the
        turn's events, and is returned with them): the customer is not done after all.
        Raises :class:`~dialogue.errors.ConversationNotFound`,
        :class:`~dialogue.errors.ConcurrentUpdate` (someone committed since ``expected_version`` was read:
        nothing is written) or :class:`~dialogue.errors.DuplicateMessage` (an event's ``(type, message_id)``
        is already stored: nothing is written; answer from :meth:`find_events_by_message_id`).
        """
        cid = update.conversation_id
        _check_events(update.events, cid, "commit_turn")
        facts = _turn_facts(update.events) if update.facts is None else _given_facts(update.facts, update.events)
        async with self._write("commit_turn", cid) as conn:
            if self._dialect == "sqlite":
                row = await self._lock_row(conn, cid, "commit_turn", _LOCK_ROW_AND_LAST_SEQ)
                last_seq: int | None = int(row.kefu_last_seq or 0)
            else:
                row, last_seq = await self._lock_row(conn, cid, "commit_turn"), None
            current = _row_to_conversation(row)
            if current.version != update.expected_version:
                raise ConcurrentUpdate(cid, update.expected_version, current.version)
            now = _now()
            turn = current.turn_count + 1
            new_events = list(update.events)
            reopen = row.resolved_at is not None and any(e.type == ev.USER_MESSAGE for e in update.events)
            if reopen:  # follows the turn's events, in the same insert
                new_events.append(NewEvent(ev.REOPENED, {"agent": None, "reason": "customer"}))
            stored = await self._insert_events(conn, cid, turn, new_events, now, "commit_turn", last_seq=last_seq)
            values: dict[str, Any] = {
                "state": update.state,
                "slots": dict(update.slots),
                "language": update.language,
                "handed_off": update.handed_off,
                "last_intent": update.last_intent,
                "last_action": update.last_action,
                "turn_count": turn,
                "version": update.expected_version + 1,
                "updated_at": now,
                **self._fact_values(row, facts),
            }
            if update.fallback_streak is not None:
                values["fallback_streak"] = update.fallback_streak
            status = row.handoff_status
            if facts.handoff_end and status == HANDOFF_WAITING:  # the wait ended (time-out, offline, the customer)
                status = HANDOFF_NONE
                values.update(handoff_status=HANDOFF_NONE, handoff_at=None)
            if facts.handoff and status == HANDOFF_NONE:
                values.update(handoff_status=HANDOFF_WAITING, handoff_at=now, handoffs=row.handoffs + 1)
            values.update(_inbox_values(stored))  # a reopened event is no message: it changes none of these
            if reopen:
                values.update(resolved_at=None, resolved_by=None)
            result = await conn.execute(
                _UPDATE_TURN, {**values, "kefu_cid": cid, "kefu_expected_version": update.expected_version}
            )
            if result.rowcount != 1:  # only reachable on a dialect without row locks
                raise ConcurrentUpdate(cid, update.expected_version, current.version + 1)
            await self._add_intents(conn, cid, facts.intents)
        log.debug("conversation %s: turn %d committed, %d events", cid, turn, len(stored))
        return stored

    @staticmethod
    def _fact_values(row: sa.Row[Any], facts: _Facts) -> dict[str, Any]:
        return {
            "min_confidence": facts.min_confidence(row.min_confidence),
            "fallbacks": row.fallbacks + int(facts.fallback),
            "safety_flags": row.safety_flags + int(facts.safety),
            "safety_blocks": row.safety_blocks + int(facts.blocked),
            "redactions": row.redactions + int(facts.redacted),
            "search_text": facts.search_text(row.search_text or ""),
        }

    async def _add_intents(self, conn: AsyncConnection, cid: str, intents: set[str]) -> None:
        if not intents:
            return
        upsert = _ADD_INTENTS.get(self._dialect)
        if upsert is not None:  # one statement; sorted, so that concurrent turns touch the index in the same order
            await conn.execute(upsert, [{"conversation_id": cid, "intent": i} for i in sorted(intents)])
            return
        ci = conversation_intents.c
        known = set(
            (await conn.execute(sa.select(ci.intent).where(ci.conversation_id == cid, ci.intent.in_(intents))))
            .scalars()
            .all()
        )  # the conversation row is locked: nobody else adds this conversation's intents meanwhile
        missing = sorted(intents - known)
        if missing:
            await conn.execute(conversation_intents.insert(), [{"conversation_id": cid, "intent": i} for i in missing])

    async def append_events(self, conversation_id: str, new_events: Sequence[NewEvent]) -> list[Event]:
        """Append events outside a user turn (agent messages, handoff notes...).

        They belong to the conversation's current turn (``turn = turn_count``; ``0`` before the first turn) and
        continue its ``seq``. ``version`` is bumped and ``updated_at`` refreshed (a turn computed from an older
        snapshot then fails with :class:`~dialogue.errors.ConcurrentUpdate`, so it sees what the agent wrote);
        ``turn_count`` is unchanged; message texts are added to the search text. Raises
        :class:`~dialogue.errors.ConversationNotFound` / :class:`~dialogue.errors.DuplicateMessage`.
        """
        cid = conversation_id
        new_events = tuple(new_events)
        _check_events(new_events, cid, "append_events")
        if not new_events:
            return []
        async with self._write("append_events", cid) as conn:
            row = await self._lock_row(conn, cid, "append_events")
            stored = await self._append(conn, row, new_events, "append_events", activity=True)
        log.debug("conversation %s: %d events appended", cid, len(stored))
        return stored

    async def _append(
        self,
        conn: AsyncConnection,
        row: sa.Row[Any],
        new_events: Sequence[NewEvent],
        operation: str,
        *,
        activity: bool,
        **values: Any,
    ) -> list[Event]:
        """Insert events in the current turn and update the (locked) row with ``values``.

        ``activity`` marks something the customer sees (an agent message, a take-over): it bumps ``version`` so
        that a turn computed from the older snapshot is redone, and refreshes ``updated_at`` (the list's order).
        Staff bookkeeping (reviews, corrections) does neither: reviewing must not reshuffle the list being
        reviewed, nor make a customer's turn retry.
        """
        now = _now()
        stored = await self._insert_events(conn, row.id, row.turn_count, new_events, now, operation)
        facts = _turn_facts(new_events)
        if facts.texts:
            values["search_text"] = facts.search_text(row.search_text or "")
        values.update(_inbox_values(stored))
        if activity:
            values.update(version=conversations.c.version + 1, updated_at=now)
        if values:
            await conn.execute(conversations.update().where(conversations.c.id == row.id).values(**values))
        return stored

    # ------------------------------------------------------------------ write primitives the other concerns use

    async def _lock_row(
        self, conn: AsyncConnection, cid: str, operation: str, query: sa.Select[Any] = _LOCK_ROW
    ) -> sa.Row[Any]:
        """The conversation's row, locked until the transaction ends (see ``_LOCK_ROW``)."""
        row = (await conn.execute(query, {"cid": cid})).first()
        if row is None:
            raise ConversationNotFound(cid, operation=operation)
        return row

    async def _summary_in(self, conn: AsyncConnection, cid: str) -> ConversationSummary:
        row = (await conn.execute(sa.select(*_SUMMARY_COLUMNS).where(conversations.c.id == cid))).one()
        return _row_to_summary(row)

    async def _insert_events(
        self,
        conn: AsyncConnection,
        cid: str,
        turn: int,
        new_events: Sequence[NewEvent],
        now: dt.datetime,
        operation: str,
        *,
        last_seq: int | None = None,
    ) -> list[Event]:
        """Insert ``new_events`` after the conversation's last ``seq`` (``last_seq`` when the caller read it in
        this transaction already, else read here)."""
        if not new_events:
            return []
        if last_seq is None:
            last_seq = int((await conn.execute(_LAST_SEQ, {"cid": cid})).scalar_one() or 0)
        seq0 = last_seq
        # A repeated (type, message_id) is rejected by UNIQUE(conversation_id, type, message_id), race-free.
        stored = [
            Event(
                conversation_id=cid,
                seq=seq0 + i,
                turn=turn,
                type=new.type,
                data=dict(new.data),
                timestamp=now,
                message_id=new.message_id,
            )
            for i, new in enumerate(new_events, start=1)
        ]
        rows = [
            {
                "conversation_id": cid,
                "seq": e.seq,
                "turn": turn,
                "type": e.type,
                "data": e.data,
                "message_id": e.message_id,
                "timestamp": now,
            }
            for e in stored
        ]
        try:
            await conn.execute(_INSERT_EVENTS, rows)
        except sa_exc.IntegrityError as exc:
            cause = _cause(exc)
            text = f"{getattr(cause, 'constraint_name', '')} {cause}".lower()
            if "uq_events_conversation_type_message" in text or "events.message_id" in text:
                raise DuplicateMessage(cid, _first_message_id(new_events), operation=operation) from None
            raise StoreError(
                f"integrity error: {type(cause).__name__}", operation=operation, conversation_id=cid
            ) from None
        return stored

    # ------------------------------------------------------------------ event reads

    async def events(self, conversation_id: str, after_seq: int = 0) -> list[Event]:
        """The conversation's events with ``seq > after_seq``, in order (``[]`` for an unknown conversation)."""
        query = (
            events.select()
            .where(events.c.conversation_id == conversation_id, events.c.seq > after_seq)
            .order_by(events.c.seq)
        )
        async with self._read("events", conversation_id) as conn:
            rows = (await conn.execute(query)).all()
        return [_row_to_event(r) for r in rows]

    async def find_events_by_message_id(self, conversation_id: str, message_id: str) -> list[Event]:
        """All events of the turn that contains an event carrying ``message_id``, in order; ``[]`` if none.

        Used for idempotent retries: when a client resends a user message, the channel answers from the stored
        turn (its ``BOT_MESSAGE`` events, ``data["reply_to"] == message_id``) instead of running it again. A
        turn is defined by the ``turn`` column, so events appended later by :meth:`append_events` in the same
        turn (agent messages) are included: pick by type.
        """
        c = events.c
        turn_of = (
            sa.select(c.turn)
            .where(c.conversation_id == conversation_id, c.message_id == message_id)
            .order_by(c.seq)
            .limit(1)
            .scalar_subquery()
        )
        query = events.select().where(c.conversation_id == conversation_id, c.turn == turn_of).order_by(c.seq)
        async with self._read("find_events_by_message_id", conversation_id) as conn:
            rows = (await conn.execute(query)).all()
        return [_row_to_event(r) for r in rows]
