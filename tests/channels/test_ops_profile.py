"""The signed-in staff member's profile on a real ops server and store: the display name (trimmed, bounded, no
hidden characters), the picture (the chat port's upload checks with a PNG/JPEG/WebP, 256 KiB limit; nothing stored
when refused), removing it (DELETE, with the same CSRF and origin checks as a POST), ``GET /api/me``, every role
for its own account only, and what an agent's message and typing then carry to the customer."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from channels import auth
from channels import protocol as p
from channels.ops import OPS_STATIC_DIR, ROUTES, OpsServer
from channels.ops.profile import AVATAR_LIMITS
from tests.channels.conftest import ConsoleEnv
from tests.channels.test_attachments_ops import noisy_png
from tests.channels.test_attachments_uploads import GIF, JPEG, PDF, PNG, WEBP
from tests.channels.test_console_i18n import dictionary
from tests.channels.test_ops import OPS_CSP, Staff, as_role, clock, error, ops  # noqa: F401 - fixtures

ROLES = ("viewer", "agent", "admin")


def picture(data: bytes, content_type: str) -> dict[str, Any]:
    return {"content_type": content_type, "data": base64.b64encode(data).decode()}


async def delete(client: Staff, path: str, *, csrf: str | None | bool = True,
                 origin: str | None | bool = True) -> httpx.Response:
    """A DELETE the way the console's pages send it (Origin + X-CSRF-Token), or without either."""
    return await client.send("DELETE", path, csrf=csrf, origin=origin)


def test_the_profile_routes_are_in_the_role_table_for_every_role() -> None:
    table = {name: (method, path, role) for method, path, role, name in ROUTES}
    assert table["set_profile"] == ("POST", "/api/me/profile", auth.VIEWER)
    assert table["set_avatar"] == ("POST", "/api/me/avatar", auth.VIEWER)
    assert table["delete_avatar"] == ("DELETE", "/api/me/avatar", auth.VIEWER)
    assert table["my_avatar"] == ("GET", "/api/me/avatar", auth.VIEWER)
    assert AVATAR_LIMITS.max_bytes == 256 * 1024
    assert AVATAR_LIMITS.types == {"image/png", "image/jpeg", "image/webp"}


@pytest.mark.parametrize("role", ROLES)
async def test_every_role_sets_its_own_display_name(ops: OpsServer, console_env: ConsoleEnv, role: str) -> None:  # noqa: F811
    client = await as_role(ops, role)
    me = (await client.get("/api/me")).json()
    assert me["profile"] == {"display_name": None, "avatar": None}
    res = await client.post("/api/me/profile", {"display_name": "  Amy Lee  "})
    assert res.status_code == 200, res.text
    assert res.json() == {"profile": {"display_name": "Amy Lee", "avatar": None}}
    assert (await client.get("/api/me")).json()["profile"]["display_name"] == "Amy Lee"
    assert (await console_env.store.get_user(role)).display_name == "Amy Lee"  # type: ignore[union-attr]
    for other in (r for r in ROLES if r != role):  # only the caller's own account
        assert (await console_env.store.get_user(other)).display_name is None  # type: ignore[union-attr]
    cleared = await client.post("/api/me/profile", {"display_name": None})
    assert cleared.json()["profile"]["display_name"] is None
    assert (await client.post("/api/me/profile", {"display_name": "Bo"})).status_code == 200
    assert (await client.post("/api/me/profile", {"display_name": "   "})).json()["profile"]["display_name"] is None
    await client.aclose()


@pytest.mark.parametrize(
    "body",
    [{}, {"display_name": 42}, {"display_name": ["Amy"]}, {"display_name": "x" * 65}, {"display_name": "Amy\nLee"},
     {"display_name": "Amy\x07"}, {"display_name": "\u202eeeL ymA"}, {"display_name": "Amy\u200b"}],
)
async def test_a_bad_display_name_is_400_and_changes_nothing(ops: OpsServer, console_env: ConsoleEnv,  # noqa: F811
                                                             body: dict[str, Any]) -> None:
    agent = await as_role(ops, "agent")
    await agent.post("/api/me/profile", {"display_name": "Amy"})
    res = await agent.post("/api/me/profile", body)
    assert res.status_code == 400 and error(res) == "bad_request"
    assert "Amy\n" not in res.text and "x" * 65 not in res.text  # the reason names the field, not the value
    assert (await console_env.store.get_user("agent")).display_name == "Amy"  # type: ignore[union-attr]
    await agent.aclose()


