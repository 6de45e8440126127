"""The asyncio shell around :mod:`channels.protocol`: a ``websockets`` server for the public chat widget.

This port is public (customers' browsers reach it); it serves nothing for staff. The ops console, with login,
roles and its JSON API, is :mod:`channels.ops` on a port of its own.

* ``GET /`` demo shop page, ``/widget.js`` (+ ``/widget.css``): static files from ``static_dir`` (flat: its
  sub-folders, such as the console's ``ops/``, are not served), loaded once at start-up; HTML is sent with a
  strict Content-Security-Policy.
* ``GET /healthz``: liveness. ``GET /metrics``: Prometheus metrics of this process (:mod:`channels.metrics`),
  only with ``ServerOptions(public_metrics=True)`` (``kefu serve --public-metrics``): the counters (turns,
  hand-offs, safety blocks, errors) are the business's, not the public's, so by default they are on the staff
  console's port only.
* ``GET /ready``: readiness for a load balancer: 200 while a new turn would be admitted, 503 (with ``Retry-After``)
  while this worker's estimated queueing delay is over its admission budget (``ServerOptions.admission_budget``;
  without one, always 200). The body says ``{"status": "ready" | "saturated", "queue_delay_ms", "budget_ms"}``.
* ``/ws``: the chat WebSocket (wire protocol in :mod:`channels.protocol`). A conversation id is no credential:
  resuming one needs the secret issued with it (its sha256 is stored in the conversation row), and the
  conversation is created by its first message, not by ``hello``, within limits per client address and per
  connection (``conversation_rate``/``conversation_burst``, ``conversations_per_connection``). While a human
  agent holds a conversation, the agent's messages are pushed to its open, proven connections: every
  ``push_interval`` seconds one task asks the backend which of those conversations are handed off
  (:meth:`~channels.backend.Backend.handoff_statuses`, one query) and reads the new events of those only
  (:meth:`~channels.backend.Backend.events_after`). Polling the store, not an in-process signal, is what makes
  it work when the console and the customer's socket live in different worker processes. A conversation staff
  resolved is polled the same way until it is rated, so its ``resolved`` frame (the rating prompt) is pushed, and
  a resume (``hello`` with the secret) sends it again after the history while it is unrated, so a reloaded page
  asks too; the widget's ``rating`` frame is answered ``rating_ack`` or an ``error`` frame.
* Typing, both ways, in memory only (:class:`channels.presence.TypingBoard`, shared with the console of this
  process): a customer's ``typing`` frame (its own token bucket per connection) is recorded on the board, never in
  the store; a customer message or a closed socket clears it. The board's agent typing changes (the console's
  ``POST /api/conversations/<id>/typing``) are pushed at once as ``agent_typing`` frames to the conversation's
  proven connections on this process. With several worker processes, typing reaches only the sockets and consoles
  of the same worker (messages still reach everyone, through the store): a cosmetic gap, not a lost message.

* Attachments (:mod:`channels.uploads`): a customer sends a file over the socket it already proved, so no second
  credential, no CORS and no HTTP body parser on this port (``websockets`` serves ``GET`` only): an ``upload`` frame
  declares it (checked at once: size, type, one upload at a time per connection, ``UploadLimits.rate`` per
  connection, ``UploadLimits.max_pending_bytes`` of unfinished uploads per process), ``upload_ready`` answers, the
  bytes follow in binary frames (at most ``max_frame_bytes`` each, outside the frame rate: the declared size bounds
  them) within ``UploadLimits.timeout``; the whole file is then checked (type by magic bytes against the declared
  one, structure, active content) and stored, in the connection's turn order, through the
  :class:`~channels.backend.AttachmentStore` (``upload_ack``), or refused (``upload_error``) with nothing stored.
  ``GET /attachments/<id>?token=`` serves a file to the customer with the download token the frames gave (an HMAC
  keyed with the conversation's secret hash: :func:`channels.uploads.download_token`), with
  :func:`channels.uploads.download_headers`; anything wrong is one and the same 404. An agent's file (the console)
  is pushed like an agent message, as an ``attachment`` frame, and both kinds are in the resumed history.
* ``GET /avatars/<sha256>``: the staff picture an agent's frames name (``agent.picture``), from the
  :class:`~channels.backend.AvatarStore` (found like the attachment store), cached for good (its URL is its digest).

Admission control (:mod:`channels.admission`): with ``admission_budget``, a customer message that would wait longer
than the budget for the turns this worker already holds is answered at once with a ``busy`` frame (``retry_after_ms``)
before it is acknowledged or queued, so nothing of it is stored and the client's retry, with the same message id, is
the one that counts; later messages of that connection are held (``busy`` too) until the retry time, so none
overtakes it. ``/metrics`` counts them (``kefu_shed_turns_total``).

This module is the I/O shell only: sockets, tasks, clocks and the backend. What it decides with is pure and lives
elsewhere: the wire protocol and each connection's state (:mod:`channels.protocol` and the modules it re-exports),
the HTTP routes' responses and headers (:mod:`channels.chat_http`), the connection slots and token buckets
(:mod:`channels.limits`), admission control (:mod:`channels.admission`) and the options
(:mod:`channels.chat_options`; ``ServerOptions`` and ``CONTENT_SECURITY_POLICY`` are still importable from here).
It stays over 600 lines on purpose: the shell is one :class:`Server` whose parts (handshakes, readers, turn workers,
pushes, typing, and the binary frames of an upload) share its table of live connections, their send locks and the
per-process upload budget; split up, they would pass that state around instead of owning it. What an upload's bytes
must be is decided without I/O in :mod:`channels.uploads`; here they are only received, counted and stored.

Usage::

    async with run_server(backend, port=0) as server:
        print(server.port)

    asyncio.run(serve(backend, host="127.0.0.1", port=8000))
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from websockets.asyncio.server import Server as _WSServer
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as _ws_serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.typing import Origin

from channels import protocol as p
from channels import uploads as up
from channels.admission import Admission
from channels.backend import AttachmentStore, AvatarStore, Backend
from channels.chat_http import (
    CONTENT_SECURITY_POLICY,
    STATIC_DIR,
    StaticFile,
    attachment_request,
    attachment_response,
    avatar_request,
    avatar_response,
    error_body,
    json_response,
    page_response,
    ready_response,
    refusal_response,
    request_path,
    response,
    static_content_type,
    static_routes,
    wants_websocket,
)
from channels.chat_options import ServerOptions
from channels.errors import ProtocolError, StaticFilesError, raised_at
from channels.frames import (
    UploadStart,
    attachment_json,
    upload_ack_frame,
    upload_error_frame,
    upload_ready_frame,
)
from channels.limits import AddressTurns, ConnectionSlots
from channels.metrics import Metrics
from channels.transcript import AttachmentUrl
from dialogue.errors import ConversationNotFound
from dialogue.types import Event, NewConversation

__all__ = [  # the server, and the names that moved out of this module but are still imported from it
    "CONTENT_SECURITY_POLICY", "STATIC_DIR", "Server", "ServerOptions", "StaticFile", "load_static", "run_server",
    "serve",
]

logger = logging.getLogger("kefu.channels")


def load_static(static_dir: Path | str) -> dict[str, StaticFile]:
    """Read the flat ``static_dir`` into memory: ``{"/name": StaticFile}`` plus the route aliases.

    Only plain files with a known extension and a simple name are served (no sub-directories, so no path
    traversal; :func:`channels.chat_http.static_content_type`). Raises :class:`StaticFilesError` when the directory
    or a required file is missing. File I/O, once at start-up (in a thread).
    """
    root = Path(static_dir)
    if not root.is_dir():
        raise StaticFilesError("static directory not found", path=str(root))
    files: dict[str, StaticFile] = {}
    for path in sorted(root.iterdir()):
        content_type = static_content_type(path.name)
        if content_type is None or not path.is_file():
            continue
        files[path.name] = StaticFile(path.read_bytes(), content_type)
    return static_routes(files, root)


_STOP = object()


@dataclass
class _Upload:
    """One connection's upload in progress: its bytes so far, the bytes it reserved of the process's budget, and
    the timer that drops it when it stalls."""

    assembler: up.UploadAssembler
    reserved: int
    timer: asyncio.TimerHandle | None = None


@dataclass(frozen=True)
class _CompletedUpload:
    """All the bytes of an upload, queued for the connection's worker (stored in turn order, after the message that
    may create the conversation)."""

    upload_id: str
    filename: str | None
    content_type: str
    data: bytes = field(repr=False)
    reserved: int


#: The ``upload_error`` codes of this shell (besides :mod:`channels.uploads`' refusals), with their English text.
NO_CONVERSATION = "no_conversation"
UNAVAILABLE = "unavailable"
_UPLOAD_ERRORS: dict[str, str] = {
    NO_CONVERSATION: "Send a message first: files join an existing conversation.",
    UNAVAILABLE: "This server does not take attachments.",
    p.BUSY: "Too many files are being uploaded right now; retry in a moment.",
    p.RATE_LIMITED: "Files are arriving too fast; wait a moment.",
    p.TIMEOUT: "The file took too long to arrive.",
}


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
        typing: p.TypingBoard | None = None,
        attachments: AttachmentStore | None = None,
        uploads: up.UploadLimits | None = None,
    ) -> None:
        self.backend = backend
        # Where files go: given, or the backend's own store (the engine's, through kefu's serving backend).
        store = attachments if attachments is not None else getattr(backend, "store", None)
        self.attachments: AttachmentStore | None = store if isinstance(store, AttachmentStore) else None
        self.avatars: AvatarStore | None = store if isinstance(store, AvatarStore) else None  # GET /avatars/<sha256>
        self.uploads = uploads or up.UploadLimits()
        self._uploading: dict[ServerConnection, _Upload] = {}
        self._upload_bytes = 0  # reserved by unfinished uploads (and completed ones not stored yet), this process
        self.typing = typing if typing is not None else p.TYPING_BOARD  # shared with this process's console
        self._unsubscribe_typing: Callable[[], None] | None = None
        self._typing_sends: set[asyncio.Task[None]] = set()
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
        self._trusted = p.parse_networks(self.options.trusted_proxies)
        opts = self.options
        self._slots: ConnectionSlots[ServerConnection] = ConnectionSlots(  # /ws handshakes let through, not yet ended
            opts.max_connections, opts.connections_per_address, lambda connection: connection.state is State.CLOSED
        )
        self._new_conversations = (  # per client address; None: no limit
            p.AddressLimiter(opts.conversation_rate, opts.conversation_burst)
            if opts.conversation_rate is not None
            else None
        )
        self._address_turns: AddressTurns[asyncio.Future[None]] = AddressTurns(opts.turns_per_address)
        self.admission = Admission(
            opts.admission_budget, retry_after=opts.admission_retry_after, now=time.monotonic()
        )
        self.metrics.admission_budget.set(self.admission.budget or 0.0)
        self.metrics.queue_delay.set_function(lambda: self.admission.delay.estimate(time.monotonic()))

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
            compression="deflate" if opts.compression else None,
        )
        if opts.push_interval is not None:
            self._pusher = asyncio.create_task(self._push_loop(opts.push_interval))
        self._unsubscribe_typing = self.typing.subscribe(self._push_agent_typing)
        logger.info("kefu channel server listening on %s", self.url)

    async def close(self) -> None:
        """Stop accepting, close connections (1001), let running turns finish for ``close_grace`` seconds."""
        if self._ws is None:
            return
        if self._unsubscribe_typing is not None:
            self._unsubscribe_typing()
            self._unsubscribe_typing = None
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
        return response(
            status, body, content_type, date=time.time(), site_headers=self.options.extra_headers, extra=extra
        )

    def _json(self, status: http.HTTPStatus, value: Any) -> Response:
        return json_response(status, value, date=time.time(), site_headers=self.options.extra_headers)

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request_path(request.path)
        if path == "/ws":  # None: let websockets perform (or refuse) the WebSocket handshake
            return self._admit(connection, request)
        if path == "/metrics" and self.options.public_metrics:
            body, content_type = self.metrics.render()
            return self._response(http.HTTPStatus.OK, body, content_type, {"Cache-Control": "no-store"})
        if wants_websocket(request.headers):
            return self._json(http.HTTPStatus.NOT_FOUND, error_body("not_found", "use /ws"))
        site_headers = self.options.extra_headers
        if path == "/ready":
            return ready_response(self.admission, time.monotonic(), date=time.time(), site_headers=site_headers)
        if path.startswith("/attachments/"):
            return await self._download(request.path)
        if path.startswith(p.AVATARS_PATH):
            return await self._avatar(request.path)
        return page_response(path, self._static, date=time.time(), site_headers=site_headers)

    async def _download(self, target: str) -> Response:
        """``GET /attachments/<id>?token=``: the file, to whoever holds its download token. No such file, another
        conversation's token or none: one and the same 404, so the answer tells nothing of what exists."""
        not_found = self._json(http.HTTPStatus.NOT_FOUND, error_body("not_found", "no such attachment"))
        asked = attachment_request(target)
        if asked is None or asked[1] is None or self.attachments is None:
            return not_found
        attachment_id, token = asked
        try:
            found = await self.attachments.get_attachment(attachment_id)
            conversation = (
                await self.backend.get_conversation(found[0].conversation_id) if found is not None else None
            )
        except Exception as exc:  # noqa: BLE001 - the channel boundary: a failed read is a 503, never a trace
            logger.warning("attachment download failed: %s at %s", type(exc).__name__, raised_at(exc))
            return self._json(http.HTTPStatus.SERVICE_UNAVAILABLE, error_body("unavailable", "retry later"))
        if found is None or conversation is None or not up.token_ok(conversation.secret_hash, attachment_id, token):
            return not_found
        attachment, data = found
        return attachment_response(
            attachment.content_type, attachment.filename, data, date=time.time(),
            site_headers=self.options.extra_headers,
        )

    async def _avatar(self, target: str) -> Response:
        """``GET /avatars/<sha256>``: a staff picture the frames named (:func:`channels.chat_http.avatar_response`);
        a malformed, unknown, replaced or removed digest is 404."""
        digest = avatar_request(target)
        try:
            found = await self.avatars.get_avatar(digest) if digest and self.avatars is not None else None
        except Exception as exc:  # noqa: BLE001 - the channel boundary: a failed read is a 503, never a trace
            logger.warning("avatar read failed: %s at %s", type(exc).__name__, raised_at(exc))
            return self._json(http.HTTPStatus.SERVICE_UNAVAILABLE, error_body("unavailable", "retry later"))
        answer = avatar_response(*found, date=time.time(), site_headers=self.options.extra_headers) if found else None
        return answer or self._json(http.HTTPStatus.NOT_FOUND, error_body("not_found", "no such picture"))

    def _admit(self, connection: ServerConnection, request: Request) -> Response | None:
        """Refuse a ``/ws`` handshake with 503 when ``max_connections`` are open (or being opened), and with 429
        when the client's address already holds ``connections_per_address``."""
        refused = self._slots.admit(connection, lambda: self._address_of(connection, request))
        if refused is None:
            return None
        self.metrics.refused.labels(refused).inc()
        return refusal_response(refused, date=time.time(), site_headers=self.options.extra_headers)

    def _forget(self, connection: ServerConnection) -> None:
        """A connection ended: it no longer counts against the limits."""
        self._slots.forget(connection)

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
            cid = state.conversation_id  # set only for a session proven with its secret (or issued with it)
            if cid is not None and ws.state is State.OPEN:
                by_conversation.setdefault(cid, []).append((ws, state))
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
                frames, state.last_seq = p.push_frames(
                    events, state.last_seq, attachment_url=self._attachment_url(state)
                )
                for frame in frames:
                    with contextlib.suppress(ConnectionClosed):
                        await asyncio.wait_for(self._send(ws, frame), timeout=5.0)
                        sent += 1
        return sent

    def _push_agent_typing(self, conversation_id: str, frame: dict[str, Any]) -> None:
        """A :class:`~channels.presence.TypingBoard` listener: send ``frame`` (``agent_typing``) to the open, proven
        connections of ``conversation_id`` on this process (tasks: the console's request does not wait for them)."""
        for ws, state in list(self._live.items()):
            if state.conversation_id == conversation_id and ws.state is State.OPEN:
                task = asyncio.create_task(self._send_quietly(ws, frame))
                self._typing_sends.add(task)
                task.add_done_callback(self._typing_sends.discard)

    async def _send_quietly(self, ws: ServerConnection, frame: dict[str, Any]) -> None:
        with contextlib.suppress(ConnectionClosed, asyncio.TimeoutError):
            await asyncio.wait_for(self._send(ws, frame), timeout=5.0)

    def _customer_typing(self, state: p.ConnectionState, frame: p.Typing, bucket: p.TokenBucket) -> None:
        """A ``typing`` frame: within the connection's typing bucket (raises ``rate_limited``), recorded for the
        console on the in-memory board only. Without a session there is nothing to show it on: ignored."""
        now = time.monotonic()
        if not bucket.take(now):
            raise p.typing_rate_limited()
        if state.conversation_id is not None:
            self.typing.customer(state.conversation_id, frame.state, now)

    async def _handle_connection(self, ws: ServerConnection) -> None:
        """Reader: parse frames, answer protocol errors, ack and queue turns for this connection's worker."""
        state = p.ConnectionState(self.options.max_pending, self.options.conversations_per_connection)
        queue: asyncio.Queue[Any] = asyncio.Queue()
        worker = asyncio.create_task(self._worker(ws, state, queue, self._client_address(ws)))
        self._workers.add(worker)
        worker.add_done_callback(self._workers.discard)
        self.connections += 1
        self._live[ws] = state
        self._send_locks[ws] = asyncio.Lock()
        self.metrics.connections.inc()
        opts = self.options
        bucket = p.TokenBucket(opts.rate, opts.burst, now=time.monotonic()) if opts.rate is not None else None
        typing_bucket = p.TokenBucket(p.TYPING_RATE, p.TYPING_BURST, now=time.monotonic())
        upload_bucket = p.TokenBucket(self.uploads.rate, self.uploads.burst, now=time.monotonic())
        try:
            async for data in ws:
                self.metrics.messages.inc()
                if isinstance(data, bytes) and ws in self._uploading:
                    await self._upload_chunk(ws, data, queue)  # bounded by the declared size, not the frame rate
                    continue
                frame: p.ClientFrame | None = None
                try:
                    frame = p.parse_client_frame(data, max_bytes=self.options.max_frame_bytes)
                    if bucket is not None and not bucket.take(time.monotonic()):
                        raise p.rate_limited(frame)  # dropped: neither acknowledged nor queued
                    if isinstance(frame, p.Typing):
                        self._customer_typing(state, frame, typing_bucket)
                        continue  # presence, not a turn: no ack, no queue, no store
                    if isinstance(frame, UploadStart):
                        await self._upload_start(ws, state, frame, upload_bucket)
                        continue  # the bytes follow; the whole file is queued once they are all there
                    if isinstance(frame, p.UserMessage) and await self._shed(ws, state, frame):
                        continue  # answered busy: neither acknowledged nor queued
                    fresh = state.admit(frame)
                except ProtocolError as exc:
                    error = exc
                    if bucket is not None and frame is None and not bucket.take(time.monotonic()):
                        error = p.rate_limited(None)  # malformed frames cost a token too
                    await self._send(ws, p.error_frame_for(error))
                    continue
                if isinstance(frame, p.UserMessage):
                    if state.conversation_id is not None:  # sent: no longer typing (whatever the widget says next)
                        self.typing.customer(state.conversation_id, False, time.monotonic())
                    await self._send(ws, p.ack_frame(frame.message_id))
                if fresh:
                    self.metrics.pending.inc()
                    if isinstance(frame, p.UserMessage):
                        self.admission.admitted(time.monotonic())
                    queue.put_nowait(frame)
        except ConnectionClosed:
            pass  # abnormal closes (1007 invalid UTF-8, 1009 too big, dropped TCP) end this connection only
        finally:
            self._drop_upload(ws)
            if state.conversation_id is not None:
                self.typing.customer(state.conversation_id, False, time.monotonic())
            self.connections -= 1
            self._live.pop(ws, None)
            self._send_locks.pop(ws, None)
            self.metrics.connections.dec()
            self._forget(ws)
            # Drop turns that have not started (the client resends them); the running one finishes and is stored,
            # so a resend after reconnecting is answered from the store.
            while not queue.empty():
                dropped = queue.get_nowait()
                if isinstance(dropped, _CompletedUpload):
                    self._release(dropped.reserved)  # never stored: the client resends it (same upload id)
                elif dropped is not _STOP:
                    self.metrics.pending.dec()
                    if isinstance(dropped, p.UserMessage):
                        self.admission.dropped(time.monotonic())
            queue.put_nowait(_STOP)

    async def _shed(self, ws: ServerConnection, state: p.ConnectionState, message: p.UserMessage) -> bool:
        """Admission control, before a message is acknowledged or queued: ``True`` when it was answered ``busy``
        (the worker is over its budget, or an earlier message of this connection was shed and its retry time has
        not come). A resend of a message already pending here is never shed: it is only acknowledged."""
        if state.in_flight(message.message_id):
            return False
        now = time.monotonic()
        shed = self.admission.check(now, state.held(now))
        if shed is None:
            return False
        state.hold(now, shed.retry_after)
        self.metrics.shed.labels(shed.reason).inc()
        await self._send(ws, p.busy_frame(message.message_id, shed.retry_after_ms, shed.reason))
        return True

    def _client_address(self, ws: ServerConnection) -> str:
        """The address the per-address limits count (see :func:`channels.limits.client_address`)."""
        known = self._slots.address(ws)
        if known is not None:
            return known
        return self._address_of(ws, ws.request)

    def _address_of(self, connection: ServerConnection, request: Request | None) -> str:
        peer = connection.remote_address[0] if connection.remote_address else None
        forwarded = request.headers.get_all("X-Forwarded-For") if request is not None and self._trusted else []
        return p.client_address(str(peer) if peer is not None else None, forwarded, self._trusted)

    async def _worker(
        self, ws: ServerConnection, state: p.ConnectionState, queue: asyncio.Queue[Any], address: str
    ) -> None:
        """Runs this connection's turns one at a time, in arrival order."""
        while True:
            frame = await queue.get()
            if frame is _STOP:
                return
            if isinstance(frame, _CompletedUpload):
                try:
                    await self._attach(ws, state, frame)
                except ConnectionClosed:
                    pass
                finally:
                    self._release(frame.reserved)
                continue
            try:
                if isinstance(frame, p.Hello):
                    await self._open(ws, state, frame)
                elif isinstance(frame, p.Rating):
                    await self._rate(ws, state, frame)
                else:
                    await self._turn(ws, state, frame, address)
            except ConnectionClosed:
                pass
            finally:
                state.finish(frame)
                self.metrics.pending.dec()
                if isinstance(frame, p.UserMessage):
                    self.admission.finished(time.monotonic())

    async def _resume(
        self, conversation_id: str, secret: str | None, user: str | None, language: str | None, reply_to: str | None
    ) -> tuple[NewConversation, list[Event] | None]:
        """Check a client's claim to ``conversation_id`` (raises ``resume_denied``): the session to open and the
        conversation's events (``None`` when it is not created yet)."""
        stored = await self.backend.get_conversation(conversation_id)
        session = p.verify_resume(conversation_id, secret, user, stored, language=language, reply_to=reply_to)
        if stored is None:
            return session, None
        return session, await self.backend.conversation_events(conversation_id)

    async def _open(self, ws: ServerConnection, state: p.ConnectionState, hello: p.Hello) -> None:
        """``hello``: a new session (an id and secret, nothing stored) or a proven resume (session + history)."""
        if hello.conversation_id is None:
            session, secret = p.new_session(hello.language, hello.user)
            state.open(session, stored=False)
            await self._send(ws, p.session_frame(session.id, secret))
            return
        try:
            session, events = await self._resume(
                hello.conversation_id, hello.secret, hello.user, hello.language, None
            )
        except Exception as exc:  # noqa: BLE001 - the channel boundary: any failure becomes an error frame
            if not isinstance(exc, ProtocolError):
                logger.warning(
                    "resume failed: %s at %s", type(exc).__name__, raised_at(exc),
                    extra={"conversation_id": hello.conversation_id},
                )
            await self._send(ws, p.error_frame_for(exc))
            return
        state.open(session, stored=events is not None, last_seq=max((e.seq for e in events or ()), default=0))
        await self._send(ws, p.session_frame(session.id))
        # history; resolved again while unrated
        for frame in p.resume_frames(session.id, events or (), attachment_url=self._attachment_url(state)):
            await self._send(ws, frame)

    async def _session_for(self, ws: ServerConnection, state: p.ConnectionState, message: p.UserMessage) -> None:
        """A message on a connection without ``hello``: a new session, or the proven one it names."""
        if message.conversation_id is None:
            session, secret = p.new_session(None, message.user)
            state.open(session, stored=False)
            await self._send(ws, p.session_frame(session.id, secret))
            return
        session, events = await self._resume(
            message.conversation_id, message.secret, message.user, None, message.message_id
        )
        # No history is sent here, so the events the client already has are not pushed again either.
        state.open(session, stored=events is not None, last_seq=max((e.seq for e in events or ()), default=0))
        await self._send(ws, p.session_frame(session.id))

    def _pay_creation(self, state: p.ConnectionState, address: str, reply_to: str) -> None:
        """The first message of a session creates its conversation: count it against the connection and the
        client address (raises ``rate_limited``; nothing is created then, and a later resend may pass)."""
        limiter = self._new_conversations
        state.pay_creation(
            reply_to=reply_to,
            address_allows=lambda: limiter is None or limiter.take(address, time.monotonic()),
        )

    async def _turn(
        self, ws: ServerConnection, state: p.ConnectionState, message: p.UserMessage, address: str
    ) -> None:
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
            if state.session is None:
                await self._session_for(ws, state, message)
            session = state.session
            assert session is not None
            if state.needs_creation:
                try:
                    self._pay_creation(state, address, message.message_id)
                except ProtocolError:
                    # The tarpit (ServerOptions.refusal_delay), spread over up to twice the delay: a flood's sockets
                    # refused together do not all come back in the same instant.
                    await asyncio.sleep(self.options.refusal_delay * (1.0 + random.random()))
                    raise
            await self._send(ws, p.typing_frame(True))
            typing = True
            async with self._address_turn(address):
                reply = await self._with_timeout(
                    self.backend.handle_message(session.id, message.message_id, message.text, on_token, create=session)
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
        state.mark_stored(reply.conversation_id)
        await self._send(ws, p.typing_frame(False))
        await self._send(ws, p.message_frame(reply))

    @contextlib.asynccontextmanager
    async def _address_turn(self, address: str) -> AsyncIterator[None]:
        """The body runs as one of ``address``'s turns (:class:`channels.limits.AddressTurns`): at once, or once
        one of the address's running turns has ended."""
        turns = self._address_turns
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not turns.enter(address, waiter):
            try:
                await waiter
            except asyncio.CancelledError:
                if not turns.cancel(address, waiter):  # it was handed a place meanwhile: pass that on
                    _wake(turns.leave(address))
                raise
        try:
            yield
        finally:
            _wake(turns.leave(address))

    async def _rate(self, ws: ServerConnection, state: p.ConnectionState, rating: p.Rating) -> None:
        """``rating``: store the customer's score of the resolved conversation; ``rating_ack`` or an ``error``
        frame (never a close: a refused rating is the customer's mistake or a race with staff reopening)."""
        try:
            cid = state.rating_target()
            await self._with_timeout(self.backend.rate(cid, rating.score, rating.comment))
        except ConnectionClosed:
            raise
        except Exception as exc:  # noqa: BLE001 - the channel boundary: any failure becomes an error frame
            code = p.error_code_for(exc)
            if code in (p.INTERNAL, p.STORE_UNAVAILABLE, p.TIMEOUT):
                logger.warning(
                    "rating failed: %s at %s", type(exc).__name__, raised_at(exc),
                    extra={"conversation_id": state.conversation_id},
                )
            await self._send(ws, p.error_frame_for(exc))
            return
        await self._send(ws, p.rating_ack_frame(cid, rating.score))

    # -------------------------------------------------------------------------------------------- attachments
    def _attachment_url(self, state: p.ConnectionState) -> AttachmentUrl | None:
        """How this connection's frames link an attachment: with the download token of its proven session."""
        secret_hash = state.session.secret_hash if state.session is not None else None
        if secret_hash is None or self.attachments is None:
            return None
        return lambda attachment_id: up.download_path(attachment_id, up.download_token(secret_hash, attachment_id))

    async def _upload_error(self, ws: ServerConnection, upload_id: str | None, code: str, reason: str) -> None:
        logger.info("upload refused: %s", code, extra={"upload_id": upload_id})
        with contextlib.suppress(ConnectionClosed):
            await self._send(ws, upload_error_frame(upload_id, code, reason))

    async def _upload_start(
        self, ws: ServerConnection, state: p.ConnectionState, frame: UploadStart, bucket: p.TokenBucket
    ) -> None:
        """An ``upload`` frame: refuse it at once (``upload_error``: nothing is kept) or reserve its bytes and
        answer ``upload_ready``."""
        uid = frame.upload_id
        if self.attachments is None:
            return await self._upload_error(ws, uid, UNAVAILABLE, _UPLOAD_ERRORS[UNAVAILABLE])
        if state.session is None:
            return await self._upload_error(ws, uid, NO_CONVERSATION, _UPLOAD_ERRORS[NO_CONVERSATION])
        if ws in self._uploading:
            return await self._upload_error(ws, uid, up.BAD_UPLOAD, "one upload at a time: finish the last one")
        try:
            content_type = up.check_declared(frame.filename, frame.content_type, frame.size, self.uploads)
        except up.UploadRefused as exc:  # costs the frame's token only: nothing is reserved
            return await self._upload_error(ws, uid, exc.code, exc.reason)
        if not bucket.take(time.monotonic()):
            return await self._upload_error(ws, uid, p.RATE_LIMITED, _UPLOAD_ERRORS[p.RATE_LIMITED])
        if self._upload_bytes + frame.size > self.uploads.max_pending_bytes:
            return await self._upload_error(ws, uid, p.BUSY, _UPLOAD_ERRORS[p.BUSY])
        self._upload_bytes += frame.size
        upload = _Upload(up.UploadAssembler(uid, frame.filename, content_type, frame.size), frame.size)
        upload.timer = asyncio.get_running_loop().call_later(self.uploads.timeout, self._upload_timed_out, ws, upload)
        self._uploading[ws] = upload
        await self._send(ws, upload_ready_frame(uid))

    async def _upload_chunk(self, ws: ServerConnection, chunk: bytes, queue: asyncio.Queue[Any]) -> None:
        """A binary frame of the connection's upload: all the bytes there queue the file for the worker."""
        upload = self._uploading[ws]
        assembler = upload.assembler
        try:
            complete = assembler.add(chunk)
        except up.UploadRefused as exc:
            self._drop_upload(ws)
            return await self._upload_error(ws, assembler.upload_id, exc.code, exc.reason)
        if not complete:
            return
        self._drop_upload(ws, release=False)  # the reservation goes with the bytes, until they are stored
        queue.put_nowait(_CompletedUpload(
            assembler.upload_id, assembler.filename, assembler.content_type, assembler.data(), upload.reserved
        ))

    def _upload_timed_out(self, ws: ServerConnection, upload: _Upload) -> None:
        if self._uploading.get(ws) is not upload:
            return
        self._drop_upload(ws)
        task = asyncio.create_task(
            self._upload_error(ws, upload.assembler.upload_id, p.TIMEOUT, _UPLOAD_ERRORS[p.TIMEOUT])
        )
        self._typing_sends.add(task)
        task.add_done_callback(self._typing_sends.discard)

    def _drop_upload(self, ws: ServerConnection, *, release: bool = True) -> None:
        """End the connection's upload in progress (if any): its timer, and its reservation unless it moves on."""
        upload = self._uploading.pop(ws, None)
        if upload is None:
            return
        if upload.timer is not None:
            upload.timer.cancel()
        if release:
            self._release(upload.reserved)

    def _release(self, reserved: int) -> None:
        self._upload_bytes = max(0, self._upload_bytes - reserved)

    async def _attach(self, ws: ServerConnection, state: p.ConnectionState, upload: _CompletedUpload) -> None:
        """Check a complete file and store it (``upload_ack``), or refuse it (``upload_error``): nothing of a
        refused file is stored. A resend with the same upload id is answered with the stored file."""
        uid = upload.upload_id
        try:
            checked = up.check_upload(upload.data, upload.content_type, upload.filename, self.uploads)
        except up.UploadRefused as exc:
            return await self._upload_error(ws, uid, exc.code, exc.reason)
        cid = state.conversation_id
        if cid is None or self.attachments is None:
            return await self._upload_error(ws, uid, NO_CONVERSATION, _UPLOAD_ERRORS[NO_CONVERSATION])
        try:
            _, event = await self._with_timeout(self.attachments.add_attachment(
                cid, direction="customer", filename=checked.filename, content_type=checked.content_type,
                data=checked.data, message_id=uid,
            ))
        except ConversationNotFound:
            return await self._upload_error(ws, uid, NO_CONVERSATION, _UPLOAD_ERRORS[NO_CONVERSATION])
        except Exception as exc:  # noqa: BLE001 - the channel boundary: any failure becomes an upload_error
            code = p.error_code_for(exc)
            if code in (p.INTERNAL, p.STORE_UNAVAILABLE):
                logger.warning("upload failed: %s at %s", type(exc).__name__, raised_at(exc),
                               extra={"conversation_id": cid})
            return await self._upload_error(ws, uid, code, p.ERROR_MESSAGES.get(code, code))
        link = self._attachment_url(state)
        attachment = attachment_json(event.data, link(str(event.data["id"])) if link is not None else None)
        await self._send(ws, upload_ack_frame(uid, attachment, event.message_id))

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
    typing: p.TypingBoard | None = None,
    attachments: AttachmentStore | None = None,
    uploads: up.UploadLimits | None = None,
) -> AsyncIterator[Server]:
    """Start a server (``port=0``: an ephemeral port, see ``server.port``) and close it on exit. ``typing``: the
    board shared with the console (default: this process's :data:`~channels.presence.TYPING_BOARD`).
    ``attachments``: where customers' files go (default: the backend's ``store``, when it has one); ``uploads``:
    their limits."""
    server = Server(
        backend, host, port, static_dir, options, metrics=metrics, typing=typing, attachments=attachments,
        uploads=uploads,
    )
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


def _wake(waiter: asyncio.Future[None] | None) -> None:
    """Let a turn that waited for its address's place run (it holds the place already, see ``AddressTurns.leave``)."""
    if waiter is not None and not waiter.done():
        waiter.set_result(None)
