"""The ops server's start-up and wiring: one aiohttp app whose every route (:data:`~channels.ops.api.ROUTES`) is a
handler of one group, behind its access rule, with errors turned into JSON and the security headers on every
response; the access log; :func:`run_ops_server`.

Everything a request does is in the groups (:mod:`channels.ops.access`, :mod:`~channels.ops.pages`,
:mod:`~channels.ops.conversations`, :mod:`~channels.ops.desk`, :mod:`~channels.ops.dashboard`,
:mod:`~channels.ops.admin`, :mod:`~channels.ops.profile`, :mod:`~channels.ops.training`); what is left here is the
life cycle of the listening socket.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Final, Self

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler as AiohttpHandler

from channels import protocol as p
from channels.backend import ConsoleBackend
from channels.ops.access import Access, is_specific_ip
from channels.ops.admin import Admin
from channels.ops.api import ROUTES, SECURITY_HEADERS, ApiError, error_code_for, error_response
from channels.ops.attachments import Attachments
from channels.ops.conversations import Conversations
from channels.ops.dashboard import Dashboard
from channels.ops.desk import Desk
from channels.ops.handlers import Handler, Handlers, logger
from channels.ops.options import OpsOptions
from channels.ops.pages import Pages
from channels.ops.passwords import PasswordPool
from channels.ops.profile import Profile
from channels.ops.training import Training

if TYPE_CHECKING:
    from channels.metrics import Metrics
    from channels.uploads import UploadLimits

_LOG_PATH_CHARS: Final = 200


def log_safe(text: str, limit: int = _LOG_PATH_CHARS) -> str:
    """``text`` fit for one log line: every character that is not printable (line breaks, ANSI escapes, U+2028...)
    and the backslash are written as escapes, and at most ``limit`` characters are kept. A request path is chosen
    by whoever sends it; unescaped, ``GET /%0a<fake line>`` writes a second, genuine-looking line into a text log."""
    out = []
    for char in text[:limit]:
        if char == "\\":
            out.append("\\\\")
        elif char.isprintable():
            out.append(char)
        else:
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out) + ("..." if len(text) > limit else "")


class _AccessLogger(AbstractAccessLogger):
    """Method, path and status only: paths hold conversation ids (fine) but query strings hold search text. The
    path is escaped (:func:`log_safe`)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info("%s %s %s %.1fms", request.method, log_safe(request.path), response.status, time * 1000)

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


def _route_name(request: web.Request) -> str:
    route = request.match_info.route
    return route.name or "?" if route is not None else "?"


