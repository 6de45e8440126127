"""Attachments on the chat port, over a real socket, a real store and the model-free engine: a customer uploads over
the socket it proved (upload -> upload_ready -> binary frames -> upload_ack), refused uploads store nothing, another
conversation's secret or token opens nothing, downloads carry safe headers, an agent's file is pushed, and both come
back in the history of a resume."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
import sqlalchemy as sa
from websockets.asyncio.client import ClientConnection, connect

from channels import uploads as up
from channels.server import Server, ServerOptions, run_server
from dialogue.store import attachments
from tests.channels.conftest import ConsoleEnv, EchoBackend
from tests.channels.test_attachments_uploads import JPEG, PDF, PNG
from tests.channels.test_server import recv, recv_until, session

pytestmark = pytest.mark.asyncio(loop_scope="session")

SMALL = up.UploadLimits(max_bytes=64 * 1024, max_pending_bytes=128 * 1024, timeout=1.0)


@pytest_asyncio.fixture(loop_scope="session")
async def chat(console_env: ConsoleEnv) -> AsyncIterator[Server]:
    async with run_server(console_env.engine, port=0, options=ServerOptions(push_interval=0.1),
                          uploads=SMALL) as server:
        yield server


async def stored_files(env: ConsoleEnv) -> int:
    async with env.store.transaction("test", write=False) as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(attachments))).scalar_one())


async def start(ws: ClientConnection, data: bytes, content_type: str, name: str = "shot.png",
                upload_id: str | None = None, size: int | None = None) -> tuple[str, dict[str, Any]]:
    upload_id = upload_id or uuid.uuid4().hex
    await ws.send(json.dumps({"type": "upload", "upload_id": upload_id, "filename": name,
                              "content_type": content_type, "size": len(data) if size is None else size}))
    return upload_id, await recv(ws)


async def upload(ws: ClientConnection, data: bytes, content_type: str, name: str = "shot.png",
                 upload_id: str | None = None, chunk: int = 1000) -> dict[str, Any]:
    """The whole exchange; returns the final frame (``upload_ack`` or ``upload_error``)."""
    upload_id, answer = await start(ws, data, content_type, name, upload_id)
    if answer["type"] != "upload_ready":
        return answer
    assert answer == {"type": "upload_ready", "upload_id": upload_id}
    for at in range(0, len(data), chunk):
        await ws.send(data[at:at + chunk])
    frames = await recv_until_any(ws, ("upload_ack", "upload_error"))
    return frames[-1]


async def recv_until_any(ws: ClientConnection, types: tuple[str, ...]) -> list[dict[str, Any]]:
    frames = []
    while True:
        frames.append(await recv(ws))
        if frames[-1]["type"] in types:
            return frames


async def conversation(ws: ClientConnection) -> tuple[str, str]:
    """A new session whose conversation exists (one message sent): (id, secret)."""
    frame = await session(ws)
    await ws.send(json.dumps({"type": "message", "message_id": "m1", "text": "hello"}))
    await recv_until(ws, "message")
    return frame["conversation_id"], frame["secret"]


# ---------------------------------------------------------------------------------------------------- happy path
async def test_a_customer_uploads_a_png_and_downloads_it_with_safe_headers(
    chat: Server, console_env: ConsoleEnv
) -> None:
    async with connect(chat.ws_url) as ws:
        cid, _ = await conversation(ws)
        ack = await upload(ws, PNG, "image/png", "../../screen shot.png", upload_id="up-1", chunk=37)
    assert ack["type"] == "upload_ack" and ack["upload_id"] == "up-1" and ack["message_id"] == "up-1"
    file = ack["attachment"]
    assert file["filename"] == "screen shot.png" and file["content_type"] == "image/png" and file["image"] is True
    assert file["size"] == len(PNG) and file["url"].startswith(f"attachments/{file['id']}?token=")
    found = await console_env.store.get_attachment(file["id"], cid)
    assert found is not None and found[1] == PNG and found[0].direction == "customer"

    async with httpx.AsyncClient(base_url=chat.url + "/") as http:
        res = await http.get(file["url"])
    assert res.status_code == 200 and res.content == PNG
    assert res.headers["content-type"] == "image/png"
    assert res.headers["content-disposition"].startswith('inline; filename="screen shot.png"')
    assert res.headers["x-content-type-options"] == "nosniff"
    csp = res.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "sandbox" in csp
    assert "no-store" in res.headers["cache-control"]


async def test_a_pdf_downloads_as_an_attachment(chat: Server) -> None:
    async with connect(chat.ws_url) as ws:
        await conversation(ws)
        ack = await upload(ws, PDF, "application/pdf", "invoice.pdf")
    async with httpx.AsyncClient(base_url=chat.url + "/") as http:
        res = await http.get(ack["attachment"]["url"])
    assert res.status_code == 200 and res.headers["content-type"] == "application/pdf"
    assert res.headers["content-disposition"].startswith('attachment; filename="invoice.pdf"')
    assert res.headers["x-content-type-options"] == "nosniff"


# ------------------------------------------------------------------------------------------- who may upload
async def test_no_session_no_upload(chat: Server, console_env: ConsoleEnv) -> None:
    async with connect(chat.ws_url) as ws:
        _, answer = await start(ws, PNG, "image/png")
    assert answer["type"] == "upload_error" and answer["code"] == "no_conversation"
    assert await stored_files(console_env) == 0


async def test_a_session_without_a_message_has_no_conversation_to_attach_to(
    chat: Server, console_env: ConsoleEnv
) -> None:
    async with connect(chat.ws_url) as ws:
        await session(ws)
        final = await upload(ws, PNG, "image/png")
    assert final["type"] == "upload_error" and final["code"] == "no_conversation"
    assert await stored_files(console_env) == 0


async def test_another_conversations_secret_opens_nothing(chat: Server, console_env: ConsoleEnv) -> None:
    async with connect(chat.ws_url) as ws:
        victim, _ = await conversation(ws)
        assert (await upload(ws, PNG, "image/png"))["type"] == "upload_ack"
    async with connect(chat.ws_url) as ws:
        _, attacker_secret = await conversation(ws)
    async with connect(chat.ws_url) as ws:
        await ws.send(json.dumps({"type": "hello", "conversation_id": victim, "secret": attacker_secret}))
        denied = await recv(ws)
        assert denied["type"] == "error" and denied["code"] == "resume_denied"
        _, answer = await start(ws, PNG, "image/png")
        assert answer["code"] == "no_conversation"  # the denied resume opened no session to upload into
    assert len(await console_env.store.list_attachments(victim)) == 1


async def test_downloads_need_the_token_of_that_file_and_conversation(chat: Server) -> None:
    async with connect(chat.ws_url) as ws:
        await conversation(ws)
        mine = (await upload(ws, PNG, "image/png"))["attachment"]
    async with connect(chat.ws_url) as ws:
        await conversation(ws)
        theirs = (await upload(ws, JPEG, "image/jpeg", "b.jpg"))["attachment"]
    their_token = theirs["url"].split("token=")[1]
    async with httpx.AsyncClient(base_url=chat.url) as http:
        answers = [
            await http.get(f"/attachments/{mine['id']}"),  # no token
            await http.get(f"/attachments/{mine['id']}?token="),
            await http.get(f"/attachments/{mine['id']}?token={their_token}"),  # another conversation's token
            await http.get(f"/attachments/{mine['id']}?token={'A' * 43}"),
            await http.get(f"/attachments/{'0' * 32}?token={their_token}"),  # no such file
            await http.get("/attachments/..%2Fwidget.js"),
            await http.get(f"/attachments/{mine['id'].upper()}?token={their_token}"),
        ]
        ok = await http.get("/" + theirs["url"])
    assert [a.status_code for a in answers] == [404] * len(answers)
    assert len({a.content for a in answers}) == 1  # one and the same answer, whatever was wrong
    assert ok.status_code == 200 and ok.content == JPEG


# ------------------------------------------------------------------------------------------- refused uploads
async def test_oversized_wrong_type_and_malformed_uploads_store_nothing(chat: Server, console_env: ConsoleEnv) -> None:
    async with connect(chat.ws_url) as ws:
        cid, _ = await conversation(ws)
        before = len(await console_env.store.events(cid))
        _, too_large = await start(ws, b"x", "image/png", size=SMALL.max_bytes + 1)
        _, html = await start(ws, b"<html><script>alert(1)</script></html>", "text/html", "a.html")
        mismatch = await upload(ws, PDF, "image/png", "not-a.png")
        truncated = await upload(ws, PNG[:-10], "image/png")
        disguised = await upload(ws, b"<!doctype html><script>alert(1)</script>", "image/png", "x.png")
        scripted = await upload(ws, PDF.replace(b"/Type /Catalog", b"/Type /Catalog /OpenAction << /S /JavaScript "
                                                                    b"/JS (app.alert(1)) >>"), "application/pdf")
    codes = [f["code"] for f in (too_large, html, mismatch, truncated, disguised, scripted)]
    assert codes == ["too_large", "unsupported_type", "type_mismatch", "malformed", "unsupported_type",
                     "active_content"]
    assert all(f["type"] == "upload_error" and f["message"] for f in (too_large, html, mismatch))
    assert await stored_files(console_env) == 0
    assert len(await console_env.store.events(cid)) == before  # no event either: nothing but an upload is stored


async def test_more_bytes_than_declared_end_the_upload(chat: Server, console_env: ConsoleEnv) -> None:
    async with connect(chat.ws_url) as ws:
        await conversation(ws)
        upload_id, ready = await start(ws, PNG, "image/png", size=10)
        assert ready["type"] == "upload_ready"
        await ws.send(PNG[:20])
        error = await recv(ws)
        assert (error["type"], error["upload_id"], error["code"]) == ("upload_error", upload_id, "bad_upload")
        await ws.send(b"stray bytes")  # no upload open any more: a binary frame is a bad frame again
        stray = await recv(ws)
        assert stray["type"] == "error" and stray["code"] == "bad_frame"
        ack = await upload(ws, PNG, "image/png")  # the connection goes on
        assert ack["type"] == "upload_ack"
    assert await stored_files(console_env) == 1


async def test_one_upload_at_a_time_and_a_stalled_one_times_out(chat: Server) -> None:
    async with connect(chat.ws_url) as ws:
        await conversation(ws)
        first, ready = await start(ws, PNG, "image/png")
        assert ready["type"] == "upload_ready"
        _, second = await start(ws, PNG, "image/png")
        assert second["code"] == "bad_upload"
        await ws.send(PNG[:10])
        timed_out = await recv(ws, timeout=3.0)
        assert (timed_out["upload_id"], timed_out["code"]) == (first, "timeout")
        assert chat._upload_bytes == 0  # the reservation went with it
        assert (await upload(ws, PNG, "image/png"))["type"] == "upload_ack"


async def test_the_process_wide_budget_of_unfinished_uploads(chat: Server) -> None:
    size = SMALL.max_bytes
    async with connect(chat.ws_url) as a, connect(chat.ws_url) as b, connect(chat.ws_url) as c:
        for ws in (a, b, c):
            await conversation(ws)
        assert (await start(a, b"", "image/png", size=size))[1]["type"] == "upload_ready"
        assert (await start(b, b"", "image/png", size=size))[1]["type"] == "upload_ready"
        _, busy = await start(c, b"", "image/png", size=size)
        assert busy["code"] == "busy"
    await asyncio.sleep(0.1)
    assert chat._upload_bytes == 0  # closed sockets gave their reservations back


async def test_a_resent_upload_is_stored_once(chat: Server, console_env: ConsoleEnv) -> None:
    async with connect(chat.ws_url) as ws:
        cid, secret = await conversation(ws)
        first = await upload(ws, PNG, "image/png", upload_id="same-id")
    async with connect(chat.ws_url) as ws:
        await session(ws, cid, secret)
        await recv(ws)  # history
        again = await upload(ws, PNG, "image/png", upload_id="same-id")
    assert again["attachment"]["id"] == first["attachment"]["id"]
    assert len(await console_env.store.list_attachments(cid)) == 1


async def test_a_server_without_a_store_takes_no_files(backend: EchoBackend) -> None:
    async with run_server(backend, port=0) as server, connect(server.ws_url) as ws:
        await session(ws)
        _, answer = await start(ws, PNG, "image/png")
        assert answer["code"] == "unavailable"
        async with httpx.AsyncClient(base_url=server.url) as http:
            assert (await http.get(f"/attachments/{'0' * 32}?token=x")).status_code == 404


# ------------------------------------------------------------------------------------- agents' files, history
async def test_an_agents_file_is_pushed_and_both_sides_come_back_in_the_history(
    chat: Server, console_env: ConsoleEnv
) -> None:
    async with connect(chat.ws_url) as ws:
        cid, secret = await conversation(ws)
        mine = (await upload(ws, PNG, "image/png", "mine.png"))["attachment"]
        await console_env.engine.take_over(cid, "agent")
        _, event = await console_env.store.add_attachment(
            cid, direction="agent", filename="label.pdf", content_type="application/pdf", data=PDF,
            uploader="agent", message_id="agent-file-1",
        )
        pushed = (await recv_until(ws, "attachment", timeout=5.0))[-1]
    assert pushed["role"] == "agent" and pushed["message_id"] == "agent-file-1"
    assert pushed["agent"] == {"name": "agent", "avatar": "A"}
    assert pushed["attachment"]["id"] == event.data["id"] and pushed["attachment"]["image"] is False
    async with httpx.AsyncClient(base_url=chat.url + "/") as http:
        res = await http.get(pushed["attachment"]["url"])
    assert res.status_code == 200 and res.content == PDF
    assert res.headers["content-disposition"].startswith("attachment;")

    async with connect(chat.ws_url) as ws:
        await session(ws, cid, secret)
        history = await recv(ws)
    files = [m for m in history["messages"] if "attachment" in m]
    assert [(m["role"], m["text"]) for m in files] == [("user", "mine.png"), ("agent", "label.pdf")]
    assert files[0]["attachment"]["id"] == mine["id"] and files[0]["attachment"]["url"].endswith(
        mine["url"].split("?")[1])
    assert files[1]["agent"]["name"] == "agent"


async def test_uploads_per_connection_are_rate_limited(console_env: ConsoleEnv) -> None:
    limits = up.UploadLimits(max_bytes=SMALL.max_bytes, rate=0.01, burst=2)
    async with run_server(console_env.engine, port=0, uploads=limits) as server, connect(server.ws_url) as ws:
        cid, _ = await conversation(ws)
        for _ in range(2):
            assert (await upload(ws, PNG, "image/png"))["type"] == "upload_ack"
        _, limited = await start(ws, PNG, "image/png")
        assert limited["type"] == "upload_error" and limited["code"] == "rate_limited"
        assert len(await console_env.store.list_attachments(cid)) == 2
