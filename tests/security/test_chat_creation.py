"""Issue 19, "unlimited anonymous conversations": a script opens sockets and sends ``hello`` with a null id (then a
message) in a loop, filling the store and the console list with empty rows and slowing every customer down.

Each test performs the flood with real websockets clients against the real ``channels.server.Server`` over the
real engine and store (SQLite and PostgreSQL). Before the fix every ``hello`` created a row and nothing limited
how many one address or one connection made; now ``hello`` creates nothing, the first message creates the row, and
new conversations are limited per client address (a token bucket) and per connection. The figure (2,000 hellos,
other customers' latency) is ``benchmarks/security_hello.py``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from websockets.asyncio.client import ClientConnection, connect

from channels.server import Server, ServerOptions, run_server
from dialogue.store import Store
from kefu.serving import ServingBackend
from tests.channels.conftest import light_engine
from tests.channels.test_server import message, recv, session

pytestmark = pytest.mark.asyncio(loop_scope="session")

LIMITED = "rate_limited"  # the wire error code of a first message over a limit on new conversations
SLOW_REFILL = 0.001  # new conversations per second and address: nothing refills during a test


def chat_options(**limits: Any) -> ServerOptions:
    """The tests' limits; refusals answered at once unless a test sets ``refusal_delay`` (its own test below)."""
    return ServerOptions(rate=1000, burst=1000, max_connections=500, **{"refusal_delay": 0.0, **limits})


@pytest_asyncio.fixture(loop_scope="session")
async def chat_server(store: Store, request: pytest.FixtureRequest) -> AsyncIterator[Server]:
    """The production chat stack over a real engine and store; limits from ``limits(...)`` (indirect param)."""
    options = chat_options(**getattr(request, "param", {}))
    async with run_server(ServingBackend(light_engine(store)), options=options) as server:
        yield server


def limits(**values: Any) -> pytest.MarkDecorator:
    """Run the test against a ``chat_server`` with these ``ServerOptions`` limits."""
    return pytest.mark.parametrize("chat_server", [values], indirect=True, ids=["limits"])


async def first_message(ws: ClientConnection, message_id: str) -> dict[str, Any]:
    """``hello`` with a null id, then a message: the frame that answers the message (its reply or an error)."""
    await session(ws)
    await ws.send(message(message_id, "hi there"))
    return await answer(ws, message_id)


async def answer(ws: ClientConnection, message_id: str) -> dict[str, Any]:
    while True:
        frame = await recv(ws)
        if frame["type"] in ("message", "error") and frame.get("reply_to") == message_id:
            return frame


async def flood(url: str, sockets: int, per_socket: int, **connect_kwargs: Any) -> list[dict[str, Any]]:
    """``sockets`` connections, each sending ``per_socket`` x (hello null + message): every answer frame."""

    async def one(k: int) -> list[dict[str, Any]]:
        async with connect(url, **connect_kwargs) as ws:
            return [await first_message(ws, f"s{k}m{j}") for j in range(per_socket)]

    return [frame for frames in await asyncio.gather(*(one(k) for k in range(sockets))) for frame in frames]


def outcomes(frames: list[dict[str, Any]]) -> tuple[int, int]:
    created = sum(f["type"] == "message" for f in frames)
    limited = sum(f["type"] == "error" and f["code"] == LIMITED for f in frames)
    assert created + limited == len(frames), frames
    return created, limited


# ------------------------------------------------------------------------------------------------ hello alone
async def test_hello_alone_creates_no_conversation(chat_server: Server, store: Store) -> None:
    async with connect(chat_server.ws_url) as ws:
        ids = {(await session(ws))["conversation_id"] for _ in range(40)}
    assert len(ids) == 40  # each hello got a fresh id and secret...
    assert await store.count_conversations() == 0  # ...and the store got nothing, so the console lists nothing


# -------------------------------------------------------------------------------------------- per address
@limits(conversation_rate=SLOW_REFILL, conversation_burst=5, conversations_per_connection=None)
async def test_new_conversations_per_address_are_limited_and_others_are_served(
    chat_server: Server, store: Store
) -> None:
    frames = await flood(chat_server.ws_url, sockets=6, per_socket=3)  # 18 attempts from 127.0.0.1
    assert outcomes(frames) == (5, 13)
    assert all("new conversations" in f["message"] for f in frames if f["type"] == "error")
    assert await store.count_conversations() == 5
    # Another customer (another address) is not affected by the flood.
    async with connect(chat_server.ws_url, local_addr=("127.0.0.2", 0)) as ws:
        assert (await first_message(ws, "other"))["type"] == "message"
    assert await store.count_conversations() == 6


