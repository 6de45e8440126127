"""Admission control: the queueing-delay estimate on a fake clock, the decision, the per-connection hold, and a real
server saturated by real websocket clients (``busy`` frames, retries answered once and in order, ``/metrics``,
``/ready``). The widget's side is in test_admission_browser.py.

The server tests hold the echo backend's turns on its ``gate`` (nothing completes, so the estimate only grows with
time) or serialise them behind one lock with a fixed sleep (every completion is at least that far from the last):
a slow, loaded machine makes both shed more, never less, so the assertions do not depend on its speed.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from channels import protocol as p
from channels.admission import HELD, OVERLOADED, Admission, QueueDelay, Shed
from channels.metrics import Metrics
from channels.server import Server, ServerOptions, run_server
from dialogue.types import NewConversation, TurnReply
from tests.channels.conftest import EchoBackend


# ----------------------------------------------------------------------------------------------- the estimate
def test_an_idle_worker_has_no_delay_and_idle_time_is_not_counted() -> None:
    delay = QueueDelay(now=0.0)
    assert delay.estimate(100.0) == 0.0
    delay.admitted(100.0)
    delay.finished(100.5)  # 100 idle seconds before it, 0.5 busy
    assert delay.per_turn == pytest.approx(0.5)
    assert delay.estimate(500.0) == 0.0  # nothing in flight
    delay.admitted(500.0)
    assert delay.estimate(500.0) == pytest.approx(0.5)  # one turn ahead, 0.5 s per turn


def test_the_average_is_an_ewma_of_busy_seconds_per_completion() -> None:
    delay = QueueDelay(alpha=0.5, now=0.0)
    for _ in range(3):
        delay.admitted(0.0)
    delay.finished(1.0)  # sample 1.0
    delay.finished(1.0)  # sample 0.0 (two turns ran at once): average 0.5
    assert delay.per_turn == pytest.approx(0.5)
    delay.finished(1.2)  # sample 0.2: average 0.35
    assert delay.per_turn == pytest.approx(0.35)
    assert delay.completed == 3 and delay.in_flight == 0


@pytest.mark.parametrize("servers", [1, 2, 4])
def test_the_estimate_is_the_wait_of_a_saturated_worker_whatever_its_concurrency(servers: int) -> None:
    """A worker that runs ``servers`` turns at once, 0.2 s each, with a backlog of 40: after 20 completions the
    estimate is close to the true wait of a new turn (20 ahead / servers x 0.2 s), between completions too."""
    service, backlog = 0.2, 40
    delay = QueueDelay(now=0.0)
    for _ in range(backlog):
        delay.admitted(0.0)
    finish = [(k // servers + 1) * service for k in range(backlog)]
    for t in finish[:20]:
        delay.finished(t)
    for now in (finish[19], finish[19] + service / 2):
        true_wait = 20 / servers * service - (now - finish[19])
        assert delay.estimate(now) == pytest.approx(true_wait, rel=0.4), now


def test_a_stalled_worker_looks_slower_every_second_and_the_first_burst_counts_its_busy_time() -> None:
    delay = QueueDelay(now=0.0)
    for _ in range(4):
        delay.admitted(0.0)
    assert delay.estimate(0.0) == 0.0  # nothing learnt yet, no time passed
    assert delay.estimate(0.5) == pytest.approx(4 * 0.5)  # no completion in 0.5 s: at least 0.5 s per turn
    delay.finished(0.5)
    delay.finished(0.6)
    delay.finished(0.7)  # the average settles near 0.1 + ...
    settled = delay.estimate(0.7)
    stalled = [delay.estimate(0.7 + s) for s in (1.0, 2.0, 4.0)]
    assert settled < stalled[0] < stalled[1] < stalled[2]  # nothing completes: the estimate keeps growing


def test_dropped_turns_leave_the_count_without_a_sample() -> None:
    delay = QueueDelay(now=0.0)
    delay.admitted(0.0)
    delay.admitted(0.0)
    delay.dropped(1.0)
    assert delay.in_flight == 1 and delay.per_turn is None and delay.completed == 0
    delay.dropped(2.0)
    assert delay.estimate(3.0) == 0.0
    delay.admitted(10.0)
    delay.finished(10.25)
    assert delay.per_turn == pytest.approx(0.25)  # the dropped turns' busy time is not this turn's


@pytest.mark.parametrize("alpha", [0.0, -0.1, 1.5])
def test_alpha_must_be_a_weight(alpha: float) -> None:
    with pytest.raises(ValueError, match="alpha"):
        QueueDelay(alpha=alpha)


# ------------------------------------------------------------------------------------------------ the decision
def saturated(budget: float | None, retry_after: tuple[float, float] = (0.25, 10.0)) -> Admission:
    """An admission with 10 turns in flight at 0.3 s per turn (estimate 3 s) at time 1.0."""
    admission = Admission(budget, retry_after=retry_after, now=0.0)
    admission.admitted(0.0)
    admission.finished(0.3)
    for _ in range(10):
        admission.admitted(1.0)
    assert admission.delay.estimate(1.0) == pytest.approx(3.0)
    return admission


@pytest.mark.parametrize("budget", [None, 0.0])
def test_without_a_budget_nothing_is_shed_and_the_worker_is_always_ready(budget: float | None) -> None:
    admission = saturated(budget)
    assert not admission.enabled and admission.check(1.0) is None and admission.ready(1.0)


def test_over_the_budget_a_turn_is_shed_with_the_estimate_as_retry_after() -> None:
    admission = saturated(2.0)
    assert admission.check(1.0) == Shed(pytest.approx(3.0), OVERLOADED)  # type: ignore[arg-type]
    assert not admission.ready(1.0)
    assert saturated(4.0).check(1.0) is None and saturated(4.0).ready(1.0)
    assert saturated(3.0).check(1.0) is None  # at the budget: admitted


@pytest.mark.parametrize(("bounds", "expected"), [((0.25, 1.0), 1.0), ((5.0, 10.0), 5.0)])
def test_retry_after_stays_within_its_bounds(bounds: tuple[float, float], expected: float) -> None:
    shed = saturated(1.0, bounds).check(1.0)
    assert shed is not None and shed.retry_after == pytest.approx(expected)


def test_a_held_connection_is_shed_whatever_the_load() -> None:
    idle = Admission(10.0)
    assert idle.check(0.0) is None
    assert idle.check(0.0, held=0.7) == Shed(0.7, HELD)


def test_retry_after_ms_rounds_up() -> None:
    assert Shed(0.0012, OVERLOADED).retry_after_ms == 2
    assert Shed(1.5, HELD).retry_after_ms == 1500
    assert Shed(0.0, HELD).retry_after_ms == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"budget": -1.0}, "budget"), ({"budget": 1.0, "retry_after": (0.0, 1.0)}, "retry_after"),
     ({"budget": 1.0, "retry_after": (2.0, 1.0)}, "retry_after")],
)
def test_bad_settings_are_refused_when_the_options_are_made(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Admission(**kwargs)
    options = {"admission_budget": kwargs["budget"]}
    if "retry_after" in kwargs:
        options["admission_retry_after"] = kwargs["retry_after"]
    with pytest.raises(ValueError, match=match):
        ServerOptions(**options)


# -------------------------------------------------------------------------------------- the connection's hold
def test_a_connection_holds_later_messages_until_the_retry_time() -> None:
    state = p.ConnectionState()
    assert state.held(5.0) == 0.0
    state.hold(10.0, 2.0)
    assert state.held(10.5) == pytest.approx(1.5)
    state.hold(10.5, 0.5)  # a shorter hold never shortens the one in force
    assert state.held(11.0) == pytest.approx(1.0)
    assert state.held(12.0) == 0.0 and state.held(11.0) == 0.0  # over, and forgotten


def test_busy_frame() -> None:
    frame = p.busy_frame("m-1", 1250, OVERLOADED)
    assert frame == {"type": "busy", "reply_to": "m-1", "retry_after_ms": 1250, "reason": "overloaded"}
    assert json.loads(p.encode_frame(frame)) == frame
    assert '"type": "busy", "reply_to": message_id, "retry_after_ms": int' in (p.__doc__ or "")  # the spec says so


# ---------------------------------------------------------------------------------------------- a real server
async def recv(ws: ClientConnection, timeout: float = 10.0) -> dict[str, Any]:
    frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    assert isinstance(frame, dict)
    return frame


async def answer(ws: ClientConnection) -> dict[str, Any]:
    """The next frame that is not a ``typing`` one (those come whenever a turn starts)."""
    while True:
        frame = await recv(ws)
        if frame["type"] != "typing":
            return frame


def message(message_id: str, text: str) -> str:
    return json.dumps({"type": "message", "conversation_id": None, "message_id": message_id, "text": text})


async def until(condition: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def ready_status(http: httpx.AsyncClient, server: Server) -> int:
    return (await http.get(server.url + "/ready")).status_code


async def hold_turns(server: Server, count: int) -> list[ClientConnection]:
    """``count`` customers with one turn each in flight (the backend holds them): connected first, then their
    messages sent back to back, so they are admitted before the estimate has grown."""
    sockets = [await connect(server.ws_url) for _ in range(count)]
    for i, ws in enumerate(sockets):
        await ws.send(message(f"hold-{i}", f"hold {i}"))
    for i, ws in enumerate(sockets):
        frames = [await answer(ws), await answer(ws)]
        assert sorted(f["type"] for f in frames) == ["ack", "session"], frames  # admitted (session: when it runs)
    return sockets


def shed_counts(metrics: Metrics) -> dict[str, float]:
    return {reason: metrics.value("kefu_shed_turns_total", {"reason": reason}) for reason in (OVERLOADED, HELD)}


async def test_a_saturated_worker_answers_busy_and_the_retries_are_answered_once_in_order(
    backend: EchoBackend,
) -> None:
    backend.gate = asyncio.Event()  # nothing completes: the estimate grows with time alone
    metrics = Metrics()
    # retry_after at least 1.5 s: time enough to show that the hold outlives the overload (below) on a slow machine
    options = ServerOptions(admission_budget=1.0, admission_retry_after=(1.5, 10.0), public_metrics=True)
    async with run_server(backend, port=0, options=options, metrics=metrics) as server, httpx.AsyncClient() as http:
        ready = await http.get(server.url + "/ready")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "queue_delay_ms": 0.0, "budget_ms": 1000.0}
        holders = await hold_turns(server, 4)
        await until(lambda: _is(ready_status(http, server), 503))  # 4 turns, none done after 0.25 s: over 1 s
        saturated = await http.get(server.url + "/ready")
        assert saturated.json()["status"] == "saturated" and saturated.json()["queue_delay_ms"] > 1000.0
        assert int(saturated.headers["Retry-After"]) >= 2

        # A resend of a turn already in flight is only acknowledged, never shed.
        await holders[0].send(message("hold-0", "hold 0"))
        assert await answer(holders[0]) == {"type": "ack", "message_id": "hold-0"}

        # A new customer pipelines two messages: the first is shed (overloaded), the second held behind it.
        async with connect(server.ws_url) as ws:
            await ws.send(json.dumps({"type": "hello", "conversation_id": None}))
            assert (await recv(ws))["type"] == "session"
            await ws.send(message("m1", "first"))
            await ws.send(message("m2", "second"))
            first, second = await answer(ws), await answer(ws)
            assert first["type"] == second["type"] == "busy"  # no ack: not queued
            assert (first["reply_to"], first["reason"]) == ("m1", OVERLOADED)
            assert (second["reply_to"], second["reason"]) == ("m2", HELD)
            assert first["retry_after_ms"] >= 1500 and 0 < second["retry_after_ms"] <= first["retry_after_ms"]
            assert "m1" not in backend.started and "m2" not in backend.started  # nothing of them ran or was stored
            assert shed_counts(metrics) == {OVERLOADED: 1.0, HELD: 1.0}
            body = (await http.get(server.url + "/metrics")).text
            assert 'kefu_shed_turns_total{reason="overloaded"} 1.0' in body
            assert "kefu_admission_budget_seconds 1.0" in body

            backend.gate.set()  # the worker drains
            for i, holder in enumerate(holders):
                final = [f async for f in _frames_until(holder, "message")][-1]
                assert final["reply_to"] == f"hold-{i}"
                await holder.close()
            await until(lambda: _is(ready_status(http, server), 200))
            assert server.admission.check(time.monotonic()) is None  # the worker would admit a new customer now
            # ...but not this one's next message before its shed ones are retried: it would overtake them.
            await ws.send(message("m3", "third"))
            third = await answer(ws)
            assert (third["type"], third["reply_to"], third["reason"]) == ("busy", "m3", HELD)

            # The customer retries after retry_after_ms, in order, with the same ids: each runs once.
            await asyncio.sleep(first["retry_after_ms"] / 1000.0)
            for message_id, text in (("m1", "first"), ("m2", "second"), ("m3", "third")):
                await ws.send(message(message_id, text))
            frames = [f async for f in _frames_until(ws, "message", count=3)]
            assert [f["message_id"] for f in frames if f["type"] == "ack"] == ["m1", "m2", "m3"]
            finals = [f for f in frames if f["type"] == "message"]
            assert [(f["reply_to"], f["text"], f["replayed"]) for f in finals] == [
                ("m1", "FIRST", False), ("m2", "SECOND", False), ("m3", "THIRD", False)
            ]
            # A second resend of an answered message is replayed from the store, not run again.
            await ws.send(message("m1", "first"))
            replay = [f async for f in _frames_until(ws, "message")][-1]
            assert (replay["reply_to"], replay["replayed"]) == ("m1", True)
    assert sorted(backend.started) == sorted(["hold-0", "hold-1", "hold-2", "hold-3", "m1", "m2", "m3"])
    (conversation,) = [c for c in backend.conversations.values() if any(
        e.message_id == "m1" for e in c["events"])]
    assert [e.message_id for e in conversation["events"] if e.type == "user_message"] == ["m1", "m2", "m3"]
    assert shed_counts(metrics) == {OVERLOADED: 1.0, HELD: 2.0}  # the retries were admitted


async def _is(status: Awaitable[int], expected: int) -> bool:
    return await status == expected


async def _frames_until(ws: ClientConnection, type_: str, count: int = 1) -> Any:
    """Yield frames until ``count`` of ``type_`` have arrived (the last one included)."""
    seen = 0
    while seen < count:
        frame = await recv(ws)
        yield frame
        if frame["type"] == type_:
            seen += 1


async def test_without_a_budget_a_saturated_worker_queues_everything_and_stays_ready(backend: EchoBackend) -> None:
    backend.gate = asyncio.Event()
    async with run_server(backend, port=0, options=ServerOptions()) as server, httpx.AsyncClient() as http:
        holders = await hold_turns(server, 4)
        await asyncio.sleep(0.3)
        assert server.admission.delay.estimate(time.monotonic()) > 1.0  # estimated all the same (for /metrics)
        ready = await http.get(server.url + "/ready")
        assert ready.status_code == 200 and ready.json()["budget_ms"] is None
        await holders[0].send(message("more", "one more"))
        assert await answer(holders[0]) == {"type": "ack", "message_id": "more"}
        backend.gate.set()
        for holder in holders:
            await holder.close()


class SerialBackend(EchoBackend):
    """A slow engine: one turn at a time (a lock), each taking at least ``seconds``, like a worker with one core."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self._lock = asyncio.Lock()

    async def handle_message(
        self,
        conversation_id: str | None,
        message_id: str,
        text: str,
        on_token: Callable[[str], Awaitable[None]],
        *,
        create: NewConversation | None = None,
    ) -> TurnReply:
        async with self._lock:
            await asyncio.sleep(self.seconds)
            return await super().handle_message(conversation_id, message_id, text, on_token, create=create)


