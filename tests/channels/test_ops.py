"""The ops server on a real port, over a real store and a model-free engine: login, sessions, CSRF + origin, every
route for every role, the console API (filters, review, corrections, handoff, dashboard, users), headers."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from channels import auth
from channels.ops import OPS_STATIC_DIR, ROUTES, OpsOptions, OpsServer, parse_conversation_query, run_ops_server
from tests.channels.conftest import PASSWORDS, ConsoleEnv

# Async tests run on the session loop (asyncio_default_test_loop_scope), like the fixtures they use.
ROLES = ("viewer", "agent", "admin")


class FakeClock:
    def __init__(self) -> None:
        self.shift = dt.timedelta(0)

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.shift


class Staff:
    """An httpx client of the console that behaves like the console's pages (Origin + X-CSRF-Token on POSTs)."""

    def __init__(self, server: OpsServer) -> None:
        self.server = server
        self.origin = server.url
        self.client = httpx.AsyncClient(base_url=server.url, timeout=10, follow_redirects=False)
        self.csrf: str | None = None

    async def aclose(self) -> None:
        await self.client.aclose()

    async def login(self, username: str, password: str | None = None) -> httpx.Response:
        res = await self.post("/api/login", {"username": username, "password": password or PASSWORDS[username]})
        if res.status_code == 200:
            self.csrf = res.json()["csrf_token"]
        return res

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.client.get(path, **kwargs)

    async def post(
        self, path: str, body: Any = None, *, csrf: str | None | bool = True, origin: str | None | bool = True
    ) -> httpx.Response:
        return await self.send("POST", path, body, csrf=csrf, origin=origin)

    async def send(
        self, method: str, path: str, body: Any = None, *, csrf: str | None | bool = True,
        origin: str | None | bool = True,
    ) -> httpx.Response:
        """A request with a JSON body and, unless told otherwise, the session's CSRF token and our Origin (a GET
        carries neither: what a browser's plain navigation sends)."""
        if method == "GET":
            return await self.client.get(path)
        headers = {"Content-Type": "application/json"}
        if origin is True:
            headers["Origin"] = self.origin
        elif isinstance(origin, str):
            headers["Origin"] = origin
        if csrf is True and self.csrf:
            headers[auth.CSRF_HEADER] = self.csrf
        elif isinstance(csrf, str):
            headers[auth.CSRF_HEADER] = csrf
        return await self.client.request(method, path, content=json.dumps(body or {}), headers=headers)


@pytest_asyncio.fixture(loop_scope="session")
async def clock() -> FakeClock:
    return FakeClock()


@pytest_asyncio.fixture(loop_scope="session")
async def ops(console_env: ConsoleEnv, clock: FakeClock) -> AsyncIterator[OpsServer]:
    options = OpsOptions(login_limit=auth.RateLimit(max_failures=5, window=300), plot_cache_seconds=0)
    async with run_ops_server(console_env.console, port=0, options=options, clock=clock) as server:
        yield server


@pytest_asyncio.fixture(loop_scope="session")
async def staff(ops: OpsServer) -> AsyncIterator[Staff]:
    client = Staff(ops)
    yield client
    await client.aclose()


async def as_role(ops: OpsServer, role: str) -> Staff:
    client = Staff(ops)
    res = await client.login(role)
    assert res.status_code == 200, res.text
    return client


def error(res: httpx.Response) -> str:
    return str(res.json()["error"]["code"])


