"""The staff-only ops server (aiohttp): login, the console pages and their JSON API, on a port of its own.

Why a second server: the chat server's HTTP layer (websockets) is GET-only, while staff surfaces need POST, cookies
and CSRF protection; and a port of its own lets a shop keep the console off the public interface (default
``127.0.0.1:8001``) while the widget is served to the world. Both run in one process on one ``DialogueEngine``.

Security model
--------------
* Login (``POST /api/login``) checks an argon2id hash and sets ``kefu_session`` (HttpOnly, SameSite=Strict,
  Path=/, Secure when the console's origin is https; a browser-session cookie). The database keeps only the
  token's SHA-256. A session ends after ``session_ttl`` (8 h) without a request, and ``session_max_age`` (24 h)
  after login whatever happens; logging out, a password change or disabling the account ends it at once.
* Login throttling (429 + ``Retry-After``): an attempt is counted in the database when it *starts*, atomically with
  the check, before any password is looked at (:mod:`dialogue.staff_throttle`), so concurrent guesses cannot
  slip through together and every worker process shares the count. It counts per client address and per account
  *and* address (:func:`channels.auth.throttle_keys`): nobody can lock a staff member out from elsewhere by
  failing on purpose. Only a known account's name is ever logged ("?" otherwise: people type passwords there).
* Password hashing runs on a pool of its own (:class:`PasswordPool`: ``password_workers`` threads and at most
  ``password_queue`` waiting; beyond that, 503 + ``Retry-After`` at once), never on the default executor where
  customers' turns run their NLU: a login flood waits in its own queue.
* Only Host names the console was configured for are answered (400 ``bad_host`` otherwise): by default the
  loopback names with the console's port (``127.0.0.1``, ``localhost``, ``[::1]``) and the address it listens
  on when that is one specific IP; ``origins`` (``--console-origin``) adds the public origin behind a proxy. This
  keeps DNS-rebinding pages out even when their Origin and Host agree.
* Slow clients: a request head must arrive within ``header_timeout`` seconds of the connection opening (or of
  the previous response), a body within ``body_timeout`` (408); idle keep-alive connections close after
  ``header_timeout`` too.
* Every route declares the least role it needs (:data:`ROUTES`; ``None`` = public): ``viewer`` reads,
  ``agent`` reviews, corrects and talks to customers, ``admin`` manages accounts. Unknown or expired sessions
  get 401 (pages redirect to ``/login``), too small a role gets 403.
* Every POST needs the session's CSRF token in ``X-CSRF-Token`` *and* an ``Origin`` (or ``Referer``) of the
  console itself (``options.origins``, default: the loopback origins above; never derived from the request's
  Host); login needs the origin. JSON bodies only (``Content-Type: application/json``), at most
  ``max_body_bytes``.
* Every response: a strict, constant Content-Security-Policy (:data:`CSP`: no inline code, nothing from
  elsewhere; no request header goes into it), ``X-Content-Type-Options: nosniff``,
  ``Referrer-Policy: same-origin``, no framing, ``Cache-Control: no-store``. JSON escapes ``<``, ``>`` and
  ``&``; the pages insert every string with ``textContent``.
* ``GET /metrics`` (role viewer, or public with ``public_metrics``): the Prometheus metrics of this process (the
  :class:`channels.metrics.Metrics` the chat server fills), here rather than on the customer port.
* Logs carry methods, paths (control characters escaped: a request cannot forge a log line), route names,
  statuses, known usernames and ids: never message text, search queries or passwords.

Usage::

    async with run_ops_server(console_backend, port=0) as ops:
        print(ops.url)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import io
import ipaddress
import itertools
import json
import logging
import math
import os
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, ParamSpec, Self, TypeVar
from urllib.parse import quote

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler

from channels import auth
from channels import protocol as p
from channels.backend import ConsoleBackend
from channels.errors import ChannelError, StaticFilesError
from dialogue.canned import CannedReply, CannedReplyExists, CannedReplyInvalid, check_reply
from dialogue.types import (
    CONSOLE_LOCALES,
    ConversationFilter,
    ConversationSummary,
    DashboardStats,
    Session,
    User,
)

if TYPE_CHECKING:
    from channels.metrics import Metrics

logger = logging.getLogger("kefu.channels.ops")

OPS_STATIC_DIR = Path(__file__).resolve().parent / "static" / "ops"

CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS: Final[Mapping[str, str]] = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    # same-origin (not no-referrer): with no-referrer, browsers send "Origin: null" on same-origin POSTs.
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
    "Server": "Kefu",  # not aiohttp's name and version
}

# (method, path, least role or None for public, handler name). Every route of the app is here, and only these:
# tests walk this table for every role. POST routes other than /api/login also need CSRF token + origin.
ROUTES: Final[tuple[tuple[str, str, str | None, str], ...]] = (
    ("GET", "/", None, "root"),
    ("GET", "/login", None, "login_page"),
    ("GET", "/static/{name}", None, "static_file"),
    ("GET", "/favicon.svg", None, "favicon"),
    ("POST", "/api/login", None, "login"),
    ("POST", "/api/logout", auth.VIEWER, "logout"),
    ("GET", "/api/me", auth.VIEWER, "me"),
    ("POST", "/api/me/locale", auth.VIEWER, "set_locale"),  # {"locale": "en" | "zh" | null}
    ("GET", "/console", auth.VIEWER, "page_list"),
    ("GET", "/console/c/{id}", auth.VIEWER, "page_conversation"),
    ("GET", "/console/queue", auth.VIEWER, "page_queue"),
    ("GET", "/console/dashboard", auth.VIEWER, "page_dashboard"),
    ("GET", "/console/users", auth.ADMIN, "page_users"),
    ("GET", "/api/meta", auth.VIEWER, "meta"),
    ("GET", "/api/conversations", auth.VIEWER, "conversations"),
    ("GET", "/api/conversations/{id}", auth.VIEWER, "conversation"),
    ("GET", "/api/conversations/{id}/events", auth.VIEWER, "conversation_events"),
    ("GET", "/api/conversations/{id}/scenario.yml", auth.VIEWER, "scenario"),
    ("POST", "/api/conversations/{id}/review", auth.AGENT, "review"),
    ("POST", "/api/conversations/{id}/correct", auth.AGENT, "correct"),
    ("POST", "/api/conversations/{id}/takeover", auth.AGENT, "take_over"),
    ("POST", "/api/conversations/{id}/message", auth.AGENT, "agent_message"),
    ("POST", "/api/conversations/{id}/handback", auth.AGENT, "hand_back"),
    ("POST", "/api/conversations/{id}/resolve", auth.AGENT, "resolve"),
    ("POST", "/api/conversations/{id}/reopen", auth.AGENT, "reopen"),
    ("POST", "/api/conversations/{id}/note", auth.AGENT, "add_note"),
    ("POST", "/api/conversations/{id}/claim", auth.AGENT, "claim"),
    ("POST", "/api/conversations/{id}/assign", auth.AGENT, "assign"),  # {"username": str | null}
    ("GET", "/api/assignees", auth.VIEWER, "assignees"),
    ("GET", "/api/conversations/{id}/typing", auth.VIEWER, "typing_state"),  # in memory, no store query
    ("POST", "/api/conversations/{id}/typing", auth.AGENT, "agent_typing"),  # {"state": bool}
    ("GET", "/api/conversations/{id}/canned", auth.AGENT, "conversation_canned"),
    ("GET", "/api/conversations/{id}/canned/render", auth.AGENT, "render_canned"),  # ?reply=<id>
    ("GET", "/api/canned", auth.AGENT, "canned_replies"),
    ("POST", "/api/canned", auth.ADMIN, "add_canned_reply"),
    ("POST", "/api/canned/update", auth.ADMIN, "update_canned_reply"),  # {"id", "language", "title", "text"}
    ("POST", "/api/canned/delete", auth.ADMIN, "delete_canned_reply"),  # {"id"}
    ("GET", "/api/handoff", auth.VIEWER, "handoff_queue"),
    ("GET", "/api/dashboard", auth.VIEWER, "dashboard"),
    ("GET", "/api/dashboard/{plot}.png", auth.VIEWER, "dashboard_png"),
    ("GET", "/api/users", auth.ADMIN, "users"),
    ("POST", "/api/users", auth.ADMIN, "add_user"),
    ("POST", "/api/users/{username}", auth.ADMIN, "update_user"),
    ("POST", "/api/retention/erase", auth.ADMIN, "erase_customer"),
    ("GET", "/metrics", auth.VIEWER, "metrics"),  # public instead with OpsOptions.public_metrics
)

PAGES: Final[Mapping[str, str]] = {
    "login_page": "login.html",
    "page_list": "console.html",
    "page_conversation": "conversation.html",
    "page_queue": "queue.html",
    "page_dashboard": "dashboard.html",
    "page_users": "users.html",
}
STATIC_TYPES: Final[Mapping[str, str]] = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".html": "text/html; charset=utf-8",
}
PLOTS: Final = ("conversations", "rates", "intents")
USER: Final = web.RequestKey("user", User)  # the signed-in account, set by the route guard
SESSION: Final = web.RequestKey("session", Session)

# Error code -> (HTTP status, customer-safe message).
ERRORS: Final[Mapping[str, tuple[int, str]]] = {
    "bad_request": (400, "The request is not valid."),
    "bad_host": (400, "This console does not answer for that host name."),
    "unauthorized": (401, "Log in first (or again: the session expired)."),
    "bad_credentials": (401, "Wrong username or password."),
    "forbidden": (403, "Your role does not allow this."),
    "csrf": (403, "Missing or wrong CSRF token; reload the page."),
    "bad_origin": (403, "The request did not come from the console."),
    "not_found": (404, "Not found."),
    "timeout": (408, "The request was sent too slowly."),
    "conflict": (409, "Someone else changed this first; reload."),
    "unprocessable": (422, "This cannot be turned into a training example (check the intent and entities)."),
    "too_large": (413, "The request body is too large."),
    "unsupported_media_type": (415, "Send JSON (Content-Type: application/json)."),
    "rate_limited": (429, "Too many failed logins; wait and retry."),
    "internal": (500, "Something went wrong on our side."),
    "store_unavailable": (503, "The conversation store is unavailable; retry in a moment."),
    "busy": (503, "Too many logins at once; retry in a moment."),
}

#: Exception class name -> error code (the MRO is walked, so subclasses match).
ERROR_STATUS: dict[str, str] = {
    "ConversationNotFound": "not_found",
    "UserNotFound": "not_found",
    "HandoffConflict": "conflict",
    "UserExists": "conflict",
    "ConcurrentUpdate": "conflict",
    "DuplicateMessage": "conflict",
    "StoreUnavailable": "store_unavailable",
    "PasswordPoolFull": "busy",
    "InvalidQuery": "bad_request",
    "AuthError": "bad_request",
    "ReviewError": "unprocessable",
    "CannedReplyInvalid": "bad_request",
    "CannedReplyExists": "conflict",
    "CannedReplyNotFound": "not_found",
}

_TAG_RE = re.compile(r"[^\s\x00-\x1f\x7f<>\"'`]{1,32}")
_INTENT_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_LANGUAGE_RE = re.compile(r"[a-z]{2}(-[A-Za-z0-9]{1,8})?")
_CURSOR_RE = re.compile(r"[A-Za-z0-9_.:=+/-]{1,400}")
_SCENARIO_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,80}")
MAX_LIMIT: Final = 200
DEFAULT_LIMIT: Final = 50
MAX_QUERY_CHARS: Final = 200
MAX_TAGS: Final = 10
MAX_NOTE_CHARS: Final = 2000  # dialogue.store.MAX_NOTE_CHARS
DUPLICATE_CANNED: Final = "A canned reply with this title already exists in that language."


class ApiError(Exception):
    """A request the API refuses: ``code`` is a key of :data:`ERRORS`; ``reason`` names fields, never values."""

    def __init__(self, code: str, reason: str | None = None, *, headers: Mapping[str, str] | None = None) -> None:
        self.code = code
        self.reason = reason or ERRORS[code][1]
        self.headers = dict(headers or {})
        super().__init__(f"{code}: {self.reason}")


def error_code_for(exc: BaseException) -> str:
    if isinstance(exc, ApiError):
        return exc.code
    for cls in type(exc).__mro__:
        code = ERROR_STATUS.get(cls.__name__)
        if code is not None:
            return code
    return "internal"


# --------------------------------------------------------------------------------------------------------- JSON
def encode_json(value: Any) -> bytes:
    """Compact UTF-8 JSON with ``<``, ``>`` and ``&`` escaped: a customer's ``<script>`` can never appear raw in a
    response body, whatever a browser or proxy would make of it."""
    text = p.encode_json(value).decode("utf-8")
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode("utf-8")


def json_response(value: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        body=encode_json(value), status=status, content_type="application/json", charset="utf-8", headers=headers
    )


def error_response(code: str, reason: str | None = None, headers: Mapping[str, str] | None = None) -> web.Response:
    status, message = ERRORS.get(code, ERRORS["internal"])
    return json_response({"error": {"code": code, "message": reason or message}}, status, headers)


def customer_name(s: ConversationSummary) -> str:
    """What the inbox calls the customer: the widget's ``data-user`` when the shop passed one, else "Visitor" and
    the first characters of the conversation id (enough to tell two visitors apart on one screen)."""
    return s.sender.strip()[:64] if s.sender and s.sender.strip() else f"Visitor {s.id[:6]}"


def summary_json(s: ConversationSummary, now: dt.datetime | None = None) -> dict[str, Any]:
    """One conversation row of the console API (the chat protocol's row plus the review/handoff fields and the
    inbox's: customer name, last message preview, assignee, unread, and ``waiting_seconds`` while queued, measured
    with the server's clock ``now`` so a console on a skewed laptop clock still shows the right wait)."""
    waiting = None
    if s.handoff_status == "waiting" and s.handoff_at is not None:
        waiting = max(0, int(((now or dt.datetime.now(dt.UTC)) - s.handoff_at).total_seconds()))
    return {
        **p.summary_to_json(s),
        "reviewed": s.reviewed,
        "flagged": s.flagged,
        "tags": list(s.tags),
        "min_confidence": s.min_confidence,
        "fallbacks": s.fallbacks,
        "safety_flags": s.safety_flags,
        "handoff_status": s.handoff_status,
        "agent": s.agent,
        "resolved_at": s.resolved_at.isoformat() if s.resolved_at else None,
        "resolved_by": s.resolved_by,
        "rating": s.rating,
        "customer": customer_name(s),
        "preview": s.preview,
        "preview_by": s.preview_by,
        "handoff_at": s.handoff_at.isoformat() if s.handoff_at else None,
        "waiting_seconds": waiting,
        "assignee": s.assignee,
        "assigned_at": s.assigned_at.isoformat() if s.assigned_at else None,
        "unread": s.unread,
    }


VIEWS: Final = ("all", "mine", "unassigned")  # the inbox's tabs (?view=)


def view_filter(raw: str | None, username: str) -> dict[str, Any]:
    """``?view=`` -> the :class:`ConversationFilter` fields that narrow a list or the queue to it."""
    view = raw or "all"
    if view not in VIEWS:
        raise ApiError("bad_request", "'view' must be all, mine or unassigned")
    if view == "mine":
        return {"assignee": username}
    if view == "unassigned":
        return {"assigned": False}
    return {}


def user_json(user: User) -> dict[str, Any]:
    return {
        "username": user.username,
        "role": user.role,
        "disabled": bool(user.disabled),
        "created_at": user.created_at.isoformat() if user.created_at else None,
    }


def _staff_text(body: Mapping[str, Any], cap: int) -> str:
    """The ``text`` of a staff request (an agent's message, a note): trimmed, non-empty, at most ``cap`` characters."""
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ApiError("bad_request", "'text' must be a non-empty string")
    if len(text.strip()) > cap:
        raise ApiError("too_large", f"'text' is longer than {cap} characters")
    return text.strip()


def canned_json(reply: CannedReply) -> dict[str, Any]:
    return {
        "id": reply.id,
        "language": reply.language,
        "title": reply.title,
        "text": reply.text,
        "created_by": reply.created_by,
        "created_at": reply.created_at.isoformat(),
    }


def dashboard_json(stats: DashboardStats) -> dict[str, Any]:
    data = dataclasses.asdict(stats)
    return json.loads(p.encode_json(data))  # dates -> ISO strings, tuples -> lists


# ------------------------------------------------------------------------------------------------ query parsing
def _one(query: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = query.get(name)
    if not values:
        return None
    value = values[-1].strip()
    return value or None


def _bool(query: Mapping[str, Sequence[str]], name: str) -> bool | None:
    raw = _one(query, name)
    if raw is None:
        return None
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ApiError("bad_request", f"query parameter '{name}' must be true or false")


def _int(raw: str | None, name: str, default: int, low: int, high: int) -> int:
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9:
        raise ApiError("bad_request", f"'{name}' must be a non-negative integer")
    value = int(raw)
    if not low <= value <= high:
        raise ApiError("bad_request", f"'{name}' must be between {low} and {high}")
    return value


def _when(raw: str | None, name: str, *, end_of_day: bool = False) -> dt.datetime | None:
    """ISO 8601 date or date-time; naive values are UTC. A bare date as an upper bound means the end of that day."""
    if raw is None:
        return None
    try:
        if len(raw) == 10:
            day = dt.date.fromisoformat(raw)
            start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
            return start + dt.timedelta(days=1) if end_of_day else start
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise ApiError("bad_request", f"query parameter '{name}' must be an ISO 8601 date or date-time") from None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


FILTER_PARAMS: Final = frozenset(
    {"since", "until", "created_since", "created_until", "language", "intent", "low_confidence", "fallback", "safety",
     "handoff", "tag", "reviewed", "flagged", "q", "limit", "cursor", "view"}
)


def parse_conversation_query(query: Mapping[str, Sequence[str]]) -> tuple[ConversationFilter, int, str | None]:
    """``GET /api/conversations`` parameters -> (filter, limit, cursor). Unknown parameters are refused (a typo
    must not silently list everything)."""
    unknown = set(query) - FILTER_PARAMS
    if unknown:
        raise ApiError("bad_request", f"unknown query parameter(s): {', '.join(sorted(unknown))[:200]}")
    language = _one(query, "language")
    if language is not None and not _LANGUAGE_RE.fullmatch(language):
        raise ApiError("bad_request", "'language' must be a language code such as en or zh")
    intent = _one(query, "intent")
    if intent is not None and not _INTENT_RE.fullmatch(intent):
        raise ApiError("bad_request", "'intent' must be 1-64 characters of [A-Za-z0-9_.-]")
    handoff = _one(query, "handoff")
    if handoff is not None and handoff not in ("waiting", "agent", "any", "none"):
        raise ApiError("bad_request", "'handoff' must be waiting, agent, any or none")
    tag = _one(query, "tag")
    if tag is not None and not _TAG_RE.fullmatch(tag):
        raise ApiError("bad_request", "'tag' must be 1-32 characters without spaces or quotes")
    text = _one(query, "q")
    if text is not None and len(text) > MAX_QUERY_CHARS:
        raise ApiError("bad_request", f"'q' must be at most {MAX_QUERY_CHARS} characters")
    cursor = _one(query, "cursor")
    if cursor is not None and not _CURSOR_RE.fullmatch(cursor):
        raise ApiError("bad_request", "'cursor' is malformed")
    filt = ConversationFilter(
        since=_when(_one(query, "since"), "since"),
        until=_when(_one(query, "until"), "until", end_of_day=True),
        created_since=_when(_one(query, "created_since"), "created_since"),
        created_until=_when(_one(query, "created_until"), "created_until", end_of_day=True),
        language=language,
        intent=intent,
        low_confidence=_bool(query, "low_confidence"),
        fallback=_bool(query, "fallback"),
        safety=_bool(query, "safety"),
        handoff=handoff,
        tag=tag,
        reviewed=_bool(query, "reviewed"),
        flagged=_bool(query, "flagged"),
        query=text,
    )
    return filt, _int(_one(query, "limit"), "limit", DEFAULT_LIMIT, 1, MAX_LIMIT), cursor


def _tags(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_TAGS:
        raise ApiError("bad_request", f"'{name}' must be a list of at most {MAX_TAGS} tags")
    tags = []
    for tag in value:
        if not isinstance(tag, str) or not _TAG_RE.fullmatch(tag.strip()):
            raise ApiError("bad_request", f"'{name}': a tag is 1-32 characters without spaces or quotes")
        tags.append(tag.strip())
    return tags


def _optional_bool(body: Mapping[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise ApiError("bad_request", f"'{name}' must be true, false or null")
    return value


def check_entities(text: str, raw: Any, known: Sequence[str]) -> list[dict[str, Any]]:
    """Validate a correction's entities: known names, in-bounds spans whose text is the value, no overlaps."""
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > 20:
        raise ApiError("bad_request", "'entities' must be a list of at most 20 entities")
    entities: list[dict[str, Any]] = []
    for item in raw:
        if not isinstance(item, dict):
            raise ApiError("bad_request", "each entity must be an object")
        name, start, end = item.get("entity"), item.get("start"), item.get("end")
        if not isinstance(name, str) or (known and name not in known):
            raise ApiError("bad_request", "unknown entity name")
        if (
            not isinstance(start, int)
            or not isinstance(end, int)
            or isinstance(start, bool)
            or isinstance(end, bool)
            or not 0 <= start < end <= len(text)
        ):
            raise ApiError("bad_request", "entity 'start'/'end' must be a span inside the text")
        value = text[start:end]
        if item.get("value") not in (None, value):
            raise ApiError("bad_request", "entity 'value' must be the text between 'start' and 'end'")
        entities.append({"entity": name, "value": value, "start": start, "end": end})
    entities.sort(key=lambda e: e["start"])
    for before, after in itertools.pairwise(entities):
        if after["start"] < before["end"]:
            raise ApiError("bad_request", "entities must not overlap")
    return entities


# ----------------------------------------------------------------------------------------------------- plots
def render_plot(stats: DashboardStats, plot: str) -> bytes:
    """One dashboard PNG (matplotlib's object API on the Agg canvas: thread-safe, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.0), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    accent = "#0f766e"
    from matplotlib.ticker import MaxNLocator

    if plot == "conversations":
        days = [d for d, _ in stats.per_day]
        counts = [n for _, n in stats.per_day]
        ax.bar(range(len(days)), counts, color=accent)
        step = max(1, len(days) // 8)
        ax.set_xticks(range(0, len(days), step), [str(d)[5:] for d in days[::step]])
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title("Conversations per day")
        ax.set_ylabel("conversations")
    elif plot == "rates":
        names = ["resolved by the bot", "handed to a human", "fallback replies"]
        values = [stats.resolution_rate, stats.handoff_rate, stats.fallback_rate]
        bars = ax.barh(names, [v * 100 for v in values], color=[accent, "#b45309", "#6b7280"])
        ax.bar_label(bars, labels=[f"{v:.0%}" for v in values], padding=3)
        ax.set_xlim(0, 110)
        ax.invert_yaxis()
        ax.set_title(f"Outcomes (safety blocks: {stats.safety_blocks}, redactions: {stats.redactions})")
        ax.set_xlabel("% of conversations (fallbacks: % of customer turns)")
    elif plot == "intents":
        names = [i for i, _ in stats.top_intents][::-1]
        counts = [n for _, n in stats.top_intents][::-1]
        ax.barh(names, counts, color=accent)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title("Top intents")
        ax.set_xlabel("conversations")
    else:
        raise ValueError(f"unknown plot {plot!r}")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------------- server
@dataclass(frozen=True)
class OpsOptions:
    """Settings of one ops server.

    ``origins``: the console's public origin(s) (e.g. ``("https://ops.shop.example",)`` behind a TLS proxy); POSTs
    must come from one of them, and their host names are answered besides the loopback ones. ``None``: the
    loopback origins with the console's port (and the listening address when it is one specific IP): never the
    request's own Host, which a DNS-rebinding page chooses. ``secure_cookie``: ``None`` sets ``Secure`` when the
    request is https or the configured origin is. ``session_ttl``: idle timeout (sliding). ``session_max_age``:
    absolute lifetime. ``login_limit``: login attempts allowed per address, and per account and address, in the
    window (shared by every worker through the database). ``password_workers`` / ``password_queue``: threads that
    hash passwords and how many checks may wait for them (more: 503 at once). ``header_timeout``: seconds for a
    request head (from the connection's start or its previous response; also the keep-alive idle timeout).
    ``body_timeout``: seconds for a request body. ``public_metrics``: serve ``/metrics`` without a session (for a
    scraper on the private network the console listens on). ``plot_cache_seconds``: how long dashboard numbers
    and PNGs are reused. ``dashboard_days``: the default and largest window. ``reuse_port``: SO_REUSEPORT, for
    several worker processes on one port.
    """

    origins: tuple[str, ...] | None = None
    secure_cookie: bool | None = None
    session_ttl: dt.timedelta = auth.SESSION_TTL
    session_max_age: dt.timedelta = auth.SESSION_MAX_AGE
    login_limit: auth.RateLimit = field(default_factory=auth.RateLimit)
    plot_cache_seconds: float = 60.0
    max_body_bytes: int = 64 * 1024
    queue_limit: int = 100
    dashboard_days: tuple[int, int] = (30, 366)
    static_dir: Path = OPS_STATIC_DIR
    reuse_port: bool = False
    password_workers: int = 1
    password_queue: int = 8
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    public_metrics: bool = False


_LOG_PATH_CHARS: Final = 200


def log_safe(text: str, limit: int = _LOG_PATH_CHARS) -> str:
    """``text`` fit for one log line: every character that is not printable (line breaks, ANSI escapes, U+2028...)
    and the backslash are written as escapes, and at most ``limit`` characters are kept. A request path is chosen
    by whoever sends it; unescaped, ``GET /%0a<fake line>`` writes a second, genuine-looking line into a text log."""
    out = []
    for char in text[:limit]:
        if char == "\\":
            out.append("\\\\")
        elif char.isprintable():
            out.append(char)
        else:
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out) + ("..." if len(text) > limit else "")


class _AccessLogger(AbstractAccessLogger):
    """Method, path and status only: paths hold conversation ids (fine) but query strings hold search text. The
    path is escaped (:func:`log_safe`)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info("%s %s %s %.1fms", request.method, log_safe(request.path), response.status, time * 1000)

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


_P = ParamSpec("_P")
_T = TypeVar("_T")


def _lower_priority(nice: int) -> None:
    """Make the calling thread ``nice`` steps nicer (Linux: per thread; elsewhere this may fail and is skipped)."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    with contextlib.suppress(OSError):
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))


class PasswordPoolFull(ChannelError):
    """Every password thread is busy and the wait queue is full: the login is answered 503 at once."""


class PasswordPool:
    """Password hashing and checking (argon2: ~0.1 s of CPU each) on threads of its own, with a bounded queue.

    Why not ``asyncio.to_thread``: that is the default executor, where customers' turns run their NLU. Sixty
    simultaneous logins queued sixty hashes there, and a customer's turn waited behind all of them (6 s instead of
    0.07 s). Here at most ``workers`` hashes run and ``queue`` wait; :meth:`reserve` (and :meth:`run`) refuses
    more at once (:class:`PasswordPoolFull`). A login reserves its slot before anything else, so a refused one
    costs no database work either. A slot is held until its hash has really finished (or was dropped before it
    started), also when the request that asked for it went away. On Linux the pool's threads (and the lane
    threads argon2 starts from them) also run ``nice`` steps nicer than the rest of the process, 19 (the lowest
    priority) by default: scheduling priority is per thread there, so a flood of logins gets the CPU that
    customers' turns leave and not a share of theirs (the demo bot's median turn during a login flood: 1.6 times
    as long at nice 10, unchanged at 19; ``benchmarks/security_login.py``). Logins are slower on a busy machine:
    staff can wait."""

    def __init__(self, workers: int = 1, queue: int = 8, *, nice: int = 19) -> None:
        if workers < 1 or queue < 0:
            raise ValueError("a password pool needs at least one worker and a queue of zero or more")
        self.workers = workers
        self.capacity = workers + queue
        self._executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="kefu-password", initializer=_lower_priority, initargs=(nice,)
        )
        self._lock = threading.Lock()  # the count is released from worker threads
        self._held = 0

    def __repr__(self) -> str:
        return f"PasswordPool(workers={self.workers}, capacity={self.capacity}, held={self._held})"

    @property
    def full(self) -> bool:
        return self._held >= self.capacity

    def _release(self, _future: Future[Any] | None = None) -> None:
        with self._lock:
            self._held -= 1

    def reserve(self) -> PasswordSlot:
        """A place in the pool (running or waiting), or :class:`PasswordPoolFull` at once."""
        with self._lock:
            if self._held >= self.capacity:
                raise PasswordPoolFull("password pool full")
            self._held += 1
        return PasswordSlot(self)

    async def run(self, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """``fn(*args, **kwargs)`` on the pool (reserve, run, release)."""
        slot = self.reserve()
        try:
            return await slot.run(fn, *args, **kwargs)
        finally:
            slot.release()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class PasswordSlot:
    """One reserved place in a :class:`PasswordPool`: :meth:`run` uses it once (the slot is then released when the
    work ends); :meth:`release` gives it back unused (a no-op after :meth:`run`)."""

    def __init__(self, pool: PasswordPool) -> None:
        self._pool: PasswordPool | None = pool

    def release(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool._release()

    async def run(self, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        pool = self._pool
        if pool is None:
            raise RuntimeError("this password slot was already used or released")
        future = pool._executor.submit(fn, *args, **kwargs)  # raises before taking the slot over: release() frees
        self._pool = None
        future.add_done_callback(pool._release)
        return await asyncio.wrap_future(future)


class OpsServer:
    """A running (once started) ops server. Use :func:`run_ops_server` or ``async with OpsServer(...)``."""

    def __init__(
        self,
        backend: ConsoleBackend,
        host: str = "127.0.0.1",
        port: int = 8001,
        options: OpsOptions | None = None,
        *,
        clock: Callable[[], dt.datetime] | None = None,
        metrics: Metrics | None = None,
        typing: p.TypingBoard | None = None,
    ) -> None:
        self.backend = backend
        self.typing = typing if typing is not None else p.TYPING_BOARD  # shared with this process's chat server
        self.host = host
        self._requested_port = port
        self.options = options or OpsOptions()
        self._now = clock or (lambda: dt.datetime.now(dt.UTC))
        self.metrics = metrics  # the process's chat metrics, served as /metrics (None: 404)
        self.passwords = PasswordPool(self.options.password_workers, self.options.password_queue)
        self._files: dict[str, tuple[bytes, str]] = {}
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._cache: dict[tuple[str, int], tuple[float, Any]] = {}
        self._cache_locks: dict[tuple[str, int], asyncio.Lock] = {}
        self._configured_origins = (
            frozenset(o for o in (auth.normalise_origin(x) for x in self.options.origins) if o)
            if self.options.origins
            else None
        )
        # Set by start(), once the port is known: the origins POSTs may come from, and those whose host names
        # the console answers for. Until then nothing is answered.
        self._csrf_origins: frozenset[str] = frozenset()
        self._host_origins: frozenset[str] = frozenset()
        self._attempts_purged_at: dt.datetime | None = None
        self.app = self._build_app()

    def __repr__(self) -> str:
        return f"OpsServer(host={self.host!r}, port={self._port or self._requested_port})"

    # ----------------------------------------------------------------------------------------------- lifecycle
    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("ops server not started")
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        self._files = await asyncio.to_thread(load_ops_static, self.options.static_dir)
        runner = web.AppRunner(
            self.app,
            access_log_class=_AccessLogger,
            access_log=logger,
            handle_signals=False,
            # aiohttp has no separate header timeout: its keep-alive timer runs from the connection's start (and
            # from each response) and closes a connection still waiting for a complete request head.
            keepalive_timeout=self.options.header_timeout,
            lingering_time=self.options.body_timeout,  # reading the rest of an unread body before closing
        )
        await runner.setup()
        site = web.TCPSite(
            runner, self.host, self._requested_port, reuse_address=True, reuse_port=self.options.reuse_port or None
        )
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        server = site._server  # the asyncio.Server: the only way to learn an ephemeral port
        assert server is not None
        self._port = int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
        self._csrf_origins, self._host_origins = self._origin_sets(self._port)
        logger.info("kefu ops console listening on %s", self.url)
        if self._configured_origins is None and not self._is_specific_ip(self.host):
            logger.info("console answers loopback host names only (%s); pass --console-origin for a public one",
                        ", ".join(sorted(self._host_origins)))

    @staticmethod
    def _is_specific_ip(host: str) -> bool:
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return False
        return not address.is_unspecified

    def _origin_sets(self, port: int) -> tuple[frozenset[str], frozenset[str]]:
        """(origins POSTs may come from, origins whose Host the console answers): see :class:`OpsOptions`."""
        own = set(auth.loopback_origins(port))
        if self._is_specific_ip(self.host):  # an IP literal cannot be rebound to another address
            bound = auth.normalise_origin(f"http://{self.url.split('://', 1)[1]}")
            if bound:
                own.add(bound)
        configured = self._configured_origins
        if configured is None:
            return frozenset(own), frozenset(own)
        return configured, configured | own

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.passwords.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -------------------------------------------------------------------------------------------- app wiring
    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._headers_middleware], client_max_size=self.options.max_body_bytes)
        for method, path, role, name in ROUTES:
            handler = getattr(self, "_h_" + name)
            if name == "metrics" and self.options.public_metrics:
                role = None
            app.router.add_route(method, path, self._guard(role, name, handler), name=name)
        return app

    @web.middleware
    async def _headers_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            if not auth.host_allowed(request.headers.get("Host"), self._host_origins):
                raise ApiError("bad_host")
            response = await handler(request)
        except ApiError as exc:
            response = error_response(exc.code, exc.reason, exc.headers)
            if exc.code == "timeout":
                response.force_close()  # the rest of that body is not worth waiting for
        except web.HTTPException as exc:
            if exc.status == 404:
                response = error_response("not_found")
            elif exc.status == 405:
                response = error_response("not_found", "method not allowed")
                response.set_status(405)
            elif exc.status == 413:
                response = error_response("too_large")
            elif 300 <= exc.status < 400:
                response = web.Response(status=exc.status, headers={"Location": exc.headers.get("Location", "/")})
            else:
                response = error_response("bad_request")
                response.set_status(exc.status)
        except Exception as exc:  # noqa: BLE001 - the API boundary: any failure becomes a JSON error
            code = error_code_for(exc)
            if code in ("internal", "store_unavailable"):
                logger.warning("%s %s failed: %s", request.method, _route_name(request), type(exc).__name__)
            response = error_response(code, headers={"Retry-After": "1"} if code == "busy" else None)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    def _guard(
        self, role: str | None, name: str, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """Wrap a handler with its access rule: session, CSRF + origin for POSTs, least role."""
        page = name in PAGES and role is not None

        async def guarded(request: web.Request) -> web.StreamResponse:
            if role is None:
                if request.method == "POST" and not self._origin_ok(request):
                    raise ApiError("bad_origin")
                return await handler(request)
            found = await self._session(request)
            if found is None:
                if page:
                    target = request.path_qs if request.path.startswith("/console") else "/console"
                    return web.Response(status=302, headers={"Location": "/login?next=" + quote(target, safe="/")})
                raise ApiError("unauthorized")
            session, user = found
            if request.method == "POST":
                if not self._origin_ok(request):
                    raise ApiError("bad_origin")
                if not auth.same_token(session.csrf_token, request.headers.get(auth.CSRF_HEADER)):
                    raise ApiError("csrf")
            if not auth.role_allows(user.role, role):
                if page:
                    return self._file_response("forbidden.html", status=403)
                raise ApiError("forbidden")
            request[USER] = user
            request[SESSION] = session
            return await handler(request)

        return guarded

    def _origin_ok(self, request: web.Request) -> bool:
        return auth.origin_allowed(request.headers.get("Origin"), request.headers.get("Referer"), self._csrf_origins)

    async def _session(self, request: web.Request) -> tuple[Any, User] | None:
        token = request.cookies.get(auth.SESSION_COOKIE)
        if not auth.well_formed_token(token):
            return None
        assert token is not None
        found = await self.backend.get_session(auth.token_hash(token), self._now())
        if found is None:
            return None
        session, user = found
        if user.disabled or user.role not in auth.ROLES:
            return None
        now = self._now()
        expires = auth.extended_expiry(
            session.created_at, session.expires_at, now, self.options.session_ttl, self.options.session_max_age
        )
        if expires is not None:  # sliding idle timeout, written at most every few minutes
            with contextlib.suppress(Exception):
                await self.backend.touch_session(session.token_hash, expires)
        return session, user

    def _secure(self, request: web.Request) -> bool:
        if self.options.secure_cookie is not None:
            return self.options.secure_cookie
        if request.secure:
            return True
        configured = self._configured_origins
        return configured is not None and all(o.startswith("https://") for o in configured)

    async def _json_body(self, request: web.Request) -> dict[str, Any]:
        if request.content_type != "application/json":
            raise ApiError("unsupported_media_type")
        try:
            async with asyncio.timeout(self.options.body_timeout):  # a body sent a byte a minute holds no one up
                raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise ApiError("too_large") from None
        except TimeoutError:
            raise ApiError("timeout") from None
        try:
            body = json.loads(raw or b"{}")
        except (ValueError, RecursionError):
            raise ApiError("bad_request", "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ApiError("bad_request", "the body must be a JSON object")
        return body

    # ------------------------------------------------------------------------------------------- static files
    def _file_response(self, name: str, status: int = 200) -> web.Response:
        found = self._files.get(name)
        if found is None:
            raise ApiError("not_found")
        body, content_type = found
        return web.Response(body=body, status=status, headers={"Content-Type": content_type})

    async def _h_root(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/console")

    async def _h_login_page(self, request: web.Request) -> web.StreamResponse:
        return self._file_response("login.html")

    async def _h_static_file(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name.endswith(".html"):
            raise ApiError("not_found")  # pages go through their guarded routes only
        return self._file_response(name)

    async def _h_favicon(self, request: web.Request) -> web.StreamResponse:
        return self._file_response("favicon.svg")

    async def _h_page_list(self, request: web.Request) -> web.StreamResponse:
        return self._file_response("console.html")

    async def _h_page_conversation(self, request: web.Request) -> web.StreamResponse:
        self._conversation_id(request)
        return self._file_response("conversation.html")

    async def _h_page_queue(self, request: web.Request) -> web.StreamResponse:
        return self._file_response("queue.html")

    async def _h_page_dashboard(self, request: web.Request) -> web.StreamResponse:
        return self._file_response("dashboard.html")

    async def _h_page_users(self, request: web.Request) -> web.StreamResponse:
        return self._file_response("users.html")

    # ------------------------------------------------------------------------------------------------- login
    async def _h_login(self, request: web.Request) -> web.StreamResponse:
        body = await self._json_body(request)
        username, password = body.get("username"), body.get("password")
        if not isinstance(username, str) or not isinstance(password, str) or len(username) > 64:
            raise ApiError("bad_request", "'username' and 'password' must be strings")
        username = username.strip()
        try:  # first: a login the pool cannot take is answered at once, before any database work
            slot = self.passwords.reserve()
        except PasswordPoolFull:
            raise ApiError("busy", headers={"Retry-After": "1"}) from None
        try:
            return await self._login(request, username, password, slot)
        finally:
            slot.release()

    async def _login(self, request: web.Request, username: str, password: str, slot: PasswordSlot) -> web.Response:
        user = await self.backend.get_user(username) if auth.USERNAME_RE.fullmatch(username) else None
        shown = user.username if user is not None else "?"  # never what was typed: people type passwords there
        keys = auth.throttle_keys(request.remote or "unknown", username)
        now = self._now()
        await self._purge_login_attempts(now)
        limit = self.options.login_limit
        admission = await self.backend.begin_login_attempt(keys, now, limit.max_failures, limit.window)
        if not admission.admitted:
            logger.warning("login throttled (user=%s)", shown)
            raise ApiError("rate_limited", headers={"Retry-After": str(max(1, math.ceil(admission.retry_after)))})
        outcome = "failed"  # what the attempt counts as if anything below raises
        try:
            stored = user.password_hash if user is not None else auth.DUMMY_HASH
            ok = await slot.run(auth.verify_password, stored, password)
            if ok and user is not None and not user.disabled:
                outcome = "ok"
        finally:
            await self.backend.finish_login_attempt(
                admission, failed=outcome == "failed", clear_keys=keys[1:] if outcome == "ok" else ()
            )
        if outcome != "ok" or user is None:
            logger.info("login failed (user=%s)", shown)
            raise ApiError("bad_credentials")
        if auth.needs_rehash(user.password_hash):
            with contextlib.suppress(PasswordPoolFull):  # a rehash can wait for a quieter login
                await self.backend.set_password(user.username, await self.passwords.run(auth.hash_password, password))
        old = request.cookies.get(auth.SESSION_COOKIE)
        if auth.well_formed_token(old):  # no session fixation: whatever session the browser had ends here
            assert old is not None
            await self.backend.delete_session(auth.token_hash(old))
        now = self._now()
        token, csrf = auth.new_token(), auth.new_token()
        expires = auth.session_expiry(now, self.options.session_ttl)
        await self.backend.create_session(auth.token_hash(token), user.id, csrf, expires)
        with contextlib.suppress(Exception):  # housekeeping only
            await self.backend.purge_sessions(now)
        logger.info("login ok (user=%s, role=%s)", user.username, user.role)
        response = json_response({"user": user_json(user), "csrf_token": csrf, "expires_at": expires.isoformat()})
        response.set_cookie(  # no max_age: the cookie dies with the browser session; the server enforces expiry
            auth.SESSION_COOKIE,
            token,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=self._secure(request),
        )
        return response

    async def _purge_login_attempts(self, now: dt.datetime) -> None:
        """Housekeeping: drop attempts older than the throttle window, at most once a minute per process."""
        last = self._attempts_purged_at
        if last is not None and dt.timedelta(0) <= now - last < dt.timedelta(minutes=1):
            return
        self._attempts_purged_at = now
        with contextlib.suppress(Exception):
            await self.backend.purge_login_attempts(now - dt.timedelta(seconds=self.options.login_limit.window))

    async def _h_logout(self, request: web.Request) -> web.StreamResponse:
        await self.backend.delete_session(request[SESSION].token_hash)
        response = json_response({"ok": True})
        response.del_cookie(auth.SESSION_COOKIE, path="/")
        return response

    async def _h_me(self, request: web.Request) -> web.StreamResponse:
        session = request[SESSION]
        return json_response(
            {
                "user": user_json(request[USER]),
                "csrf_token": session.csrf_token,
                "expires_at": session.expires_at.isoformat(),
                "locale": request[USER].locale,  # the console language chosen; null: the browser's
            }
        )

    async def _h_set_locale(self, request: web.Request) -> web.StreamResponse:
        """The console's language switch: remembered with the account (every role may choose its own language;
        ``null`` forgets the choice and the pages follow the browser again). Only the caller's own account."""
        body = await self._json_body(request)
        if "locale" not in body:
            raise ApiError("bad_request", "'locale' must be one of en, zh or null")
        locale = body["locale"]
        if locale is not None and (not isinstance(locale, str) or locale not in CONSOLE_LOCALES):
            raise ApiError("bad_request", "'locale' must be one of en, zh or null")
        user = await self.backend.set_locale(request[USER].username, locale)
        logger.info("locale of %s set to %s", request[USER].username, locale or "browser")
        return json_response({"locale": user.locale})

    # ------------------------------------------------------------------------------------------ conversations
    def _conversation_id(self, request: web.Request) -> str:
        cid = request.match_info["id"]
        if not p.CONVERSATION_ID_RE.fullmatch(cid):
            raise ApiError("bad_request", "malformed conversation id")
        return cid

    async def _summary(self, cid: str) -> ConversationSummary:
        summary = await self.backend.summary(cid)
        if summary is None:
            raise ApiError("not_found", "no such conversation")
        return summary

    async def _h_meta(self, request: web.Request) -> web.StreamResponse:
        return json_response(
            {"intents": list(self.backend.intents()), "entities": list(self.backend.entities()), "plots": PLOTS}
        )

    async def _h_conversations(self, request: web.Request) -> web.StreamResponse:
        query = {name: request.query.getall(name) for name in set(request.query.keys())}
        filt, limit, cursor = parse_conversation_query(query)
        filt = dataclasses.replace(filt, **view_filter(_one(query, "view"), request[USER].username))
        page = await self.backend.list_conversations(filt, limit, cursor)
        now = self._now()
        return json_response(
            {"items": [summary_json(s, now) for s in page.items], "next_cursor": page.next_cursor,
             "now": now.isoformat()}
        )

    async def _h_conversation(self, request: web.Request) -> web.StreamResponse:
        cid = self._conversation_id(request)
        summary = await self._summary(cid)
        events = await self.backend.events(cid)
        last_seq = events[-1].seq if events else 0
        summary = await self._seen(request, summary, last_seq)
        return json_response(
            {
                "conversation": summary_json(summary, self._now()),
                "events": [p.event_to_json(e) for e in events],
                "last_seq": last_seq,
            }
        )

    async def _seen(self, request: web.Request, summary: ConversationSummary, seq: int) -> ConversationSummary:
        """The assignee reading the conversation (its page loads it, then polls its events) clears its unread
        marker, up to the last event sent. Done on these reads rather than by a POST from the page: the page
        polls anyway, nothing but the reader's own marker changes (so no CSRF question), and it is written only
        when the row is unread for this very reader (one conditional UPDATE, not one per poll)."""
        if not summary.unread or summary.assignee != request[USER].username or seq < 1:
            return summary
        await self.backend.mark_seen(summary.id, request[USER].username, seq)
        return dataclasses.replace(summary, unread=False)

    async def _h_conversation_events(self, request: web.Request) -> web.StreamResponse:
        cid = self._conversation_id(request)
        after = _int(request.query.get("after"), "after", 0, 0, 10**9)
        summary = await self._summary(cid)
        events = await self.backend.events(cid, after)
        last_seq = events[-1].seq if events else after
        summary = await self._seen(request, summary, last_seq)
        return json_response(
            {
                "conversation": summary_json(summary, self._now()),
                "events": [p.event_to_json(e) for e in events],
                "last_seq": last_seq,
            }
        )

    async def _h_scenario(self, request: web.Request) -> web.StreamResponse:
        cid = self._conversation_id(request)
        await self._summary(cid)
        name = request.query.get("name") or f"conversation_{cid}"
        if not _SCENARIO_NAME_RE.fullmatch(name):
            name = "conversation"
        text = await self.backend.scenario(cid, name)
        filename = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:80] + ".yml"
        return web.Response(
            body=text.encode("utf-8"),
            headers={
                "Content-Type": "application/yaml; charset=utf-8",
                "Content-Disposition": f'attachment; filename="{filename}"',
            },
        )

    async def _h_review(self, request: web.Request) -> web.StreamResponse:
        cid = self._conversation_id(request)
        body = await self._json_body(request)
        flagged, reviewed = _optional_bool(body, "flagged"), _optional_bool(body, "reviewed")
        add, remove = _tags(body.get("add_tags"), "add_tags"), _tags(body.get("remove_tags"), "remove_tags")
        if flagged is None and reviewed is None and not add and not remove:
            raise ApiError("bad_request", "nothing to change")
        await self._summary(cid)
        summary = await self.backend.review(
            cid, by=request[USER].username, flagged=flagged, reviewed=reviewed, add_tags=add, remove_tags=remove
        )
        return json_response({"conversation": summary_json(summary)})

    async def _h_correct(self, request: web.Request) -> web.StreamResponse:
        cid = self._conversation_id(request)
        body = await self._json_body(request)
        seq, intent = body.get("seq"), body.get("intent")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise ApiError("bad_request", "'seq' must be the seq of a user message")
        known_intents = list(self.backend.intents())
        if not isinstance(intent, str) or not _INTENT_RE.fullmatch(intent) or (
            known_intents and intent not in known_intents
        ):
            raise ApiError("bad_request", "'intent' must be one of the bot's intents")
        summary = await self._summary(cid)
        events = await self.backend.events(cid, seq - 1)
        target = events[0] if events and events[0].seq == seq else None
        if target is None or target.type != "user_message":
            raise ApiError("bad_request", "'seq' must be the seq of a user message")
        text = body.get("text", target.data.get("text"))
        if not isinstance(text, str) or not text.strip() or len(text) > p.MAX_TEXT_CHARS:
            raise ApiError("bad_request", f"'text' must be 1-{p.MAX_TEXT_CHARS} characters")
        entities = check_entities(text, body.get("entities"), list(self.backend.entities()))
        event, training = await self.backend.correct(
            cid,
            by=request[USER].username,
            seq=seq,
            text=text,
            intent=intent,
            entities=entities,
            language=summary.language,
        )
        logger.info("correction by %s on %s seq %d", request[USER].username, cid, seq)
        return json_response({"event": p.event_to_json(event), "training": training})

    # ------------------------------------------------------------------------------------------------ handoff
    async def _h_handoff_queue(self, request: web.Request) -> web.StreamResponse:
        """The queue (``?view=all|mine|unassigned``): what the queue page polls every two seconds, so one indexed
        query on ``handoff_status`` of at most ``queue_limit`` rows, with the server's ``now``."""
        unknown = set(request.query.keys()) - {"view"}
        if unknown:
            raise ApiError("bad_request", "unknown query parameter(s)")
        filt = ConversationFilter(**view_filter(request.query.get("view"), request[USER].username))
        items = await self.backend.handoff_queue(self.options.queue_limit, filt)
        now = self._now()
        return json_response({"items": [summary_json(s, now) for s in items], "now": now.isoformat()})

    async def _h_claim(self, request: web.Request) -> web.StreamResponse:
        """Assign the conversation to oneself: 409 when a colleague has it (assigned or taken over)."""
        cid = self._conversation_id(request)
        await self._summary(cid)
        summary = await self.backend.claim(cid, request[USER].username)
        logger.info("claim by %s of %s", request[USER].username, cid)
        return json_response({"conversation": summary_json(summary, self._now())})

    async def _h_assign(self, request: web.Request) -> web.StreamResponse:
        """``{"username": name}`` assigns to a colleague (an enabled agent or admin; 400 for anyone else),
        ``{"username": null}`` unassigns; 409 while another colleague holds it after a take-over."""
        cid = self._conversation_id(request)
        body = await self._json_body(request)
        if "username" not in body:
            raise ApiError("bad_request", "'username' must be a colleague's username or null")
        username = body["username"]
        if username is not None:
            if not isinstance(username, str) or not auth.USERNAME_RE.fullmatch(username.strip()):
                raise ApiError("bad_request", "'username' must be a colleague's username or null")
            username = username.strip()
            account = await self.backend.get_user(username)
            if account is None or account.disabled or account.role not in (auth.AGENT, auth.ADMIN):
                raise ApiError("bad_request", "assign to an enabled agent or admin account")
        await self._summary(cid)
        summary = await self.backend.assign(cid, username, request[USER].username)
        logger.info("assign by %s of %s to %s", request[USER].username, cid, username or "nobody")
        return json_response({"conversation": summary_json(summary, self._now())})

    async def _h_assignees(self, request: web.Request) -> web.StreamResponse:
        """Who a conversation can be assigned to (enabled agents and admins): the assign menu's choices."""
        users = await self.backend.list_users()
        names = [u.username for u in users if not u.disabled and u.role in (auth.AGENT, auth.ADMIN)]
        return json_response({"items": sorted(names), "me": request[USER].username})

    async def _staff_step(
        self, request: web.Request, verb: str, step: Callable[[str, str], Awaitable[ConversationSummary]]
    ) -> web.StreamResponse:
        """One staff step on a conversation (take over, hand back, resolve, reopen): 404 first, then the step."""
        cid = self._conversation_id(request)
        await self._summary(cid)
        summary = await step(cid, request[USER].username)
        logger.info("%s by %s of %s", verb, request[USER].username, cid)
        return json_response({"conversation": summary_json(summary)})

    async def _h_take_over(self, request: web.Request) -> web.StreamResponse:
        return await self._staff_step(request, "takeover", self.backend.take_over)

    async def _h_hand_back(self, request: web.Request) -> web.StreamResponse:
        return await self._staff_step(request, "handback", self.backend.hand_back)

    # ------------------------------------------------------------------------------------- resolution (workspace)
    async def _h_resolve(self, request: web.Request) -> web.StreamResponse:
        """Resolve (ends a hand-off this agent holds or that waits; 409 when a colleague holds it)."""
        return await self._staff_step(request, "resolve", self.backend.resolve)

    async def _h_reopen(self, request: web.Request) -> web.StreamResponse:
        return await self._staff_step(request, "reopen", self.backend.reopen)

    async def _h_agent_message(self, request: web.Request) -> web.StreamResponse:
        cid = self._conversation_id(request)
        body = await self._json_body(request)
        text = _staff_text(body, p.MAX_TEXT_CHARS)
        message_id = body.get("message_id") or f"agent-{uuid.uuid4().hex}"
        if not isinstance(message_id, str) or not p.MESSAGE_ID_RE.fullmatch(message_id):
            raise ApiError("bad_request", "'message_id' must be 1-64 characters of [A-Za-z0-9_-]")
        summary = await self._summary(cid)
        user = request[USER]
        if summary.handoff_status != "agent" or summary.agent != user.username:
            raise ApiError("conflict", "take the conversation over first")
        event = await self.backend.agent_message(cid, user.username, text, message_id)
        return json_response({"event": p.event_to_json(event)})

    # ------------------------------------------------------------------------------------------ typing presence
    async def _h_typing_state(self, request: web.Request) -> web.StreamResponse:
        """``{"customer": bool}``: whether the customer is typing, from the in-memory board of this process (no store
        query: the conversation page polls it every 1.5 s). See :class:`channels.protocol.TypingBoard`."""
        cid = self._conversation_id(request)
        return json_response({"customer": self.typing.customer_typing(cid, time.monotonic())})

    async def _h_agent_typing(self, request: web.Request) -> web.StreamResponse:
        """``{"state": bool}`` from the agent holding the conversation: pushed to the customer's widget as
        ``agent_typing`` (with the agent's name and initials), never stored."""
        cid = self._conversation_id(request)
        body = await self._json_body(request)
        state = body.get("state")
        if not isinstance(state, bool):
            raise ApiError("bad_request", "'state' must be true or false")
        summary = await self._summary(cid)
        user = request[USER]
        if summary.handoff_status != "agent" or summary.agent != user.username:
            raise ApiError("conflict", "take the conversation over first")
        pushed = self.typing.agent(cid, user.username, state, time.monotonic())
        return json_response({"pushed": pushed})

    # ------------------------------------------------------------------------ internal notes and canned replies
    async def _h_add_note(self, request: web.Request) -> web.StreamResponse:
        """An internal note for colleagues: stored as a ``note`` event (redacted), shown in the console only; the
        chat channel never pushes or replays it (it sends message events only)."""
        cid = self._conversation_id(request)
        text = _staff_text(await self._json_body(request), MAX_NOTE_CHARS)
        await self._summary(cid)
        event = await self.backend.add_note(cid, request[USER].username, text)
        logger.info("note by %s on %s", request[USER].username, cid)
        return json_response({"event": p.event_to_json(event)}, status=201)

    @staticmethod
    def _reply_id(raw: Any) -> int:
        """A canned reply's id, from a body (an int) or a query (digits); ids never go into paths, so the route
        table's role walk needs no id of its own."""
        if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 9:
            return int(raw)
        if isinstance(raw, int) and not isinstance(raw, bool) and 0 < raw < 10**9:
            return raw
        raise ApiError("bad_request", "'id' must be the id of a canned reply")

    def _canned_fields(self, body: Mapping[str, Any]) -> tuple[str, str, str]:
        """Checked here as well as in the store so the error names the rule (and 413 is never the answer)."""
        try:
            return check_reply(body.get("language"), body.get("title"), body.get("text"), self.backend.languages())
        except CannedReplyInvalid as exc:
            raise ApiError("bad_request", exc.reason) from None

    async def _h_canned_replies(self, request: web.Request) -> web.StreamResponse:
        language = request.query.get("language") or None
        if language is not None and language not in self.backend.languages():
            raise ApiError("bad_request", "'language' must be one of the bot's languages")
        items = await self.backend.canned_replies(language)
        return json_response({"items": [canned_json(r) for r in items], "languages": list(self.backend.languages())})

    async def _h_add_canned_reply(self, request: web.Request) -> web.StreamResponse:
        language, title, text = self._canned_fields(await self._json_body(request))
        try:
            reply = await self.backend.add_canned_reply(language, title, text, request[USER].username)
        except CannedReplyExists:
            raise ApiError("conflict", DUPLICATE_CANNED) from None
        logger.info("canned reply %d (%s) added by %s", reply.id, reply.language, request[USER].username)
        return json_response({"reply": canned_json(reply)}, status=201)

    async def _h_update_canned_reply(self, request: web.Request) -> web.StreamResponse:
        body = await self._json_body(request)
        reply_id = self._reply_id(body.get("id"))
        language, title, text = self._canned_fields(body)
        try:
            reply = await self.backend.update_canned_reply(reply_id, language, title, text)
        except CannedReplyExists:
            raise ApiError("conflict", DUPLICATE_CANNED) from None
        logger.info("canned reply %d updated by %s", reply.id, request[USER].username)
        return json_response({"reply": canned_json(reply)})

    async def _h_delete_canned_reply(self, request: web.Request) -> web.StreamResponse:
        reply_id = self._reply_id((await self._json_body(request)).get("id"))
        if not await self.backend.delete_canned_reply(reply_id):
            raise ApiError("not_found", "no such canned reply")
        logger.info("canned reply %d deleted by %s", reply_id, request[USER].username)
        return json_response({"deleted": reply_id})

    async def _h_conversation_canned(self, request: web.Request) -> web.StreamResponse:
        """The canned replies an agent may insert here: those of the conversation's language."""
        summary = await self._summary(self._conversation_id(request))
        items = await self.backend.canned_replies(summary.language)
        return json_response({"language": summary.language, "items": [canned_json(r) for r in items]})

    async def _h_render_canned(self, request: web.Request) -> web.StreamResponse:
        """A canned reply filled from the conversation's slots (:func:`dialogue.canned.render`): ``missing`` names
        the slots left as ``{name}`` for the agent to fill in before sending it through ``/message``."""
        cid = self._conversation_id(request)
        reply_id = self._reply_id(request.query.get("reply"))
        await self._summary(cid)
        reply, rendered = await self.backend.render_canned_reply(cid, reply_id)
        return json_response(
            {
                "reply": canned_json(reply),
                "text": rendered.text,  # may exceed a message's limit once filled: /message then says so
                "filled": list(rendered.filled),
                "missing": list(rendered.missing),
            }
        )

    # ---------------------------------------------------------------------------------------------- dashboard
    def _days(self, request: web.Request) -> int:
        default, high = self.options.dashboard_days
        return _int(request.query.get("days"), "days", default, 1, high)

    async def _cached(self, key: tuple[str, int], make: Callable[[], Awaitable[Any]]) -> Any:
        """Dashboard numbers and PNGs are recomputed at most every ``plot_cache_seconds`` (three images are
        requested at once; one query and one render each suffice)."""
        lock = self._cache_locks.setdefault(key, asyncio.Lock())
        async with lock:
            hit = self._cache.get(key)
            if hit is not None and time.monotonic() - hit[0] < self.options.plot_cache_seconds:
                return hit[1]
            value = await make()
            self._cache[key] = (time.monotonic(), value)
            return value

    async def _stats(self, days: int) -> DashboardStats:
        async def make() -> DashboardStats:
            return await self.backend.dashboard(days)

        stats: DashboardStats = await self._cached(("stats", days), make)
        return stats

    async def _h_dashboard(self, request: web.Request) -> web.StreamResponse:
        days = self._days(request)
        return json_response({"days": days, **dashboard_json(await self._stats(days))})

    async def _h_dashboard_png(self, request: web.Request) -> web.StreamResponse:
        plot = request.match_info["plot"]
        if plot not in PLOTS:
            raise ApiError("not_found", "no such plot")
        days = self._days(request)
        stats = await self._stats(days)

        async def make() -> bytes:
            return await asyncio.to_thread(render_plot, stats, plot)  # matplotlib: off the event loop

        png: bytes = await self._cached((plot, days), make)
        return web.Response(body=png, headers={"Content-Type": "image/png"})

    # -------------------------------------------------------------------------------------------------- users
    async def _h_users(self, request: web.Request) -> web.StreamResponse:
        users = await self.backend.list_users()
        return json_response({"items": [user_json(u) for u in users]})

    async def _h_add_user(self, request: web.Request) -> web.StreamResponse:
        body = await self._json_body(request)
        username = auth.check_username(str(body.get("username", "")))
        role = auth.check_role(str(body.get("role", "")))
        password = body.get("password")
        if not isinstance(password, str):
            raise ApiError("bad_request", "'password' must be a string")
        auth.check_password(password)
        if await self.backend.get_user(username) is not None:
            raise ApiError("conflict", "that username is taken")
        password_hash = await self.passwords.run(auth.hash_password, password)
        user = await self.backend.add_user(username, password_hash, role)
        logger.info("user %s (%s) added by %s", username, role, request[USER].username)
        return json_response({"user": user_json(user)}, status=201)

    async def _h_update_user(self, request: web.Request) -> web.StreamResponse:
        username = request.match_info["username"]
        body = await self._json_body(request)
        user = await self.backend.get_user(username) if auth.USERNAME_RE.fullmatch(username) else None
        if user is None:
            raise ApiError("not_found", "no such user")
        me = request[USER]
        role, disabled, password = body.get("role"), _optional_bool(body, "disabled"), body.get("password")
        if role is not None:
            auth.check_role(str(role))
        if password is not None:
            if not isinstance(password, str):
                raise ApiError("bad_request", "'password' must be a string")
            auth.check_password(password)
        if user.username == me.username and (disabled or (role is not None and role != auth.ADMIN)):
            raise ApiError("bad_request", "you cannot disable or demote yourself")
        if role is not None:
            await self.backend.set_role(username, str(role))
        if disabled is not None:
            await self.backend.disable_user(username, disabled)
        if password is not None:
            await self.backend.set_password(username, await self.passwords.run(auth.hash_password, password))
        logger.info("user %s updated by %s", username, me.username)
        updated = await self.backend.get_user(username)
        assert updated is not None
        return json_response({"user": user_json(updated)})


    # ---------------------------------------------------------------------------------------------- retention
    async def _h_erase_customer(self, request: web.Request) -> web.StreamResponse:
        """Erase every conversation of one customer (the widget's ``user``), from every table: a data-subject
        request handled by an admin, the API twin of ``kefu conversations delete --user``."""
        body = await self._json_body(request)
        user = body.get("user")
        if not isinstance(user, str) or not user.strip() or len(user) > 255:
            raise ApiError("bad_request", "'user' must be a customer id (1-255 characters)")
        report = await self.backend.erase_customer(user)
        logger.info("%d conversations erased by %s", report.conversations, request[USER].username)
        return json_response({"conversations": report.conversations, "rows": report.rows})


    # ------------------------------------------------------------------------------------------------ metrics
    async def _h_metrics(self, request: web.Request) -> web.StreamResponse:
        """The Prometheus text of this process's :class:`~channels.metrics.Metrics` (turns, hand-offs, safety blocks,
        errors): staff-only numbers, so they are served here and not on the customer port."""
        if self.metrics is None:
            raise ApiError("not_found", "this process collects no metrics")
        body, content_type = self.metrics.render()
        return web.Response(body=body, headers={"Content-Type": content_type})


def _route_name(request: web.Request) -> str:
    route = request.match_info.route
    return route.name or "?" if route is not None else "?"


def load_ops_static(static_dir: Path) -> dict[str, tuple[bytes, str]]:
    """The console's pages and assets (a flat folder), read once at start-up."""
    if not static_dir.is_dir():
        raise StaticFilesError("ops static directory not found", path=str(static_dir))
    files: dict[str, tuple[bytes, str]] = {}
    for path in sorted(static_dir.iterdir()):
        content_type = STATIC_TYPES.get(path.suffix.lower())
        if content_type is not None and path.is_file():
            files[path.name] = (path.read_bytes(), content_type)
    for name in (*PAGES.values(), "forbidden.html", "ops.js", "ops.css", "i18n.js"):
        if name not in files:
            raise StaticFilesError("required ops file missing", path=str(static_dir / name))
    favicon = static_dir.parent / "favicon.svg"
    if favicon.is_file() and "favicon.svg" not in files:
        files["favicon.svg"] = (favicon.read_bytes(), "image/svg+xml")
    return files


@contextlib.asynccontextmanager
async def run_ops_server(
    backend: ConsoleBackend,
    host: str = "127.0.0.1",
    port: int = 0,
    options: OpsOptions | None = None,
    *,
    clock: Callable[[], dt.datetime] | None = None,
    metrics: Metrics | None = None,
    typing: p.TypingBoard | None = None,
) -> AsyncIterator[OpsServer]:
    """Start an ops server (``port=0``: an ephemeral port, see ``server.port``) and close it on exit. ``metrics``:
    the process's chat metrics, served as ``GET /metrics``."""
    server = OpsServer(backend, host, port, options, clock=clock, metrics=metrics, typing=typing)
    await server.start()
    try:
        yield server
    finally:
        await server.close()