@limits(conversation_rate=SLOW_REFILL, conversation_burst=3, conversations_per_connection=None)
async def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(chat_server: Server, store: Store) -> None:
    frames = []
    for k in range(8):  # a new spoofed "client address" per connection
        async with connect(chat_server.ws_url, additional_headers={"X-Forwarded-For": f"203.0.113.{k}"}) as ws:
            frames.append(await first_message(ws, f"m{k}"))
    assert outcomes(frames) == (3, 5)
    assert await store.count_conversations() == 3


@limits(conversation_rate=SLOW_REFILL, conversation_burst=2, conversations_per_connection=None,
                    trusted_proxies=("127.0.0.0/30",))
async def test_behind_a_trusted_proxy_the_forwarded_client_address_counts(chat_server: Server) -> None:
    async def attempt(forwarded: str, k: int) -> str:
        async with connect(chat_server.ws_url, additional_headers={"X-Forwarded-For": forwarded}) as ws:
            return str((await first_message(ws, f"m{k}"))["type"])

    # The proxy appends the real client on the right; what the client wrote on the left is not believed.
    mallory = [await attempt(f"10.9.9.{k}, 198.51.100.7", k) for k in range(4)]
    carol = [await attempt("198.51.100.8", 10 + k) for k in range(2)]
    hops = [await attempt("198.51.100.9, 127.0.0.2", 20 + k) for k in range(3)]  # a second trusted hop
    assert mallory == ["message", "message", "error", "error"]
    assert carol == ["message", "message"]
    assert hops == ["message", "message", "error"]


# ---------------------------------------------------------------------------------------- per connection
@limits(conversations_per_connection=3)
async def test_new_conversations_per_connection_are_limited(chat_server: Server, store: Store) -> None:
    async with connect(chat_server.ws_url) as ws:
        frames = [await first_message(ws, f"m{j}") for j in range(8)]
        assert outcomes(frames) == (3, 5)
        # The conversations it has are still served; a refused session can be resumed elsewhere later.
        resumed = await session(ws)
        assert resumed["secret"]
    assert await store.count_conversations() == 3


@limits(conversation_rate=SLOW_REFILL, conversation_burst=1, conversations_per_connection=None)
async def test_a_refused_first_message_stores_nothing_and_existing_conversations_go_on(
    chat_server: Server, store: Store
) -> None:
    async with connect(chat_server.ws_url) as first, connect(chat_server.ws_url) as second:
        assert (await first_message(first, "a1"))["type"] == "message"
        refused = await first_message(second, "b1")
        assert refused == {"type": "error", "code": LIMITED, "message": refused["message"], "reply_to": "b1"}
        await first.send(message("a2", "still here"))  # an existing conversation's turns are not limited
        assert (await answer(first, "a2"))["type"] == "message"
    assert await store.count_conversations() == 1
    assert json.dumps(refused).count("hi there") == 0


@limits(conversations_per_connection=1, conversation_rate=None, refusal_delay=0.5)
async def test_a_refused_new_conversation_is_answered_late_and_costs_no_one_else(chat_server: Server) -> None:
    """The tarpit: a first message over a limit on new conversations waits ``refusal_delay`` to twice that for
    its answer (a client opening conversations in a loop gets one answer per connection and second), while another
    customer's turn is answered meanwhile."""
    async with connect(chat_server.ws_url) as ws, connect(chat_server.ws_url, local_addr=("127.0.0.2", 0)) as other:
        assert (await first_message(ws, "a1"))["type"] == "message"
        started = time.monotonic()
        await session(ws)
        await ws.send(message("a2", "hi there"))
        await session(other)
        await other.send(message("b1", "hello"))
        answered_other = await answer(other, "b1")
        other_at = time.monotonic() - started
        refused = await answer(ws, "a2")
        refused_at = time.monotonic() - started
    assert answered_other["type"] == "message" and other_at < 0.5
    assert refused["type"] == "error" and refused["code"] == LIMITED
    assert 0.5 <= refused_at < 2.5
