"""The console's pages and static assets: read once from a flat folder at start-up, served from memory.

Pages are served only through their own (guarded) routes, never as ``/static/*.html``: a page's route is where its
role is checked (:data:`~channels.ops.api.ROUTES`). The header every signed-in page shows (navigation, language,
status, account) is written once, in ``header.html``: a page holds ``<!-- kefu:header current=PATH -->`` where it
goes, and :func:`with_header` puts it there at load, marking the link to ``PATH`` as the current page.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Final

from aiohttp import web

from channels.backend import ConsoleBackend
from channels.errors import StaticFilesError
from channels.ops.api import PAGES, STATIC_TYPES, ApiError
from channels.ops.handlers import Clock, Handlers
from channels.ops.options import OpsOptions

HEADER: Final = "header.html"
_HEADER_MARK: Final = re.compile(rb"^[ \t]*<!-- kefu:header current=(\S+) -->[ \t]*$", re.MULTILINE)


def with_header(page: bytes, header: bytes) -> bytes:
    """``page`` with its ``<!-- kefu:header current=PATH -->`` line replaced by ``header``, whose link to ``PATH``
    gets ``aria-current="page"`` (a page without the line is returned as it is)."""

    def put(match: re.Match[bytes]) -> bytes:
        link = b'href="' + match.group(1) + b'"'
        if link not in header:
            raise StaticFilesError("the header has no link to the page's current path", path=match.group(1).decode())
        return header.rstrip(b"\n").replace(link, link + b' aria-current="page"', 1)

    return _HEADER_MARK.sub(put, page)


def load_ops_static(static_dir: Path) -> dict[str, tuple[bytes, str]]:
    """The console's pages and assets (a flat folder), read once at start-up."""
    if not static_dir.is_dir():
        raise StaticFilesError("ops static directory not found", path=str(static_dir))
    files: dict[str, tuple[bytes, str]] = {}
    for path in sorted(static_dir.iterdir()):
        content_type = STATIC_TYPES.get(path.suffix.lower())
        if content_type is not None and path.is_file():
            files[path.name] = (path.read_bytes(), content_type)
    for name in (*PAGES.values(), "forbidden.html", HEADER, "ops.js", "ops.css", "i18n.js"):
        if name not in files:
            raise StaticFilesError("required ops file missing", path=str(static_dir / name))
    header = files.pop(HEADER)[0]
    for name, (body, content_type) in files.items():
        if name.endswith(".html"):
            files[name] = (with_header(body, header), content_type)
    favicon = static_dir.parent / "favicon.svg"
    if favicon.is_file() and "favicon.svg" not in files:
        files["favicon.svg"] = (favicon.read_bytes(), "image/svg+xml")
    return files


class Pages(Handlers):
    """The page and asset routes (nothing is answered before :meth:`load`)."""

    def __init__(self, backend: ConsoleBackend, options: OpsOptions, now: Clock) -> None:
        super().__init__(backend, options, now)
        self.files: dict[str, tuple[bytes, str]] = {}

    async def load(self) -> None:
        """Read the static folder (``options.static_dir``) off the event loop."""
        self.files = await asyncio.to_thread(load_ops_static, self.options.static_dir)

    def file_response(self, name: str, status: int = 200) -> web.Response:
        found = self.files.get(name)
        if found is None:
            raise ApiError("not_found")
        body, content_type = found
        return web.Response(body=body, status=status, headers={"Content-Type": content_type})

    def forbidden_page(self) -> web.Response:
        """What a page route answers a signed-in account whose role is too small (403, a page, not JSON)."""
        return self.file_response("forbidden.html", status=403)

    async def _h_root(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/console")

    async def _h_login_page(self, request: web.Request) -> web.StreamResponse:
        return self.file_response("login.html")

    async def _h_static_file(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name.endswith(".html"):
            raise ApiError("not_found")  # pages go through their guarded routes only
        return self.file_response(name)

    async def _h_favicon(self, request: web.Request) -> web.StreamResponse:
        return self.file_response("favicon.svg")

    async def _h_page_list(self, request: web.Request) -> web.StreamResponse:
        return self.file_response("console.html")

    async def _h_page_conversation(self, request: web.Request) -> web.StreamResponse:
        self._conversation_id(request)
        return self.file_response("conversation.html")

    async def _h_page_queue(self, request: web.Request) -> web.StreamResponse:
        return self.file_response("queue.html")

    async def _h_page_dashboard(self, request: web.Request) -> web.StreamResponse:
        return self.file_response("dashboard.html")

    async def _h_page_users(self, request: web.Request) -> web.StreamResponse:
        return self.file_response("users.html")
