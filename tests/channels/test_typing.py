"""Typing indicators both ways and the agent's name and avatar: the pure protocol (frames, board, limits), the chat
server over a real WebSocket with the ops console on one real store, and the console's typing routes.

Typing is presence, not data: the tests check that none of it reaches the events table.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa
from websockets.asyncio.client import ClientConnection, connect

from channels import protocol as p
from channels.errors import ProtocolError
from channels.ops import OpsServer, run_ops_server
from channels.server import Server, ServerOptions, run_server
from dialogue.store import events as events_table
from dialogue.types import AGENT_MESSAGE, Event
from tests.channels.conftest import ConsoleEnv
from tests.channels.test_ops import Staff, as_role, error
from tests.channels.test_server import recv, recv_type, session, turn


# ------------------------------------------------------------------------------------------------ protocol
@pytest.mark.parametrize("state", [True, False])
def test_typing_frame_parses(state: bool) -> None:
    assert p.parse_client_frame(json.dumps({"type": "typing", "state": state, "extra": 1})) == p.Typing(state)


@pytest.mark.parametrize("raw", [
    {"type": "typing"}, {"type": "typing", "state": None}, {"type": "typing", "state": 1},
    {"type": "typing", "state": "true"}, {"type": "typing", "state": [True]}, {"type": "typing", "on": True},
])
def test_malformed_typing_frames_are_bad_frame_naming_the_field(raw: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError) as caught:
        p.parse_client_frame(json.dumps(raw))
    assert caught.value.code == p.BAD_FRAME and "'state'" in caught.value.reason
    frame = p.error_frame_for(caught.value)
    assert frame == {"type": "error", "code": "bad_frame", "message": "field 'state' must be true or false"}


def test_agent_card_is_plain_text_initials_and_a_bounded_name() -> None:
    assert p.agent_card("amy") == {"name": "amy", "avatar": "A"}
    assert p.agent_card("amy.lee") == {"name": "amy.lee", "avatar": "AL"}
    assert p.agent_card("王小明") == {"name": "王小明", "avatar": "王"}
    assert p.agent_card("__") == {"name": "__", "avatar": "?"}
    markup = p.agent_card("<img src=x onerror=alert(1)>")
    assert markup["name"] == "<img src=x onerror=alert(1)>" and markup["avatar"] == "IS"  # text: the widget escapes
    assert len(p.agent_card("x" * 500)["name"]) == p.MAX_AGENT_NAME_CHARS
    assert p.agent_typing_frame(True, "amy") == {"type": "agent_typing", "state": True,
                                                 "agent": {"name": "amy", "avatar": "A"}}


def test_agent_message_frames_without_an_agent_keep_the_old_shape() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    old = p.agent_message_frame(Event("c1", 3, 1, AGENT_MESSAGE, {"text": "hi"}, now, "a1"))
    assert "agent" not in old and old["text"] == "hi"
    new = p.agent_message_frame(Event("c1", 3, 1, AGENT_MESSAGE, {"text": "hi", "agent": "bo"}, now, "a1"))
    assert new["agent"] == {"name": "bo", "avatar": "B"}


def test_board_expires_customer_typing_and_false_clears_it() -> None:
    board = p.TypingBoard(ttl=6.0)
    assert not board.customer_typing("c1", 0.0)
    board.customer("c1", True, 10.0)
    assert board.customer_typing("c1", 15.9) and not board.customer_typing("c2", 15.9)
    assert not board.customer_typing("c1", 16.0)  # 6 s without a refresh
    board.customer("c1", True, 20.0)
    board.customer("c1", True, 25.0)  # a refresh keeps it alive
    assert board.customer_typing("c1", 30.0)
    board.customer("c1", False, 30.5)
    assert not board.customer_typing("c1", 30.6)


def test_board_is_bounded() -> None:
    board = p.TypingBoard(max_conversations=2)
    for i, cid in enumerate(("a", "b", "c")):
        board.customer(cid, True, float(i))
        board.agent(cid, "amy", True, float(i))
    assert not board.customer_typing("a", 3.0) and board.customer_typing("c", 3.0)
    assert "customers=2, agents=2" in repr(board)


def test_board_tells_listeners_of_agent_typing_once_per_interval() -> None:
    board = p.TypingBoard(min_interval=1.0)
    told: list[tuple[str, dict[str, Any]]] = []
    unsubscribe = board.subscribe(lambda cid, frame: told.append((cid, frame)))
    assert board.agent("c1", "amy", True, 0.0)
    assert not board.agent("c1", "amy", True, 0.5)  # a repeat within the interval
    assert board.agent("c1", "amy", False, 0.6)  # a change always goes through
    assert board.agent("c1", "amy", True, 0.7) and board.agent("c1", "amy", True, 1.8)
    assert [f["state"] for _, f in told] == [True, False, True, True] and {c for c, _ in told} == {"c1"}
    unsubscribe()
    unsubscribe()  # twice is harmless
    board.agent("c1", "amy", False, 5.0)
    assert len(told) == 4


def test_the_typing_bucket_limits_a_flood() -> None:
    bucket = p.TokenBucket(p.TYPING_RATE, p.TYPING_BURST, now=0.0)
    allowed = sum(bucket.take(0.001 * i) for i in range(100))  # 100 frames in 0.1 s
    assert allowed == p.TYPING_BURST
    assert bucket.take(0.1 + 1.0 / p.TYPING_RATE)  # one more a second later
    assert p.typing_rate_limited().code == p.RATE_LIMITED


# ------------------------------------------------------------------------------------- chat server + console
@pytest_asyncio.fixture(loop_scope="session")
async def stack(console_env: ConsoleEnv) -> AsyncIterator[tuple[Server, OpsServer, p.TypingBoard]]:
    board = p.TypingBoard()  # one board for both, as in one `kefu serve` process
    async with run_server(console_env.engine, port=0, options=ServerOptions(push_interval=0.1), typing=board) as chat, \
            run_ops_server(console_env.console, port=0, typing=board) as ops:
        yield chat, ops, board


async def event_rows(console_env: ConsoleEnv) -> int:
    async with console_env.store._engine.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(events_table))).scalar_one())


async def customer_with_agent(ws: ClientConnection, ops: OpsServer) -> tuple[str, Staff]:
    """A customer's conversation (one turn over the socket) taken over by the ``agent`` account."""
    cid = str((await session(ws))["conversation_id"])
    await turn(ws, "m1", "hello")
    agent = await as_role(ops, "agent")
    res = await agent.post(f"/api/conversations/{cid}/takeover")
    assert res.status_code == 200, res.text
    await recv_type(ws, "handoff")
    return cid, agent


