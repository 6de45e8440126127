"""The console's HTTP contract, pure (no I/O, no server state): its routes and their roles, its errors and their
statuses, the response headers, and the JSON the pages read (rows of the store turned into objects).

Kept apart from the handlers so the contract can be read (and tested: the tests walk :data:`ROUTES` for every
role) in one place, and so a handler cannot answer anything but these shapes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web

from channels import auth
from channels import protocol as p
from channels.errors import ChannelError
from channels.ops.passwords import PasswordPoolFull
from dialogue.canned import CannedReply, CannedReplyExists, CannedReplyInvalid, CannedReplyNotFound
from dialogue.errors import (
    ConcurrentUpdate,
    ConversationNotFound,
    DuplicateMessage,
    HandoffConflict,
    InvalidQuery,
    ReviewError,
    StoreUnavailable,
    UserExists,
    UserNotFound,
)
from dialogue.types import ConversationSummary, DashboardStats, User

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
# tests walk this table for every role. POST (and DELETE) routes other than /api/login also need CSRF token + origin.
ROUTES: Final[tuple[tuple[str, str, str | None, str], ...]] = (
    ("GET", "/", None, "root"),
    ("GET", "/login", None, "login_page"),
    ("GET", "/static/{name}", None, "static_file"),
    ("GET", "/favicon.svg", None, "favicon"),
    ("POST", "/api/login", None, "login"),
    ("POST", "/api/logout", auth.VIEWER, "logout"),
    ("GET", "/api/me", auth.VIEWER, "me"),
    ("POST", "/api/me/locale", auth.VIEWER, "set_locale"),  # {"locale": "en" | "zh" | null}
    ("POST", "/api/me/profile", auth.VIEWER, "set_profile"),  # {"display_name": str | null}: what customers see
    # {"content_type", "data": base64}: the picture customers see (PNG, JPEG or WebP, <= 256 KiB; channels.uploads)
    ("POST", "/api/me/avatar", auth.VIEWER, "set_avatar"),
    ("DELETE", "/api/me/avatar", auth.VIEWER, "delete_avatar"),
    ("GET", "/api/me/avatar", auth.VIEWER, "my_avatar"),  # the picture itself (the profile form's preview)
    ("GET", "/api/me/status", auth.AGENT, "my_status"),  # presence: {"status", "effective"}
    ("POST", "/api/me/status", auth.AGENT, "set_my_status"),  # {"status": "online" | "away" | "offline"}
    ("GET", "/api/inbox/pulse", auth.VIEWER, "inbox_pulse"),  # ?since=<token>: what every console polls (0.3 s)
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
    # {"filename", "content_type", "data": base64, "message_id"?}: an agent's file for the customer (channels.uploads)
    ("POST", "/api/conversations/{id}/attachments", auth.AGENT, "upload_attachment"),
    ("GET", "/api/attachments/{id}", auth.VIEWER, "attachment"),  # {id}: the attachment's (random, 32 hex)
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
    ("GET", "/api/training", auth.ADMIN, "training"),  # the NLU retrain's state and progress (channels.ops.training)
    ("POST", "/api/training", auth.ADMIN, "start_training"),  # 202; 409 while one runs (any worker)
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

# ------------------------------------------------------------------------------------------------------ errors
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
    # attachments refused by channels.uploads (the same codes as the chat port's upload_error)
    "empty": (400, "The file is empty."),
    "unsupported_type": (415, "Only PNG, JPEG, GIF and WebP images and PDF files can be attached."),
    "type_mismatch": (415, "The file's content does not match its type."),
    "malformed": (422, "The file is damaged or incomplete."),
    "active_content": (422, "PDF files with scripts, launch actions or embedded files cannot be attached."),
    "rate_limited": (429, "Too many failed logins; wait and retry."),
    "internal": (500, "Something went wrong on our side."),
    "store_unavailable": (503, "The conversation store is unavailable; retry in a moment."),
    "busy": (503, "Too many logins at once; retry in a moment."),
}

#: Exception class -> error code, for what the backend (the dialogue layer under it) raises. The MRO is walked, so
#: subclasses match; anything else is ``internal``.
ERROR_STATUS: Final[Mapping[type[Exception], str]] = {
    ConversationNotFound: "not_found",
    UserNotFound: "not_found",
    HandoffConflict: "conflict",
    UserExists: "conflict",
    ConcurrentUpdate: "conflict",
    DuplicateMessage: "conflict",
    StoreUnavailable: "store_unavailable",
    PasswordPoolFull: "busy",
    InvalidQuery: "bad_request",
    auth.AuthError: "bad_request",
    ReviewError: "unprocessable",
    CannedReplyInvalid: "bad_request",
    CannedReplyExists: "conflict",
    CannedReplyNotFound: "not_found",
}


class ApiError(ChannelError):
    """A request the API refuses: ``code`` is a key of :data:`ERRORS`; ``reason`` names fields, never values."""

    def __init__(self, code: str, reason: str | None = None, *, headers: Mapping[str, str] | None = None) -> None:
        self.code = code
        self.reason = reason or ERRORS[code][1]
        self.headers = dict(headers or {})
        super().__init__(f"{code}: {self.reason}")


def error_code_for(exc: BaseException) -> str:
    """The error code a failure is answered with: an :class:`ApiError`'s own, else :data:`ERROR_STATUS`'s."""
    if isinstance(exc, ApiError):
        return exc.code
    for cls in type(exc).__mro__:
        code = ERROR_STATUS.get(cls)
        if code is not None:
            return code
    return "internal"


# -------------------------------------------------------------------------------------------------------- JSON
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


def user_json(user: User) -> dict[str, Any]:
    return {
        "username": user.username,
        "role": user.role,
        "disabled": bool(user.disabled),
        "created_at": user.created_at.isoformat() if user.created_at else None,
    }


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
