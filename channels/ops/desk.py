"""The hand-off desk: the queue, assignment, taking a conversation over, answering the customer (typed or from a
canned reply), typing presence, internal notes, handing back, resolving and reopening; and the canned replies'
own management.

What agents do live, while a customer waits; reviewing finished conversations is :mod:`channels.ops.conversations`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web

from channels import auth
from channels import protocol as p
from channels.backend import ConsoleBackend
from channels.ops.api import ApiError, canned_json, json_response, summary_json
from channels.ops.handlers import USER, Clock, Handlers, logger
from channels.ops.options import OpsOptions
from channels.ops.parsing import MAX_NOTE_CHARS, canned_fields, reply_id, staff_text, view_filter
from dialogue.canned import CannedReplyExists
from dialogue.types import ConversationFilter, ConversationSummary

DUPLICATE_CANNED = "A canned reply with this title already exists in that language."


class Desk(Handlers):
    """The desk's routes. ``typing``: this process's typing board, shared with its chat server (who is typing
    is never stored)."""

    def __init__(self, backend: ConsoleBackend, options: OpsOptions, now: Clock, *, typing: p.TypingBoard) -> None:
        super().__init__(backend, options, now)
        self.typing = typing

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
        logger.info("assign by %s of %s to %s", request[USER].username, cid, username or "nobody")
        return json_response({"conversation": summary_json(summary, self._now())})

    async def _h_assignees(self, request: web.Request) -> web.StreamResponse:
        """Who a conversation can be assigned to (enabled agents and admins): the assign menu's choices."""
        users = await self.backend.list_users()
        names = [u.username for u in users if not u.disabled and u.role in (auth.AGENT, auth.ADMIN)]
        return json_response({"items": sorted(names), "me": request[USER].username})

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
        ``agent_typing`` (with the agent's name and initials), never stored."""
        cid = self._conversation_id(request)
        body = await self._json_body(request)
        state = body.get("state")
        if not isinstance(state, bool):
            raise ApiError("bad_request", "'state' must be true or false")
        agent = await self._holding(request, cid)
        pushed = self.typing.agent(cid, agent, state, time.monotonic())
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
