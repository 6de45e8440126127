"""What every group of the console's route handlers shares: the backend, the options and the server's clock, the
signed-in account of a request, and the readers of a request's JSON body and conversation id.

A group is a class deriving from :class:`Handlers` whose handlers are its methods named ``_h_<route name>`` (the
fourth column of :data:`~channels.ops.api.ROUTES`). :meth:`Handlers.handlers` lists them; the server wires each
route to the one group that has its handler, behind the access rule (:mod:`channels.ops.access`). Groups hold no
request state: one instance of each serves every request.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web

from channels import protocol as p
from channels.backend import ConsoleBackend
from channels.ops.api import ApiError
from channels.ops.options import OpsOptions
from dialogue.types import ConversationSummary, Session, User

#: Every part of the console logs under one name: operators filter on it, and the tests read it.
logger = logging.getLogger("kefu.channels.ops")

USER: Final = web.RequestKey("user", User)  # the signed-in account, set by the route guard
SESSION: Final = web.RequestKey("session", Session)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Clock = Callable[[], dt.datetime]

_PREFIX: Final = "_h_"


class Handlers:
    """The base of a group of route handlers (see the module docstring)."""

    def __init__(self, backend: ConsoleBackend, options: OpsOptions, now: Clock) -> None:
        self.backend = backend
        self.options = options
        self._now = now

    def __repr__(self) -> str:
        return f"{type(self).__name__}(routes={sorted(self.handlers())})"

    def handlers(self) -> dict[str, Handler]:
        """``{route name: handler}`` for this group's ``_h_*`` methods."""
        return {name[len(_PREFIX):]: getattr(self, name) for name in dir(type(self)) if name.startswith(_PREFIX)}

    async def _json_body(self, request: web.Request) -> dict[str, Any]:
        if request.content_type != "application/json":
            raise ApiError("unsupported_media_type")
        try:
            async with asyncio.timeout(self.options.body_timeout):  # a body sent a byte a minute holds no one up
                raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise ApiError("too_large") from None
        except TimeoutError:
            raise ApiError("timeout") from None
        try:
            body = json.loads(raw or b"{}")
        except (ValueError, RecursionError):
            raise ApiError("bad_request", "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ApiError("bad_request", "the body must be a JSON object")
        return body

    @staticmethod
    def _conversation_id(request: web.Request) -> str:
        cid = request.match_info["id"]
        if not p.CONVERSATION_ID_RE.fullmatch(cid):
            raise ApiError("bad_request", "malformed conversation id")
        return cid

    async def _summary(self, cid: str) -> ConversationSummary:
        """The conversation's row, or 404: checked before any step on it, so a step never runs on nothing."""
        summary = await self.backend.summary(cid)
        if summary is None:
            raise ApiError("not_found", "no such conversation")
        return summary
