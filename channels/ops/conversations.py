"""The review routes: the conversation list and one conversation's events, the review flags and tags, the
corrections that become training data, and the scenario export.

What the review pages of the console do; the live hand-off desk (take over, answer, resolve) is
:mod:`channels.ops.desk`.
"""

from __future__ import annotations

import dataclasses
import re

from aiohttp import web

from channels import protocol as p
from channels.ops.api import ApiError, json_response, summary_json
from channels.ops.handlers import USER, Handlers, logger
from channels.ops.parsing import (
    INTENT_RE,
    SCENARIO_NAME_RE,
    bounded_int,
    check_entities,
    one,
    optional_bool,
    parse_conversation_query,
    tags,
    view_filter,
)
from channels.ops.plots import PLOTS
from dialogue.types import ConversationSummary


class Conversations(Handlers):
    """Listing, reading, reviewing and correcting conversations."""

    async def _h_meta(self, request: web.Request) -> web.StreamResponse:
        return json_response(
            {"intents": list(self.backend.intents()), "entities": list(self.backend.entities()), "plots": PLOTS}
        )

    async def _h_conversations(self, request: web.Request) -> web.StreamResponse:
        query = {name: request.query.getall(name) for name in set(request.query.keys())}
        filt, limit, cursor = parse_conversation_query(query)
        filt = dataclasses.replace(filt, **view_filter(one(query, "view"), request[USER].username))
        page = await self.backend.list_conversations(filt, limit, cursor)
        now = self._now()
        return json_response(
            {"items": [summary_json(s, now) for s in page.items], "next_cursor": page.next_cursor,
             "now": now.isoformat()}
        )

    async def _h_conversation(self, request: web.Request) -> web.StreamResponse:
        cid = self._conversation_id(request)
        summary = await self._summary(cid)
        events = await self.backend.events(cid)
        last_seq = events[-1].seq if events else 0
        summary = await self._seen(request, summary, last_seq)
        return json_response(
            {
                "conversation": summary_json(summary, self._now()),
                "events": [p.event_to_json(e) for e in events],
                "last_seq": last_seq,
            }
        )

    async def _seen(self, request: web.Request, summary: ConversationSummary, seq: int) -> ConversationSummary:
        """The assignee reading the conversation (its page loads it, then polls its events) clears its unread
        marker, up to the last event sent. Done on these reads rather than by a POST from the page: the page
        polls anyway, nothing but the reader's own marker changes (so no CSRF question), and it is written only
        when the row is unread for this very reader (one conditional UPDATE, not one per poll)."""
        if not summary.unread or summary.assignee != request[USER].username or seq < 1:
            return summary
        await self.backend.mark_seen(summary.id, request[USER].username, seq)
        return dataclasses.replace(summary, unread=False)

    async def _h_conversation_events(self, request: web.Request) -> web.StreamResponse:
        cid = self._conversation_id(request)
        after = bounded_int(request.query.get("after"), "after", 0, 0, 10**9)
        summary = await self._summary(cid)
        events = await self.backend.events(cid, after)
        last_seq = events[-1].seq if events else after
        summary = await self._seen(request, summary, last_seq)
        return json_response(
            {
                "conversation": summary_json(summary, self._now()),
                "events": [p.event_to_json(e) for e in events],
                "last_seq": last_seq,
            }
        )

    async def _h_scenario(self, request: web.Request) -> web.StreamResponse:
        """The conversation as a scenario YAML that ``kefu scenarios run`` replays (:func:`dialogue.review.
        export_scenario`, a pure function of the events: no backend operation of its own)."""
        from dialogue.review import export_scenario  # its NLU and PII imports load on the first export only

        cid = self._conversation_id(request)
        summary = await self._summary(cid)
        name = request.query.get("name") or f"conversation_{cid}"
        if not SCENARIO_NAME_RE.fullmatch(name):
            name = "conversation"
        text = export_scenario(await self.backend.events(cid), name, language=summary.language)
        filename = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:80] + ".yml"
        return web.Response(
            body=text.encode("utf-8"),
            headers={
                "Content-Type": "application/yaml; charset=utf-8",
                "Content-Disposition": f'attachment; filename="{filename}"',
            },
        )

    async def _h_review(self, request: web.Request) -> web.StreamResponse:
        cid = self._conversation_id(request)
        body = await self._json_body(request)
        flagged, reviewed = optional_bool(body, "flagged"), optional_bool(body, "reviewed")
        add, remove = tags(body.get("add_tags"), "add_tags"), tags(body.get("remove_tags"), "remove_tags")
        if flagged is None and reviewed is None and not add and not remove:
            raise ApiError("bad_request", "nothing to change")
        await self._summary(cid)
        summary = await self.backend.review(
            cid, by=request[USER].username, flagged=flagged, reviewed=reviewed, add_tags=add, remove_tags=remove
        )
        return json_response({"conversation": summary_json(summary)})

    async def _h_correct(self, request: web.Request) -> web.StreamResponse:
        """A reviewer's reading of a customer message: added to the bot's training file first (an example that
        cannot be written records nothing, 422), then recorded as a ``correction`` event."""
        cid = self._conversation_id(request)
        body = await self._json_body(request)
        seq, intent = body.get("seq"), body.get("intent")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise ApiError("bad_request", "'seq' must be the seq of a user message")
        known_intents = list(self.backend.intents())
        if not isinstance(intent, str) or not INTENT_RE.fullmatch(intent) or (
            known_intents and intent not in known_intents
        ):
            raise ApiError("bad_request", "'intent' must be one of the bot's intents")
        summary = await self._summary(cid)
        events = await self.backend.events(cid, seq - 1)
        target = events[0] if events and events[0].seq == seq else None
        if target is None or target.type != "user_message":
            raise ApiError("bad_request", "'seq' must be the seq of a user message")
        text = body.get("text", target.data.get("text"))
        if not isinstance(text, str) or not text.strip() or len(text) > p.MAX_TEXT_CHARS:
            raise ApiError("bad_request", f"'text' must be 1-{p.MAX_TEXT_CHARS} characters")
        entities = check_entities(text, body.get("entities"), list(self.backend.entities()))
        training = await self.backend.add_training_example(summary.language, text, intent, entities)
        event = await self.backend.correct(
            cid, by=request[USER].username, seq=seq, text=text, intent=intent, entities=entities
        )
        logger.info("correction by %s on %s seq %d", request[USER].username, cid, seq)
        return json_response({"event": p.event_to_json(event), "training": training})
