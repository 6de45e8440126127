"""The asyncio server against a real socket: websockets client, raw sockets for malformed traffic, HTTP GETs."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from channels.errors import ChannelError, StaticFilesError
from channels.server import Server, ServerOptions, run_server, serve
from dialogue.errors import StoreUnavailable
from tests.channels.conftest import EchoBackend, free_port

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def recv(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    assert isinstance(frame, dict)
    return frame


async def recv_until(ws: ClientConnection, type_: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    """Frames up to and including the first of ``type_``."""
    frames = []
    while True:
        frame = await recv(ws, timeout)
        frames.append(frame)
        if frame["type"] == type_:
            return frames


async def session(
    ws: ClientConnection, conversation_id: str | None = None, secret: str | None = None, **fields: Any
) -> dict[str, Any]:
    """Send ``hello`` (``secret``: the resume secret of ``conversation_id``); return the ``session`` frame."""
    await ws.send(json.dumps({"type": "hello", "conversation_id": conversation_id, "secret": secret, **fields}))
    frame = await recv(ws)
    assert frame["type"] == "session", frame
    return frame


async def hello(ws: ClientConnection, conversation_id: str | None = None, secret: str | None = None) -> str:
    return str((await session(ws, conversation_id, secret))["conversation_id"])


async def until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def message(message_id: str, text: str, conversation_id: str | None = None) -> str:
    return json.dumps({"type": "message", "conversation_id": conversation_id, "message_id": message_id, "text": text})


async def turn(ws: ClientConnection, message_id: str, text: str) -> list[dict[str, Any]]:
    await ws.send(message(message_id, text))
    return await recv_until(ws, "message")


# -------------------------------------------------------------------------------------------------- the happy path
async def test_session_ack_tokens_then_message(server: Server, backend: EchoBackend) -> None:
    async with connect(server.ws_url) as ws:
        cid = await hello(ws)
        assert cid not in backend.conversations  # hello creates nothing: the first message does
        frames = await turn(ws, "m-1", "where is my order 10234")
    assert cid in backend.conversations
    types = [f["type"] for f in frames]
    assert types[0] == "ack" and frames[0]["message_id"] == "m-1"
    assert types[1] == "typing" and frames[1]["on"] is True
    assert types[-2:] == ["typing", "message"] and frames[-2]["on"] is False
    tokens = [f for f in frames if f["type"] == "token"]
    assert len(tokens) == 5 and all(t["reply_to"] == "m-1" for t in tokens)
    assert "".join(t["text"] for t in tokens) == "WHERE IS MY ORDER 10234"
    final = frames[-1]
    assert final["text"] == "WHERE IS MY ORDER 10234"
    assert final["reply_to"] == "m-1" and final["conversation_id"] == cid
    assert final["intent"] == "echo" and final["confidence"] == 1.0 and final["action"] == "utter_echo"
    assert final["handed_off"] is False and final["replayed"] is False and final["quick_replies"] == []


async def test_message_without_hello_opens_a_session(server: Server, backend: EchoBackend) -> None:
    async with connect(server.ws_url) as ws:
        await ws.send(message("m1", "hi"))
        frames = await recv_until(ws, "message")
    sessions = [f for f in frames if f["type"] == "session"]
    assert len(sessions) == 1 and sessions[0]["conversation_id"] == frames[-1]["conversation_id"]
    assert sessions[0]["secret"]  # a new conversation: its resume secret comes with the session
    assert list(backend.conversations) == [sessions[0]["conversation_id"]]


async def test_messages_are_answered_in_order(server: Server, backend: EchoBackend) -> None:
    backend.token_delay = 0.01
    async with connect(server.ws_url) as ws:
        await hello(ws)
        for i in range(3):
            await ws.send(message(f"m{i}", f"message number {i}"))
        finals: list[str] = []
        current: str | None = None
        while len(finals) < 3:
            frame = await recv(ws)
            if frame["type"] == "token":  # tokens of one turn are never interleaved with another's
                assert current in (None, frame["reply_to"])
                current = frame["reply_to"]
            if frame["type"] == "message":
                finals.append(frame["reply_to"])
                current = None
    assert finals == ["m0", "m1", "m2"]
    assert backend.started == ["m0", "m1", "m2"]


async def test_resume_sends_history_and_dedupes_replays(server: Server, backend: EchoBackend) -> None:
    async with connect(server.ws_url) as ws:
        issued = await session(ws)
        cid = issued["conversation_id"]
        first = (await turn(ws, "m-1", "hello there"))[-1]
    async with connect(server.ws_url) as ws:
        await ws.send(json.dumps({"type": "hello", "conversation_id": cid, "secret": issued["secret"],
                                  "language": "en-US"}))
        assert await recv(ws) == {"type": "session", "conversation_id": cid}  # no secret: the client has it
        history = await recv(ws)
        assert history["type"] == "history" and history["conversation_id"] == cid
        assert [(m["role"], m["text"]) for m in history["messages"]] == [
            ("user", "hello there"),
            ("bot", "HELLO THERE"),
        ]
        # A resend after a reconnect is answered from the store, not run again.
        again = (await turn(ws, "m-1", "hello there"))[-1]
    assert again["replayed"] is True and again["message_id"] == first["message_id"]
    assert backend.conversations[cid]["turns"] == 1


async def test_unknown_conversation_without_its_secret_is_denied(server: Server) -> None:
    async with connect(server.ws_url) as ws:
        await ws.send(json.dumps({"type": "hello", "conversation_id": "does-not-exist"}))
        error = await recv(ws)
        assert error["type"] == "error" and error["code"] == "resume_denied" and "reply_to" not in error
        with pytest.raises(TimeoutError):  # no session, no history
            await recv(ws, timeout=0.3)
        assert (await session(ws))["secret"]  # the client starts over on the same connection


# ---------------------------------------------------------------------------------------------- bad input
BAD_INPUT = [
    ("{oops", "bad_json", None),
    ('["message"]', "bad_frame", None),
    ('{"type": "bogus"}', "bad_frame", None),
    ('{"type": "message", "text": "hi"}', "bad_frame", None),
    ('{"type": "message", "message_id": "has space", "text": "hi"}', "bad_frame", None),
    ('{"type": "message", "message_id": "m7", "text": 42}', "bad_frame", "m7"),
    ('{"type": "message", "message_id": "m8", "text": "   "}', "bad_frame", "m8"),
    (json.dumps({"type": "message", "message_id": "m9", "text": "x" * 2001}), "too_large", "m9"),
]


@pytest.mark.parametrize(("data", "code", "reply_to"), BAD_INPUT)
async def test_bad_input_gets_error_and_connection_stays_usable(
    server: Server, data: str, code: str, reply_to: str | None
) -> None:
    async with connect(server.ws_url) as ws:
        await hello(ws)
        await ws.send(data)
        error = await recv(ws)
        assert error["type"] == "error" and error["code"] == code and error.get("reply_to") == reply_to
        assert error["message"]
        assert (await turn(ws, "ok-1", "still there?"))[-1]["text"] == "STILL THERE?"


async def test_binary_frame_gets_bad_frame(server: Server) -> None:
    async with connect(server.ws_url) as ws:
        await ws.send(message("m1", "hi").encode())
        error = await recv(ws)
        assert error["type"] == "error" and error["code"] == "bad_frame"
        assert (await turn(ws, "m2", "hi"))[-1]["text"] == "HI"


async def test_message_for_another_conversation_is_refused(server: Server) -> None:
    async with connect(server.ws_url) as ws:
        await hello(ws)
        await ws.send(message("m1", "hi", conversation_id="someone-else"))
        frames = await recv_until(ws, "error")
        assert frames[-1]["code"] == "bad_frame" and frames[-1]["reply_to"] == "m1"


async def test_one_megabyte_message_is_refused_and_others_are_served(server: Server) -> None:
    async with connect(server.ws_url) as bystander:
        await hello(bystander)
        async with connect(server.ws_url, max_size=None) as ws:
            await hello(ws)
            await ws.send(message("big", "x" * 1_000_000))
            with pytest.raises(ConnectionClosed) as info:
                await recv(ws)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1009  # message too big
        assert (await turn(bystander, "m1", "are you ok"))[-1]["text"] == "ARE YOU OK"
    async with connect(server.ws_url) as ws:  # and new clients too
        assert (await turn(ws, "m1", "new client"))[-1]["text"] == "NEW CLIENT"


async def raw_text_frame(port: int, payload: bytes) -> bytes:
    """Handshake by hand, send one masked *text* frame with ``payload`` as is; return what the server answers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101")
    mask = os.urandom(4)
    assert len(payload) < 126
    writer.write(bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(1024), 5)
    writer.close()
    await writer.wait_closed()
    return answer


