"""The chat port's small HTTP side, without I/O: which static files are served and how, the responses of its
plain routes (``/healthz``, ``/ready``, the widget's files, 404), their headers and Content-Security-Policy, and
the answers that refuse a ``/ws`` handshake, a customer's attachment download (``GET /attachments/<id>?token=``,
headers from :func:`channels.uploads.download_headers`), and the staff pictures the widget shows next to an agent's
messages (``GET /avatars/<sha256>``: :func:`avatar_request`, :func:`avatar_response`).

Every function takes what it decides on (the request path, the loaded files, the admission state, ``now``) and
returns a ``websockets`` :class:`~websockets.http11.Response` (a plain value of websockets' sans-I/O layer); the
shell in :mod:`channels.server` reads the files once at start-up, dispatches the request and sends the answer.
Nothing in a response comes from the request but the path it asked for.
"""

from __future__ import annotations

import email.utils
import http
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Response

from channels.admission import Admission
from channels.errors import StaticFilesError
from channels.frames import AVATAR_DIGEST_RE, AVATARS_PATH
from channels.json_api import encode_json
from channels.limits import CONNECTIONS_PER_ADDRESS, MAX_CONNECTIONS
from channels.uploads import ATTACHMENT_ID_RE, download_headers, servable_picture

# ---------------------------------------------------------------------------------------------------- static files
STATIC_DIR: Final = Path(__file__).resolve().parent / "static"
REQUIRED_STATIC: Final = ("index.html", "widget.js")

CONTENT_TYPES: Final[Mapping[str, str]] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}
_STATIC_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")

# Static route aliases (besides "/<file name>").
ROUTE_ALIASES: Final[Mapping[str, str]] = {"/": "index.html"}

#: The CSP of served HTML. Nothing in it comes from the request: ``connect-src 'self'`` covers the page's own
#: ``ws:``/``wss:`` origin in current browsers (CSP Level 3), so the ``Host`` header (client-chosen) is not needed.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

JSON_CONTENT_TYPE: Final = "application/json; charset=utf-8"


@dataclass(frozen=True)
class StaticFile:
    """A served file, in memory: its bytes and the Content-Type it is sent with."""

    body: bytes
    content_type: str


def static_content_type(name: str) -> str | None:
    """The Content-Type a file of the static folder named ``name`` is served with; ``None``: it is not served (an
    unknown extension, or not a simple name: no path separators, no leading dot, at most 100 characters)."""
    if not _STATIC_NAME_RE.fullmatch(name):
        return None
    return CONTENT_TYPES.get(PurePath(name).suffix.lower())


def static_routes(files: Mapping[str, StaticFile], root: Path) -> dict[str, StaticFile]:
    """The routes of the static files ``files`` (by file name, read from ``root``): ``{"/name": file}`` plus
    :data:`ROUTE_ALIASES`. Raises :class:`StaticFilesError` when a required file is missing."""
    routes = {"/" + name: file for name, file in files.items()}
    for name in REQUIRED_STATIC:
        if "/" + name not in routes:
            raise StaticFilesError("required static file missing", path=str(root / name))
    for route, name in ROUTE_ALIASES.items():
        routes[route] = routes["/" + name]
    return routes


# ------------------------------------------------------------------------------------------------------- requests
def request_path(target: str) -> str:
    """The path of a request target (``/ready?x=1`` -> ``/ready``; ``/`` when empty)."""
    return urlsplit(target.partition("?")[0]).path or "/"


ATTACHMENTS_PREFIX: Final = "/attachments/"


def attachment_request(target: str) -> tuple[str, str | None] | None:
    """``(attachment id, token)`` of a download request target (``/attachments/<id>?token=<token>``); ``None`` when
    the path is not a well-formed download path (the caller answers 404)."""
    path = request_path(target)
    if not path.startswith(ATTACHMENTS_PREFIX):
        return None
    attachment_id = path[len(ATTACHMENTS_PREFIX):]
    if not ATTACHMENT_ID_RE.fullmatch(attachment_id):
        return None
    try:
        tokens = parse_qs(urlsplit(target).query, max_num_fields=4).get("token")
    except ValueError:  # more fields than a download has
        tokens = None
    return attachment_id, tokens[0] if tokens else None


def avatar_request(target: str) -> str | None:
    """The sha256 digest a staff-picture request asks for (``/avatars/<64 lower-case hex>``, any query ignored);
    ``None`` when the path is not exactly that (the caller answers 404 without asking the store)."""
    path = request_path(target)
    if not path.startswith(AVATARS_PATH):
        return None
    digest = path[len(AVATARS_PATH):]
    return digest if AVATAR_DIGEST_RE.fullmatch(digest) else None


def wants_websocket(headers: Headers) -> bool:
    """Whether the request asks for a WebSocket upgrade (only ``/ws`` grants one)."""
    return "websocket" in headers.get("Upgrade", "").lower()


# ------------------------------------------------------------------------------------------------------ responses
def response(
    status: http.HTTPStatus,
    body: bytes,
    content_type: str,
    *,
    date: float,
    site_headers: Mapping[str, str],
    extra: Mapping[str, str] | None = None,
) -> Response:
    """A complete response: the headers every answer carries, then the site's (``ServerOptions.extra_headers``),
    then the route's ``extra``. ``date``: wall-clock seconds for the ``Date`` header."""
    headers = Headers(
        [
            ("Date", email.utils.formatdate(date, usegmt=True)),
            ("Connection", "close"),
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),
        ]
    )
    for name, value in {**site_headers, **(extra or {})}.items():
        headers[name] = value
    return Response(status.value, status.phrase, headers, body)


