"""The rating prompt survives a reload: a resume (``hello`` with id and secret) of a resolved, unrated conversation
gets its ``resolved`` frame again after the history; a rated or reopened one does not. In the pure core
(:func:`channels.protocol.resume_frames`) and over a real WebSocket, on the echo backend and on the real store."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from channels import protocol as p
from channels.server import Server, ServerOptions, run_server
from dialogue.types import AGENT_MESSAGE, BOT_MESSAGE, RATING, REOPENED, RESOLVED, USER_MESSAGE, Event
from tests.channels.conftest import ConsoleEnv, EchoBackend
from tests.channels.test_server import recv, recv_until

NOW = dt.datetime(2026, 12, 6, tzinfo=dt.UTC)


def events(*types: str) -> list[Event]:
    """Events of conversation ``c1`` in order; message events carry a text (so they show in the history)."""
    texts = {USER_MESSAGE: "hi", BOT_MESSAGE: "HI", AGENT_MESSAGE: "hello, Amy here"}
    return [Event("c1", seq, 1, t, {"text": texts[t]} if t in texts else {"agent": "amy"}, NOW)
            for seq, t in enumerate(types, start=1)]


@pytest.mark.parametrize(("types", "asks"), [
    ((USER_MESSAGE, BOT_MESSAGE), False),
    ((USER_MESSAGE, AGENT_MESSAGE, RESOLVED), True),
    ((USER_MESSAGE, RESOLVED, RATING), False),
    ((USER_MESSAGE, RESOLVED, REOPENED), False),  # staff reopened it, or the customer wrote again
    ((USER_MESSAGE, RESOLVED, RATING, USER_MESSAGE, REOPENED, RESOLVED), True),  # a new resolution is asked anew
    ((USER_MESSAGE, RESOLVED, REOPENED, RESOLVED), True),
])
def test_resume_frames_ask_again_while_the_resolution_is_unrated(types: tuple[str, ...], asks: bool) -> None:
    given = events(*types)
    frames = p.resume_frames("c1", list(reversed(given)))  # order comes from seq, not from the list
    assert frames[0] == p.history_frame("c1", given)
    assert frames[1:] == ([{"type": "resolved", "conversation_id": "c1"}] if asks else [])
    assert p.awaiting_rating(given) is asks


def test_resume_frames_without_messages() -> None:
    assert p.resume_frames("c1", []) == []
    # No visible message (nothing for a history frame), but an unrated resolution still asks.
    assert p.resume_frames("c1", events(RESOLVED)) == [p.resolved_frame("c1")]


async def resume(ws: ClientConnection, cid: str, secret: str) -> list[dict[str, Any]]:
    """``hello`` with the stored id and secret; the frames it is answered with, up to the history."""
    await ws.send(json.dumps({"type": "hello", "conversation_id": cid, "secret": secret}))
    return await recv_until(ws, "history")


async def rate(ws: ClientConnection, score: int, comment: str | None = None) -> dict[str, Any]:
    """Send a rating; its answer (``rating_ack`` or ``error``), and nothing may come before it."""
    await ws.send(json.dumps({"type": "rating", "score": score, "comment": comment}))
    return await recv(ws)


async def test_a_reload_gets_the_rating_prompt_again(server: Server, backend: EchoBackend) -> None:
    async with connect(server.ws_url) as ws:
        await ws.send(json.dumps({"type": "hello", "conversation_id": None}))
        issued = await recv(ws)
        cid, secret = issued["conversation_id"], issued["secret"]
        await ws.send(json.dumps({"type": "message", "message_id": "m1", "text": "my kettle broke"}))
        await recv_until(ws, "message")
        backend.resolve(cid)
        assert (await recv_until(ws, "resolved"))[-1] == p.resolved_frame(cid)  # the live push (0.5 s poll)

    # The page is reloaded before the customer rates: the resume asks again, right after the history.
    async with connect(server.ws_url) as ws:
        frames = await resume(ws, cid, secret)
        assert [f["type"] for f in frames] == ["session", "history"]
        assert [m["text"] for m in frames[1]["messages"]] == ["my kettle broke", "MY KETTLE BROKE"]
        assert await recv(ws) == {"type": "resolved", "conversation_id": cid}
        # The pusher does not send the same resolution a second time: the next frame answers the rating.
        assert await rate(ws, 4, "write to jane.doe@example.com") == p.rating_ack_frame(cid, 4)
    rating = [e for e in backend.conversations[cid]["events"] if e.type == RATING]
    assert [e.data["score"] for e in rating] == [4] and "jane.doe" not in str(rating[0].data["comment"])

    # Rated: a later resume does not ask again (the next frame is the answer to a second rating).
    async with connect(server.ws_url) as ws:
        assert [f["type"] for f in await resume(ws, cid, secret)] == ["session", "history"]
        assert (await rate(ws, 1))["code"] == p.ALREADY_RATED
        # The customer writes again: reopened, and a resume after that does not ask either.
        await ws.send(json.dumps({"type": "message", "message_id": "m2", "text": "one more thing"}))
        await recv_until(ws, "message")
    async with connect(server.ws_url) as ws:
        assert [f["type"] for f in await resume(ws, cid, secret)] == ["session", "history"]
        assert (await rate(ws, 5))["code"] == p.NOT_RESOLVED


async def test_a_wrong_secret_gets_no_prompt(server: Server, backend: EchoBackend) -> None:
    async with connect(server.ws_url) as ws:
        await ws.send(json.dumps({"type": "hello", "conversation_id": None}))
        cid = (await recv(ws))["conversation_id"]
        await ws.send(json.dumps({"type": "message", "message_id": "m1", "text": "hello"}))
        await recv_until(ws, "message")
    backend.resolve(cid)
    async with connect(server.ws_url) as ws:
        await ws.send(json.dumps({"type": "hello", "conversation_id": cid, "secret": "x" * 43}))
        assert (await recv(ws))["code"] == p.RESUME_DENIED  # and nothing else: no session, history or prompt
        assert (await rate(ws, 5))["code"] == p.BAD_FRAME


async def test_resume_on_the_real_store(console_env: ConsoleEnv) -> None:
    async with run_server(console_env.engine, port=0, options=ServerOptions(push_interval=None)) as server:
        async with connect(server.ws_url) as ws:
            await ws.send(json.dumps({"type": "hello", "conversation_id": None}))
            issued = await recv(ws)
            cid, secret = issued["conversation_id"], issued["secret"]
            await ws.send(json.dumps({"type": "message", "message_id": "m1", "text": "I want to complain"}))
            await recv_until(ws, "message")
        await console_env.console.take_over(cid, "agent")
        await console_env.console.agent_message(cid, "agent", "Sorry about that, fixed.", "a1")
        await console_env.console.resolve(cid, "agent")
        # No pusher here (push_interval=None): the prompt can only come from the resume itself.
        async with connect(server.ws_url) as ws:
            frames = await resume(ws, cid, secret)
            assert frames[-1]["messages"][-1]["text"] == "Sorry about that, fixed."
            assert await recv(ws) == p.resolved_frame(cid)
            assert await rate(ws, 2) == p.rating_ack_frame(cid, 2)
        async with connect(server.ws_url) as ws:
            assert [f["type"] for f in await resume(ws, cid, secret)] == ["session", "history"]
            assert (await rate(ws, 3))["code"] == p.ALREADY_RATED
    assert (await console_env.store.summary(cid)).rating == 2