async def test_invalid_utf8_text_frame_closes_that_connection_only(server: Server) -> None:
    async with connect(server.ws_url) as bystander:
        await hello(bystander)
        answer = await raw_text_frame(server.port, b'{"type":"message","text":"\xff\xfe\xc3"}')
        assert answer[0] == 0x88  # a close frame...
        assert int.from_bytes(answer[2:4], "big") == 1007  # ...with "invalid frame payload data"
        assert (await turn(bystander, "m1", "still alive"))[-1]["text"] == "STILL ALIVE"
    await until(lambda: server.connections == 0)  # both handlers ended cleanly
    async with connect(server.ws_url) as ws:
        assert (await turn(ws, "m1", "after utf8"))[-1]["text"] == "AFTER UTF8"


async def test_raw_socket_valid_frame_sanity(server: Server) -> None:
    """The raw-socket helper itself works (so the 1007 above is about the UTF-8, not a broken frame)."""
    answer = await raw_text_frame(server.port, b'{"type":"hello"}')
    assert answer[0] == 0x81 and b'"session"' in answer


# ---------------------------------------------------------------------------------------- limits and failures
async def test_busy_when_too_many_turns_pending(server: Server, backend: EchoBackend) -> None:
    backend.gate = asyncio.Event()  # server fixture: max_pending=3
    async with connect(server.ws_url) as ws:
        await hello(ws)
        for i in range(5):
            await ws.send(message(f"m{i}", f"msg {i}"))
        acks: list[str] = []
        busy: list[str] = []
        while len(acks) + len(busy) < 5:
            frame = await recv(ws)
            if frame["type"] == "ack":
                acks.append(frame["message_id"])
            elif frame["type"] == "error":
                assert frame["code"] == "busy"
                busy.append(frame["reply_to"])
        assert acks == ["m0", "m1", "m2"] and busy == ["m3", "m4"]
        backend.gate.set()
        finals: list[str] = []
        while len(finals) < 3:
            frame = await recv(ws)
            if frame["type"] == "message":
                finals.append(frame["reply_to"])
        assert finals == ["m0", "m1", "m2"]
        assert (await turn(ws, "m3", "msg 3"))[-1]["text"] == "MSG 3"  # retry after busy works


