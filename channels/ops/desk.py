"""The hand-off desk: the queue, assignment, taking a conversation over, answering the customer (typed or from a
canned reply), typing presence, internal notes, handing back, resolving and reopening; and the canned replies'
own management. Also the desk's live side: each agent's status (online / away / offline) and the inbox pulse.

What agents do live, while a customer waits; reviewing finished conversations is :mod:`channels.ops.conversations`.

**The pulse** (``GET /api/inbox/pulse?since=<token>``) is how a queued customer reaches an agent within a second:
every console page polls it every 0.3 s, and it answers from :class:`QueueFeed`, this process's copy of the queue,
read from the store at most every 0.15 s however many consoles poll (one read shared by every pulse meanwhile), and
sends the waiting conversations only when the queue changed since the console's token. The same read routes the
queue: waiting conversations nobody has been given yet are auto-assigned round-robin (``backend.auto_assign``)
before the consoles see them, so the first pulse that shows one names its assignee and that agent's console
notifies. Short polls rather than a long-poll or a socket: nothing holds a connection (a browser allows six per
host across all tabs of a console; a worker's shutdown waits for held requests; proxies time them out), the
worst case is one poll interval plus one feed age (0.45 s, plus the reads), and the database sees a few reads a second per
worker whatever the number of agents.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from channels import auth
from channels import protocol as p
from channels.backend import ConsoleBackend
from channels.ops.api import ApiError, canned_json, customer_name, json_response, summary_json
from channels.ops.handlers import USER, Clock, Handlers, logger
from channels.ops.options import OpsOptions
from channels.ops.parsing import MAX_NOTE_CHARS, canned_fields, reply_id, staff_text, view_filter
from dialogue.canned import CannedReplyExists
from dialogue.handoff import AGENT_STATUSES, AgentPresence
from dialogue.types import ConversationFilter, ConversationSummary

DUPLICATE_CANNED = "A canned reply with this title already exists in that language."
FEED_MAX_AGE: Final = 0.15  # seconds one store read of the queue answers every console's pulse in this process
ROUTE_RETRY: Final = 1.0  # seconds between auto-assignment tries while the same conversations wait unassigned
TOKEN_RE: Final = re.compile(r"[0-9a-f]{1,64}")


@dataclass(frozen=True)
class QueueSnapshot:
    """The queue as the pulse shows it: ``token`` (a digest of everything the inbox shows of the queue: it changes
    when a conversation arrives, leaves, is assigned, taken over or gets a customer message) and the waiting
    conversations (``id``, ``customer``, ``assignee``), longest waiting first. ``read_at``: ``time.monotonic()``."""

    token: str
    waiting: tuple[dict[str, Any], ...]
    read_at: float


def queue_token(items: Sequence[ConversationSummary]) -> str:
    """The digest of what the inbox shows of these queue rows (no customer text goes into it, and it cannot be
    turned back into any); the same rows give the same token in every worker."""
    digest = hashlib.sha256()
    for s in items:
        at = s.handoff_at.isoformat() if s.handoff_at else ""
        digest.update(f"{s.id}|{s.handoff_status}|{s.assignee or ''}|{s.agent or ''}|{int(s.unread)}|{at}\n".encode())
    return digest.hexdigest()[:32]


class QueueFeed:
    """This process's copy of the hand-off queue, shared by every console's pulse (see the module docstring).

    :meth:`snapshot` answers from the last read while it is younger than ``max_age``; otherwise one read is
    started and every pulse arriving meanwhile waits for that same read. A read first routes the queue: when
    conversations wait unassigned, ``backend.auto_assign`` (a no-op unless the bot's config enables it; the store
    decides in one transaction, so workers routing at once agree) is asked, at once for a conversation not seen
    waiting before, else at most every ``retry`` seconds (someone may have come online: :meth:`poke` says so
    sooner in this process). Nothing runs in the background: no console polling, no reads.
    """

    def __init__(
        self, backend: ConsoleBackend, limit: int, now: Clock, *, max_age: float = FEED_MAX_AGE,
        retry: float = ROUTE_RETRY,
    ) -> None:
        self.backend = backend
        self.limit = limit
        self._now = now
        self.max_age = max_age
        self.retry = retry
        self._snapshot: QueueSnapshot | None = None
        self._reading: asyncio.Future[QueueSnapshot] | None = None
        self._unrouted: frozenset[str] = frozenset()  # waiting, unassigned ids at the last routing attempt
        self._route_after = 0.0  # monotonic time of the next routing attempt for those
        self._generation = 0  # moved by poke(): a read started before it is not kept for the next pulses

    def __repr__(self) -> str:
        return f"QueueFeed(limit={self.limit}, max_age={self.max_age})"

    def poke(self) -> None:
        """Something changed that the next read must see at once (an agent came online, assigned by hand)."""
        self._snapshot = None
        self._route_after = 0.0
        self._generation += 1

    async def snapshot(self) -> QueueSnapshot:
        current = self._snapshot
        if current is not None and time.monotonic() - current.read_at < self.max_age:
            return current
        if self._reading is None:
            self._reading = asyncio.ensure_future(self._read())
            self._reading.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved, even unawaited
        return await asyncio.shield(self._reading)  # a pulse that goes away does not cancel the others' read

    async def _read(self) -> QueueSnapshot:
        generation = self._generation
        try:
            items = await self.backend.handoff_queue(self.limit)
            if await self._route(items):
                items = await self.backend.handoff_queue(self.limit)
            waiting = tuple(
                {"id": s.id, "customer": customer_name(s), "assignee": s.assignee}
                for s in items if s.handoff_status == "waiting"
            )
            snapshot = QueueSnapshot(queue_token(items), waiting, time.monotonic())
            if generation == self._generation:
                self._snapshot = snapshot
            return snapshot
        finally:
            self._reading = None

    async def _route(self, items: Sequence[ConversationSummary]) -> bool:
        """Ask for auto-assignment when conversations wait unassigned; whether it was asked (the queue is then
        read again: another worker may have routed them meanwhile, and a console must not see a conversation
        unassigned that is about to be a colleague's)."""
        unrouted = frozenset(s.id for s in items if s.handoff_status == "waiting" and s.assignee is None)
        now = time.monotonic()
        if not unrouted or (unrouted <= self._unrouted and now < self._route_after):
            self._unrouted = unrouted
            return False
        self._unrouted, self._route_after = unrouted, now + self.retry
        assigned = await self.backend.auto_assign(self._now())
        for cid, _ in assigned:
            logger.info("auto-assigned %s", cid)
        return True


def presence_json(presence: AgentPresence, now: dt.datetime) -> dict[str, Any]:
    """An agent's chosen status and what the team and the bot see (``offline`` once the console is unseen)."""
    return {"status": presence.status, "effective": presence.effective(now)}


class Desk(Handlers):
    """The desk's routes. ``typing``: this process's typing board, shared with its chat server (who is typing
    is never stored)."""

    def __init__(self, backend: ConsoleBackend, options: OpsOptions, now: Clock, *, typing: p.TypingBoard) -> None:
        super().__init__(backend, options, now)
        self.typing = typing
        self.feed = QueueFeed(backend, options.queue_limit, now)

    # ---------------------------------------------------------------------------- presence and the inbox pulse
    async def _h_my_status(self, request: web.Request) -> web.StreamResponse:
        """The signed-in agent's status (the header's selector) and what colleagues and the bot see of it."""
        presence = await self.backend.agent_presence(request[USER].username)
        if presence is None:
            raise ApiError("not_found", "no such account")
        return json_response(presence_json(presence, self._now()))

    async def _h_set_my_status(self, request: web.Request) -> web.StreamResponse:
        """``{"status": "online" | "away" | "offline"}``, remembered with the account. Only ``online`` agents count
        as staffed for the bot's hand-off decision and receive auto-assigned conversations; going online routes
        what waits unassigned at this process's next pulse."""
        body = await self._json_body(request)
        status = body.get("status")
        if not isinstance(status, str) or status not in AGENT_STATUSES:
            raise ApiError("bad_request", "'status' must be one of online, away, offline")
        user = request[USER]
        presence = await self.backend.set_agent_status(user.username, status)
        self.feed.poke()
        logger.info("status of %s set to %s", user.username, status)
        return json_response(presence_json(presence, self._now()))

    async def _h_inbox_pulse(self, request: web.Request) -> web.StreamResponse:
        """What every console page polls (0.3 s): ``{"token", "changed"}``, plus ``"waiting"`` (``id``,
        ``customer``, ``assignee`` of each waiting conversation) when the queue changed since ``?since=``. Served
        from :class:`QueueFeed` (one store read per 0.15 s per process, however many consoles poll)."""
        unknown = set(request.query.keys()) - {"since"}
        if unknown:
            raise ApiError("bad_request", "unknown query parameter(s)")
        since = request.query.get("since")
        if since is not None and not TOKEN_RE.fullmatch(since):
            raise ApiError("bad_request", "'since' must be a token from an earlier pulse")
        snapshot = await self.feed.snapshot()
        if since == snapshot.token:
            return json_response({"token": snapshot.token, "changed": False})
        return json_response({"token": snapshot.token, "changed": True, "waiting": list(snapshot.waiting)})

    # ----------------------------------------------------------------------------------- queue and assignment
    async def _h_handoff_queue(self, request: web.Request) -> web.StreamResponse:
        """The queue (``?view=all|mine|unassigned``): what the queue page polls every two seconds, so one indexed
        query on ``handoff_status`` of at most ``queue_limit`` rows, with the server's ``now``."""
        unknown = set(request.query.keys()) - {"view"}
        if unknown:
            raise ApiError("bad_request", "unknown query parameter(s)")
        filt = ConversationFilter(**view_filter(request.query.get("view"), request[USER].username))
        items = await self.backend.handoff_queue(self.options.queue_limit, filt)
        now = self._now()
        return json_response({"items": [summary_json(s, now) for s in items], "now": now.isoformat()})

    async def _h_claim(self, request: web.Request) -> web.StreamResponse:
        """Assign the conversation to oneself: 409 when a colleague has it (assigned or taken over)."""
        cid = self._conversation_id(request)
        await self._summary(cid)
        summary = await self.backend.claim(cid, request[USER].username)
        self.feed.poke()
        logger.info("claim by %s of %s", request[USER].username, cid)
        return json_response({"conversation": summary_json(summary, self._now())})

    async def _h_assign(self, request: web.Request) -> web.StreamResponse:
        """``{"username": name}`` assigns to a colleague (an enabled agent or admin; 400 for anyone else),
        ``{"username": null}`` unassigns; 409 while another colleague holds it after a take-over."""
        cid = self._conversation_id(request)
        body = await self._json_body(request)
        if "username" not in body:
            raise ApiError("bad_request", "'username' must be a colleague's username or null")
        username = body["username"]
        if username is not None:
            if not isinstance(username, str) or not auth.USERNAME_RE.fullmatch(username.strip()):
                raise ApiError("bad_request", "'username' must be a colleague's username or null")
            username = username.strip()
            account = await self.backend.get_user(username)
            if account is None or account.disabled or account.role not in (auth.AGENT, auth.ADMIN):
                raise ApiError("bad_request", "assign to an enabled agent or admin account")
        await self._summary(cid)
        summary = await self.backend.assign(cid, username, request[USER].username)
        self.feed.poke()
        logger.info("assign by %s of %s to %s", request[USER].username, cid, username or "nobody")
        return json_response({"conversation": summary_json(summary, self._now())})

    async def _h_assignees(self, request: web.Request) -> web.StreamResponse:
        """Who a conversation can be assigned to (enabled agents and admins): the assign menu's choices, with what
        each one's status is now (``presence``: online / away / offline, a console unseen counting as offline)."""
        users = await self.backend.list_users()
        names = [u.username for u in users if not u.disabled and u.role in (auth.AGENT, auth.ADMIN)]
        now = self._now()
        presence = {p.username: p.effective(now) for p in await self.backend.team_presence()}
        return json_response({
            "items": sorted(names), "me": request[USER].username,
            "presence": {name: presence.get(name, "offline") for name in sorted(names)},
        })

    # ------------------------------------------------------------------- take over, hand back, resolve, reopen
    async def _staff_step(
        self, request: web.Request, verb: str, step: Callable[[str, str], Awaitable[ConversationSummary]]
    ) -> web.StreamResponse:
        """One staff step on a conversation (take over, hand back, resolve, reopen): 404 first, then the step."""
        cid = self._conversation_id(request)
        await self._summary(cid)
        summary = await step(cid, request[USER].username)
        logger.info("%s by %s of %s", verb, request[USER].username, cid)
        return json_response({"conversation": summary_json(summary)})

    async def _h_take_over(self, request: web.Request) -> web.StreamResponse:
        return await self._staff_step(request, "takeover", self.backend.take_over)

    async def _h_hand_back(self, request: web.Request) -> web.StreamResponse:
        return await self._staff_step(request, "handback", self.backend.hand_back)

    async def _h_resolve(self, request: web.Request) -> web.StreamResponse:
        """Resolve (ends a hand-off this agent holds or that waits; 409 when a colleague holds it)."""
        return await self._staff_step(request, "resolve", self.backend.resolve)

    async def _h_reopen(self, request: web.Request) -> web.StreamResponse:
        return await self._staff_step(request, "reopen", self.backend.reopen)

    # ----------------------------------------------------------------------------------- talking to the customer
    async def _holding(self, request: web.Request, cid: str) -> str:
        """The signed-in agent's name, when that agent holds the conversation (409 otherwise)."""
        summary = await self._summary(cid)
        user = request[USER]
        if summary.handoff_status != "agent" or summary.agent != user.username:
            raise ApiError("conflict", "take the conversation over first")
        return user.username

    async def _h_agent_message(self, request: web.Request) -> web.StreamResponse:
        cid = self._conversation_id(request)
        body = await self._json_body(request)
        text = staff_text(body, p.MAX_TEXT_CHARS)
        message_id = body.get("message_id") or f"agent-{uuid.uuid4().hex}"
        if not isinstance(message_id, str) or not p.MESSAGE_ID_RE.fullmatch(message_id):
            raise ApiError("bad_request", "'message_id' must be 1-64 characters of [A-Za-z0-9_-]")
        agent = await self._holding(request, cid)
        event = await self.backend.agent_message(cid, agent, text, message_id)
        return json_response({"event": p.event_to_json(event)})

    async def _h_typing_state(self, request: web.Request) -> web.StreamResponse:
        """``{"customer": bool}``: whether the customer is typing, from the in-memory board of this process (no store
        query: the conversation page polls it every 1.5 s). See :class:`channels.protocol.TypingBoard`."""
        cid = self._conversation_id(request)
        return json_response({"customer": self.typing.customer_typing(cid, time.monotonic())})

    async def _h_agent_typing(self, request: web.Request) -> web.StreamResponse:
        """``{"state": bool}`` from the agent holding the conversation: pushed to the customer's widget as
        ``agent_typing`` (with the agent's display name, initials and picture as their profile is now), never
        stored."""
        cid = self._conversation_id(request)
        body = await self._json_body(request)
        state = body.get("state")
        if not isinstance(state, bool):
            raise ApiError("bad_request", "'state' must be true or false")
        await self._holding(request, cid)
        user = request[USER]
        pushed = self.typing.agent(cid, p.ShownAgent(user.shown_name, user.avatar), state, time.monotonic())
        return json_response({"pushed": pushed})

    # ------------------------------------------------------------------------ internal notes and canned replies
    async def _h_add_note(self, request: web.Request) -> web.StreamResponse:
        """An internal note for colleagues: stored as a ``note`` event (redacted), shown in the console only; the
        chat channel never pushes or replays it (it sends message events only)."""
        cid = self._conversation_id(request)
        text = staff_text(await self._json_body(request), MAX_NOTE_CHARS)
        await self._summary(cid)
        event = await self.backend.add_note(cid, request[USER].username, text)
        logger.info("note by %s on %s", request[USER].username, cid)
        return json_response({"event": p.event_to_json(event)}, status=201)

    async def _h_canned_replies(self, request: web.Request) -> web.StreamResponse:
        language = request.query.get("language") or None
        if language is not None and language not in self.backend.languages():
            raise ApiError("bad_request", "'language' must be one of the bot's languages")
        items = await self.backend.list_canned_replies(language)
        return json_response({"items": [canned_json(r) for r in items], "languages": list(self.backend.languages())})

    async def _h_add_canned_reply(self, request: web.Request) -> web.StreamResponse:
        languages = self.backend.languages()
        language, title, text = canned_fields(await self._json_body(request), languages)
        try:
            reply = await self.backend.add_canned_reply(
                language, title, text, request[USER].username, languages=languages
            )
        except CannedReplyExists:
            raise ApiError("conflict", DUPLICATE_CANNED) from None
        logger.info("canned reply %d (%s) added by %s", reply.id, reply.language, request[USER].username)
        return json_response({"reply": canned_json(reply)}, status=201)

    async def _h_update_canned_reply(self, request: web.Request) -> web.StreamResponse:
        body = await self._json_body(request)
        reply = reply_id(body.get("id"))
        languages = self.backend.languages()
        language, title, text = canned_fields(body, languages)
        try:
            updated = await self.backend.update_canned_reply(reply, language, title, text, languages=languages)
        except CannedReplyExists:
            raise ApiError("conflict", DUPLICATE_CANNED) from None
        logger.info("canned reply %d updated by %s", updated.id, request[USER].username)
        return json_response({"reply": canned_json(updated)})

    async def _h_delete_canned_reply(self, request: web.Request) -> web.StreamResponse:
        reply = reply_id((await self._json_body(request)).get("id"))
        if not await self.backend.delete_canned_reply(reply):
            raise ApiError("not_found", "no such canned reply")
        logger.info("canned reply %d deleted by %s", reply, request[USER].username)
        return json_response({"deleted": reply})

    async def _h_conversation_canned(self, request: web.Request) -> web.StreamResponse:
        """The canned replies an agent may insert here: those of the conversation's language."""
        summary = await self._summary(self._conversation_id(request))
        items = await self.backend.list_canned_replies(summary.language)
        return json_response({"language": summary.language, "items": [canned_json(r) for r in items]})

    async def _h_render_canned(self, request: web.Request) -> web.StreamResponse:
        """A canned reply filled from the conversation's slots (:func:`dialogue.canned.render`): ``missing`` names
        the slots left as ``{name}`` for the agent to fill in before sending it through ``/message``."""
        cid = self._conversation_id(request)
        reply = reply_id(request.query.get("reply"))
        await self._summary(cid)
        found, rendered = await self.backend.render_canned_reply(cid, reply)
        return json_response(
            {
                "reply": canned_json(found),
                "text": rendered.text,  # may exceed a message's limit once filled: /message then says so
                "filled": list(rendered.filled),
                "missing": list(rendered.missing),
            }
        )
