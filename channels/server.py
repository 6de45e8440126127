"""The asyncio shell around :mod:`channels.protocol`: a ``websockets`` server for the public chat widget.

This port is public (customers' browsers reach it); it serves nothing for staff. The ops console, with login,
roles and its JSON API, is :mod:`channels.ops` on a port of its own.

* ``GET /`` demo shop page, ``/widget.js`` (+ ``/widget.css``): static files from ``static_dir`` (flat: its
  sub-folders, such as the console's ``ops/``, are not served), loaded once at start-up; HTML is sent with a
  strict Content-Security-Policy.
* ``GET /healthz``: liveness. ``GET /metrics``: Prometheus metrics of this process (:mod:`channels.metrics`).
* ``/ws``: the chat WebSocket (wire protocol in :mod:`channels.protocol`). While a human agent holds a
  conversation, the agent's messages are pushed to its open connections: every ``push_interval`` seconds one
  task asks the backend which of the open connections' conversations are handed off
  (:meth:`~channels.backend.Backend.handoff_statuses`, one query) and reads the new events of those only
  (:meth:`~channels.backend.Backend.events_after`). Polling the store, not an in-process signal, is what makes
  it work when the console and the customer's socket live in different worker processes.

Usage::

    async with run_server(backend, port=0) as server:
        print(server.port)

    asyncio.run(serve(backend, host="127.0.0.1", port=8000))
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import http
import inspect
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

from websockets.asyncio.server import Server as _WSServer
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as _ws_serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.typing import Origin

from channels import protocol as p
from channels.backend import Backend
from channels.errors import ProtocolError, StaticFilesError, raised_at
from channels.metrics import Metrics

logger = logging.getLogger("kefu.channels")

STATIC_DIR = Path(__file__).resolve().parent / "static"
REQUIRED_STATIC = ("index.html", "widget.js")

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}
_STATIC_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_HOST_RE = re.compile(r"[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?")

# Static route aliases (besides "/<file name>").
ROUTE_ALIASES = {"/": "index.html"}


@dataclass(frozen=True)
class ServerOptions:
    """Limits of one server.

    ``max_frame_bytes``: largest incoming frame; larger ones close the connection with 1009 (websockets'
    ``max_size``). ``max_pending``: turns queued or running per connection before ``busy``.
    ``write_limit``: (high, low) watermarks of websockets' outgoing buffer: ``send`` waits (back-pressure reaching
    the backend's token stream) while more than ``high`` bytes are unsent, until below ``low``.
    ``max_queue``: (high, low) watermarks of websockets' incoming frame queue: reading from the socket pauses
    above ``high``. ``turn_timeout``: seconds a turn may take (``None``: no limit) before ``timeout``.
    ``push_interval``: seconds between two polls for agent messages to push (``None``: no pushing).
    ``origins``: allowed ``Origin`` headers for ``/ws`` (``None``: any origin, since the widget is embedded in
    other sites' pages). ``close_grace``: seconds ``close()`` lets running turns finish before cancelling them.
    ``rate``/``burst``: each connection's token bucket (frames per second, bucket size; ``rate=None``: no limit);
    a frame over it gets ``rate_limited`` and is dropped. ``max_connections``: open WebSocket connections beyond
    which a new handshake is refused with HTTP 503 (``None``: no limit). ``reuse_port``: bind with SO_REUSEPORT so
    several worker processes share one port (the kernel spreads new connections over them).
    """

    max_frame_bytes: int = p.MAX_FRAME_BYTES
    max_pending: int = p.DEFAULT_MAX_PENDING
    write_limit: tuple[int, int] = (64 * 1024, 16 * 1024)
    max_queue: tuple[int, int] = (16, 4)
    turn_timeout: float | None = 120.0
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    origins: tuple[str | None, ...] | None = None
    close_grace: float = 5.0
    push_interval: float | None = 0.5
    extra_headers: dict[str, str] = field(default_factory=dict)
    rate: float | None = p.DEFAULT_RATE
    burst: int = p.DEFAULT_BURST
    max_connections: int | None = 10_000
    reuse_port: bool = False


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str


def load_static(static_dir: Path | str) -> dict[str, StaticFile]:
    """Read the flat ``static_dir`` into memory: ``{"/name": StaticFile}`` plus :data:`ROUTE_ALIASES`.

    Only plain files with a known extension and a simple name are served (no sub-directories, so no path
    traversal). Raises :class:`StaticFilesError` when the directory or a required file is missing.
    """
    root = Path(static_dir)
    if not root.is_dir():
        raise StaticFilesError("static directory not found", path=str(root))
    files: dict[str, StaticFile] = {}
    for path in sorted(root.iterdir()):
        content_type = CONTENT_TYPES.get(path.suffix.lower())
        if content_type is None or not path.is_file() or not _STATIC_NAME_RE.fullmatch(path.name):
            continue
        files["/" + path.name] = StaticFile(path.read_bytes(), content_type)
    for name in REQUIRED_STATIC:
        if "/" + name not in files:
            raise StaticFilesError("required static file missing", path=str(root / name))
    for route, name in ROUTE_ALIASES.items():
        files[route] = files["/" + name]
    return files


def content_security_policy(host: str | None) -> str:
    """The CSP for served HTML: scripts and styles from this origin only, no inline code, no framing."""
    connect = "'self'"
    if host is not None and _HOST_RE.fullmatch(host):
        connect += f" ws://{host} wss://{host}"
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src {connect}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def _accepts_keyword(function: Callable[..., Any], name: str) -> bool:
    """Whether ``function`` takes the keyword argument ``name`` (or ``**kwargs``)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        (param.name == name and param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY))
        or param.kind is param.VAR_KEYWORD
        for param in parameters
    )


