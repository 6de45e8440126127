"""The pure parts of the chat server, without a socket: its HTTP responses (:mod:`channels.chat_http`) and the
open-connection slots (:class:`channels.limits.ConnectionSlots`). The same behaviour over real sockets is checked in
test_server.py, test_server_limits.py and tests/security/test_chat_http.py."""

from __future__ import annotations

import email.utils
import http
import json
from pathlib import Path

import pytest
from websockets.datastructures import Headers

from channels import chat_http as h
from channels.admission import Admission
from channels.errors import StaticFilesError
from channels.limits import CONNECTIONS_PER_ADDRESS, MAX_CONNECTIONS, ConnectionSlots

DATE = 1_790_000_000.0
SITE = {"X-Site": "kefu", "Cache-Control": "private"}


# ------------------------------------------------------------------------------------------------------ requests
@pytest.mark.parametrize(
    ("target", "path"),
    [("/", "/"), ("", "/"), ("/ready?x=1", "/ready"), ("/ws?token=a", "/ws"), ("/widget.js#x", "/widget.js")],
)
def test_request_path(target: str, path: str) -> None:
    assert h.request_path(target) == path


def test_wants_websocket() -> None:
    assert h.wants_websocket(Headers([("Upgrade", "WebSocket")]))
    assert not h.wants_websocket(Headers([("Upgrade", "h2c")]))
    assert not h.wants_websocket(Headers())


# ----------------------------------------------------------------------------------------------------- responses
def test_every_response_carries_the_base_headers_then_the_sites_then_the_routes() -> None:
    res = h.response(http.HTTPStatus.OK, b"abc", "text/plain", date=DATE, site_headers=SITE, extra={"X-Route": "1"})
    assert (res.status_code, res.reason_phrase, res.body) == (200, "OK", b"abc")
    assert res.headers["Date"] == email.utils.formatdate(DATE, usegmt=True)
    assert res.headers["Content-Length"] == "3" and res.headers["Connection"] == "close"
    assert res.headers["X-Content-Type-Options"] == "nosniff" and res.headers["Referrer-Policy"] == "no-referrer"
    assert res.headers["X-Site"] == "kefu" and res.headers["X-Route"] == "1"


def test_pages() -> None:
    files = {"/index.html": h.StaticFile(b"<!doctype html>", h.CONTENT_TYPES[".html"]),
             "/widget.js": h.StaticFile(b"1;", h.CONTENT_TYPES[".js"])}
    health = h.page_response("/healthz", files, date=DATE, site_headers={})
    assert health.status_code == 200 and json.loads(health.body) == {"status": "ok"}
    assert health.headers["Cache-Control"] == "no-store"
    page = h.page_response("/index.html", files, date=DATE, site_headers={})
    assert page.headers["Content-Security-Policy"] == h.CONTENT_SECURITY_POLICY
    assert page.headers["Cache-Control"] == "no-cache"
    script = h.page_response("/widget.js", files, date=DATE, site_headers={})
    assert "Content-Security-Policy" not in script.headers and script.body == b"1;"
    missing = h.page_response("/nope", files, date=DATE, site_headers={})
    assert missing.status_code == 404 and json.loads(missing.body)["error"]["code"] == "not_found"


def test_ready_answers_503_with_retry_after_when_over_the_budget() -> None:
    admission = Admission(0.5, now=0.0)
    ready = h.ready_response(admission, 0.0, date=DATE, site_headers={})
    assert ready.status_code == 200
    assert json.loads(ready.body) == {"status": "ready", "queue_delay_ms": 0.0, "budget_ms": 500.0}
    for _ in range(3):
        admission.admitted(0.0)
    admission.finished(2.0)  # two busy seconds per turn, two turns still in flight: 4 s of queueing delay
    saturated = h.ready_response(admission, 2.0, date=DATE, site_headers={})
    assert saturated.status_code == 503 and json.loads(saturated.body)["status"] == "saturated"
    assert int(saturated.headers["Retry-After"]) >= 1 and saturated.headers["Cache-Control"] == "no-store"


def test_refusals() -> None:
    full = h.refusal_response(MAX_CONNECTIONS, date=DATE, site_headers={})
    assert full.status_code == 503 and json.loads(full.body)["error"]["code"] == "unavailable"
    crowded = h.refusal_response(CONNECTIONS_PER_ADDRESS, date=DATE, site_headers={})
    assert crowded.status_code == 429 and json.loads(crowded.body)["error"]["code"] == "rate_limited"


# -------------------------------------------------------------------------------------------------- static files
@pytest.mark.parametrize(
    ("name", "content_type"),
    [("index.html", "text/html; charset=utf-8"), ("LOGO.PNG", "image/png"), ("widget.min.js", h.CONTENT_TYPES[".js"]),
     (".env", None), ("notes.md", None), ("ops", None), ("a" * 101 + ".js", None), ("-x.js", None)],
)
def test_static_content_type(name: str, content_type: str | None) -> None:
    assert h.static_content_type(name) == content_type


def test_static_routes_need_the_required_files_and_alias_the_index() -> None:
    index = h.StaticFile(b"<!doctype html>", h.CONTENT_TYPES[".html"])
    widget = h.StaticFile(b"1;", h.CONTENT_TYPES[".js"])
    routes = h.static_routes({"index.html": index, "widget.js": widget}, Path("/srv/static"))
    assert routes == {"/index.html": index, "/widget.js": widget, "/": index}
    with pytest.raises(StaticFilesError) as info:
        h.static_routes({"index.html": index}, Path("/srv/static"))
    assert info.value.path == str(Path("/srv/static") / "widget.js")


# ---------------------------------------------------------------------------------------------- connection slots
def test_slots_cap_the_server_and_each_address() -> None:
    closed: set[str] = set()
    slots: ConnectionSlots[str] = ConnectionSlots(3, 2, closed.__contains__)
    assert slots.admit("a1", lambda: "10.0.0.1") is None
    assert slots.admit("a2", lambda: "10.0.0.1") is None
    assert slots.admit("a3", lambda: "10.0.0.1") == CONNECTIONS_PER_ADDRESS
    assert slots.admit("b1", lambda: "10.0.0.2") is None
    assert slots.admit("c1", lambda: "10.0.0.3") == MAX_CONNECTIONS and len(slots) == 3
    assert slots.address("a1") == "10.0.0.1" and slots.address("a3") is None
    slots.forget("b1")
    assert slots.admit("c1", lambda: "10.0.0.3") is None
    assert "10.0.0.2" not in repr(slots)  # counts only


def test_slots_drop_failed_handshakes_when_a_limit_is_reached() -> None:
    closed: set[str] = set()
    slots: ConnectionSlots[str] = ConnectionSlots(None, 1, closed.__contains__)
    assert slots.admit("a1", lambda: "10.0.0.1") is None
    closed.add("a1")  # its handshake failed: forget() is never called for it
    assert slots.admit("a2", lambda: "10.0.0.1") is None
    assert slots.address("a1") is None and slots.address("a2") == "10.0.0.1"


def test_slots_ask_the_address_only_with_a_per_address_limit() -> None:
    def no_address() -> str:
        raise AssertionError("not asked")

    slots: ConnectionSlots[str] = ConnectionSlots(None, None, lambda _: False)
    assert slots.admit("a1", no_address) is None and len(slots) == 1
    slots.forget("a1")
    slots.forget("a1")  # twice is harmless
    assert len(slots) == 0