class RetryingCustomer:
    """A client that behaves as the widget does: sends its messages as they come, and on ``busy`` holds that one and
    every later one, then resends them in order (same ids) after ``retry_after_ms`` plus jitter."""

    def __init__(self, index: int, texts: list[str]) -> None:
        self.ids = [f"c{index}m{k}" for k in range(len(texts))]
        self.texts = dict(zip(self.ids, texts, strict=True))
        self.replies: list[str] = []  # reply_to of each final message, in arrival order
        self.busy: list[dict[str, Any]] = []
        self.held: list[str] = []
        self.retry_at = 0.0

    async def run(self, server: Server, first: int) -> None:
        async with connect(server.ws_url) as ws:
            await ws.send(json.dumps({"type": "hello", "conversation_id": None}))
            assert (await recv(ws))["type"] == "session"
            sent = 0

            async def send(message_id: str) -> None:
                if self.held and message_id not in self.held:
                    self.held.append(message_id)  # queue behind the held ones
                    return
                await ws.send(message(message_id, self.texts[message_id]))

            for message_id in self.ids[:first]:  # a burst, then one more per reply
                await send(message_id)
                sent += 1
            while len(self.replies) < len(self.ids):
                timeout = max(0.01, self.retry_at - time.monotonic()) if self.held else 20.0
                try:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
                except TimeoutError:
                    assert self.held, "no frame for 20 s"
                    held, self.held = self.held, []
                    for message_id in held:
                        await ws.send(message(message_id, self.texts[message_id]))
                    continue
                if frame["type"] == "busy":
                    self.busy.append(frame)
                    if frame["reply_to"] not in self.held:
                        self.held.append(frame["reply_to"])
                        self.held.sort(key=self.ids.index)
                    self.retry_at = max(self.retry_at, time.monotonic() + frame["retry_after_ms"] / 1000.0 * 1.2)
                elif frame["type"] == "message":
                    self.replies.append(frame["reply_to"])
                    if sent < len(self.ids):
                        await send(self.ids[sent])
                        sent += 1
                else:
                    assert frame["type"] in ("ack", "typing", "token", "session"), frame


