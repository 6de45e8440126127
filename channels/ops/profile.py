"""The signed-in staff member's profile: the display name and the picture customers see next to their messages.

Every role may set its own (``/api/me/...``, the caller's account only): a viewer writes to no customer today, but
the profile is the account's, like its console language. The name is checked by
:func:`dialogue.types.clean_display_name` (trimmed, at most 64 characters, no control, format or separator
characters; blank clears it). The picture is checked exactly as a customer's upload is (:func:`channels.uploads.
check_upload`: its type read from its bytes must be the declared one, its structure whole, its dimensions sane),
with narrower limits (:data:`AVATAR_LIMITS`: PNG, JPEG or WebP, at most 256 KiB); the body is JSON with the bytes
in base64, read like an agent's attachment (:func:`channels.ops.attachments.read_upload_body`) so it goes through
the console's one API helper with its CSRF token. ``GET /api/me/avatar`` serves the caller's picture back to the
profile form (the chat port serves everyone's to the widget by digest, ``GET /avatars/<sha256>``).
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from channels.ops.api import ApiError, json_response
from channels.ops.attachments import decode_file_data, read_upload_body
from channels.ops.handlers import USER, Handlers, logger
from channels.uploads import UNSUPPORTED_TYPE, UploadLimits, UploadRefused, check_upload, servable_picture
from dialogue.types import AVATAR_TYPES, MAX_AVATAR_BYTES, User, clean_display_name

#: What a profile picture may be: the chat port's upload checks with these limits.
AVATAR_LIMITS: Final = UploadLimits(max_bytes=MAX_AVATAR_BYTES, types=frozenset(AVATAR_TYPES))


def profile_json(user: User) -> dict[str, Any]:
    """``{"display_name", "avatar"}`` of an account: the name customers see (``null``: the username) and the sha256
    of its picture (``null``: initials)."""
    return {"display_name": user.display_name, "avatar": user.avatar}


class Profile(Handlers):
    """``/api/me/profile`` and ``/api/me/avatar``."""

    async def _h_set_profile(self, request: web.Request) -> web.StreamResponse:
        """``{"display_name": str | null}``: 400 for a missing field or a name the rules refuse."""
        body = await self._json_body(request)
        if "display_name" not in body:
            raise ApiError("bad_request", "'display_name' must be a string or null")
        try:
            name = clean_display_name(body["display_name"])
        except ValueError as exc:
            raise ApiError("bad_request", f"'display_name': {exc}") from None
        me = request[USER]
        user = await self.backend.set_display_name(me.username, name)
        logger.info("display name of %s %s", me.username, "set" if name else "cleared")
        return json_response({"profile": profile_json(user)})

    async def _h_set_avatar(self, request: web.Request) -> web.StreamResponse:
        """``{"content_type", "data": base64}``: 400 without them, 413 over 256 KiB, 415 for another type (or bytes
        that are not the declared type), 422 for a damaged image."""
        body = await read_upload_body(request, AVATAR_LIMITS)
        content_type = body.get("content_type")
        if not isinstance(content_type, str):
            raise ApiError("bad_request", "'content_type' and 'data' (base64) are required")
        data = decode_file_data(body.get("data"))
        try:
            checked = check_upload(data, content_type, None, AVATAR_LIMITS)
        except UploadRefused as exc:
            reason = "a picture is a PNG, JPEG or WebP image" if exc.code == UNSUPPORTED_TYPE else exc.reason
            raise ApiError(exc.code, reason) from None
        me = request[USER]
        user = await self.backend.set_avatar(me.username, checked.content_type, checked.data)
        logger.info("picture of %s set (%s, %d bytes)", me.username, checked.content_type, checked.size)
        return json_response({"profile": profile_json(user)})

    async def _h_delete_avatar(self, request: web.Request) -> web.StreamResponse:
        me = request[USER]
        user = await self.backend.clear_avatar(me.username)
        logger.info("picture of %s removed", me.username)
        return json_response({"profile": profile_json(user)})

    async def _h_my_avatar(self, request: web.Request) -> web.StreamResponse:
        """The caller's picture (the profile form's preview; 404 without one). Its stored type is sent only when its
        bytes are that type (else 404), with ``nosniff`` and the console's CSP like every answer here."""
        digest = request[USER].avatar
        found = await self.backend.get_avatar(digest) if digest else None
        if found is None or not servable_picture(*found):
            raise ApiError("not_found", "no picture")
        content_type, data = found
        return web.Response(body=data, headers={"Content-Type": content_type, "Cache-Control": "private, no-store"})