@pytest.mark.parametrize(("data", "content_type"), [(PNG, "image/png"), (JPEG, "image/jpeg"), (WEBP, "image/webp")],
                         ids=["png", "jpeg", "webp"])
async def test_a_picture_is_uploaded_served_back_and_removed(ops: OpsServer, console_env: ConsoleEnv,  # noqa: F811
                                                             data: bytes, content_type: str) -> None:
    viewer = await as_role(ops, "viewer")  # the profile is every account's own, whatever its role
    assert (await viewer.get("/api/me/avatar")).status_code == 404
    res = await viewer.post("/api/me/avatar", picture(data, content_type))
    assert res.status_code == 200, res.text
    sha = hashlib.sha256(data).hexdigest()
    assert res.json() == {"profile": {"display_name": None, "avatar": sha}}
    assert (await viewer.get("/api/me")).json()["profile"]["avatar"] == sha
    assert await console_env.store.get_avatar(sha) == (content_type, data)
    served = await viewer.get("/api/me/avatar")
    assert served.status_code == 200 and served.content == data
    assert served.headers["content-type"] == content_type and served.headers["x-content-type-options"] == "nosniff"
    assert served.headers["content-security-policy"] == OPS_CSP
    removed = await delete(viewer, "/api/me/avatar")
    assert removed.status_code == 200 and removed.json()["profile"]["avatar"] is None
    assert await console_env.store.get_avatar(sha) is None
    assert (await viewer.get("/api/me/avatar")).status_code == 404
    await viewer.aclose()


async def test_a_picture_larger_than_the_app_body_limit_but_within_256_kib_is_taken(ops: OpsServer) -> None:  # noqa: F811
    big = noisy_png(150, 150)
    assert 64 * 1024 < len(base64.b64encode(big)) and len(big) <= 256 * 1024
    agent = await as_role(ops, "agent")
    res = await agent.post("/api/me/avatar", picture(big, "image/png"))
    assert res.status_code == 200, res.text
    await agent.aclose()