async def customer_typing(staff: Staff, cid: str) -> bool:
    res = await staff.get(f"/api/conversations/{cid}/typing")
    assert res.status_code == 200, res.text
    return bool(res.json()["customer"])


async def eventually(staff: Staff, cid: str, wanted: bool, timeout: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while await customer_typing(staff, cid) is not wanted:
        assert asyncio.get_running_loop().time() < deadline, f"customer typing never became {wanted}"
        await asyncio.sleep(0.02)


async def test_customer_typing_reaches_the_console_and_is_never_stored(
    stack: tuple[Server, OpsServer, p.TypingBoard], console_env: ConsoleEnv
) -> None:
    chat, ops, _ = stack
    async with connect(chat.ws_url) as ws:
        cid, agent = await customer_with_agent(ws, ops)
        viewer = await as_role(ops, "viewer")
        assert await customer_typing(viewer, cid) is False
        await ws.send(json.dumps({"type": "typing", "state": True}))
        await eventually(viewer, cid, True)
        await ws.send(json.dumps({"type": "typing", "state": False}))
        await eventually(viewer, cid, False)
        # Sending a message ends typing even if the widget never says so.
        await ws.send(json.dumps({"type": "typing", "state": True}))
        await eventually(agent, cid, True)
        await turn(ws, "m2", "my parcel is late")
        assert await customer_typing(agent, cid) is False
        stored = [e.type for e in await console_env.store.events(cid)]
        assert "typing" not in " ".join(stored) and stored.count("user_message") == 2
        # A closed socket forgets it too.
        await ws.send(json.dumps({"type": "typing", "state": True}))
        await eventually(agent, cid, True)
    await eventually(agent, cid, False)
    await agent.aclose()
    await viewer.aclose()


async def test_typing_frames_store_nothing(
    stack: tuple[Server, OpsServer, p.TypingBoard], console_env: ConsoleEnv
) -> None:
    chat, ops, _ = stack
    async with connect(chat.ws_url) as ws:
        cid, agent = await customer_with_agent(ws, ops)
        await asyncio.sleep(0.3)  # let the takeover settle
        before = await event_rows(console_env)
        for state in (True, False, True):
            await ws.send(json.dumps({"type": "typing", "state": state}))
        res = await agent.post(f"/api/conversations/{cid}/typing", {"state": True})
        assert res.status_code == 200 and res.json() == {"pushed": True}
        assert (await recv_type(ws, "agent_typing"))["state"] is True
        await eventually(agent, cid, True)
        assert await event_rows(console_env) == before
        await agent.aclose()


async def test_agent_typing_and_name_reach_the_widget(stack: tuple[Server, OpsServer, p.TypingBoard]) -> None:
    chat, ops, _ = stack
    async with connect(chat.ws_url) as ws, connect(chat.ws_url) as stranger:
        cid, agent = await customer_with_agent(ws, ops)
        await session(stranger)  # another customer's socket hears nothing of it
        res = await agent.post(f"/api/conversations/{cid}/typing", {"state": True})
        assert res.status_code == 200
        frame = await recv_type(ws, "agent_typing", timeout=1.0)
        assert frame == {"type": "agent_typing", "state": True, "agent": {"name": "agent", "avatar": "A"}}
        await agent.post(f"/api/conversations/{cid}/typing", {"state": False})
        assert (await recv_type(ws, "agent_typing", timeout=1.0))["state"] is False
        res = await agent.post(f"/api/conversations/{cid}/message", {"text": "Hi, <b>agent</b> here"})
        assert res.status_code == 200
        pushed = await recv_type(ws, "message")
        assert pushed["role"] == "agent" and pushed["agent"] == {"name": "agent", "avatar": "A"}
        with pytest.raises(TimeoutError):
            await recv(stranger, timeout=0.3)
        await agent.aclose()


async def test_a_typing_flood_is_rate_limited_and_the_connection_stays_usable(
    stack: tuple[Server, OpsServer, p.TypingBoard]
) -> None:
    chat, _, _ = stack
    async with connect(chat.ws_url) as ws:
        await session(ws)
        for _ in range(p.TYPING_BURST + 10):
            await ws.send(json.dumps({"type": "typing", "state": True}))
        await ws.send(json.dumps({"type": "typing", "state": "yes"}))
        answers = [await recv(ws)]
        while answers[-1].get("code") != "bad_frame":
            answers.append(await recv(ws))
        assert answers[-1]["message"] == "field 'state' must be true or false"
        limited = answers[:-1]
        assert len(limited) >= 5 and {(f["type"], f["code"]) for f in limited} == {("error", "rate_limited")}
        assert "typing" in limited[0]["message"]
        frames = await turn(ws, "m1", "hello")
        assert frames[-1]["type"] == "message"


# ---------------------------------------------------------------------------------------------- console routes
async def test_typing_routes_need_the_right_role_and_the_conversation_held(
    stack: tuple[Server, OpsServer, p.TypingBoard], console_env: ConsoleEnv
) -> None:
    _, ops, board = stack
    cid = await console_env.chat("hello")
    told: list[str] = []
    unsubscribe = board.subscribe(lambda c, frame: told.append(c))
    viewer, agent, admin = [await as_role(ops, r) for r in ("viewer", "agent", "admin")]
    assert (await viewer.get(f"/api/conversations/{cid}/typing")).json() == {"customer": False}
    res = await viewer.post(f"/api/conversations/{cid}/typing", {"state": True})
    assert res.status_code == 403
    res = await agent.post(f"/api/conversations/{cid}/typing", {"state": True})
    assert res.status_code == 409 and error(res) == "conflict"  # not taken over
    assert (await agent.post(f"/api/conversations/{cid}/takeover")).status_code == 200
    for bad in ({}, {"state": "yes"}, {"state": 1}):
        res = await agent.post(f"/api/conversations/{cid}/typing", bad)
        assert res.status_code == 400 and error(res) == "bad_request"
    res = await admin.post(f"/api/conversations/{cid}/typing", {"state": True})
    assert res.status_code == 409  # a colleague holds it
    res = await agent.post(f"/api/conversations/{cid}/typing", {"state": True}, csrf=None)
    assert res.status_code == 403 and error(res) == "csrf"
    assert told == []
    assert (await agent.post(f"/api/conversations/{cid}/typing", {"state": True})).status_code == 200
    assert told == [cid]
    assert (await agent.get("/api/conversations/nope!/typing")).status_code == 400
    unsubscribe()
    for client in (viewer, agent, admin):
        await client.aclose()