def json_response(
    status: http.HTTPStatus, value: Any, *, date: float, site_headers: Mapping[str, str]
) -> Response:
    """A JSON body, never cached."""
    return response(
        status, encode_json(value), JSON_CONTENT_TYPE,
        date=date, site_headers=site_headers, extra={"Cache-Control": "no-store"},
    )


def error_body(code: str, message: str) -> dict[str, Any]:
    """``{"error": {"code", "message"}}``: the body of every refusal of this port."""
    return {"error": {"code": code, "message": message}}


def page_response(
    path: str, files: Mapping[str, StaticFile], *, date: float, site_headers: Mapping[str, str]
) -> Response:
    """``GET /healthz``, a static file (HTML with :data:`CONTENT_SECURITY_POLICY`), or 404."""
    if path == "/healthz":
        return json_response(http.HTTPStatus.OK, {"status": "ok"}, date=date, site_headers=site_headers)
    static = files.get(path)
    if static is None:
        return json_response(
            http.HTTPStatus.NOT_FOUND, error_body("not_found", "no such page"), date=date, site_headers=site_headers
        )
    extra = {"Cache-Control": "no-cache"}
    if static.content_type.startswith("text/html"):
        extra["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response(
        http.HTTPStatus.OK, static.body, static.content_type, date=date, site_headers=site_headers, extra=extra
    )


def attachment_response(
    content_type: str, filename: str, data: bytes, *, date: float, site_headers: Mapping[str, str]
) -> Response:
    """A stored attachment's download (its type re-checked against its bytes; inline only for images; never HTML;
    ``nosniff`` and a sandboxing CSP: :func:`channels.uploads.download_headers`)."""
    headers = download_headers(content_type, filename, data)
    served = headers.pop("Content-Type")
    headers.pop("X-Content-Type-Options")  # every response of this port has it already (a second would repeat it)
    return response(http.HTTPStatus.OK, data, served, date=date, site_headers=site_headers, extra=headers)


#: The Content-Security-Policy of a staff picture: an image document that may run and load nothing (``sandbox``
#: also gives it an opaque origin, should a browser ever render it as something else).
AVATAR_CSP: Final = "default-src 'none'; img-src 'self'; sandbox; frame-ancestors 'none'; base-uri 'none'"
#: A picture's URL is its content's digest: a new picture is a new URL, so a stored one never changes.
AVATAR_CACHE: Final = "public, max-age=31536000, immutable"


def avatar_response(
    content_type: str, data: bytes, *, date: float, site_headers: Mapping[str, str]
) -> Response | None:
    """A staff picture (``GET /avatars/<sha256>``) with its stored type, cached for a year (:data:`AVATAR_CACHE`),
    under :data:`AVATAR_CSP` and ``nosniff`` (every response of this port has it), readable by the shop's page that
    embeds the widget (``Cross-Origin-Resource-Policy: cross-origin``, as attachments). ``None`` (the caller answers
    404) when the stored type is not a picture type or not the type its bytes start like: this port serves nothing
    as an image that is not one."""
    if not servable_picture(content_type, data):
        return None
    extra = {
        "Cache-Control": AVATAR_CACHE,
        "Content-Security-Policy": AVATAR_CSP,
        "Cross-Origin-Resource-Policy": "cross-origin",
        "Content-Disposition": "inline",
    }
    return response(http.HTTPStatus.OK, data, content_type, date=date, site_headers=site_headers, extra=extra)


def ready_response(
    admission: Admission, now: float, *, date: float, site_headers: Mapping[str, str]
) -> Response:
    """``GET /ready`` at monotonic ``now``: 200 while a new turn would be admitted, else 503 with ``Retry-After``
    (whole seconds, rounded up)."""
    delay = admission.delay.estimate(now)
    body = {
        "status": "ready",
        "queue_delay_ms": round(delay * 1000.0, 1),
        "budget_ms": None if admission.budget is None else round(admission.budget * 1000.0, 1),
    }
    if admission.ready(now):
        return json_response(http.HTTPStatus.OK, body, date=date, site_headers=site_headers)
    shed = admission.check(now)
    retry = max(1, -(-(shed.retry_after_ms if shed is not None else 1000) // 1000))
    return response(
        http.HTTPStatus.SERVICE_UNAVAILABLE, encode_json({**body, "status": "saturated"}), JSON_CONTENT_TYPE,
        date=date, site_headers=site_headers, extra={"Cache-Control": "no-store", "Retry-After": str(retry)},
    )


#: A refused ``/ws`` handshake, by the limit it is over (:class:`channels.limits.ConnectionSlots`).
_REFUSALS: Final[Mapping[str, tuple[http.HTTPStatus, str, str]]] = {
    MAX_CONNECTIONS: (http.HTTPStatus.SERVICE_UNAVAILABLE, "unavailable", "too many connections; retry later"),
    CONNECTIONS_PER_ADDRESS: (
        http.HTTPStatus.TOO_MANY_REQUESTS, "rate_limited", "too many connections from this address"
    ),
}


def refusal_response(limit: str, *, date: float, site_headers: Mapping[str, str]) -> Response:
    """The answer to a ``/ws`` handshake over ``limit``: 503 for the server's, 429 for the client address's."""
    status, code, message = _REFUSALS[limit]
    return json_response(status, error_body(code, message), date=date, site_headers=site_headers)