@pytest.mark.parametrize(
    ("data", "content_type", "status", "code"),
    [
        (GIF, "image/gif", 415, "unsupported_type"),  # an attachment type, not a picture type
        (PDF, "application/pdf", 415, "unsupported_type"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml", 415, "unsupported_type"),
        (b"<html><script>alert(1)</script>", "image/png", 415, "unsupported_type"),
        (PNG, "image/jpeg", 415, "type_mismatch"),  # the bytes decide, not the declared type
        (PNG[:-20], "image/png", 422, "malformed"),
        (PNG + b"<html>", "image/png", 422, "malformed"),  # a polyglot's tail
        (b"", "image/png", 400, "bad_request"),
    ],
    ids=["gif", "pdf", "svg", "html", "mismatch", "truncated", "polyglot", "empty"],
)
async def test_a_refused_picture_is_stored_nowhere(ops: OpsServer, console_env: ConsoleEnv, data: bytes,  # noqa: F811
                                                   content_type: str, status: int, code: str) -> None:
    agent = await as_role(ops, "agent")
    res = await agent.post("/api/me/avatar", picture(data, content_type))
    assert (res.status_code, error(res)) == (status, code), res.text
    assert (await console_env.store.get_user("agent")).avatar is None  # type: ignore[union-attr]
    await agent.aclose()


async def test_an_oversized_or_malformed_body_is_refused(ops: OpsServer, console_env: ConsoleEnv) -> None:  # noqa: F811
    agent = await as_role(ops, "agent")
    huge = noisy_png(330, 330)
    assert len(huge) > 256 * 1024
    res = await agent.post("/api/me/avatar", picture(huge, "image/png"))
    assert res.status_code == 413 and error(res) == "too_large"
    just_over = PNG + b"\x00" * (256 * 1024 + 1 - len(PNG))  # within the body limit, over the file limit
    res = await agent.post("/api/me/avatar", picture(just_over, "image/png"))
    assert res.status_code == 413 and error(res) == "too_large"
    res = await agent.post("/api/me/avatar", {"content_type": "image/png", "data": "not base64!"})
    assert res.status_code == 400 and error(res) == "bad_request"
    res = await agent.post("/api/me/avatar", {"data": base64.b64encode(PNG).decode()})
    assert res.status_code == 400 and error(res) == "bad_request"
    raw = await agent.client.post("/api/me/avatar", content=PNG, headers={
        "Content-Type": "image/png", "Origin": agent.origin, auth.CSRF_HEADER: agent.csrf or ""})
    assert raw.status_code == 415 and error(raw) == "unsupported_media_type"  # JSON only, like every API call
    assert (await console_env.store.get_user("agent")).avatar is None  # type: ignore[union-attr]
    await agent.aclose()


async def test_changes_need_a_session_the_csrf_token_and_the_origin(ops: OpsServer, console_env: ConsoleEnv) -> None:  # noqa: F811
    anonymous = Staff(ops)
    assert (await anonymous.get("/api/me/avatar")).status_code == 401
    assert (await anonymous.post("/api/me/profile", {"display_name": "x"})).status_code == 401
    assert (await anonymous.post("/api/me/avatar", picture(PNG, "image/png"))).status_code == 401
    assert (await delete(anonymous, "/api/me/avatar")).status_code == 401
    await anonymous.aclose()

    agent = await as_role(ops, "agent")
    assert (await agent.post("/api/me/avatar", picture(PNG, "image/png"))).status_code == 200
    for path, body in (("/api/me/profile", {"display_name": "x"}), ("/api/me/avatar", picture(JPEG, "image/jpeg"))):
        for csrf in (None, auth.new_token()):
            res = await agent.post(path, body, csrf=csrf)
            assert (res.status_code, error(res)) == (403, "csrf"), path
        res = await agent.post(path, body, origin="https://evil.example")
        assert (res.status_code, error(res)) == (403, "bad_origin"), path
    for csrf in (None, auth.new_token()):
        res = await delete(agent, "/api/me/avatar", csrf=csrf)
        assert (res.status_code, error(res)) == (403, "csrf")
    for origin in ("https://evil.example", None):
        res = await delete(agent, "/api/me/avatar", origin=origin)
        assert (res.status_code, error(res)) == (403, "bad_origin")
    user = await console_env.store.get_user("agent")
    assert user is not None and user.display_name is None and user.avatar == hashlib.sha256(PNG).hexdigest()
    await agent.aclose()


async def test_an_agents_message_and_typing_carry_the_profile(ops: OpsServer, console_env: ConsoleEnv) -> None:  # noqa: F811
    cid = await console_env.chat("hello", "where is my order 10234")
    agent = await as_role(ops, "agent")
    await agent.post("/api/me/profile", {"display_name": "Amy Lee"})
    await agent.post("/api/me/avatar", picture(PNG, "image/png"))
    sha = hashlib.sha256(PNG).hexdigest()
    assert (await agent.post(f"/api/conversations/{cid}/takeover")).status_code == 200
    sent = await agent.post(f"/api/conversations/{cid}/message", {"text": "Hello, I am Amy"})
    data = sent.json()["event"]["data"]
    assert (data["agent"], data["agent_name"], data["agent_avatar"]) == ("agent", "Amy Lee", sha)

    frames: list[dict[str, Any]] = []
    unsubscribe = ops.typing.subscribe(lambda conversation_id, frame: frames.append(frame))
    try:
        assert (await agent.post(f"/api/conversations/{cid}/typing", {"state": True})).json() == {"pushed": True}
    finally:
        unsubscribe()
    assert frames == [{"type": "agent_typing", "state": True,
                       "agent": {"name": "Amy Lee", "avatar": "AL", "picture": f"/avatars/{sha}"}}]
    history = p.history_frame(cid, await console_env.store.events(cid))["messages"]
    assert history[-1]["agent"] == {"name": "Amy Lee", "avatar": "AL", "picture": f"/avatars/{sha}"}
    await agent.aclose()


def test_the_profile_menu_is_translated_in_both_languages() -> None:
    """ops.js builds the header's profile menu: every id it asks i18n.js for (``I.t("profile...")``) exists in both
    dictionaries (test_console_i18n.py checks the ``K.t`` calls of the pages)."""
    text = Path(OPS_STATIC_DIR / "ops.js").read_text(encoding="utf-8")
    used = set(re.findall(r'I\.t\("([a-z]+\.[A-Za-z0-9_]+)"', text))
    assert {"profile.open", "profile.name", "profile.picture", "profile.pictureType"} <= used
    en, zh = dictionary("EN"), dictionary("ZH")
    assert sorted(used - set(en)) == [] and sorted(used - set(zh)) == []
