"""Fuzzing the live chat server: whatever one client sends, it gets error frames (or a clean close), and everyone
else keeps being served.

The server runs on its own event loop in a thread, so hypothesis drives it with a plain synchronous websockets
client, one connection per example. A "bystander" conversation is checked after each test.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect
from websockets.sync.connection import Connection

from channels import protocol as p
from channels.server import Server, ServerOptions, run_server
from tests.channels.conftest import EchoBackend

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                       HealthCheck.function_scoped_fixture])
KNOWN_TYPES = {"session", "history", "ack", "typing", "token", "message", "error"}


class ThreadedServer:
    """A chat server on an event loop in a daemon thread."""

    def __init__(self, options: ServerOptions) -> None:
        self.backend = EchoBackend()
        self.loop = asyncio.new_event_loop()
        self.server: Server | None = None
        self._stop: asyncio.Event | None = None
        ready = threading.Event()

        async def main() -> None:
            self._stop = asyncio.Event()
            async with run_server(self.backend, options=options) as srv:
                self.server = srv
                ready.set()
                await self._stop.wait()

        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(main(),), daemon=True)
        self.thread.start()
        assert ready.wait(10), "server did not start"

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.ws_url

    def close(self) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(30)
        if not self.thread.is_alive():
            self.loop.close()


@pytest.fixture(scope="module")
def live() -> Iterator[ThreadedServer]:
    # No limits on new conversations: every example's sentinel starts one (tests/security tests those limits).
    srv = ThreadedServer(ServerOptions(rate=10_000, burst=10_000, max_pending=8, turn_timeout=5, max_connections=400,
                                       conversation_rate=None, conversations_per_connection=None,
                                       connections_per_address=None))
    try:
        yield srv
    finally:
        srv.close()


def recv(ws: Connection, timeout: float = 5.0) -> dict[str, Any]:
    frame = json.loads(ws.recv(timeout=timeout))
    assert isinstance(frame, dict) and frame.get("type") in KNOWN_TYPES, frame
    return frame


def chat(ws: Connection, message_id: str, text: str) -> dict[str, Any]:
    """Send a message; return its final reply (frames of earlier fuzz input may come first)."""
    ws.send(json.dumps({"type": "message", "message_id": message_id, "text": text}))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        frame = recv(ws)
        if frame["type"] == "message" and frame["reply_to"] == message_id:
            return frame
        if frame["type"] == "error" and frame.get("reply_to") == message_id:
            raise AssertionError(f"sentinel refused: {frame}")
    raise AssertionError("no reply")


def bystander_ok(live: ThreadedServer) -> None:
    with connect(live.url) as ws:
        assert chat(ws, "bystander", "are you there")["text"] == "ARE YOU THERE"


# ------------------------------------------------------------------------------------------------- strategies
ANY_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=300)  # control characters too, no surrogates
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | ANY_TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(ANY_TEXT, children, max_size=4),
    max_leaves=15,
)
WRONG = JSON | st.just("x" * 3000) | st.text(alphabet=st.characters(categories=("Cc", "Cf", "Zl", "Zp")), max_size=50)
FRAME = st.fixed_dictionaries(
    {"type": st.sampled_from(["hello", "message"]) | JSON},
    optional={
        "conversation_id": st.none() | WRONG,
        "message_id": st.from_regex(p.MESSAGE_ID_RE, fullmatch=True) | WRONG,
        "text": WRONG,
        "language": WRONG,
        "user": WRONG,
    },
)
PAYLOAD = (
    FRAME.map(json.dumps)
    | JSON.map(lambda v: json.dumps(v, ensure_ascii=False))
    | ANY_TEXT
    | st.binary(max_size=300)
)


# ------------------------------------------------------------------------------------------------------ tests
@FUZZ
@given(st.lists(PAYLOAD, min_size=1, max_size=4))
def test_arbitrary_frames_get_answers_and_the_connection_stays_usable(live: ThreadedServer, payloads: list[Any]) -> None:
    with connect(live.url, max_size=None) as ws:
        for payload in payloads:
            ws.send(payload)
        # Whatever came before, the same connection still answers a valid message (in order, after the rest).
        assert chat(ws, "sentinel", "still fine")["text"] == "STILL FINE"


def test_control_characters_and_odd_unicode_are_served(live: ThreadedServer) -> None:
    texts = ["\x00\x01\x02 hi \x7f", "bell\x07 and \x1b[31mred", "zero\u200bwidth\ufeff", "rtl \u202e text",
             "订单\u000010234", "\U0001f600 emoji", "a\u2028b\u2029c", " \t\n x \r\n"]
    with connect(live.url) as ws:
        for i, text in enumerate(texts):
            assert chat(ws, f"c{i}", text)["text"] == text.strip().upper()
    bystander_ok(live)


def test_lone_surrogate_escape_is_bad_frame(live: ThreadedServer) -> None:
    with connect(live.url) as ws:
        ws.send('{"type":"message","message_id":"s1","text":"\\ud800 hi"}')
        frame = recv(ws)
        assert frame["type"] == "error" and frame["code"] == "bad_frame" and frame["reply_to"] == "s1"
        assert chat(ws, "s2", "ok")["text"] == "OK"


def _raw_ws(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1024)
    assert head.startswith(b"HTTP/1.1 101")
    return sock


def _masked_text_frame(payload: bytes) -> bytes:
    mask = os.urandom(4)
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(min_size=1, max_size=100))
def test_raw_text_frames_with_any_bytes(live: ThreadedServer, payload: bytes) -> None:
    """Invalid UTF-8 closes that connection with 1007; valid UTF-8 gets frames; the server never falls over."""
    assert live.server is not None
    sock = _raw_ws(live.server.port)
    try:
        sock.sendall(_masked_text_frame(payload))
        answer = sock.recv(1024)
    finally:
        sock.close()
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        assert answer[:1] == b"\x88" and int.from_bytes(answer[2:4], "big") == 1007
    else:
        assert answer[:1] == b"\x81"  # a text frame: an error (or session/ack) answer


def test_one_megabyte_frame_closes_only_that_connection(live: ThreadedServer) -> None:
    with connect(live.url) as bystander:
        assert chat(bystander, "b1", "before")["text"] == "BEFORE"
        with connect(live.url, max_size=None) as ws:
            ws.send(json.dumps({"type": "message", "message_id": "big", "text": "x" * 1_000_000}))
            with pytest.raises(ConnectionClosed) as info:
                recv(ws)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1009
        assert chat(bystander, "b2", "after")["text"] == "AFTER"


def test_many_idle_connections_do_not_slow_others(live: ThreadedServer) -> None:
    idle = [connect(live.url) for _ in range(150)]
    try:
        with connect(live.url) as ws:
            t0 = time.monotonic()
            for i in range(5):
                assert chat(ws, f"i{i}", "busy day")["text"] == "BUSY DAY"
            assert time.monotonic() - t0 < 5
    finally:
        for ws in idle:
            ws.close()


def test_connection_cap_refuses_with_503_and_recovers() -> None:
    srv = ThreadedServer(ServerOptions(max_connections=20))
    try:
        idle = [connect(srv.url) for _ in range(20)]
        with pytest.raises(InvalidStatus) as info:
            connect(srv.url, open_timeout=5)
        assert info.value.response.status_code == 503
        idle.pop().close()
        deadline = time.monotonic() + 5
        while True:
            try:
                with connect(srv.url) as ws:
                    assert chat(ws, "m1", "in")["text"] == "IN"
                break
            except InvalidStatus:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        for ws in idle:
            ws.close()
    finally:
        srv.close()


def test_flood_of_1000_messages_per_second_is_rate_limited_and_others_are_served() -> None:
    srv = ThreadedServer(ServerOptions())  # the defaults: 10 messages/s, burst 20
    try:
        flood_done = threading.Event()
        result: dict[str, Any] = {}

        def flood() -> None:
            with connect(srv.url) as ws:
                t0 = time.monotonic()
                for i in range(1000):  # 1,000 messages in about a second
                    ws.send(json.dumps({"type": "message", "message_id": f"f{i}", "text": f"spam {i}"}))
                    if i % 100 == 99:
                        time.sleep(max(0.0, (i + 1) / 1000 - (time.monotonic() - t0)))
                sent = time.monotonic() - t0
                counts = {"ack": 0, "rate_limited": 0, "busy": 0, "message": 0}
                answered = 0
                while answered < 1000:
                    frame = recv(ws, timeout=20)
                    if frame["type"] == "ack":
                        counts["ack"] += 1
                        answered += 1
                    elif frame["type"] == "error":
                        counts[frame["code"]] += 1
                        answered += 1
                    elif frame["type"] == "message":
                        counts["message"] += 1
                while counts["message"] < counts["ack"]:
                    if recv(ws, timeout=20)["type"] == "message":
                        counts["message"] += 1
                result.update(counts, elapsed=time.monotonic() - t0, sent=sent)
                ws.send(json.dumps({"type": "message", "message_id": "x", "text": "x"}))  # still open
                recv(ws)
            flood_done.set()

        thread = threading.Thread(target=flood)
        thread.start()
        latencies: list[float] = []
        with connect(srv.url) as ws:  # another conversation, served normally during the flood
            while not flood_done.is_set() and len(latencies) < 40:
                t0 = time.monotonic()
                chat(ws, f"n{len(latencies)}", "normal customer")
                latencies.append(time.monotonic() - t0)
                time.sleep(0.15)  # a human pace, well under this connection's own limit
        thread.join(30)
        assert flood_done.is_set()
        accepted = result["ack"] + result["busy"]  # busy frames passed the rate limit, then found the queue full
        assert result["rate_limited"] >= 1000 - (20 + 10 * result["elapsed"]) - 1
        assert accepted <= 20 + 10 * result["elapsed"] + 1
        assert result["message"] == result["ack"]  # every accepted message was answered
        assert latencies and max(latencies) < 2.0
    finally:
        srv.close()