# ------------------------------------------------------------------------------------------------- login
async def test_login_sets_a_strict_httponly_cookie_and_stores_only_its_hash(
    staff: Staff, console_env: ConsoleEnv
) -> None:
    res = await staff.login("agent")
    assert res.status_code == 200
    body = res.json()
    assert body["user"] == {"username": "agent", "role": "agent", "disabled": False,
                            "created_at": body["user"]["created_at"]}
    cookie = res.headers["set-cookie"]
    assert cookie.startswith(f"{auth.SESSION_COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http on 127.0.0.1
    token = staff.client.cookies[auth.SESSION_COOKIE]
    found = await console_env.store.get_session(auth.token_hash(token), dt.datetime.now(dt.UTC))
    assert found is not None and found[1].username == "agent" and found[0].csrf_token == body["csrf_token"]
    assert await console_env.store.get_session(token, dt.datetime.now(dt.UTC)) is None  # the token itself: unknown
    me = await staff.get("/api/me")
    assert me.status_code == 200 and me.json()["user"]["role"] == "agent"
    assert me.json()["csrf_token"] == body["csrf_token"]
    assert "password" not in me.text


async def test_secure_cookie_when_the_console_origin_is_https(console_env: ConsoleEnv) -> None:
    options = OpsOptions(origins=("https://ops.shop.example",))
    async with run_ops_server(console_env.console, port=0, options=options) as server:
        client = Staff(server)
        client.origin = "https://ops.shop.example"
        res = await client.login("viewer")
        assert res.status_code == 200 and "Secure" in res.headers["set-cookie"]
        bad = Staff(server)  # its own http origin is not the configured one
        assert (await bad.login("viewer")).status_code == 403
        await client.aclose()
        await bad.aclose()


@pytest.mark.parametrize(
    ("username", "password"), [("agent", "wrong-password-1"), ("nobody", "whatever-pass"), ("<script>", "x")]
)
async def test_bad_credentials_are_one_generic_401(staff: Staff, username: str, password: str) -> None:
    res = await staff.login(username, password)
    assert res.status_code == 401 and error(res) == "bad_credentials"
    assert auth.SESSION_COOKIE not in res.headers.get("set-cookie", "")
    assert username not in res.text


async def test_login_rate_limit_429_with_retry_after(staff: Staff) -> None:
    for _ in range(5):
        assert (await staff.login("agent", "wrong-password-1")).status_code == 401
    res = await staff.login("agent")  # the right password no longer helps
    assert res.status_code == 429 and error(res) == "rate_limited"
    assert 1 <= int(res.headers["retry-after"]) <= 300
    other = await staff.login("viewer")  # the same address is throttled for every account
    assert other.status_code == 429


async def test_login_needs_json_and_our_origin(staff: Staff) -> None:
    res = await staff.client.post("/api/login", data={"username": "agent", "password": PASSWORDS["agent"]},
                                  headers={"Origin": staff.origin})
    assert res.status_code == 415
    res = await staff.post("/api/login", {"username": "agent", "password": PASSWORDS["agent"]}, origin=None)
    assert res.status_code == 403 and error(res) == "bad_origin"
    res = await staff.post("/api/login", {"username": "agent", "password": PASSWORDS["agent"]},
                           origin="https://evil.example")
    assert res.status_code == 403
    res = await staff.post("/api/login", ["agent"])
    assert res.status_code == 400


async def test_disabled_account_cannot_log_in_and_its_sessions_end(ops: OpsServer, console_env: ConsoleEnv) -> None:
    agent = await as_role(ops, "agent")
    await console_env.store.disable_user("agent")
    assert (await agent.get("/api/me")).status_code == 401
    assert (await agent.login("agent")).status_code == 401
    await agent.aclose()


async def test_logout_ends_the_session(ops: OpsServer) -> None:
    viewer = await as_role(ops, "viewer")
    old = viewer.client.cookies[auth.SESSION_COOKIE]
    res = await viewer.post("/api/logout")
    assert res.status_code == 200 and auth.SESSION_COOKIE in res.headers["set-cookie"]
    viewer.client.cookies.set(auth.SESSION_COOKIE, old)  # a stolen copy of the cookie is dead too
    assert (await viewer.get("/api/me")).status_code == 401
    await viewer.aclose()


async def test_a_new_login_replaces_the_old_session(ops: OpsServer, console_env: ConsoleEnv) -> None:
    viewer = await as_role(ops, "viewer")
    old = viewer.client.cookies[auth.SESSION_COOKIE]
    assert (await viewer.login("viewer")).status_code == 200
    assert await console_env.store.get_session(auth.token_hash(old), dt.datetime.now(dt.UTC)) is None


async def test_expired_session_is_401_and_pages_redirect_to_login(ops: OpsServer, clock: FakeClock) -> None:
    viewer = await as_role(ops, "viewer")
    clock.shift = dt.timedelta(hours=2)  # used within the idle timeout: extended
    assert (await viewer.get("/api/me")).status_code == 200
    clock.shift = dt.timedelta(hours=9)  # 7 h after the last use: still alive (sliding)
    me = await viewer.get("/api/me")
    assert me.status_code == 200
    clock.shift = dt.timedelta(hours=18)  # 9 h idle
    res = await viewer.get("/api/me")
    assert res.status_code == 401 and error(res) == "unauthorized"
    page = await viewer.get("/console/c/abc?x=1")
    assert page.status_code == 302 and page.headers["location"] == "/login?next=/console/c/abc%3Fx%3D1"
    await viewer.aclose()


async def test_sessions_have_an_absolute_lifetime(ops: OpsServer, clock: FakeClock) -> None:
    viewer = await as_role(ops, "viewer")
    for hours in range(4, 25, 4):  # busy all day: never idle for long
        clock.shift = dt.timedelta(hours=hours)
        status = (await viewer.get("/api/me")).status_code
    assert status == 401  # at 24 h
    await viewer.aclose()


# ------------------------------------------------------------------------------------------- route x role
def test_every_route_of_the_app_is_in_the_table(console_env: ConsoleEnv) -> None:
    app = OpsServer(console_env.console).app
    registered = {
        (route.method, route.resource.canonical)  # type: ignore[union-attr]
        for route in app.router.routes()
        if route.method != "HEAD"
    }
    assert registered == {(method, path) for method, path, _, _ in ROUTES}


def _fill(path: str, cid: str) -> str:
    return (
        path.replace("{id}", cid).replace("{name}", "ops.js").replace("{plot}", "rates")
        .replace("{username}", "viewer")
    )


@pytest.mark.parametrize(("method", "path", "role"), [(m, p, r) for m, p, r, _ in ROUTES])
async def test_route_x_role(ops: OpsServer, console_env: ConsoleEnv, method: str, path: str, role: str | None) -> None:
    cid = await console_env.chat("hello", "where is my order 10234")
    url = _fill(path, cid)
    anonymous = Staff(ops)
    res = await anonymous.send(method, url, {})
    if role is None:
        assert res.status_code not in (401, 403), (url, res.status_code)
    elif method == "GET" and url.startswith("/console"):
        assert res.status_code == 302 and res.headers["location"].startswith("/login?next=/console")
    else:
        assert res.status_code == 401 and error(res) == "unauthorized"
    await anonymous.aclose()
    for user in ROLES:
        client = await as_role(ops, user)
        res = await client.send(method, url, {})
        if role is not None and not auth.role_allows(user, role):
            assert res.status_code == 403, (user, url, res.status_code)
        else:
            assert res.status_code not in (401, 403), (user, url, res.status_code, res.text[:200])
        assert res.headers["content-security-policy"] == OPS_CSP
        await client.aclose()


OPS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


# ----------------------------------------------------------------------------------------------- CSRF
CHANGES = [(m, p, r) for m, p, r, _ in ROUTES if m not in ("GET", "HEAD") and p != "/api/login"]


@pytest.mark.parametrize(("method", "path", "role"), CHANGES)
async def test_csrf_token_missing_or_wrong_is_403(ops: OpsServer, console_env: ConsoleEnv, method: str, path: str,
                                                  role: str) -> None:
    cid = await console_env.chat("hello")
    client = await as_role(ops, "admin")
    url = _fill(path, cid)
    missing = await client.send(method, url, {}, csrf=None)
    wrong = await client.send(method, url, {}, csrf=auth.new_token())
    assert (missing.status_code, error(missing)) == (403, "csrf")
    assert (wrong.status_code, error(wrong)) == (403, "csrf")
    await client.aclose()


@pytest.mark.parametrize("origin", ["https://evil.example", "null", None])
async def test_bad_origin_is_403_even_with_the_token(ops: OpsServer, console_env: ConsoleEnv,
                                                    origin: str | None) -> None:
    cid = await console_env.chat("hello")
    agent = await as_role(ops, "agent")
    res = await agent.post(f"/api/conversations/{cid}/takeover", origin=origin)
    assert res.status_code == 403 and error(res) == "bad_origin"
    assert (await console_env.store.summary(cid)).handoff_status == ""  # nothing happened
    # A Referer from the console itself is accepted when the browser sent no Origin.
    res = await agent.client.post(f"/api/conversations/{cid}/takeover", content="{}", headers={
        "Content-Type": "application/json", auth.CSRF_HEADER: agent.csrf or "", "Referer": ops.url + "/console"})
    assert res.status_code == 200
    await agent.aclose()


# -------------------------------------------------------------------------------------------- headers
@pytest.mark.parametrize("path", ["/login", "/console", "/console/queue", "/console/dashboard", "/console/users",
                                  "/console/c/abc"])
async def test_pages_have_a_strict_csp_and_no_inline_code(ops: OpsServer, path: str) -> None:
    admin = await as_role(ops, "admin")
    res = await admin.get(path)
    assert res.status_code == 200 and res.headers["content-type"] == "text/html; charset=utf-8"
    assert res.headers["content-security-policy"] == OPS_CSP
    assert res.headers["x-content-type-options"] == "nosniff"
    assert res.headers["referrer-policy"] == "same-origin"
    assert res.headers["x-frame-options"] == "DENY" and res.headers["cache-control"] == "no-store"
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", res.text, flags=re.DOTALL)
    assert scripts and all('src="/static/' in attrs and not body.strip() for attrs, body in scripts)
    assert not re.search(r"\son[a-z]+\s*=", res.text) and "<style" not in res.text and " style=" not in res.text
    await admin.aclose()


def test_console_scripts_never_build_html_from_strings() -> None:
    for path in OPS_STATIC_DIR.glob("*.js"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"\.(innerHTML|outerHTML|insertAdjacentHTML)\b|document\.write|\beval\(|new Function",
                             text), path.name


def test_every_form_control_has_a_label() -> None:
    for path in OPS_STATIC_DIR.glob("*.html"):
        html = path.read_text(encoding="utf-8")
        for control in re.finditer(r"<(input|select|textarea)\b([^>]*)>", html):
            ident = re.search(r'\bid="([^"]+)"', control.group(2))
            assert ident, (path.name, control.group(0))
            assert f'for="{ident.group(1)}"' in html, (path.name, ident.group(1))


async def test_static_assets_and_unknown_paths(staff: Staff) -> None:
    js = await staff.get("/static/ops.js")
    assert js.status_code == 200 and js.headers["content-type"] == "text/javascript; charset=utf-8"
    assert (await staff.get("/static/console.html")).status_code == 404  # pages only through their routes
    for path in ("/static/../ops.py", "/nope", "/api/nope", "/static/%2e%2e%2fops.py"):
        res = await staff.get(path)
        assert res.status_code == 404 and error(res) == "not_found", path
    assert (await staff.get("/")).headers["location"] == "/console"


# ------------------------------------------------------------------------------------------- the list
async def test_list_filters_search_and_cursor_pages(ops: OpsServer, console_env: ConsoleEnv) -> None:
    order = await console_env.chat("where is my order 10234")
    confused = await console_env.chat("I want to return something", "blah", "blah blah")  # 2 fallbacks in a task
    greet = await console_env.chat("hello")
    viewer = await as_role(ops, "viewer")

    async def ids(query: str) -> list[str]:
        res = await viewer.get("/api/conversations?" + query)
        assert res.status_code == 200, res.text
        return [c["id"] for c in res.json()["items"]]

    assert await ids("") == [greet, confused, order]  # most recent activity first
    assert await ids("intent=order_status") == [order]
    assert await ids("handoff=waiting") == [confused]
    assert await ids("handoff=none") == [greet, order]
    assert await ids("low_confidence=true") == [confused]
    assert await ids("fallback=1") == [confused]
    assert await ids("q=ORDER%2010234") == [order]
    assert await ids("language=zh") == []
    today = dt.datetime.now(dt.UTC).date()
    assert await ids(f"since={today}&until={today}") == [greet, confused, order]
    assert await ids(f"until={today - dt.timedelta(days=1)}") == []
    row = (await viewer.get("/api/conversations?handoff=waiting")).json()["items"][0]
    assert row["handoff_status"] == "waiting" and row["fallbacks"] >= 2 and row["min_confidence"] < 0.5
    assert {"reviewed", "flagged", "tags", "safety_flags", "agent", "turns", "last_intent"} <= set(row)

    first = (await viewer.get("/api/conversations?limit=2")).json()
    assert [c["id"] for c in first["items"]] == [greet, confused] and first["next_cursor"]
    second = (await viewer.get("/api/conversations", params={"limit": 2, "cursor": first["next_cursor"]})).json()
    assert [c["id"] for c in second["items"]] == [order] and second["next_cursor"] is None
    await viewer.aclose()


@pytest.mark.parametrize(
    "query",
    ["limit=abc", "limit=0", "limit=100000", "limit=١٢", "handoff=maybe", "since=yesterday", "reviewed=perhaps",
     "language=english!", "tag=two%20words", "q=" + "x" * 201, "cursor=%00", "offset=10", "intent=a%20b"],
)
async def test_list_bad_queries_are_400(staff: Staff, query: str) -> None:
    await staff.login("viewer")
    res = await staff.get("/api/conversations?" + query)
    assert res.status_code == 400 and error(res) == "bad_request"


def test_parse_conversation_query_defaults_and_bounds() -> None:
    filt, limit, cursor = parse_conversation_query({})
    assert (limit, cursor) == (50, None) and all(v is None for v in filt.__dict__.values())
    filt, limit, _ = parse_conversation_query({"limit": ["200"], "until": ["2026-11-23"], "flagged": ["yes"]})
    assert limit == 200 and filt.flagged is True
    assert filt.until == dt.datetime(2026, 11, 24, tzinfo=dt.UTC)  # a bare date bound includes that day


async def test_malformed_cursor_is_400(staff: Staff) -> None:
    await staff.login("viewer")
    res = await staff.get("/api/conversations?cursor=bm90LWEtY3Vyc29y")
    assert res.status_code == 400


# --------------------------------------------------------------------------------------- one conversation
async def test_conversation_events_and_xss_is_json_escaped(ops: OpsServer, console_env: ConsoleEnv) -> None:
    payload = "<script>alert('x')</script> & <img src=x onerror=alert(1)> order 10234"
    cid = await console_env.chat(payload)
    viewer = await as_role(ops, "viewer")
    res = await viewer.get(f"/api/conversations/{cid}")
    assert res.status_code == 200 and res.headers["content-type"] == "application/json; charset=utf-8"
    assert "<script" not in res.text and "<img" not in res.text and "\\u003cscript" in res.text
    body = res.json()
    types = [e["type"] for e in body["events"]]
    assert types[:2] == ["safety_input", "user_message"] and "nlu_parse" in types and "bot_message" in types
    user = next(e for e in body["events"] if e["type"] == "user_message")
    assert user["data"]["text"] == payload  # exactly what was stored, once decoded
    parse = next(e for e in body["events"] if e["type"] == "nlu_parse")
    assert parse["data"]["intent"] == "order_status" and parse["data"]["entities"][0]["value"] == "10234"
    action = next(e for e in body["events"] if e["type"] == "action")
    assert "action_order_status" in action["data"]["allowed"]
    bot = next(e for e in body["events"] if e["type"] == "bot_message")
    assert set(bot["data"]["latency_ms"]) >= {"nlu", "policy", "generation"}
    assert body["conversation"]["id"] == cid and body["last_seq"] == body["events"][-1]["seq"]

    after = await viewer.get(f"/api/conversations/{cid}/events?after={body['last_seq']}")
    assert after.json()["events"] == [] and after.json()["last_seq"] == body["last_seq"]
    await console_env.chat("thank you", conversation_id=cid)
    newer = (await viewer.get(f"/api/conversations/{cid}/events?after={body['last_seq']}")).json()
    assert newer["events"][0]["seq"] == body["last_seq"] + 1 and newer["last_seq"] > body["last_seq"]
    await viewer.aclose()


@pytest.mark.parametrize(
    ("path", "status"),
    [("/api/conversations/no-such-conversation", 404), ("/api/conversations/bad%20id", 400),
     ("/api/conversations/no-such/events?after=x", 400), ("/api/conversations/no-such/events", 404),
     ("/api/conversations/no-such/scenario.yml", 404)],
)
async def test_conversation_errors(staff: Staff, path: str, status: int) -> None:
    await staff.login("viewer")
    res = await staff.get(path)
    assert res.status_code == status


async def test_store_unavailable_is_503_without_details(ops: OpsServer, console_env: ConsoleEnv,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from dialogue.errors import StoreUnavailable

    viewer = await as_role(ops, "viewer")

    async def down(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("postgresql://kefu:***@db/kefu")

    monkeypatch.setattr(console_env.console, "list_conversations", down)
    res = await viewer.get("/api/conversations")
    assert res.status_code == 503 and error(res) == "store_unavailable" and "postgresql" not in res.text
    await viewer.aclose()


async def test_review_flags_and_tags(ops: OpsServer, console_env: ConsoleEnv) -> None:
    cid = await console_env.chat("hello")
    agent = await as_role(ops, "agent")
    res = await agent.post(f"/api/conversations/{cid}/review",
                           {"flagged": True, "add_tags": ["refund", "<b>vip</b>"]})
    assert res.status_code == 400  # tags are plain words
    res = await agent.post(f"/api/conversations/{cid}/review", {"flagged": True, "reviewed": True,
                                                                "add_tags": ["refund", "vip"]})
    assert res.status_code == 200
    row = res.json()["conversation"]
    assert row["flagged"] is True and row["reviewed"] is True and row["tags"] == ["refund", "vip"]
    res = await agent.post(f"/api/conversations/{cid}/review", {"remove_tags": ["vip"], "flagged": False})
    assert res.json()["conversation"]["tags"] == ["refund"] and res.json()["conversation"]["flagged"] is False
    assert (await agent.post(f"/api/conversations/{cid}/review", {})).status_code == 400
    assert (await agent.post(f"/api/conversations/{cid}/review", {"flagged": "yes"})).status_code == 400
    listed = (await agent.get("/api/conversations?tag=refund&reviewed=true")).json()["items"]
    assert [c["id"] for c in listed] == [cid]
    events = (await agent.get(f"/api/conversations/{cid}")).json()["events"]
    reviews = [e["data"] for e in events if e["type"] == "review"]
    assert reviews[0]["by"] == "agent" and reviews[0]["tags_added"] == ["refund", "vip"]
    await agent.aclose()


async def test_correction_appends_a_training_example(ops: OpsServer, console_env: ConsoleEnv) -> None:
    import yaml

    text = "my parcel 10234 never came"
    cid = await console_env.chat(text)
    agent = await as_role(ops, "agent")
    events = (await agent.get(f"/api/conversations/{cid}")).json()["events"]
    seq = next(e["seq"] for e in events if e["type"] == "user_message")
    start = text.index("10234")
    body = {"seq": seq, "intent": "order_status",
            "entities": [{"entity": "order_id", "value": "10234", "start": start, "end": start + 5}]}
    res = await agent.post(f"/api/conversations/{cid}/correct", body)
    assert res.status_code == 200, res.text
    assert res.json()["event"]["type"] == "correction" and res.json()["event"]["data"]["intent"] == "order_status"
    assert res.json()["training"]["added"] is True and res.json()["training"]["file"] == "nlu.yml"
    nlu = console_env.nlu_files["en"].read_text(encoding="utf-8")
    assert "my parcel [10234](order_id) never came" in nlu
    yaml.safe_load(nlu)  # still valid YAML
    summary = (await agent.get(f"/api/conversations/{cid}")).json()["conversation"]
    assert summary["reviewed"] is True

    bad = [
        {"seq": seq, "intent": "no_such_intent"},
        {"seq": seq + 1, "intent": "order_status"},  # not a user message
        {"seq": 0, "intent": "order_status"},
        {"seq": seq, "intent": "order_status", "entities": [{"entity": "order_id", "start": 0, "end": 2,
                                                             "value": "10234"}]},
        {"seq": seq, "intent": "order_status", "entities": [{"entity": "colour", "start": 0, "end": 2}]},
        {"seq": seq, "intent": "order_status", "entities": [{"entity": "order_id", "start": 5, "end": 99}]},
    ]
    for payload in bad:
        res = await agent.post(f"/api/conversations/{cid}/correct", payload)
        assert res.status_code == 400, (payload, res.text)
    await agent.aclose()


async def test_scenario_export(ops: OpsServer, console_env: ConsoleEnv) -> None:
    cid = await console_env.chat("hello", "where is my order 10234")
    viewer = await as_role(ops, "viewer")
    res = await viewer.get(f"/api/conversations/{cid}/scenario.yml?name=order_case")
    assert res.status_code == 200 and res.headers["content-type"].startswith("application/yaml")
    assert res.headers["content-disposition"] == 'attachment; filename="order_case.yml"'
    assert "where is my order 10234" in res.text and "order_status" in res.text
    await viewer.aclose()


# ---------------------------------------------------------------------------------------------- handoff
async def test_queue_takeover_message_handback(ops: OpsServer, console_env: ConsoleEnv) -> None:
    waiting = await console_env.chat("I want to complain")
    viewer = await as_role(ops, "viewer")
    agent = await as_role(ops, "agent")
    admin = await as_role(ops, "admin")
    queue = (await viewer.get("/api/handoff")).json()["items"]
    assert [c["id"] for c in queue] == [waiting] and queue[0]["handoff_status"] == "waiting"

    res = await agent.post(f"/api/conversations/{waiting}/message", {"text": "hi"})
    assert res.status_code == 409  # take it over first
    res = await agent.post(f"/api/conversations/{waiting}/takeover")
    assert res.status_code == 200 and res.json()["conversation"]["agent"] == "agent"
    assert (await admin.post(f"/api/conversations/{waiting}/takeover")).status_code == 409  # held by another
    assert (await admin.post(f"/api/conversations/{waiting}/message", {"text": "me too"})).status_code == 409

    res = await agent.post(f"/api/conversations/{waiting}/message", {"text": "  Hello, I am Amy.  ",
                                                                      "message_id": "agent-msg-1"})
    assert res.status_code == 200 and res.json()["event"]["data"]["text"] == "Hello, I am Amy."
    again = await agent.post(f"/api/conversations/{waiting}/message", {"text": "Hello, I am Amy.",
                                                                       "message_id": "agent-msg-1"})
    assert again.status_code == 200 and again.json()["event"]["seq"] == res.json()["event"]["seq"]  # idempotent
    for body in ({"text": ""}, {"text": "x" * 2001}, {"text": "ok", "message_id": "bad id!"}):
        assert (await agent.post(f"/api/conversations/{waiting}/message", body)).status_code in (400, 413)

    reply = await console_env.engine.handle_message(waiting, "customer-2", "are you a person?")
    assert reply.text == "" and reply.handed_off  # the bot stays quiet while the agent holds it

    res = await agent.post(f"/api/conversations/{waiting}/handback")
    assert res.status_code == 200 and res.json()["conversation"]["handoff_status"] == ""
    assert (await viewer.get("/api/handoff")).json()["items"] == []
    types = [e["type"] for e in (await viewer.get(f"/api/conversations/{waiting}")).json()["events"]]
    assert types.count("agent_message") == 1 and "takeover" in types and "handback" in types
    for client in (viewer, agent, admin):
        await client.aclose()


# -------------------------------------------------------------------------------------------- dashboard
async def test_dashboard_numbers_and_pngs(ops: OpsServer, console_env: ConsoleEnv) -> None:
    await console_env.chat("hello", "where is my order 10234")
    await console_env.chat("I want to complain")
    viewer = await as_role(ops, "viewer")
    stats = (await viewer.get("/api/dashboard?days=7")).json()
    assert stats["days"] == 7 and stats["conversations"] == 2 and len(stats["per_day"]) == 7
    assert stats["handoff_rate"] == 0.5 and stats["top_intents"]
    for plot in ("conversations", "rates", "intents"):
        res = await viewer.get(f"/api/dashboard/{plot}.png?days=7")
        assert res.status_code == 200 and res.headers["content-type"] == "image/png"
        assert res.content.startswith(b"\x89PNG") and len(res.content) < 200_000
    assert (await viewer.get("/api/dashboard/secrets.png")).status_code == 404
    assert (await viewer.get("/api/dashboard?days=0")).status_code == 400
    assert (await viewer.get("/api/dashboard?days=999")).status_code == 400
    await viewer.aclose()


# ------------------------------------------------------------------------------------------------- users
async def test_admin_manages_accounts(ops: OpsServer, console_env: ConsoleEnv) -> None:
    admin = await as_role(ops, "admin")
    listed = (await admin.get("/api/users")).json()["items"]
    assert {u["username"] for u in listed} == set(ROLES) and "password" not in json.dumps(listed)
    res = await admin.post("/api/users", {"username": "bob", "password": "bob-password-1", "role": "agent"})
    assert res.status_code == 201 and res.json()["user"] == {**res.json()["user"], "username": "bob", "role": "agent"}
    assert (await admin.post("/api/users", {"username": "bob", "password": "bob-password-2",
                                            "role": "agent"})).status_code == 409
    for body in ({"username": "carol", "password": "short", "role": "agent"},
                 {"username": "carol", "password": "carol-password-1", "role": "root"},
                 {"username": "c d", "password": "carol-password-1", "role": "agent"}):
        assert (await admin.post("/api/users", body)).status_code == 400, body
    bob = Staff(ops)
    assert (await bob.login("bob", "bob-password-1")).status_code == 200
    res = await admin.post("/api/users/bob", {"role": "viewer"})
    assert res.status_code == 200 and res.json()["user"]["role"] == "viewer"
    assert (await bob.post(f"/api/conversations/{await console_env.chat('hello')}/takeover")).status_code == 403
    assert (await admin.post("/api/users/bob", {"disabled": True})).json()["user"]["disabled"] is True
    assert (await bob.get("/api/me")).status_code == 401
    assert (await admin.post("/api/users/admin", {"disabled": True})).status_code == 400  # no self-lockout
    assert (await admin.post("/api/users/admin", {"role": "viewer"})).status_code == 400
    assert (await admin.post("/api/users/nobody", {"role": "viewer"})).status_code == 404
    res = await admin.post("/api/users/agent", {"password": "new-agent-password"})
    assert res.status_code == 200
    assert (await Staff(ops).login("agent", "new-agent-password")).status_code == 200
    await admin.aclose()
    await bob.aclose()


async def test_admin_erases_a_customers_conversations(ops: OpsServer, console_env: ConsoleEnv) -> None:
    mine = await console_env.engine.open_conversation(None, "en", sender="cust-7")
    await console_env.chat("where is my order 10234", conversation_id=mine)
    other = await console_env.chat("hello")
    admin = await as_role(ops, "admin")
    for body in ({}, {"user": ""}, {"user": 7}, {"user": "x" * 256}):
        assert (await admin.post("/api/retention/erase", body)).status_code == 400, body
    res = await admin.post("/api/retention/erase", {"user": "cust-7"})
    assert res.status_code == 200 and res.json()["conversations"] == 1 and res.json()["rows"]["events"] > 0
    assert (await admin.get(f"/api/conversations/{mine}")).status_code == 404
    assert (await admin.get(f"/api/conversations/{other}")).status_code == 200
    assert (await admin.post("/api/retention/erase", {"user": "cust-7"})).json()["conversations"] == 0
    await admin.aclose()


async def test_logs_hold_no_message_text_or_search(ops: OpsServer, console_env: ConsoleEnv,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    cid = await console_env.chat("my secret is SECRET-42 order 10234")
    agent = await as_role(ops, "agent")
    await agent.get("/api/conversations?q=SECRET-42")
    await agent.get(f"/api/conversations/{cid}")
    await agent.post(f"/api/conversations/{cid}/takeover")
    await agent.post(f"/api/conversations/{cid}/message", {"text": "I see SECRET-42"})
    await agent.login("agent", "wrong-password-SECRET-42")
    ops_logs = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("kefu"))
    assert "takeover by agent" in ops_logs and "SECRET" not in ops_logs
    assert PASSWORDS["agent"] not in ops_logs
    await agent.aclose()


def test_static_dir_is_complete() -> None:
    from channels.ops import PAGES, load_ops_static

    files = load_ops_static(OPS_STATIC_DIR)
    assert set(PAGES.values()) <= set(files) and "favicon.svg" in files


@pytest.mark.parametrize(("page", "current"), [
    ("console.html", "/console"), ("conversation.html", "/console"), ("queue.html", "/console/queue"),
    ("dashboard.html", "/console/dashboard"), ("users.html", "/console/users"),
])
def test_every_page_gets_the_one_header_with_its_own_link_current(page: str, current: str) -> None:
    from channels.ops import load_ops_static

    files = load_ops_static(OPS_STATIC_DIR)
    html = files[page][0].decode()
    assert "kefu:header" not in html and "header.html" not in files  # put in place; never served on its own
    assert html.count('<header class="ops-header">') == 1 and html.count('id="ops-logout"') == 1
    assert html.count('aria-current="page"') == 1 and f'href="{current}" aria-current="page"' in html


def test_a_header_mark_naming_no_link_fails_at_start() -> None:
    from channels.errors import StaticFilesError
    from channels.ops.pages import with_header

    header = b'<nav><a href="/console">x</a></nav>\n'
    assert with_header(b"<body>\n  <!-- kefu:header current=/console -->\n</body>", header) == (
        b'<body>\n<nav><a href="/console" aria-current="page">x</a></nav>\n</body>')
    with pytest.raises(StaticFilesError):
        with_header(b"<!-- kefu:header current=/nowhere -->", header)


def test_missing_ops_files_fail_at_start(tmp_path: Path) -> None:
    from channels.errors import ChannelError, StaticFilesError
    from channels.ops import load_ops_static

    (tmp_path / "login.html").write_text("<!doctype html>")
    with pytest.raises(StaticFilesError) as info:
        load_ops_static(tmp_path)
    assert isinstance(info.value, ChannelError)