async def test_duplicate_resend_while_in_flight_runs_once(server: Server, backend: EchoBackend) -> None:
    backend.gate = asyncio.Event()
    async with connect(server.ws_url) as ws:
        await hello(ws)
        await ws.send(message("dup", "once"))
        await ws.send(message("dup", "once"))
        assert [await recv(ws), await recv(ws)] == [{"type": "ack", "message_id": "dup"}] * 2
        backend.gate.set()
        await recv_until(ws, "message")
        await ws.send(message("after", "next"))
        frames = await recv_until(ws, "message")
        assert frames[-1]["reply_to"] == "after"
        assert all(f.get("reply_to") != "dup" for f in frames)
    assert backend.started == ["dup", "after"]


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (RuntimeError("boom: customer text SECRET-42"), "internal"),
        (StoreUnavailable("sqlite:///x.db"), "store_unavailable"),
    ],
)
async def test_backend_errors_map_to_error_frames(
    server: Server, backend: EchoBackend, caplog: pytest.LogCaptureFixture, exc: Exception, code: str
) -> None:
    caplog.set_level(logging.DEBUG)
    async with connect(server.ws_url) as ws:
        await hello(ws)
        backend.fail = exc
        frames = await turn_error(ws, "m1", "my SECRET-42 order")
        assert frames[-1] == {"type": "error", "code": code, "message": frames[-1]["message"], "reply_to": "m1"}
        assert {"type": "typing", "on": False} in frames
        assert "SECRET" not in json.dumps(frames)
        backend.fail = None
        assert (await turn(ws, "m2", "recovered"))[-1]["text"] == "RECOVERED"
    server_logs = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("websockets.client"))
    assert type(exc).__name__ in server_logs
    assert "SECRET" not in server_logs  # not even at DEBUG (websockets' frame dumps are kept off)


async def turn_error(ws: ClientConnection, message_id: str, text: str) -> list[dict[str, Any]]:
    await ws.send(message(message_id, text))
    return await recv_until(ws, "error")


async def test_turn_timeout() -> None:
    backend = EchoBackend()
    backend.gate = asyncio.Event()
    async with run_server(backend, options=ServerOptions(turn_timeout=0.2)) as srv, connect(srv.ws_url) as ws:
        await hello(ws)
        frames = await turn_error(ws, "slow", "anyone?")
        assert frames[-1]["code"] == "timeout" and frames[-1]["reply_to"] == "slow"
        backend.gate.set()
        assert (await turn(ws, "m2", "ok now"))[-1]["text"] == "OK NOW"


