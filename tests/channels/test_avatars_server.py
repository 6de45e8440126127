"""``GET /avatars/<sha256>`` on the chat port, over a real socket and a real store: a staff picture is served by its
digest with its stored type and safe, immutable-cache headers; unknown, replaced, removed and malformed digests are
404; a store that fails is a 503 without a trace; a server without a picture store serves none. And an agent's
message pushed to the widget names the picture it was sent with."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from websockets.asyncio.client import connect

from channels import chat_http as ch
from channels.server import Server, ServerOptions, run_server
from dialogue.errors import StoreUnavailable
from tests.channels.conftest import ConsoleEnv, EchoBackend
from tests.channels.test_attachments_uploads import JPEG, PNG
from tests.channels.test_server import recv_type, session, turn

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def chat(console_env: ConsoleEnv) -> AsyncIterator[Server]:
    async with run_server(console_env.engine, port=0, options=ServerOptions(push_interval=0.1)) as server:
        yield server


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_a_picture_is_served_by_its_digest_until_it_is_replaced(chat: Server, console_env: ConsoleEnv) -> None:
    await console_env.store.set_avatar("agent", "image/png", PNG)
    async with httpx.AsyncClient(base_url=chat.url) as http:
        res = await http.get(f"/avatars/{sha(PNG)}")
        assert res.status_code == 200 and res.content == PNG
        assert res.headers["content-type"] == "image/png"
        assert res.headers["x-content-type-options"] == "nosniff"
        assert res.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert res.headers["content-security-policy"] == ch.AVATAR_CSP
        assert "set-cookie" not in res.headers
        await console_env.store.set_avatar("agent", "image/jpeg", JPEG)
        gone = await http.get(f"/avatars/{sha(PNG)}")
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"
        assert gone.headers["cache-control"] == "no-store"  # a 404 is not cached for good
        assert (await http.get(f"/avatars/{sha(JPEG)}")).headers["content-type"] == "image/jpeg"
        await console_env.store.clear_avatar("agent")
        assert (await http.get(f"/avatars/{sha(JPEG)}")).status_code == 404


@pytest.mark.parametrize(
    "path",
    ["/avatars/" + "0" * 64, "/avatars/" + "A" * 64, "/avatars/short", "/avatars/", "/avatars/%2e%2e/index.html",
     "/avatars/" + "0" * 64 + "/x"],
)
async def test_unknown_and_malformed_digests_are_404(chat: Server, path: str) -> None:
    async with httpx.AsyncClient(base_url=chat.url) as http:
        res = await http.get(path)
    assert res.status_code == 404 and res.json() == {"error": {"code": "not_found", "message": "no such picture"}}


class _FailingStore:
    async def get_avatar(self, sha256: str) -> tuple[str, bytes] | None:
        raise StoreUnavailable("the database is down", operation="get_avatar")


class _StoreBackend(EchoBackend):
    def __init__(self, store: Any) -> None:
        super().__init__()
        self.store = store


async def test_a_failing_store_is_503_and_no_store_is_404(caplog: pytest.LogCaptureFixture) -> None:
    digest = "0" * 64
    async with run_server(_StoreBackend(_FailingStore()), port=0) as server, \
            httpx.AsyncClient(base_url=server.url) as http:
        res = await http.get(f"/avatars/{digest}")
        assert res.status_code == 503 and res.json()["error"]["code"] == "unavailable"
        assert "database is down" not in res.text
        assert (await http.get("/avatars/nope")).status_code == 404  # malformed: the store is not even asked
    async with run_server(EchoBackend(), port=0) as server, httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.get(f"/avatars/{digest}")).status_code == 404


async def test_an_agents_message_reaches_the_widget_with_the_picture(chat: Server, console_env: ConsoleEnv) -> None:
    await console_env.store.set_display_name("agent", "Amy Lee")
    await console_env.store.set_avatar("agent", "image/png", PNG)
    wanted = {"name": "Amy Lee", "avatar": "AL", "picture": f"/avatars/{sha(PNG)}"}
    async with connect(chat.ws_url) as ws:
        opened = await session(ws)
        cid, secret = str(opened["conversation_id"]), str(opened["secret"])
        await turn(ws, "m1", "hello")
        await console_env.engine.take_over(cid, "agent")
        await console_env.engine.agent_message(cid, "agent", "Hello, I am Amy", "agent-m1")
        pushed = await recv_type(ws, "message")
        assert pushed["role"] == "agent" and pushed["agent"] == wanted
        async with httpx.AsyncClient(base_url=chat.url) as http:
            assert (await http.get(pushed["agent"]["picture"])).content == PNG
    # The agent changes their profile; a resume replays the card the message was sent with.
    await console_env.store.set_display_name("agent", "Someone Else")
    async with connect(chat.ws_url) as again:
        await session(again, cid, secret)
        history = await recv_type(again, "history")
        assert [m["agent"] for m in history["messages"] if m["role"] == "agent"] == [wanted]
