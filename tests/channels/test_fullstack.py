"""The real demo bot behind the real WebSocket server: scenarios over the wire, and a browser chat."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import websockets
from playwright.async_api import expect

from channels.server import Server, run_server
from dialogue.scenarios import Scenario, run_scenario
from dialogue.types import Conversation, TurnReply

pytestmark = pytest.mark.asyncio(loop_scope="session")
SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
OVER_THE_WIRE = ["en_order_status_ask_id.yml", "zh_return_slot_filling.yml", "en_complaint_handoff.yml"]


@pytest_asyncio.fixture(loop_scope="session")
async def live(shop: Any) -> AsyncIterator[Server]:
    async with run_server(shop.engine, host="127.0.0.1", port=0) as server:
        yield server


class WebSocketClient:
    """Runs scenario turns through the wire protocol, as the widget does."""

    def __init__(self, ws: Any, engine: Any) -> None:
        self.ws = ws
        self.engine = engine
        self.tokens: list[str] = []
        self.secret: str | None = None  # the resume secret of the conversation the server issued

    async def handle_message(self, conversation_id: str | None, message_id: str, text: str) -> TurnReply:
        await self.ws.send(json.dumps({"type": "message", "conversation_id": conversation_id,
                                       "message_id": message_id, "text": text}))
        while True:
            frame = json.loads(await self.ws.recv())
            if frame["type"] == "token":
                self.tokens.append(frame["text"])
            elif frame["type"] == "session" and "secret" in frame:
                self.secret = frame["secret"]
            elif frame["type"] == "error":
                raise AssertionError(f"error frame: {frame}")
            elif frame["type"] == "message" and frame["reply_to"] == message_id:
                return TurnReply(conversation_id=frame["conversation_id"], message_id=frame["message_id"],
                                 reply_to=message_id, text=frame["text"], intent=frame["intent"],
                                 confidence=frame["confidence"], action=frame["action"],
                                 handed_off=frame["handed_off"], replayed=frame["replayed"])

    async def get_conversation(self, conversation_id: str) -> Conversation | None:
        return await self.engine.get_conversation(conversation_id)  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", OVER_THE_WIRE)
async def test_scenario_over_websocket(live: Server, shop: Any, name: str) -> None:
    async with websockets.connect(live.ws_url) as ws:
        client = WebSocketClient(ws, shop.engine)
        result = await run_scenario(client, Scenario.load(SCENARIOS / name))
    assert result.passed, "\n" + result.describe()
    assert client.tokens, "no token frames were streamed"


async def test_resent_message_after_reconnect_is_answered_once(live: Server, shop: Any) -> None:
    message_id = uuid.uuid4().hex
    async with websockets.connect(live.ws_url) as ws:
        client = WebSocketClient(ws, shop.engine)
        first = await client.handle_message(None, message_id, "hello")
    async with websockets.connect(live.ws_url) as ws:
        await ws.send(json.dumps({"type": "hello", "conversation_id": first.conversation_id, "secret": client.secret}))
        again = await WebSocketClient(ws, shop.engine).handle_message(first.conversation_id, message_id, "hello")
    assert again.replayed and again.text == first.text
    events = await shop.engine.conversation_events(first.conversation_id)
    assert sum(e.type == "user_message" for e in events) == 1


@pytest.mark.browser
async def test_browser_chat_with_the_real_bot(live: Server, browser: Any) -> None:
    context = await browser.new_context(locale="en-US")
    page = await context.new_page()
    await page.goto(live.url + "/")
    await page.click("#kefu-launcher")
    await page.fill("#kefu-input", "where is my order 10234?")
    await page.press("#kefu-input", "Enter")
    final = page.locator(".kefu-msg.kefu-bot.kefu-final").last
    await expect(final).to_contain_text("10234", timeout=30_000)
    await context.close()


async def test_real_bot_handoff_to_a_human_through_the_ops_console(live: Server, shop: Any, tmp_path: Path) -> None:
    """A complaint queues the conversation; an agent logs into the ops server, takes it over and answers; the
    customer's socket gets the answer pushed, and the bot stays quiet until the agent hands back."""
    import httpx

    from channels.auth import hash_password
    from channels.ops import run_ops_server
    from kefu.console import Console

    store = shop.engine.store
    username = f"agent-{uuid.uuid4().hex[:8]}"
    await store.add_user(username, hash_password("agent-password-1"), "agent")
    console = Console(shop.engine, {"en": tmp_path / "nlu.yml"})
    async with run_ops_server(console, port=0) as ops, httpx.AsyncClient(base_url=ops.url, timeout=30) as http, \
            websockets.connect(live.ws_url) as ws:
        headers = {"Origin": ops.url}
        login = await http.post("/api/login", json={"username": username, "password": "agent-password-1"},
                                headers=headers)
        assert login.status_code == 200  # an agent signed in to the console: the bot may hand off to a human
        headers["X-CSRF-Token"] = login.json()["csrf_token"]
        client = WebSocketClient(ws, shop.engine)
        reply = await client.handle_message(None, uuid.uuid4().hex, "I want to make a complaint, this is terrible")
        assert reply.handed_off and reply.intent == "complaint"
        cid = reply.conversation_id
        queue = (await http.get("/api/handoff")).json()["items"]
        assert cid in [c["id"] for c in queue if c["handoff_status"] == "waiting"]
        assert (await http.post(f"/api/conversations/{cid}/takeover", headers=headers)).status_code == 200
        sent = await http.post(f"/api/conversations/{cid}/message", json={"text": "Hi, Amy here. What happened?"},
                               headers=headers)
        assert sent.status_code == 200
        pushed: list[dict[str, Any]] = []
        while not any(f.get("role") == "agent" for f in pushed):
            pushed.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        assert {"type": "handoff", "conversation_id": cid, "status": "agent"} in pushed
        assert pushed[-1]["text"] == "Hi, Amy here. What happened?"
        quiet = await client.handle_message(cid, uuid.uuid4().hex, "my parcel 10234 arrived broken")
        assert quiet.text == "" and quiet.handed_off  # the bot does not answer while the agent holds it
        assert (await http.post(f"/api/conversations/{cid}/handback", headers=headers)).status_code == 200
        back = await client.handle_message(cid, uuid.uuid4().hex, "where is my order 10234?")
        assert "10234" in back.text and not back.handed_off