async def test_client_gone_mid_turn_does_not_fail_the_turn(server: Server, backend: EchoBackend) -> None:
    backend.token_delay = 0.02
    async with connect(server.ws_url) as ws:
        cid = await hello(ws)
        await ws.send(message("m1", "a b c d e f g h"))
        await recv_until(ws, "token")
    # The turn completes (and is stored) although nobody listens; then the connection's worker ends.
    await until(lambda: (cid, "m1") in backend.replies and not server._workers)


async def test_restart_on_same_port() -> None:
    port = free_port()
    backend = EchoBackend()
    for _ in range(2):
        async with run_server(backend, port=port) as srv:
            assert srv.port == port
            async with connect(srv.ws_url) as ws:
                await hello(ws)


# --------------------------------------------------------------------------------------------------- HTTP
async def get(server: Server, path: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
        return await client.get(path)


@pytest.mark.parametrize("path", ["/"])
async def test_html_pages_have_strict_csp_and_no_inline_script(server: Server, path: str) -> None:
    res = await get(server, path)
    assert res.status_code == 200
    assert res.headers["content-type"] == "text/html; charset=utf-8"
    assert res.headers["x-content-type-options"] == "nosniff"
    csp = res.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", res.text, flags=re.DOTALL)
    assert scripts and all('src="/' in attrs and not body.strip() for attrs, body in scripts)
    assert not re.search(r"\son[a-z]+\s*=", res.text)  # no inline event handlers
    assert "<style" not in res.text and " style=" not in res.text


async def test_demo_page_embeds_the_widget_with_one_tag(server: Server) -> None:
    res = await get(server, "/")
    tags = re.findall(r"<script\b[^>]*>", res.text)
    assert len(tags) == 1 and 'src="/widget.js"' in tags[0] and "data-server=" in tags[0]


@pytest.mark.parametrize(
    ("path", "content_type", "needle"),
    [
        ("/widget.js", "text/javascript; charset=utf-8", "kefu-launcher"),
        ("/widget.css", "text/css; charset=utf-8", ".kefu-launcher"),
    ],
)
async def test_static_assets(server: Server, path: str, content_type: str, needle: str) -> None:
    res = await get(server, path)
    assert res.status_code == 200 and res.headers["content-type"] == content_type
    assert res.headers["x-content-type-options"] == "nosniff"
    assert needle in res.text
    assert len(res.content) == int(res.headers["content-length"])


async def test_widget_never_uses_inner_html(server: Server) -> None:
    for path in ("/widget.js",):
        text = (await get(server, path)).text
        assert not re.search(r"\.(innerHTML|outerHTML|insertAdjacentHTML)\b|document\.write|\beval\(", text)


@pytest.mark.parametrize("path", ["/nope", "/../channels/server.py", "/static/widget.js", "/%2e%2e/etc/passwd",
                                  # staff pages and data live on the ops server (channels/ops.py), never here
                                  "/console", "/console/", "/api/conversations", "/api/conversations/x",
                                  "/ops/console.html", "/console.js", "/login"])
async def test_unknown_paths_are_404(server: Server, path: str) -> None:
    res = await get(server, path)
    assert res.status_code == 404 and res.json()["error"]["code"] == "not_found"


async def test_healthz(server: Server) -> None:
    res = await get(server, "/healthz")
    assert res.status_code == 200 and res.json() == {"status": "ok"}


async def test_websocket_upgrade_elsewhere_is_refused(server: Server) -> None:
    with pytest.raises(Exception) as info:
        async with connect(f"ws://127.0.0.1:{server.port}/other"):
            pass
    assert "404" in str(info.value)


# ------------------------------------------------------------------------------------------------- lifecycle
async def test_serve_runs_until_cancelled(tmp_path: Any) -> None:
    started: asyncio.Future[Server] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(EchoBackend(), port=0, on_started=started.set_result))
    srv = await asyncio.wait_for(started, 5)
    url = srv.url
    assert (await get(srv, "/healthz")).status_code == 200
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient(timeout=5) as client:
            await client.get(url + "/healthz")


async def test_missing_static_files_fail_at_start(tmp_path: Any) -> None:
    (tmp_path / "index.html").write_text("<!doctype html>")
    with pytest.raises(StaticFilesError) as info:
        async with run_server(EchoBackend(), static_dir=tmp_path):
            pass
    assert "widget.js" in str(info.value) and isinstance(info.value, ChannelError)
    with pytest.raises(StaticFilesError):
        async with run_server(EchoBackend(), static_dir=tmp_path / "nope"):
            pass


