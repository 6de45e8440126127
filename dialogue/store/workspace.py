"""The agents' workspace: the inbox (claim, assign, auto-assignment, unread), resolution and the customer's
rating, internal notes and canned replies (migrations 0008, 0009 and 0011).

These are the console's tools for working a conversation to its end, as opposed to the bot's turn log and to the
hand-off that pauses the bot. Assignment (``assignee``) only says whose a conversation is in the inbox; a
resolution ends any hand-off and assignment and lets the widget ask for a rating, once per resolution. Notes and
canned replies are staff text, PII-redacted before they are stored.
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from dialogue import types as ev
from dialogue.canned import CannedReply, CannedReplyExists, CannedReplyNotFound
from dialogue.errors import AlreadyRated, HandoffConflict, InvalidQuery, NotResolved
from dialogue.handoff import PRESENCE_TIMEOUT, round_robin
from dialogue.store.database import log
from dialogue.store.rows import _aware, _now, _row_to_canned
from dialogue.store.rules import ASSIGNABLE_ROLES, MAX_NOTE_CHARS, _assignment, _check_agent, _clean_canned
from dialogue.store.schema import canned_replies, conversations, users
from dialogue.store.staff import _PRESENCE_COLUMNS, _row_to_presence, online_agents
from dialogue.store.turns import TurnLog
from dialogue.types import (
    HANDOFF_AGENT,
    HANDOFF_NONE,
    HANDOFF_WAITING,
    MAX_RATING_COMMENT,
    ConversationSummary,
    Event,
    NewEvent,
)
from safety.pii import redact_verbatim

_ROUND_ROBIN_LOCK = zlib.crc32(b"kefu.dialogue.store.round_robin")  # PostgreSQL advisory lock key
AUTO_ASSIGN_BATCH = 50  # conversations one auto-assignment round routes at most (the rest: the next round)


def _unrouted() -> sa.ColumnElement[bool]:
    """Waiting, unassigned conversations whose current wait auto-assignment has not routed yet (migration 0011)."""
    c = conversations.c
    return sa.and_(c.handoff_status == HANDOFF_WAITING, c.assignee.is_(None), c.handoffs > c.routed_wait)


class Workspace(TurnLog):
    """Inbox assignment, resolution and rating, internal notes and canned replies."""

    # ------------------------------------------------------------------ the inbox: assignment and unread (0009)
    # Assignment is the ``assignee`` column, not ``agent``: ``agent`` is who holds the conversation after a
    # take-over (the bot is paused, their messages reach the customer); an assignment only says whose it is in the
    # inbox, and may come first (claimed from the queue, given to a busy colleague) without pausing the bot or
    # letting the assignee write. A take-over assigns too; a hand-back or a resolution ends the assignment.

    async def claim(self, conversation_id: str, agent: str) -> ConversationSummary:
        """``agent`` takes an unassigned conversation for themselves. Claiming one's own again changes nothing;
        :class:`~dialogue.errors.HandoffConflict` (``holder`` = the colleague) when it is assigned to, or held after a
        take-over by, someone else: two agents clicking "claim" at once get one claim and one 409."""
        cid = conversation_id
        _check_agent(agent, "claim")
        async with self._write("claim", cid) as conn:
            row = await self._lock_row(conn, cid, "claim")
            other = row.assignee if row.assignee not in (None, agent) else None
            if other is None and row.handoff_status == HANDOFF_AGENT and row.agent != agent:
                other = row.agent
            if other is not None:
                raise HandoffConflict(cid, other, row.handoff_status, operation="claim")
            values = _assignment(row, agent)
            if values:
                values["routed_wait"] = row.handoffs  # assigned by hand: auto-assignment leaves this wait alone
                await conn.execute(conversations.update().where(conversations.c.id == cid).values(**values))
            summary = await self._summary_in(conn, cid)
        log.info("conversation %s claimed", cid)
        return summary

    async def assign(self, conversation_id: str, assignee: str | None, by: str) -> ConversationSummary:
        """Assign the conversation to ``assignee`` (``None``: unassign), on behalf of ``by``.

        ``assignee`` must be an enabled account of role agent or admin (a viewer cannot answer customers):
        :class:`~dialogue.errors.InvalidQuery` otherwise. While a colleague holds the conversation after a
        take-over it can only be assigned to them (:class:`~dialogue.errors.HandoffConflict`): the assignment
        would name someone who cannot write to the customer until the holder hands it back. Reassigning resets
        the unread marker to the new assignee's view (they have seen nothing of it yet).
        """
        cid = conversation_id
        _check_agent(by, "assign")
        async with self._write("assign", cid) as conn:
            if assignee is not None:
                _check_agent(assignee, "assign")
                account = (await conn.execute(
                    sa.select(users.c.role, users.c.disabled).where(users.c.username == assignee)
                )).first()
                if account is None or account.disabled or account.role not in ASSIGNABLE_ROLES:
                    raise InvalidQuery("assign to an enabled agent or admin account", operation="assign",
                                       conversation_id=cid)
            row = await self._lock_row(conn, cid, "assign")
            if row.handoff_status == HANDOFF_AGENT and row.agent not in (None, assignee):
                raise HandoffConflict(cid, row.agent, row.handoff_status, operation="assign")
            values = (
                _assignment(row, assignee) if assignee is not None
                else {"assignee": None, "assigned_at": None} if row.assignee is not None else {}
            )
            if values:
                values["routed_wait"] = row.handoffs  # (un)assigned by hand: auto-assignment leaves this wait alone
                await conn.execute(conversations.update().where(conversations.c.id == cid).values(**values))
            summary = await self._summary_in(conn, cid)
        log.info("conversation %s assigned by %s", cid, by)
        return summary

    async def auto_assign(
        self, now: dt.datetime, *, seen_within: dt.timedelta = PRESENCE_TIMEOUT, limit: int = AUTO_ASSIGN_BATCH
    ) -> list[tuple[str, str]]:
        """Route the queue: give each waiting, unassigned conversation whose wait has not been routed yet to an
        online agent (:func:`dialogue.store.staff.online_agents` at ``now``), round-robin: the agent assigned least
        recently first (:func:`dialogue.handoff.round_robin`). Returns ``[(conversation id, username)]``, oldest
        wait first; nothing when nobody waits or nobody is online (those waits are routed once someone is).

        The choice and the writes are one transaction, serialised across every worker (a PostgreSQL advisory lock;
        SQLite's ``BEGIN IMMEDIATE``), so two consoles routing at once can neither give one conversation twice nor
        give two in a row to the same agent. A conversation is routed once per wait (``routed_wait``): one a
        colleague unassigns stays unassigned. A claim or a take-over that wins the row lock first keeps it. The
        assignment is the inbox's, as a claim's (no event, no version change: the customer's turn is not redone).
        A read decides first whether there is anything to do, so calling this often costs a query, not a write.
        """
        if not 1 <= limit <= 1000:
            raise InvalidQuery("limit must be in 1..1000", operation="auto_assign")
        c, u = conversations.c, users.c
        at = _aware(now)
        probe = sa.select(
            sa.exists().where(_unrouted()).label("waiting"),
            sa.exists().where(online_agents(at, seen_within)).label("online"),
        )
        async with self._read("auto_assign") as conn:
            found = (await conn.execute(probe)).one()
        if not (found.waiting and found.online):
            return []
        assigned: list[tuple[str, str]] = []
        async with self._write("auto_assign") as conn:
            if self._dialect == "postgresql":
                await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ROUND_ROBIN_LOCK})
            agents = [
                _row_to_presence(r)
                for r in (await conn.execute(sa.select(*_PRESENCE_COLUMNS).where(online_agents(at, seen_within)))).all()
            ]
            queue = (
                await conn.execute(
                    sa.select(c.id, c.handoffs).where(_unrouted()).order_by(c.handoff_at, c.id).limit(limit)
                    .with_for_update()
                )
            ).all()
            names = round_robin(agents, len(queue))
            for i, (row, name) in enumerate(zip(queue, names, strict=True)):
                await conn.execute(
                    conversations.update().where(c.id == row.id, c.assignee.is_(None))
                    .values(assignee=name, assigned_at=at, assignee_seen_seq=0, routed_wait=row.handoffs)
                )
                # Microseconds apart, in routing order: the next round goes on where this one stopped.
                await conn.execute(
                    users.update().where(u.username == name).values(last_assigned_at=at + dt.timedelta(microseconds=i))
                )
                assigned.append((row.id, name))
        for cid, _ in assigned:
            log.info("conversation %s auto-assigned", cid)
        return assigned

    async def mark_seen(self, conversation_id: str, username: str, seq: int) -> bool:
        """The assignee ``username`` has seen the conversation up to event ``seq``: its unread marker clears if no
        customer message is newer. Anyone else viewing it changes nothing (unread is the assignee's). One
        conditional UPDATE, no lock and no version change: the console calls it on reads, and it must neither
        block nor retry a customer's turn. True when something changed."""
        c = conversations.c
        query = (
            conversations.update()
            .where(c.id == conversation_id, c.assignee == username, c.assignee_seen_seq < seq)
            .values(assignee_seen_seq=seq)
        )
        async with self._write("mark_seen", conversation_id) as conn:
            result = await conn.execute(query)
        return bool(result.rowcount)

    # ------------------------------------------------------------------ workspace: resolution and rating
    # (migration 0008; the customer's rating arrives over the chat protocol, resolve/reopen from the console)

    async def resolve(
        self, conversation_id: str, agent: str, initial_state: str | None = None
    ) -> ConversationSummary:
        """Staff mark the conversation resolved (``resolved`` event, ``resolved_at`` / ``resolved_by``); the widget
        then asks the customer for a rating, so a rating of an earlier resolution is cleared.

        A pending or active hand-off ends with it, as :meth:`hand_back` ends one (a ``handback`` event first; the
        bot restarts at ``initial_state`` when given): "resolved" means nobody owes the customer an answer, so
        leaving the conversation in the queue, or held by an agent, would contradict it, and refusing would only
        make every agent click "hand back" before "resolve". A conversation another agent holds is refused
        (:class:`~dialogue.errors.HandoffConflict`): closing a colleague's live conversation is their call.
        Resolving a resolved conversation changes nothing (two agents clicking at once get one resolution).
        """
        cid = conversation_id
        _check_agent(agent, "resolve")
        async with self._write("resolve", cid) as conn:
            row = await self._lock_row(conn, cid, "resolve")
            if row.resolved_at is None:
                status = row.handoff_status
                if status == HANDOFF_AGENT and row.agent != agent:
                    raise HandoffConflict(cid, row.agent, status, operation="resolve")
                new = [NewEvent(ev.RESOLVED, {"agent": agent})]
                values: dict[str, Any] = {
                    "resolved_at": _now(), "resolved_by": agent, "rating": None, "rating_comment": None,
                }
                if status != HANDOFF_NONE:
                    new.insert(0, NewEvent(ev.HANDBACK, {"agent": agent}))
                    values.update(handoff_status=HANDOFF_NONE, agent=None, handed_off=False, handoff_at=None,
                                  fallback_streak=0)
                    if initial_state is not None:
                        values["state"] = initial_state
                values.update(assignee=None, assigned_at=None)  # nobody owes the customer an answer now
                await self._append(conn, row, new, "resolve", activity=True, **values)
            summary = await self._summary_in(conn, cid)
        log.info("conversation %s resolved", cid)
        return summary

    async def reopen(self, conversation_id: str, agent: str) -> ConversationSummary:
        """Staff reopen a resolved conversation (``reopened`` event with reason ``agent``; ``resolved_at`` /
        ``resolved_by`` cleared). The rating of the past resolution stays until the next one. Reopening an open
        conversation changes nothing. A customer message reopens one too (see :meth:`commit_turn`)."""
        cid = conversation_id
        _check_agent(agent, "reopen")
        async with self._write("reopen", cid) as conn:
            row = await self._lock_row(conn, cid, "reopen")
            if row.resolved_at is not None:
                await self._append(
                    conn, row, [NewEvent(ev.REOPENED, {"agent": agent, "reason": "agent"})], "reopen",
                    activity=True, resolved_at=None, resolved_by=None,
                )
            summary = await self._summary_in(conn, cid)
        log.info("conversation %s reopened", cid)
        return summary

    async def rate(self, conversation_id: str, score: int, comment: str | None = None) -> ConversationSummary:
        """Store the customer's rating of the current resolution: ``score`` 1..5 and an optional ``comment`` (at
        most 1000 characters after trimming; PII redacted like all staff-visible text), on the row and as a
        ``rating`` event.

        Once per resolution: a second rating raises :class:`~dialogue.errors.AlreadyRated` and the first stands,
        so a score cannot be rewritten (or a CSAT figure pumped) by resending frames; a reopened and again
        resolved conversation can be rated anew. :class:`~dialogue.errors.NotResolved` when the conversation is
        not resolved, :class:`~dialogue.errors.InvalidQuery` for a bad score or comment. Neither ``version`` nor
        ``updated_at`` moves: a rating is not a turn, and must not reorder the list an agent is reading.
        """
        cid = conversation_id
        if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
            raise InvalidQuery("a rating is an integer score 1..5", operation="rate", conversation_id=cid)
        text: str | None = None
        if comment is not None:
            if not isinstance(comment, str):
                raise InvalidQuery("a rating comment is text", operation="rate", conversation_id=cid)
            if len(comment.strip()) > MAX_RATING_COMMENT:
                raise InvalidQuery(f"a rating comment is at most {MAX_RATING_COMMENT} characters",
                                   operation="rate", conversation_id=cid)
            text = redact_verbatim(comment.strip())[0] or None
        async with self._write("rate", cid) as conn:
            row = await self._lock_row(conn, cid, "rate")
            if row.resolved_at is None:
                raise NotResolved("the conversation is not resolved", operation="rate", conversation_id=cid)
            if row.rating is not None:
                raise AlreadyRated("this resolution is already rated", operation="rate", conversation_id=cid)
            await self._append(
                conn, row, [NewEvent(ev.RATING, {"score": score, "comment": text})], "rate", activity=False,
                rating=score, rating_comment=text,
            )
            summary = await self._summary_in(conn, cid)
        log.info("conversation %s rated", cid)
        return summary

    # ------------------------------------------------------------------ internal notes and canned replies

    async def add_note(self, conversation_id: str, agent: str, text: str) -> Event:
        """Record an internal note by staff (a ``note`` event): for colleagues only, never sent to the customer.

        The text is trimmed, 1..:data:`MAX_NOTE_CHARS` characters (:class:`~dialogue.errors.InvalidQuery`
        otherwise), and its PII redacted like every staff text before it is stored. A note is bookkeeping: it
        neither bumps ``version`` (a customer's turn is not retried for it) nor moves ``updated_at``, nor joins
        the search text or any message count.
        """
        cid = conversation_id
        _check_agent(agent, "add_note")
        value = text.strip() if isinstance(text, str) else ""
        if not value or len(value) > MAX_NOTE_CHARS:
            raise InvalidQuery(f"a note must be 1..{MAX_NOTE_CHARS} characters", operation="add_note",
                               conversation_id=cid)
        new = NewEvent(ev.NOTE, {"agent": agent, "text": redact_verbatim(value)[0]})
        async with self._write("add_note", cid) as conn:
            row = await self._lock_row(conn, cid, "add_note")
            (stored,) = await self._append(conn, row, [new], "add_note", activity=False)
        return stored

    async def list_canned_replies(self, language: str | None = None) -> list[CannedReply]:
        """The team's canned replies (of one ``language``, or all), ordered by language then title."""
        c = canned_replies.c
        query = canned_replies.select().order_by(c.language, c.title, c.id)
        if language is not None:
            query = query.where(c.language == language)
        async with self._read("list_canned_replies") as conn:
            rows = (await conn.execute(query)).all()
        return [_row_to_canned(r) for r in rows]

    async def get_canned_reply(self, reply_id: int) -> CannedReply | None:
        async with self._read("get_canned_reply") as conn:
            row = (await conn.execute(canned_replies.select().where(canned_replies.c.id == int(reply_id)))).first()
        return _row_to_canned(row) if row is not None else None

    async def add_canned_reply(
        self, language: str, title: str, text: str, created_by: str, *, languages: Sequence[str] = ()
    ) -> CannedReply:
        """Save a canned reply (checked by :func:`dialogue.canned.check_reply` against the bot's ``languages``;
        title and text redacted like all staff text). :class:`~dialogue.canned.CannedReplyExists` when its
        language already has that title."""
        _check_agent(created_by, "add_canned_reply")
        language, title, text = _clean_canned(language, title, text, languages)
        now = _now()
        async with self._write("add_canned_reply") as conn:
            try:
                result = await conn.execute(
                    canned_replies.insert().values(
                        language=language, title=title, text=text, created_by=created_by, created_at=now
                    )
                )
            except sa_exc.IntegrityError:
                raise CannedReplyExists("a canned reply with this title exists", operation="add_canned_reply") \
                    from None
            reply_id = int(result.inserted_primary_key[0])  # type: ignore[index]
        return CannedReply(reply_id, language, title, text, created_by, now)

    async def update_canned_reply(
        self, reply_id: int, language: str, title: str, text: str, *, languages: Sequence[str] = ()
    ) -> CannedReply:
        """Replace a canned reply's language, title and text (same rules as :meth:`add_canned_reply`; its author
        and creation time stay). :class:`~dialogue.canned.CannedReplyNotFound` for an unknown id."""
        language, title, text = _clean_canned(language, title, text, languages)
        c = canned_replies.c
        async with self._write("update_canned_reply") as conn:
            try:
                result = await conn.execute(
                    canned_replies.update().where(c.id == int(reply_id)).values(language=language, title=title,
                                                                               text=text)
                )
            except sa_exc.IntegrityError:
                raise CannedReplyExists("a canned reply with this title exists", operation="update_canned_reply") \
                    from None
            if not result.rowcount:
                raise CannedReplyNotFound("no such canned reply", operation="update_canned_reply")
            row = (await conn.execute(canned_replies.select().where(c.id == int(reply_id)))).one()
        return _row_to_canned(row)

    async def delete_canned_reply(self, reply_id: int) -> bool:
        """Delete a canned reply; ``False`` when there was none with that id."""
        async with self._write("delete_canned_reply") as conn:
            result = await conn.execute(canned_replies.delete().where(canned_replies.c.id == int(reply_id)))
        return bool(result.rowcount)