async def test_slow_engine_saturated_by_real_clients_loses_nothing_and_keeps_order() -> None:
    """Six customers on a one-at-a-time engine (50 ms a turn, budget 300 ms): each sends two messages at once and
    one more per reply. When the first reply comes, about ten turns are ahead of any new message, so new messages
    are shed; every one of them is retried until answered, exactly once and in its customer's order."""
    backend = SerialBackend(0.05)
    metrics = Metrics()
    options = ServerOptions(admission_budget=0.3, admission_retry_after=(0.1, 2.0), turn_timeout=30.0)
    customers = [RetryingCustomer(i, [f"c{i} message {k}" for k in range(4)]) for i in range(6)]
    async with run_server(backend, port=0, options=options, metrics=metrics) as server:
        await asyncio.wait_for(asyncio.gather(*(c.run(server, first=2) for c in customers)), 60.0)
        assert server.admission.delay.in_flight == 0
    busy = [frame for c in customers for frame in c.busy]
    assert busy, "nothing was shed"
    assert sum(shed_counts(metrics).values()) == len(busy)
    assert metrics.value("kefu_turns_total", {"outcome": "ok"}) == 24
    for c in customers:
        assert c.replies == c.ids  # every message answered once, in order
        (conversation,) = [
            conv for conv in backend.conversations.values()
            if any(e.message_id == c.ids[0] for e in conv["events"])
        ]
        stored = [e.message_id for e in conversation["events"] if e.type == "user_message"]
        assert stored == c.ids  # nothing lost, duplicated or reordered in the store
    assert sorted(backend.started) == sorted(i for c in customers for i in c.ids)  # each turn ran once
    assert all(math.isfinite(f["retry_after_ms"]) and f["retry_after_ms"] >= 100 for f in busy)