async def test_close_lets_a_running_turn_finish_then_cancels_it() -> None:
    backend = EchoBackend()
    backend.gate = asyncio.Event()
    srv = Server(backend, port=0, options=ServerOptions(close_grace=0.3))
    await srv.start()
    async with connect(srv.ws_url) as ws:
        await hello(ws)
        await ws.send(message("m1", "stuck"))
        await recv_until(ws, "typing")
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await srv.close()
        assert loop.time() - t0 < 3
    assert not srv._workers  # nothing left running
    assert backend.started == ["m1"] and not backend.replies


# ------------------------------------------------------------------------------------- human agent pushes
async def recv_type(ws: ClientConnection, type_: str, timeout: float = 5.0) -> dict[str, Any]:
    while True:
        frame = await recv(ws, timeout)
        if frame["type"] == type_:
            return frame


async def test_agent_messages_are_pushed_to_every_open_connection() -> None:
    backend = EchoBackend()
    async with run_server(backend, options=ServerOptions(push_interval=0.05)) as srv:
        async with connect(srv.ws_url) as ws, connect(srv.ws_url) as second_tab:
            issued = await session(ws)
            cid, secret = issued["conversation_id"], issued["secret"]
            await turn(ws, "m1", "I want a human")
            await second_tab.send(json.dumps({"type": "hello", "conversation_id": cid, "secret": secret}))
            await recv_type(second_tab, "history")
            backend.take_over(cid)
            message_id = backend.agent_say(cid, "Hi, I am <b>Amy</b>, how can I help?")
            for client in (ws, second_tab):
                assert await recv(client) == {"type": "handoff", "conversation_id": cid, "status": "agent"}
                pushed = await recv(client)
                assert pushed["type"] == "message" and pushed["role"] == "agent"
                assert pushed["text"] == "Hi, I am <b>Amy</b>, how can I help?"
                assert pushed["message_id"] == message_id and pushed["conversation_id"] == cid
                assert pushed["reply_to"] is None and pushed["handed_off"] is True
            backend.agent_say(cid, "Still there?")
            assert (await recv(ws))["text"] == "Still there?"
            backend.hand_back(cid)  # the handback reaches the customer although the status is back to ""
            assert await recv(ws) == {"type": "handoff", "conversation_id": cid, "status": "bot"}
            with pytest.raises(TimeoutError):  # nothing is pushed twice
                await recv(ws, timeout=0.3)
        # A reconnect gets the agent's messages in its history, and no push of them again.
        async with connect(srv.ws_url) as ws:
            backend.take_over(cid)
            await ws.send(json.dumps({"type": "hello", "conversation_id": cid, "secret": secret}))
            await recv(ws)  # session
            history = await recv(ws)
            agent_lines = [m["text"] for m in history["messages"] if m["role"] == "agent"]
            assert agent_lines == ["Hi, I am <b>Amy</b>, how can I help?", "Still there?"]
            with pytest.raises(TimeoutError):
                await recv(ws, timeout=0.3)


async def test_conversations_not_handed_off_are_not_read() -> None:
    backend = EchoBackend()
    reads: list[str] = []
    real = backend.events_after

    async def spy(conversation_id: str, seq: int) -> list[Any]:
        reads.append(conversation_id)
        return await real(conversation_id, seq)

    backend.events_after = spy  # type: ignore[method-assign]
    async with run_server(backend, options=ServerOptions(push_interval=0.02)) as srv, connect(srv.ws_url) as ws:
        await hello(ws)
        await turn(ws, "m1", "hello")
        await asyncio.sleep(0.2)
        assert reads == []  # one status query per tick, no per-connection event reads
        assert await srv.push_once() == 0


async def test_push_poll_survives_a_store_outage(caplog: pytest.LogCaptureFixture) -> None:
    backend = EchoBackend()
    calls = {"n": 0}
    real = backend.handoff_statuses

    async def flaky(conversation_ids: Any) -> dict[str, str]:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise StoreUnavailable("sqlite:///down.db")
        return await real(conversation_ids)

    backend.handoff_statuses = flaky  # type: ignore[method-assign]
    async with run_server(backend, options=ServerOptions(push_interval=0.02)) as srv, connect(srv.ws_url) as ws:
        cid = await hello(ws)
        await turn(ws, "m0", "hi")  # the conversation exists from its first message on
        backend.take_over(cid)
        backend.agent_say(cid, "back online")
        assert (await recv_type(ws, "message"))["text"] == "back online"
        assert (await turn(ws, "m1", "ok"))[-1]["text"] == "OK"
    assert "StoreUnavailable" in caplog.text
