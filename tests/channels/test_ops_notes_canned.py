"""Internal notes and canned replies in the console API, on a real ops server and store: notes never reach the
customer (checked over a real WebSocket resume), canned replies per language (roles, CSRF, validation, filling from
the conversation's slots)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from websockets.asyncio.client import connect

from channels import auth
from channels import protocol as p
from channels.ops import ROUTES, OpsServer, run_ops_server
from channels.server import ServerOptions, run_server
from dialogue.review import export_scenario
from tests.channels.conftest import ConsoleEnv
from tests.channels.test_ops import OPS_CSP, ROLES, Staff, as_role, error
from tests.channels.test_server import recv, session, turn

ROUTE_NAMES = {"add_note", "conversation_canned", "render_canned", "canned_replies", "add_canned_reply",
               "update_canned_reply", "delete_canned_reply"}
NOTE = "Internal: customer is upset, refund approved by Bo (call 13800138000)"


@pytest_asyncio.fixture(loop_scope="session")
async def ops(console_env: ConsoleEnv) -> AsyncIterator[OpsServer]:
    async with run_ops_server(console_env.console, port=0) as server:
        yield server


async def _canned(admin: Staff, language: str, title: str, text: str) -> dict[str, Any]:
    res = await admin.post("/api/canned", {"language": language, "title": title, "text": text})
    assert res.status_code == 201, res.text
    return dict(res.json()["reply"])


# ------------------------------------------------------------------------------------------- roles and CSRF
def test_the_routes_are_in_the_role_table() -> None:
    table = {name: (method, role) for method, _, role, name in ROUTES}
    assert set(table) >= ROUTE_NAMES
    assert table["add_note"] == ("POST", auth.AGENT)
    assert table["render_canned"] == ("GET", auth.AGENT) and table["conversation_canned"] == ("GET", auth.AGENT)
    assert table["canned_replies"] == ("GET", auth.AGENT)
    for name in ("add_canned_reply", "update_canned_reply", "delete_canned_reply"):
        assert table[name] == ("POST", auth.ADMIN)


async def test_routes_x_role_with_real_ids(ops: OpsServer, console_env: ConsoleEnv) -> None:
    cid = await console_env.chat("hello", "where is my order 10234")
    admin = await as_role(ops, "admin")
    reply = await _canned(admin, "en", "Probe", "Order {order_id}")
    for method, path, role, name in ROUTES:
        if name not in ROUTE_NAMES:
            continue
        url = path.replace("{id}", cid) + (f"?reply={reply['id']}" if name == "render_canned" else "")
        for user in ROLES:
            client = await as_role(ops, user)
            body = {"text": "a note"} if name == "add_note" else {"id": reply["id"], "language": "en",
                                                                   "title": f"T {user} {name}", "text": "x"}
            res = await (client.get(url) if method == "GET" else client.post(url, body))
            assert res.headers["content-security-policy"] == OPS_CSP
            if not auth.role_allows(user, str(role)):
                assert (res.status_code, error(res)) == (403, "forbidden"), (user, url)
            else:
                assert res.status_code in (200, 201), (user, url, res.text[:200])
            await client.aclose()
        if name == "delete_canned_reply":
            reply = await _canned(admin, "en", "Probe", "Order {order_id}")  # deleted by the admin just now
    anonymous = Staff(ops)
    assert (await anonymous.get("/api/canned")).status_code == 401
    await anonymous.aclose()
    await admin.aclose()


@pytest.mark.parametrize("path", ["/api/canned", "/api/canned/update", "/api/canned/delete",
                                  "/api/conversations/{id}/note"])
async def test_posts_need_the_csrf_token_and_origin(ops: OpsServer, console_env: ConsoleEnv, path: str) -> None:
    cid = await console_env.chat("hello")
    admin = await as_role(ops, "admin")
    url = path.replace("{id}", cid)
    body = {"text": "note", "language": "en", "title": "csrf", "id": 1}
    for res in (await admin.post(url, body, csrf=None), await admin.post(url, body, csrf=auth.new_token())):
        assert (res.status_code, error(res)) == (403, "csrf")
    res = await admin.post(url, body, origin="https://evil.example")
    assert (res.status_code, error(res)) == (403, "bad_origin")
    assert await console_env.store.list_canned_replies() == []
    assert not any(e.type == "note" for e in await console_env.store.events(cid))
    await admin.aclose()


# ----------------------------------------------------------------------------------------------- canned replies
async def test_admin_manages_canned_replies_with_clear_errors(ops: OpsServer) -> None:
    admin = await as_role(ops, "admin")
    agent = await as_role(ops, "agent")
    reply = await _canned(admin, "en", "Shipped", "Order {order_id} shipped. Questions? 13800138000")
    assert reply["text"] == "Order {order_id} shipped. Questions? [PHONE]" and reply["created_by"] == "admin"
    await _canned(admin, "zh", "Shipped", "订单 {order_id} 已发货")  # the same title in another language

    dup = await admin.post("/api/canned", {"language": "en", "title": "Shipped", "text": "again"})
    assert (dup.status_code, error(dup)) == (409, "conflict")
    assert dup.json()["error"]["message"] == "A canned reply with this title already exists in that language."
    for body, field in (({"language": "fr", "title": "t", "text": "x"}, "'language'"),
                        ({"language": "en", "title": "", "text": "x"}, "'title'"),
                        ({"language": "en", "title": "t" * 65, "text": "x"}, "'title'"),
                        ({"language": "en", "title": "t", "text": "x" * 2001}, "'text'"),
                        ({"language": "en", "title": "t"}, "'text'")):
        res = await admin.post("/api/canned", body)
        assert res.status_code == 400 and res.json()["error"]["message"].startswith(field), res.text

    listed = (await agent.get("/api/canned")).json()
    assert listed["languages"] == ["en", "zh"] and [r["language"] for r in listed["items"]] == ["en", "zh"]
    assert [r["title"] for r in (await agent.get("/api/canned?language=zh")).json()["items"]] == ["Shipped"]
    assert (await agent.get("/api/canned?language=fr")).status_code == 400

    edit = {"id": reply["id"], "language": "en", "title": "Shipped!", "text": "Done."}
    res = await admin.post("/api/canned/update", edit)
    assert res.status_code == 200 and res.json()["reply"]["title"] == "Shipped!"
    assert (await admin.post("/api/canned/update", edit | {"id": 999999})).status_code == 404
    for bad in ("abc", None, True, -1):
        assert (await admin.post("/api/canned/update", edit | {"id": bad})).status_code == 400
    assert (await agent.post("/api/canned/delete", {"id": reply["id"]})).status_code == 403
    assert (await admin.post("/api/canned/delete", {"id": reply["id"]})).status_code == 200
    assert (await admin.post("/api/canned/delete", {"id": reply["id"]})).status_code == 404
    await admin.aclose()
    await agent.aclose()


async def test_agent_lists_the_conversations_language_and_gets_it_filled(ops: OpsServer,
                                                                         console_env: ConsoleEnv) -> None:
    cid = await console_env.chat("hello", "where is my order 10234")
    admin = await as_role(ops, "admin")
    agent = await as_role(ops, "agent")
    viewer = await as_role(ops, "viewer")
    en = await _canned(admin, "en", "Status", "Order {order_id}: it ships {eta}. Sorry, {order_id}!")
    await _canned(admin, "zh", "状态", "订单 {order_id}")

    listed = (await agent.get(f"/api/conversations/{cid}/canned")).json()
    assert listed["language"] == "en" and [r["id"] for r in listed["items"]] == [en["id"]]
    res = await agent.get(f"/api/conversations/{cid}/canned/render?reply={en['id']}")
    assert res.status_code == 200
    assert res.json() | {"reply": None} == {"reply": None, "text": "Order 10234: it ships {eta}. Sorry, 10234!",
                                           "filled": ["order_id"], "missing": ["eta"]}
    assert (await viewer.get(f"/api/conversations/{cid}/canned/render?reply={en['id']}")).status_code == 403
    assert (await agent.get(f"/api/conversations/{cid}/canned/render?reply=999999")).status_code == 404
    assert (await agent.get(f"/api/conversations/{cid}/canned/render")).status_code == 400
    assert (await agent.get(f"/api/conversations/nope-xxx/canned/render?reply={en['id']}")).status_code == 404
    for client in (admin, agent, viewer):
        await client.aclose()


# ------------------------------------------------------------------------------------------------ internal notes
async def test_notes_are_validated_and_shown_to_staff_only(ops: OpsServer, console_env: ConsoleEnv) -> None:
    cid = await console_env.chat("I want to complain")
    agent = await as_role(ops, "agent")
    viewer = await as_role(ops, "viewer")
    res = await agent.post(f"/api/conversations/{cid}/note", {"text": f"  {NOTE}  "})
    assert res.status_code == 201
    event = res.json()["event"]
    assert event["type"] == "note"
    assert event["data"] == {"agent": "agent", "text": NOTE.replace("13800138000", "[PHONE]")}
    for body, status in (({"text": ""}, 400), ({"text": "   "}, 400), ({}, 400), ({"text": 5}, 400),
                         ({"text": "x" * 2001}, 413)):
        res = await agent.post(f"/api/conversations/{cid}/note", body)
        assert res.status_code == status, (body, res.text)
    assert "2000" in res.json()["error"]["message"]
    assert (await viewer.post(f"/api/conversations/{cid}/note", {"text": "hi"})).status_code == 403
    assert (await agent.post("/api/conversations/ghost-1/note", {"text": "hi"})).status_code == 404
    shown = (await viewer.get(f"/api/conversations/{cid}")).json()
    assert [e["type"] for e in shown["events"]].count("note") == 1
    assert shown["conversation"]["turns"] == 1  # a note is not a message
    await agent.aclose()
    await viewer.aclose()


async def test_a_note_never_reaches_the_customer_live_on_resume_or_in_exports(ops: OpsServer,
                                                                               console_env: ConsoleEnv) -> None:
    agent = await as_role(ops, "agent")
    async with run_server(console_env.engine, port=0, options=ServerOptions(push_interval=0.05)) as chat:
        async with connect(chat.ws_url) as ws:
            issued = await session(ws, user="carol", language="en")
            cid, secret = issued["conversation_id"], issued["secret"]
            await turn(ws, "c1", "where is my order 10234")
            assert (await agent.post(f"/api/conversations/{cid}/takeover")).status_code == 200
            assert (await agent.post(f"/api/conversations/{cid}/note", {"text": NOTE})).status_code == 201
            res = await agent.post(f"/api/conversations/{cid}/message", {"text": "Hi, Amy here."})
            assert res.status_code == 200
            live: list[dict[str, Any]] = []
            while not any(f.get("role") == "agent" for f in live):  # the agent's message is pushed ...
                live.append(await recv(ws))
            with pytest.raises(TimeoutError):  # ... and nothing else follows it
                live.append(await recv(ws, timeout=0.5))
        assert "refund" not in str(live) and "Internal" not in str(live)

        async with connect(chat.ws_url) as ws:  # the customer comes back: the history has no note
            await session(ws, cid, secret, user="carol")
            history = await recv(ws)
            assert history["type"] == "history"
            texts = [m["text"] for m in history["messages"]]
            assert texts[0] == "where is my order 10234" and texts[-1] == "Hi, Amy here."
            assert {m["role"] for m in history["messages"]} == {"user", "bot", "agent"}
            assert "refund" not in str(history)
            with pytest.raises(TimeoutError):
                await recv(ws, timeout=0.5)
            await asyncio.sleep(0)

    events = await console_env.store.events(cid)
    assert any(e.type == "note" for e in events)
    assert "refund" not in str(p.transcript(events))
    assert "refund" not in str(p.push_frames(events, 0)[0])
    assert "refund" not in export_scenario(events, "x")  # the training-data export of the conversation
    summary = await console_env.store.summary(cid)
    assert summary is not None and summary.turn_count == 1
    await agent.aclose()
