"""Attachments in the console API, on a real ops server and store: an agent holding the conversation sends a file
(CSRF, role, the same checks as the chat port, nothing stored when refused), staff open a conversation's files with
safe headers, and the routes are in the role table."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from channels import auth
from channels.ops import ROUTES, OpsServer, run_ops_server
from channels.uploads import UploadLimits
from tests.channels.conftest import ConsoleEnv
from tests.channels.test_attachments_uploads import GIF, PDF, PNG
from tests.channels.test_ops import OPS_CSP, Staff, as_role, error

LIMITS = UploadLimits(max_bytes=256 * 1024)


@pytest_asyncio.fixture(loop_scope="session")
async def ops(console_env: ConsoleEnv) -> AsyncIterator[OpsServer]:
    async with run_ops_server(console_env.console, port=0, uploads=LIMITS) as server:
        yield server


def noisy_png(width: int, height: int) -> bytes:
    """A PNG that does not compress (random pixels): a real file of about ``3 * width * height`` bytes."""
    import io
    import random

    from PIL import Image

    pixels = random.Random(7).randbytes(width * height * 3)
    out = io.BytesIO()
    Image.frombytes("RGB", (width, height), pixels).save(out, "PNG")
    return out.getvalue()


def body(data: bytes, content_type: str, name: str = "label.pdf", **extra: Any) -> dict[str, Any]:
    return {"filename": name, "content_type": content_type, "data": base64.b64encode(data).decode(), **extra}


async def held(env: ConsoleEnv, agent: str = "agent") -> str:
    cid = await env.chat("hello", "where is my order 10234")
    await env.engine.take_over(cid, agent)
    return cid


def test_the_attachment_routes_are_in_the_role_table() -> None:
    table = {name: (method, path, role) for method, path, role, name in ROUTES}
    assert table["upload_attachment"] == ("POST", "/api/conversations/{id}/attachments", auth.AGENT)
    assert table["attachment"] == ("GET", "/api/attachments/{id}", auth.VIEWER)


async def test_an_agent_holding_the_conversation_sends_a_file(ops: OpsServer, console_env: ConsoleEnv) -> None:
    cid = await console_env.chat("hello")
    agent = await as_role(ops, "agent")
    refused = await agent.post(f"/api/conversations/{cid}/attachments", body(PDF, "application/pdf"))
    assert refused.status_code == 409 and error(refused) == "conflict"  # take it over first
    await console_env.engine.take_over(cid, "agent")
    big = noisy_png(200, 150)
    assert len(base64.b64encode(big)) > 64 * 1024  # above the console's usual body limit: uploads have their own
    sent = await agent.post(f"/api/conversations/{cid}/attachments",
                            body(big, "image/png", "C:\\fakepath\\box.png", message_id="agent-file-x"))
    assert sent.status_code == 201, sent.text
    file = sent.json()["attachment"]
    assert file["filename"] == "box.png" and file["image"] is True and file["size"] == len(big)
    assert sent.json()["event"]["type"] == "attachment" and sent.json()["event"]["data"]["agent"] == "agent"
    again = await agent.post(f"/api/conversations/{cid}/attachments",
                             body(big, "image/png", "box.png", message_id="agent-file-x"))
    assert again.status_code == 201 and again.json()["attachment"]["id"] == file["id"]  # a retry stores it once
    assert len(await console_env.store.list_attachments(cid)) == 1
    events = (await agent.get(f"/api/conversations/{cid}/events")).json()["events"]
    assert [e["data"]["id"] for e in events if e["type"] == "attachment"] == [file["id"]]
    assert (await agent.get(f"/api/conversations/{cid}/scenario.yml")).status_code == 200
    await agent.aclose()


@pytest.mark.parametrize(("payload", "status", "code"), [
    (body(b"x" * (LIMITS.max_bytes + 1), "image/png"), 413, "too_large"),
    (body(b"<html><script>alert(1)</script>", "text/html", "a.html"), 415, "unsupported_type"),
    (body(PDF, "image/png", "x.png"), 415, "type_mismatch"),
    (body(PNG[:-12], "image/png", "x.png"), 422, "malformed"),
    (body(PDF.replace(b"/Type /Catalog", b"/Type /Catalog /AA << /O << /S /Launch >> >>"), "application/pdf"),
     422, "active_content"),
    (body(b"", "image/png"), 400, "bad_request"),
    ({"filename": "a.png", "content_type": "image/png", "data": "not base64!"}, 400, "bad_request"),
    ({"filename": "a.png", "data": base64.b64encode(PNG).decode()}, 400, "bad_request"),
    (body(PNG, "image/png", message_id="bad id"), 400, "bad_request"),
])
async def test_refused_files_store_nothing(ops: OpsServer, console_env: ConsoleEnv, payload: dict[str, Any],
                                           status: int, code: str) -> None:
    cid = await held(console_env)
    agent = await as_role(ops, "agent")
    res = await agent.post(f"/api/conversations/{cid}/attachments", payload)
    assert (res.status_code, error(res)) == (status, code), res.text
    assert res.json()["error"]["message"]
    assert await console_env.store.list_attachments(cid) == []
    assert "attachment" not in [e.type for e in await console_env.store.events(cid)]
    await agent.aclose()


async def test_a_body_beyond_the_upload_limit_is_413_and_json_only(ops: OpsServer, console_env: ConsoleEnv) -> None:
    cid = await held(console_env)
    agent = await as_role(ops, "agent")
    url = f"{ops.url}/api/conversations/{cid}/attachments"
    headers = {"Origin": ops.url, auth.CSRF_HEADER: agent.csrf or ""}
    huge = await agent.client.post(url, content=b"{" + b" " * (LIMITS.max_bytes * 2) + b"}",
                                   headers={**headers, "Content-Type": "application/json"})
    assert huge.status_code == 413 and error(huge) == "too_large"
    raw = await agent.client.post(url, content=PNG, headers={**headers, "Content-Type": "image/png"})
    assert raw.status_code == 415 and error(raw) == "unsupported_media_type"
    await agent.aclose()


async def test_viewers_cannot_send_and_csrf_is_required(ops: OpsServer, console_env: ConsoleEnv) -> None:
    cid = await held(console_env, "admin")
    viewer = await as_role(ops, "viewer")
    res = await viewer.post(f"/api/conversations/{cid}/attachments", body(GIF, "image/gif", "a.gif"))
    assert res.status_code == 403 and error(res) == "forbidden"
    admin = await as_role(ops, "admin")
    res = await admin.post(f"/api/conversations/{cid}/attachments", body(GIF, "image/gif", "a.gif"), csrf=None)
    assert res.status_code == 403 and error(res) == "csrf"
    assert await console_env.store.list_attachments(cid) == []
    await viewer.aclose()
    await admin.aclose()


async def test_staff_open_a_conversations_files_with_safe_headers(ops: OpsServer, console_env: ConsoleEnv) -> None:
    cid = await held(console_env)
    other = await console_env.chat("hello")
    pdf, _ = await console_env.store.add_attachment(cid, direction="agent", filename="label.pdf",
                                                    content_type="application/pdf", data=PDF, uploader="agent")
    png, _ = await console_env.store.add_attachment(cid, direction="customer", filename="shot.png",
                                                    content_type="image/png", data=PNG)
    viewer = await as_role(ops, "viewer")
    shown = await viewer.get(f"/api/attachments/{png.id}")
    assert shown.status_code == 200 and shown.content == PNG
    assert shown.headers["content-type"] == "image/png"
    assert shown.headers["content-disposition"].startswith('inline; filename="shot.png"')
    assert shown.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in shown.headers["content-security-policy"] and shown.headers["content-security-policy"] != OPS_CSP
    assert shown.headers["cross-origin-resource-policy"] == "same-origin"
    assert "no-store" in shown.headers["cache-control"]
    download = await viewer.get(f"/api/attachments/{pdf.id}")
    assert download.status_code == 200 and download.headers["content-type"] == "application/pdf"
    assert download.headers["content-disposition"].startswith("attachment;")
    for url in (f"/api/attachments/{'0' * 32}", "/api/attachments/x", f"/api/attachments/{png.id.upper()}",
                f"/api/attachments/{other}"):
        res = await viewer.get(url)
        assert res.status_code == 404 and error(res) == "not_found", url
    anonymous = Staff(ops)
    assert (await anonymous.get(f"/api/attachments/{png.id}")).status_code == 401
    await anonymous.aclose()
    await viewer.aclose()