_STOP = object()


class _NoPayloadLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The logger handed to ``websockets``: its DEBUG output includes frame payloads (customer text), so DEBUG is
    never enabled for it, whatever the logging configuration; INFO and above pass through."""

    def isEnabledFor(self, level: int) -> bool:
        return level > logging.DEBUG and self.logger.isEnabledFor(level)


class Server:
    """A running (once started) chat server. Use :func:`run_server` or ``async with Server(...)``."""

    def __init__(
        self,
        backend: Backend,
        host: str = "127.0.0.1",
        port: int = 8000,
        static_dir: Path | str | None = None,
        options: ServerOptions | None = None,
        *,
        metrics: Metrics | None = None,
    ) -> None:
        self.backend = backend
        self.host = host
        self._requested_port = port
        self.static_dir = Path(static_dir) if static_dir is not None else STATIC_DIR
        self.options = options or ServerOptions()
        self._static: dict[str, StaticFile] = {}
        self._ws: _WSServer | None = None
        self._workers: set[asyncio.Task[None]] = set()
        self.connections = 0
        self._live: dict[ServerConnection, p.ConnectionState] = {}  # open connections: where pushes go
        self._send_locks: dict[ServerConnection, asyncio.Lock] = {}
        self._handed_off: set[str] = set()  # conversations handed off at the last poll
        self._pusher: asyncio.Task[None] | None = None
        self.metrics = metrics if metrics is not None else Metrics()
        self._ws_admitted: set[ServerConnection] = set()  # /ws handshakes let through, not yet ended
        self._backend_takes_user = _accepts_keyword(backend.open_conversation, "user")

    def __repr__(self) -> str:
        return f"Server(host={self.host!r}, port={self.port if self._ws else self._requested_port})"

    # ------------------------------------------------------------------------------------------------ lifecycle
    @property
    def port(self) -> int:
        """The bound port (the ephemeral one when started with ``port=0``)."""
        if self._ws is None:
            raise RuntimeError("server not started")
        return int(next(iter(self._ws.sockets)).getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws"

    async def start(self) -> None:
        self._static = await asyncio.to_thread(load_static, self.static_dir)
        opts = self.options
        self._ws = await _ws_serve(
            self._handle_connection,
            self.host,
            self._requested_port,
            process_request=self._process_request,
            max_size=opts.max_frame_bytes,
            max_queue=opts.max_queue,
            write_limit=opts.write_limit,
            ping_interval=opts.ping_interval,
            ping_timeout=opts.ping_timeout,
            origins=[None if o is None else Origin(o) for o in opts.origins] if opts.origins is not None else None,
            server_header="Kefu",
            logger=_NoPayloadLogger(logging.getLogger("kefu.channels.websockets"), {}),
            reuse_port=opts.reuse_port,
        )
        if opts.push_interval is not None:
            self._pusher = asyncio.create_task(self._push_loop(opts.push_interval))
        logger.info("kefu channel server listening on %s", self.url)

    async def close(self) -> None:
        """Stop accepting, close connections (1001), let running turns finish for ``close_grace`` seconds."""
        if self._ws is None:
            return
        if self._pusher is not None:
            self._pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pusher
            self._pusher = None
        self._ws.close()
        await self._ws.wait_closed()
        if self._workers:
            _, pending = await asyncio.wait(set(self._workers), timeout=self.options.close_grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        self._ws = None

    async def serve_forever(self) -> None:
        if self._ws is None:
            await self.start()
        assert self._ws is not None
        await self._ws.serve_forever()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --------------------------------------------------------------------------------------------------- HTTP
    def _response(
        self, status: http.HTTPStatus, body: bytes, content_type: str, extra: dict[str, str] | None = None
    ) -> Response:
        headers = Headers(
            [
                ("Date", email.utils.formatdate(usegmt=True)),
                ("Connection", "close"),
                ("Content-Type", content_type),
                ("Content-Length", str(len(body))),
                ("X-Content-Type-Options", "nosniff"),
                ("Referrer-Policy", "no-referrer"),
            ]
        )
        for name, value in {**self.options.extra_headers, **(extra or {})}.items():
            headers[name] = value
        return Response(status.value, status.phrase, headers, body)

    def _json(self, status: http.HTTPStatus, value: Any) -> Response:
        return self._response(
            status, p.encode_json(value), "application/json; charset=utf-8", {"Cache-Control": "no-store"}
        )

    def _json_error(self, exc: BaseException) -> Response:
        code = p.error_code_for(exc)
        status = http.HTTPStatus(p.HTTP_STATUS_FOR_CODE.get(code, 500))
        frame = p.error_frame_for(exc)
        return self._json(status, {"error": {"code": frame["code"], "message": frame["message"]}})

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path.partition("?")[0]).path or "/"
        if path == "/ws":
            return self._admit(connection)  # None: let websockets perform (or refuse) the WebSocket handshake
        if path == "/metrics":
            body, content_type = self.metrics.render()
            return self._response(http.HTTPStatus.OK, body, content_type, {"Cache-Control": "no-store"})
        if "websocket" in request.headers.get("Upgrade", "").lower():
            return self._json(http.HTTPStatus.NOT_FOUND, {"error": {"code": "not_found", "message": "use /ws"}})
        try:
            if path == "/healthz":
                return self._json(http.HTTPStatus.OK, {"status": "ok"})
        except Exception as exc:  # noqa: BLE001 - the API boundary: any failure becomes a JSON error
            if not isinstance(exc, ProtocolError):
                logger.warning("api %s failed: %s at %s", path.split("/")[2], type(exc).__name__, raised_at(exc))
            return self._json_error(exc)
        static = self._static.get(path)
        if static is None:
            return self._json(http.HTTPStatus.NOT_FOUND, {"error": {"code": "not_found", "message": "no such page"}})
        extra = {"Cache-Control": "no-cache"}
        if static.content_type.startswith("text/html"):
            extra["Content-Security-Policy"] = content_security_policy(request.headers.get("Host"))
        return self._response(http.HTTPStatus.OK, static.body, static.content_type, extra)

    def _admit(self, connection: ServerConnection) -> Response | None:
        """Refuse a ``/ws`` handshake with 503 when ``max_connections`` are open (or being opened)."""
        limit = self.options.max_connections
        if limit is None:
            return None
        admitted = self._ws_admitted
        if len(admitted) >= limit:  # forget handshakes that failed after being admitted
            admitted.difference_update([c for c in admitted if c.state is State.CLOSED])
        if len(admitted) >= limit:
            self.metrics.refused.labels("max_connections").inc()
            return self._json(
                http.HTTPStatus.SERVICE_UNAVAILABLE,
                {"error": {"code": "unavailable", "message": "too many connections; retry later"}},
            )
        admitted.add(connection)
        return None

    # ---------------------------------------------------------------------------------------------- WebSocket
    async def _send(self, ws: ServerConnection, frame: dict[str, Any]) -> None:
        if frame.get("type") == "error":
            self.metrics.error(str(frame.get("code")))
        lock = self._send_locks.get(ws)
        if lock is None:
            await ws.send(p.encode_frame(frame))
            return
        async with lock:  # a push and a turn's frames never interleave mid-write
            await ws.send(p.encode_frame(frame))

    # ------------------------------------------------------------------------------------------- agent pushes
    async def _push_loop(self, interval: float) -> None:
        """Every ``interval`` seconds: push new agent messages / takeover / handback to the customers' sockets."""
        failures = 0
        while True:
            await asyncio.sleep(interval * min(2**failures, 20))  # back off while the store is down
            try:
                await self.push_once()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a failed poll is retried; the connections stay up
                failures += 1
                logger.warning("agent push poll failed: %s at %s", type(exc).__name__, raised_at(exc))

    async def push_once(self) -> int:
        """One poll (see the module docstring); returns how many frames were sent."""
        by_conversation: dict[str, list[tuple[ServerConnection, p.ConnectionState]]] = {}
        for ws, state in list(self._live.items()):
            if state.conversation_id is not None and ws.state is State.OPEN:
                by_conversation.setdefault(state.conversation_id, []).append((ws, state))
        if not by_conversation:
            self._handed_off = set()
            return 0
        ids = sorted(by_conversation)
        handed_off: set[str] = set()
        for start in range(0, len(ids), 500):
            statuses = await self.backend.handoff_statuses(ids[start : start + 500])
            handed_off.update(cid for cid, status in statuses.items() if status)
        # Also read the conversations handed back since the last poll: their HANDBACK event is still to push.
        to_read = handed_off | (self._handed_off & by_conversation.keys())
        self._handed_off = handed_off
        sent = 0
        for cid in sorted(to_read):
            targets = by_conversation[cid]
            events = await self.backend.events_after(cid, min(state.last_seq for _, state in targets))
            for ws, state in targets:
                if state.conversation_id != cid:
                    continue  # the connection moved on while we read
                frames, state.last_seq = p.push_frames(events, state.last_seq)
                for frame in frames:
                    with contextlib.suppress(ConnectionClosed):
                        await asyncio.wait_for(self._send(ws, frame), timeout=5.0)
                        sent += 1
        return sent

    async def _handle_connection(self, ws: ServerConnection) -> None:
        """Reader: parse frames, answer protocol errors, ack and queue turns for this connection's worker."""
        state = p.ConnectionState(self.options.max_pending)
        queue: asyncio.Queue[Any] = asyncio.Queue()
        worker = asyncio.create_task(self._worker(ws, state, queue))
        self._workers.add(worker)
        worker.add_done_callback(self._workers.discard)
        self.connections += 1
        self._live[ws] = state
        self._send_locks[ws] = asyncio.Lock()
        self.metrics.connections.inc()
        opts = self.options
        bucket = p.TokenBucket(opts.rate, opts.burst, now=time.monotonic()) if opts.rate is not None else None
        try:
            async for data in ws:
                self.metrics.messages.inc()
                frame: p.ClientFrame | None = None
                try:
                    frame = p.parse_client_frame(data, max_bytes=self.options.max_frame_bytes)
                    if bucket is not None and not bucket.take(time.monotonic()):
                        raise p.rate_limited(frame)  # dropped: neither acknowledged nor queued
                    fresh = state.admit(frame)
                except ProtocolError as exc:
                    error = exc
                    if bucket is not None and frame is None and not bucket.take(time.monotonic()):
                        error = p.rate_limited(None)  # malformed frames cost a token too
                    await self._send(ws, p.error_frame_for(error))
                    continue
                if isinstance(frame, p.UserMessage):
                    await self._send(ws, p.ack_frame(frame.message_id))
                if fresh:
                    self.metrics.pending.inc()
                    queue.put_nowait(frame)
        except ConnectionClosed:
            pass  # abnormal closes (1007 invalid UTF-8, 1009 too big, dropped TCP) end this connection only
        finally:
            self.connections -= 1
            self._live.pop(ws, None)
            self._send_locks.pop(ws, None)
            self.metrics.connections.dec()
            self._ws_admitted.discard(ws)
            # Drop turns that have not started (the client resends them); the running one finishes and is stored,
            # so a resend after reconnecting is answered from the store.
            while not queue.empty():
                if queue.get_nowait() is not _STOP:
                    self.metrics.pending.dec()
            queue.put_nowait(_STOP)

    async def _worker(self, ws: ServerConnection, state: p.ConnectionState, queue: asyncio.Queue[Any]) -> None:
        """Runs this connection's turns one at a time, in arrival order."""
        while True:
            frame = await queue.get()
            if frame is _STOP:
                return
            try:
                if isinstance(frame, p.Hello):
                    await self._open(ws, state, frame)
                else:
                    await self._turn(ws, state, frame)
            except ConnectionClosed:
                pass
            finally:
                state.finish(frame)
                self.metrics.pending.dec()

    async def _open(self, ws: ServerConnection, state: p.ConnectionState, hello: p.Hello) -> None:
        try:
            if hello.user is not None and self._backend_takes_user:  # the keyword is optional in Backend
                opener: Any = self.backend.open_conversation
                conversation_id = await opener(hello.conversation_id, hello.language, user=hello.user)
            else:
                conversation_id = await self.backend.open_conversation(hello.conversation_id, hello.language)
            history = None
            last_seq = 0
            if conversation_id == hello.conversation_id:
                events = await self.backend.conversation_events(conversation_id)
                history = p.history_frame(conversation_id, events)
                last_seq = max((e.seq for e in events), default=0)
        except Exception as exc:  # noqa: BLE001 - the channel boundary: any failure becomes an error frame
            logger.warning(
                "open_conversation failed: %s at %s", type(exc).__name__, raised_at(exc),
                extra={"conversation_id": hello.conversation_id},
            )
            await self._send(ws, p.error_frame_for(exc))
            return
        state.open(conversation_id, last_seq)
        await self._send(ws, p.session_frame(conversation_id))
        if history is not None and history["messages"]:
            await self._send(ws, history)

    async def _turn(self, ws: ServerConnection, state: p.ConnectionState, message: p.UserMessage) -> None:
        typing = False
        started = time.perf_counter()
        metrics = self.metrics

        async def on_token(delta: str) -> None:
            if delta:
                metrics.tokens.inc()
            # A vanished client must not fail the turn: it is still committed, and a resend replays it.
            if delta and ws.state is State.OPEN:
                with contextlib.suppress(ConnectionClosed):
                    await self._send(ws, p.token_frame(message.message_id, delta))

        try:
            state.check_conversation(message)
            if state.conversation_id is None:
                conversation_id = await self.backend.open_conversation(message.conversation_id)
                last_seq = 0
                if conversation_id == message.conversation_id:  # resumed without hello: no history was sent,
                    events = await self.backend.conversation_events(conversation_id)  # old pushes are not new
                    last_seq = max((e.seq for e in events), default=0)
                state.open(conversation_id, last_seq)
                await self._send(ws, p.session_frame(conversation_id))
            await self._send(ws, p.typing_frame(True))
            typing = True
            reply = await self._with_timeout(
                self.backend.handle_message(state.conversation_id, message.message_id, message.text, on_token)
            )
        except ConnectionClosed:
            raise
        except Exception as exc:  # noqa: BLE001 - the channel boundary: any failure becomes an error frame
            if not isinstance(exc, ProtocolError):
                logger.warning(
                    "turn failed: %s at %s (conversation=%s, message_id=%s)",
                    type(exc).__name__,
                    raised_at(exc),
                    state.conversation_id,
                    message.message_id,
                    extra={"conversation_id": state.conversation_id, "message_id": message.message_id},
                )
            metrics.turn_done("error")
            if typing:
                await self._send(ws, p.typing_frame(False))
            await self._send(ws, p.error_frame_for(exc, reply_to=message.message_id))
            return
        metrics.turn_done("replayed" if reply.replayed else "ok", time.perf_counter() - started)
        if state.open(reply.conversation_id):
            await self._send(ws, p.session_frame(reply.conversation_id))
        await self._send(ws, p.typing_frame(False))
        await self._send(ws, p.message_frame(reply))

    async def _with_timeout(self, awaitable: Awaitable[Any]) -> Any:
        if self.options.turn_timeout is None:
            return await awaitable
        return await asyncio.wait_for(awaitable, self.options.turn_timeout)


@contextlib.asynccontextmanager
async def run_server(
    backend: Backend,
    host: str = "127.0.0.1",
    port: int = 0,
    static_dir: Path | str | None = None,
    options: ServerOptions | None = None,
    *,
    metrics: Metrics | None = None,
) -> AsyncIterator[Server]:
    """Start a server (``port=0``: an ephemeral port, see ``server.port``) and close it on exit."""
    server = Server(backend, host, port, static_dir, options, metrics=metrics)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


async def serve(
    backend: Backend,
    host: str = "127.0.0.1",
    port: int = 8000,
    static_dir: Path | str | None = None,
    options: ServerOptions | None = None,
    *,
    on_started: Callable[[Server], None] | None = None,
    metrics: Metrics | None = None,
) -> None:
    """Serve until cancelled (e.g. ``asyncio.run(serve(backend))``; Ctrl-C cancels)."""
    async with run_server(backend, host, port, static_dir, options, metrics=metrics) as server:
        if on_started is not None:
            on_started(server)
        await server.serve_forever()
