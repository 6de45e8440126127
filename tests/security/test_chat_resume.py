"""Issue 19, "the conversation id is the only credential": Mallory has a customer's conversation id (a shared
screenshot, a support ticket, a log line) and tries to read the history, write turns and receive the agent's
messages. Each test performs the attack with a real websockets client against the real ``channels.server.Server``
over the real engine and store (SQLite and PostgreSQL), and asserts that it gets nothing.

Before the fix, ``hello`` with the id (any ``user``, or none) answered ``session`` + the whole ``history`` and the
connection then received the agent's pushes; a ``message`` naming the id wrote into the conversation.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from websockets.asyncio.client import ClientConnection, connect

from channels import protocol as p
from channels.server import Server, ServerOptions, run_server
from dialogue.engine import DialogueEngine
from dialogue.store import Store
from kefu.serving import ServingBackend
from tests.channels.conftest import light_engine
from tests.channels.test_server import message, recv, recv_until, session, turn

pytestmark = pytest.mark.asyncio(loop_scope="session")

ALICE_TEXT = "my order 12345 goes to 1 Main Street"
DENIED = "resume_denied"  # the wire error code (channels.protocol.RESUME_DENIED)


@dataclasses.dataclass
class Chat:
    server: Server
    engine: DialogueEngine
    store: Store


@pytest_asyncio.fixture(loop_scope="session")
async def chat(store: Store) -> AsyncIterator[Chat]:
    """The production chat stack: ``Server`` over ``ServingBackend`` over a real engine and store."""
    engine = light_engine(store)
    async with run_server(ServingBackend(engine), options=ServerOptions(push_interval=0.05)) as server:
        yield Chat(server, engine, store)


@dataclasses.dataclass
class Victim:
    conversation_id: str
    secret: str
    ws: ClientConnection


@pytest_asyncio.fixture(loop_scope="session")
async def alice(chat: Chat) -> AsyncIterator[Victim]:
    """Alice (site user ``alice``) chats once and keeps her connection open."""
    async with connect(chat.server.ws_url) as ws:
        issued = await session(ws, user="alice", language="en")
        await turn(ws, "a1", ALICE_TEXT)
        yield Victim(issued["conversation_id"], issued.get("secret", ""), ws)  # (no secret before the fix)


async def silence(ws: ClientConnection, seconds: float = 0.4) -> list[dict[str, Any]]:
    """Whatever arrives on ``ws`` within ``seconds`` (the attack must get nothing more)."""
    frames = []
    with pytest.raises(TimeoutError):
        while True:
            frames.append(await recv(ws, timeout=seconds))
    return frames


async def user_texts(store: Store, conversation_id: str) -> list[str]:
    return [e.data["text"] for e in await store.events(conversation_id) if e.type == "user_message"]


# ------------------------------------------------------------------------------------------------ history leak
@pytest.mark.parametrize(
    "claim",
    [
        {"user": "mallory"},
        {},  # no user at all
        {"user": "alice"},  # the right user, but no secret
        {"user": "alice", "secret": "A" * 43},  # a made-up secret
    ],
    ids=["mallory", "no-user", "alice-no-secret", "wrong-secret"],
)
async def test_hello_with_a_leaked_id_gets_no_history(chat: Chat, alice: Victim, claim: dict[str, Any]) -> None:
    async with connect(chat.server.ws_url) as mallory:
        await mallory.send(json.dumps({"type": "hello", "conversation_id": alice.conversation_id, **claim}))
        denied = await recv(mallory)
        assert denied["type"] == "error" and denied["code"] == DENIED and "reply_to" not in denied
        assert await silence(mallory) == []  # no session frame, no history frame
        # ... and the connection did not become Alice's: its next message opens a conversation of its own.
        frames = await turn(mallory, "m1", "what did alice say?")
    new_session = next(f for f in frames if f["type"] == "session")
    assert new_session["conversation_id"] != alice.conversation_id
    assert ALICE_TEXT not in json.dumps(denied) + json.dumps(frames)
    assert await user_texts(chat.store, alice.conversation_id) == [ALICE_TEXT]


async def test_the_secret_of_another_conversation_does_not_open_this_one(chat: Chat, alice: Victim) -> None:
    async with connect(chat.server.ws_url) as mallory:
        own = await session(mallory)  # Mallory's own, valid secret
        await turn(mallory, "m1", "hello")
        await mallory.send(json.dumps({"type": "hello", "conversation_id": alice.conversation_id,
                                       "secret": own["secret"]}))
        assert (await recv(mallory))["code"] == DENIED
        assert await silence(mallory) == []


# ----------------------------------------------------------------------------------------------- writing turns
@pytest.mark.parametrize("secret", [None, "B" * 43], ids=["no-secret", "wrong-secret"])
async def test_a_message_naming_a_leaked_id_writes_nothing(chat: Chat, alice: Victim, secret: str | None) -> None:
    async with connect(chat.server.ws_url) as mallory:  # no hello: the message itself names the conversation
        await mallory.send(json.dumps({"type": "message", "conversation_id": alice.conversation_id,
                                       "secret": secret, "message_id": "m1", "text": "cancel my order 12345"}))
        frames = await recv_until(mallory, "error")
        assert frames[-1]["code"] == DENIED and frames[-1]["reply_to"] == "m1"
        assert [f["type"] for f in frames] == ["ack", "error"]  # no session, no reply
    assert await user_texts(chat.store, alice.conversation_id) == [ALICE_TEXT]


# ---------------------------------------------------------------------------------------------- agent pushes
async def test_agent_messages_are_pushed_only_to_the_connection_that_proved_the_secret(
    chat: Chat, alice: Victim
) -> None:
    async with connect(chat.server.ws_url) as mallory:
        await mallory.send(json.dumps({"type": "hello", "conversation_id": alice.conversation_id, "user": "alice"}))
        assert (await recv(mallory))["code"] == DENIED
        await chat.engine.take_over(alice.conversation_id, "amy")
        await chat.engine.agent_message(alice.conversation_id, "amy", "Your refund of $120 is on its way", "ag-1")
        pushed = [await recv(alice.ws), await recv(alice.ws)]
        assert pushed[0] == {"type": "handoff", "conversation_id": alice.conversation_id, "status": "agent"}
        assert pushed[1]["role"] == "agent" and pushed[1]["text"] == "Your refund of $120 is on its way"
        assert await silence(mallory, 0.5) == []  # several push polls (every 0.05 s) went by
    assert await chat.server.push_once() == 0  # nothing new for Alice either


async def test_a_second_tab_that_proved_the_secret_gets_pushes_without_having_written(chat: Chat) -> None:
    async with connect(chat.server.ws_url) as tab1, connect(chat.server.ws_url) as tab2:
        issued = await session(tab1)
        await session(tab2, issued["conversation_id"], issued["secret"])  # before the conversation exists
        await turn(tab1, "t1", "I want to complain")
        await chat.engine.take_over(issued["conversation_id"], "amy")
        await chat.engine.agent_message(issued["conversation_id"], "amy", "Amy here", "ag-2")
        for tab in (tab1, tab2):
            frames = [await recv(tab), await recv(tab)]
            assert [f["type"] for f in frames] == ["handoff", "message"] and frames[1]["text"] == "Amy here"


# ----------------------------------------------------------------------------------------- the rightful owner
async def test_the_secret_and_the_creating_user_resume_with_history(chat: Chat, alice: Victim) -> None:
    async with connect(chat.server.ws_url) as ws:
        await ws.send(json.dumps({"type": "hello", "conversation_id": alice.conversation_id,
                                  "secret": alice.secret, "user": "bob"}))
        assert (await recv(ws))["code"] == DENIED  # the secret, but another site user
        resumed = await session(ws, alice.conversation_id, alice.secret, user="alice")
        assert resumed == {"type": "session", "conversation_id": alice.conversation_id}  # no secret re-sent
        history = await recv(ws)
        assert history["type"] == "history" and history["messages"][0]["text"] == ALICE_TEXT
        reply = (await turn(ws, "a2", "thanks"))[-1]
        assert reply["conversation_id"] == alice.conversation_id


async def test_the_store_keeps_only_the_sha256_of_the_secret(chat: Chat, alice: Victim) -> None:
    row = await chat.store.get(alice.conversation_id)
    assert row is not None and row.sender == "alice"
    assert row.secret_hash == p.secret_hash(alice.secret) and len(row.secret_hash) == 64
    assert alice.secret not in repr(row) and alice.secret not in json.dumps(dataclasses.asdict(row), default=str)


async def test_conversations_without_a_stored_secret_are_never_resumable(chat: Chat) -> None:
    """Rows from before migration 0005 (or made outside the chat channel) have no hash: no secret opens them."""
    old = await chat.engine.open_conversation(None, "en")
    await chat.engine.handle_message(old, uuid.uuid4().hex, "my order 12345")
    async with connect(chat.server.ws_url) as mallory:
        for secret in (None, "C" * 43, p.new_secret()):
            await mallory.send(json.dumps({"type": "hello", "conversation_id": old, "secret": secret}))
            assert (await recv(mallory))["code"] == DENIED
        assert await silence(mallory) == []


# -------------------------------------------------------------------------- idempotent, race-free creation
async def test_a_first_message_resent_after_a_reconnect_makes_one_conversation(chat: Chat) -> None:
    async with connect(chat.server.ws_url) as ws:
        issued = await session(ws, user="carol")
        await ws.send(message("c1", "where is my order 10234"))  # the connection drops before the reply
    async with connect(chat.server.ws_url) as ws:
        await ws.send(json.dumps({"type": "hello", "conversation_id": issued["conversation_id"],
                                  "secret": issued["secret"], "user": "carol"}))
        assert (await recv(ws))["conversation_id"] == issued["conversation_id"]
        reply = (await turn(ws, "c1", "where is my order 10234"))[-1]
    assert reply["conversation_id"] == issued["conversation_id"]
    assert await chat.store.count_conversations() == 1
    assert await user_texts(chat.store, issued["conversation_id"]) == ["where is my order 10234"]


async def test_first_messages_racing_from_two_tabs_make_one_conversation(chat: Chat) -> None:
    async with connect(chat.server.ws_url) as tab1, connect(chat.server.ws_url) as tab2:
        issued = await session(tab1)
        await session(tab2, issued["conversation_id"], issued["secret"])  # not created yet: resumes all the same
        replies = await asyncio.gather(turn(tab1, "t1", "hello"), turn(tab2, "t2", "order 10234"))
    assert {r[-1]["conversation_id"] for r in replies} == {issued["conversation_id"]}
    assert await chat.store.count_conversations() == 1
    assert sorted(await user_texts(chat.store, issued["conversation_id"])) == ["hello", "order 10234"]
