"""The server's operational surface: /metrics, the per-connection rate limit, the connection cap, ``hello.user``.

(``/metrics`` on this public port only with ``public_metrics``; tests/security/test_chat_http.py checks the default.)"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from channels.metrics import Metrics
from channels.server import Server, ServerOptions, run_server
from dialogue.types import BOT_MESSAGE, HANDOFF, SAFETY_INPUT, SAFETY_OUTPUT, NewEvent
from tests.channels.conftest import EchoBackend
from tests.channels.test_server import hello, message, recv, turn, until

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def metrics_text(server: Server) -> str:
    async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
        res = await client.get("/metrics")
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/plain")
    return res.text


def sample(text: str, name: str, labels: str = "") -> float:
    """The value of one sample line of the exposition text (0.0 when absent)."""
    prefix = f"{name}{{{labels}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix):])
    return 0.0


# --------------------------------------------------------------------------------------------------- metrics
async def test_metrics_count_turns_errors_connections_and_tokens() -> None:
    async with run_server(EchoBackend(), options=ServerOptions(public_metrics=True)) as server, \
            connect(server.ws_url) as ws:
        await hello(ws)
        await turn(ws, "m1", "one two three")
        await turn(ws, "m1", "one two three")  # a resend: answered from the store
        await ws.send("{oops")
        assert (await recv(ws))["code"] == "bad_json"
        text = await metrics_text(server)
        assert sample(text, "kefu_open_connections") == 1
        assert sample(text, "kefu_turns_total", 'outcome="ok"') == 1
        assert sample(text, "kefu_turns_total", 'outcome="replayed"') == 1
        assert sample(text, "kefu_errors_total", 'code="bad_json"') == 1
        assert sample(text, "kefu_generated_tokens_total") == 3
        assert sample(text, "kefu_turn_latency_seconds_count", 'stage="total"') == 2
        assert sample(text, "kefu_messages_received_total") == 4
        assert sample(text, "kefu_pending_turns") == 0
        await ws.close()
        await until(lambda: server.metrics.value("kefu_open_connections") == 0)
    assert "conversation" not in text and "ONE TWO" not in text  # no ids, no text in labels


async def test_metrics_from_committed_turn_events() -> None:
    metrics = Metrics()
    events = [
        NewEvent(SAFETY_INPUT, {"blocked": True, "flags": ["banned_term"]}),
        NewEvent(SAFETY_OUTPUT, {"toxic": True, "replaced": True}),
        NewEvent(HANDOFF, {"reason": "complaint"}),
        NewEvent(BOT_MESSAGE, {"text": "x", "latency_ms": {"nlu": 2.0, "generation": 40.0, "weird": 1.0,
                                                           "bad": "x"}}),
    ]
    metrics.observe_turn_events(events)
    assert metrics.value("kefu_safety_blocks_total", {"kind": "input"}) == 1
    assert metrics.value("kefu_safety_blocks_total", {"kind": "output"}) == 1
    assert metrics.value("kefu_handoffs_total") == 1
    assert metrics.value("kefu_turn_latency_seconds_sum", {"stage": "generation"}) == pytest.approx(0.04)
    assert metrics.value("kefu_turn_latency_seconds_count", {"stage": "nlu"}) == 1
    assert metrics.value("kefu_turn_latency_seconds_count", {"stage": "other"}) == 1
    body, content_type = metrics.render()
    assert b"kefu_handoffs_total 1.0" in body and content_type.startswith("text/plain")


async def test_metrics_are_per_server() -> None:
    async with run_server(EchoBackend()) as a, run_server(EchoBackend()) as b:
        async with connect(a.ws_url) as ws:
            await turn(ws, "m1", "hi")
        assert a.metrics.value("kefu_turns_total", {"outcome": "ok"}) == 1
        assert b.metrics.value("kefu_turns_total", {"outcome": "ok"}) == 0


# ------------------------------------------------------------------------------------------------ rate limit
async def test_rate_limit_drops_excess_messages_and_keeps_the_connection() -> None:
    backend = EchoBackend()
    options = ServerOptions(rate=5, burst=4, max_pending=100)
    async with run_server(backend, options=options) as srv, connect(srv.ws_url) as ws:
        await hello(ws)  # costs one token: 3 left
        t0 = time.monotonic()
        for i in range(10):
            await ws.send(message(f"m{i}", f"msg {i}"))
        acks: list[str] = []
        limited: list[str] = []
        finals: list[str] = []
        while len(acks) + len(limited) < 10 or len(finals) < len(acks):
            frame = await recv(ws)
            if frame["type"] == "ack":
                acks.append(frame["message_id"])
            elif frame["type"] == "error":
                assert frame["code"] == "rate_limited" and frame["message"]
                limited.append(frame["reply_to"])
            elif frame["type"] == "message":
                finals.append(frame["reply_to"])
        elapsed = time.monotonic() - t0
        assert len(acks) <= 3 + 5 * elapsed + 1 and len(acks) >= 3
        assert sorted(acks + limited) == sorted(f"m{i}" for i in range(10))
        assert finals == acks  # nothing that was refused was queued
        assert set(backend.started) == set(acks)
        await asyncio.sleep(0.5)  # the bucket refills: the connection is still usable
        assert (await turn(ws, "later", "still here"))[-1]["text"] == "STILL HERE"
        assert srv.metrics.value("kefu_errors_total", {"code": "rate_limited"}) == len(limited)


async def test_malformed_frames_cost_tokens_too() -> None:
    async with run_server(EchoBackend(), options=ServerOptions(rate=1, burst=2)) as srv, connect(srv.ws_url) as ws:
        codes = []
        for _ in range(4):
            await ws.send("{oops")
            codes.append((await recv(ws))["code"])
        assert codes == ["bad_json", "bad_json", "rate_limited", "rate_limited"]


# ------------------------------------------------------------------------------------------- connection cap
async def test_connections_over_the_cap_get_503_until_one_closes() -> None:
    options = ServerOptions(max_connections=3)
    async with run_server(EchoBackend(), options=options) as srv:
        clients = [await connect(srv.ws_url) for _ in range(3)]
        try:
            with pytest.raises(InvalidStatus) as info:
                async with connect(srv.ws_url, open_timeout=5):
                    pass
            assert info.value.response.status_code == 503
            async with httpx.AsyncClient(base_url=srv.url, timeout=5) as client:  # HTTP still answers
                assert (await client.get("/healthz")).status_code == 200
            assert srv.metrics.value("kefu_connections_refused_total", {"reason": "max_connections"}) == 1
            assert (await turn(clients[0], "m1", "served"))[-1]["text"] == "SERVED"
            await clients.pop().close()
            await until(lambda: srv.connections == 2)
            async with connect(srv.ws_url) as ws:
                assert (await turn(ws, "m1", "admitted"))[-1]["text"] == "ADMITTED"
        finally:
            for ws in clients:
                await ws.close()


# ----------------------------------------------------------------------------------------------- hello.user
async def test_hello_user_becomes_the_sender_of_a_new_conversation(server: Server, backend: EchoBackend) -> None:
    async with connect(server.ws_url) as ws:
        await ws.send(json.dumps({"type": "hello", "conversation_id": None, "user": "cust-42"}))
        cid = (await recv(ws))["conversation_id"]
        await ws.send(json.dumps({"type": "hello", "user": "bad user"}))
        assert (await recv(ws))["code"] == "bad_frame"
        await turn(ws, "m1", "hi")  # the first message creates it, for the hello's user
    async with connect(server.ws_url) as ws:
        other = await hello(ws)
        await turn(ws, "m1", "hi")
    assert {c: backend.conversations[c]["sender"] for c in (cid, other)} == {cid: "cust-42", other: None}
