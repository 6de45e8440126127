"""Turns per client address (``ServerOptions.turns_per_address``): one address's burst of conversations waits
behind its own turns instead of running beside every other customer's (issue 19's hello flood).

The pure core (:class:`channels.limits.AddressTurns`) is stepped by hand; the server test performs the attack:
five conversations from one address at once, and a customer from another address, on a backend that holds turns.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from websockets.asyncio.client import ClientConnection, connect

from channels.limits import AddressTurns
from channels.server import ServerOptions, run_server
from tests.channels.conftest import EchoBackend
from tests.channels.test_server import hello, message, recv_until, until

ASYNC = pytest.mark.asyncio(loop_scope="session")


# ------------------------------------------------------------------------------------------------- the pure core
def test_an_address_runs_at_most_its_share_and_the_others_wait_in_order() -> None:
    turns: AddressTurns[str] = AddressTurns(2)
    assert turns.enter("a", "a1") and turns.enter("a", "a2")
    assert not turns.enter("a", "a3") and not turns.enter("a", "a4")
    assert turns.enter("b", "b1")  # another address is not behind a's turns
    assert (turns.running("a"), turns.waiting("a"), turns.running("b")) == (2, 2, 1)
    assert turns.leave("a") == "a3"  # a3 takes the place a1 left (already counted as running)
    assert (turns.running("a"), turns.waiting("a")) == (2, 1)
    assert turns.leave("a") == "a4"
    assert turns.leave("a") is None and turns.leave("a") is None
    assert turns.leave("b") is None
    assert (turns.running("a"), turns.running("b")) == (0, 0)
    assert repr(turns) == "AddressTurns(per_address=2, running=0, waiting=0)"  # and no address kept


def test_a_waiter_that_gives_up_is_withdrawn_or_passes_its_place_on() -> None:
    turns: AddressTurns[str] = AddressTurns(1)
    assert turns.enter("a", "a1")
    assert not turns.enter("a", "a2") and not turns.enter("a", "a3")
    assert turns.cancel("a", "a2")  # still queued: withdrawn
    assert turns.leave("a") == "a3"
    assert not turns.cancel("a", "a3")  # it had been handed the place: the caller leaves it instead
    assert turns.leave("a") is None and turns.running("a") == 0


def test_no_limit_and_bad_limits() -> None:
    turns: AddressTurns[str] = AddressTurns(None)
    assert all(turns.enter("a", f"a{i}") for i in range(50))
    with pytest.raises(ValueError, match="turns per address"):
        AddressTurns(0)
    with pytest.raises(ValueError, match="turns_per_address"):
        ServerOptions(turns_per_address=0)


# ------------------------------------------------------------------------------------------------- the server
async def _open(url: str, address: str, message_id: str) -> ClientConnection:
    ws = await connect(url, local_addr=(address, 0))
    await hello(ws)
    await ws.send(message(message_id, f"hello {message_id}"))
    return ws


@ASYNC
async def test_a_burst_from_one_address_waits_behind_its_own_turns_not_the_others() -> None:
    backend = EchoBackend()
    backend.gate = asyncio.Event()  # every turn that starts is held until the gate opens
    options = ServerOptions(turns_per_address=2, conversation_rate=None)
    async with run_server(backend, options=options) as server, contextlib.AsyncExitStack() as stack:
        flood = [await _open(server.ws_url, "127.0.0.1", f"f{i}") for i in range(5)]
        for ws in flood:
            stack.push_async_callback(ws.close)
        await until(lambda: len(backend.started) == 2)
        customer = await _open(server.ws_url, "127.0.0.2", "c1")
        stack.push_async_callback(customer.close)
        # The customer's turn starts at once, beside the flood's two; the flood's three others wait for theirs.
        await until(lambda: "c1" in backend.started)
        await asyncio.sleep(0.1)
        assert len(backend.started) == 3 and sum(m.startswith("f") for m in backend.started) == 2, backend.started
        backend.gate.set()
        for i, ws in enumerate(flood):  # every flood message is answered in the end: waited, not refused
            frames = await recv_until(ws, "message")
            assert frames[-1]["reply_to"] == f"f{i}" and frames[-1]["text"] == f"HELLO F{i}"
        assert (await recv_until(customer, "message"))[-1]["text"] == "HELLO C1"
        assert backend.started.index("c1") < max(backend.started.index(f"f{i}") for i in range(2, 5))
    assert repr(server._address_turns) == "AddressTurns(per_address=2, running=0, waiting=0)"


@ASYNC
async def test_a_waiting_turn_whose_connection_closes_gives_its_place_back() -> None:
    backend = EchoBackend()
    backend.gate = asyncio.Event()
    options = ServerOptions(turns_per_address=1, conversation_rate=None, close_grace=0.5)
    async with run_server(backend, options=options) as server:
        first = await _open(server.ws_url, "127.0.0.1", "a1")
        await until(lambda: backend.started == ["a1"])
        second = await _open(server.ws_url, "127.0.0.1", "a2")
        await asyncio.sleep(0.1)
        assert backend.started == ["a1"]  # a2 waits for a1's place
        await second.close()  # a2 gives up while waiting
        await asyncio.sleep(0.1)
        third = await _open(server.ws_url, "127.0.0.1", "a3")
        backend.gate.set()
        assert (await recv_until(first, "message"))[-1]["reply_to"] == "a1"
        assert (await recv_until(third, "message"))[-1]["reply_to"] == "a3"
        for ws in (first, third):
            await ws.close()
        await until(lambda: repr(server._address_turns) == "AddressTurns(per_address=1, running=0, waiting=0)")