class OpsServer:
    """A running (once started) ops server. Use :func:`run_ops_server` or ``async with OpsServer(...)``."""

    def __init__(
        self,
        backend: ConsoleBackend,
        host: str = "127.0.0.1",
        port: int = 8001,
        options: OpsOptions | None = None,
        *,
        clock: Callable[[], dt.datetime] | None = None,
        metrics: Metrics | None = None,
        typing: p.TypingBoard | None = None,
        uploads: UploadLimits | None = None,
    ) -> None:
        self.backend = backend
        self.typing = typing if typing is not None else p.TYPING_BOARD  # shared with this process's chat server
        self.host = host
        self._requested_port = port
        self.options = options or OpsOptions()
        now = clock or (lambda: dt.datetime.now(dt.UTC))
        self.metrics = metrics  # the process's chat metrics, served as /metrics (None: 404)
        self.passwords = PasswordPool(self.options.password_workers, self.options.password_queue)
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self.pages = Pages(backend, self.options, now)
        # Until start() has set the origins (the port must be known), no Host is answered.
        self.access = Access(
            backend, self.options, now, passwords=self.passwords, forbidden_page=self.pages.forbidden_page
        )
        self.training = Training(backend, self.options, now)
        self.groups: tuple[Handlers, ...] = (
            self.pages,
            self.access,
            Conversations(backend, self.options, now),
            Desk(backend, self.options, now, typing=self.typing),
            Dashboard(backend, self.options, now, metrics=metrics),
            Admin(backend, self.options, now, passwords=self.passwords),
            Attachments(backend, self.options, now, limits=uploads),
            Profile(backend, self.options, now),
            self.training,
        )
        self.app = self._build_app()

    def __repr__(self) -> str:
        return f"OpsServer(host={self.host!r}, port={self._port or self._requested_port})"

    # ----------------------------------------------------------------------------------------------- lifecycle
    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("ops server not started")
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        await self.pages.load()
        runner = web.AppRunner(
            self.app,
            access_log_class=_AccessLogger,
            access_log=logger,
            handle_signals=False,
            # aiohttp has no separate header timeout: its keep-alive timer runs from the connection's start (and
            # from each response) and closes a connection still waiting for a complete request head.
            keepalive_timeout=self.options.header_timeout,
            lingering_time=self.options.body_timeout,  # reading the rest of an unread body before closing
        )
        await runner.setup()
        site = web.TCPSite(
            runner, self.host, self._requested_port, reuse_address=True, reuse_port=self.options.reuse_port or None
        )
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        server = site._server  # the asyncio.Server: the only way to learn an ephemeral port
        assert server is not None
        self._port = int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
        self.access.bind(self.host, self.url, self._port)
        logger.info("kefu ops console listening on %s", self.url)
        if self.access.configured_origins is None and not is_specific_ip(self.host):
            logger.info("console answers loopback host names only (%s); pass --console-origin for a public one",
                        ", ".join(sorted(self.access.host_origins)))

    async def close(self) -> None:
        await self.training.aclose()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.passwords.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -------------------------------------------------------------------------------------------- app wiring
    def _build_app(self) -> web.Application:
        """Every route of :data:`ROUTES` to the one group that has its handler; a handler without a route, or a
        route with none or two, is a programming error caught here, at construction."""
        handlers: dict[str, Handler] = {}
        for group in self.groups:
            for name, handler in group.handlers().items():
                if name in handlers:
                    raise RuntimeError(f"two handlers for the route {name!r}")
                handlers[name] = handler
        unrouted = set(handlers) - {name for *_, name in ROUTES}
        if unrouted:
            raise RuntimeError(f"handlers without a route: {sorted(unrouted)}")
        app = web.Application(middlewares=[self._headers_middleware], client_max_size=self.options.max_body_bytes)
        for method, path, role, name in ROUTES:
            if name == "metrics" and self.options.public_metrics:
                role = None
            app.router.add_route(method, path, self.access.guard(role, name, handlers[name]), name=name)
        return app

    @web.middleware
    async def _headers_middleware(self, request: web.Request, handler: AiohttpHandler) -> web.StreamResponse:
        try:
            if not self.access.host_ok(request):
                raise ApiError("bad_host")
            response = await handler(request)
        except ApiError as exc:
            response = error_response(exc.code, exc.reason, exc.headers)
            if exc.code == "timeout":
                response.force_close()  # the rest of that body is not worth waiting for
        except web.HTTPException as exc:
            if exc.status == 404:
                response = error_response("not_found")
            elif exc.status == 405:
                response = error_response("not_found", "method not allowed")
                response.set_status(405)
            elif exc.status == 413:
                response = error_response("too_large")
            elif 300 <= exc.status < 400:
                response = web.Response(status=exc.status, headers={"Location": exc.headers.get("Location", "/")})
            else:
                response = error_response("bad_request")
                response.set_status(exc.status)
        except Exception as exc:  # noqa: BLE001 - the API boundary: any failure becomes a JSON error
            code = error_code_for(exc)
            if code in ("internal", "store_unavailable"):
                logger.warning("%s %s failed: %s", request.method, _route_name(request), type(exc).__name__)
            response = error_response(code, headers={"Retry-After": "1"} if code == "busy" else None)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response


@contextlib.asynccontextmanager
async def run_ops_server(
    backend: ConsoleBackend,
    host: str = "127.0.0.1",
    port: int = 0,
    options: OpsOptions | None = None,
    *,
    clock: Callable[[], dt.datetime] | None = None,
    metrics: Metrics | None = None,
    typing: p.TypingBoard | None = None,
    uploads: UploadLimits | None = None,
) -> AsyncIterator[OpsServer]:
    """Start an ops server (``port=0``: an ephemeral port, see ``server.port``) and close it on exit. ``metrics``:
    the process's chat metrics, served as ``GET /metrics``; ``uploads``: the limits of agents' attachments."""
    server = OpsServer(backend, host, port, options, clock=clock, metrics=metrics, typing=typing, uploads=uploads)
    await server.start()
    try:
        yield server
    finally:
        await server.close()
