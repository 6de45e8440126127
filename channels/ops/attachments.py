"""Attachments in the console: an agent sends an image or a PDF to the customer, and staff open the files of a
conversation (the customer's and the agents').

The rules are the chat port's (:mod:`channels.uploads`): the type read from the bytes must be the declared one and
one of the five allowed, the structure whole, a PDF without active content, the size within
:class:`~channels.uploads.UploadLimits`; a refused file stores nothing. An agent's file needs the agent to hold the
conversation, like a message (the store checks it in the same transaction); it is pushed to the customer's widget
by the chat server's poll, as an ``attachment`` frame. Downloads (``GET /api/attachments/<id>``) carry
:func:`channels.uploads.download_headers` (inline only for a verified image, ``nosniff``, a sandboxing CSP), on the
console's own origin.

The upload is JSON (``{"filename", "content_type", "data": base64, "message_id"?}``) so that it goes through the
console's one API helper with its CSRF token, like every other POST; its body is read here, with its own limit
(the app's 64 KiB body limit is for everything else) and time (:attr:`UploadLimits.timeout`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import uuid
from typing import Any, Final

from aiohttp import web

from channels import protocol as p
from channels.backend import ConsoleBackend
from channels.frames import attachment_json
from channels.ops.api import ApiError, json_response
from channels.ops.handlers import USER, Clock, Handlers, logger
from channels.ops.options import OpsOptions
from channels.uploads import ATTACHMENT_ID_RE, UploadLimits, UploadRefused, check_upload, download_headers
from dialogue.errors import HandoffConflict

#: JSON overhead allowed around the base64 of the largest file.
_ENVELOPE_BYTES: Final = 16 * 1024


async def read_upload_body(request: web.Request, limits: UploadLimits) -> dict[str, Any]:
    """The JSON body of a file upload (``{"data": base64, ...}``), read with the upload's own size and time limits
    (``limits.max_bytes`` of file as base64 plus a JSON envelope, within ``limits.timeout``; 413 beyond the size)
    instead of the app's 64 KiB body limit. Shared by the agent's attachments and the profile picture."""
    if request.content_type != "application/json":
        raise ApiError("unsupported_media_type")
    limit = -(-limits.max_bytes // 3) * 4 + _ENVELOPE_BYTES
    if request.content_length is not None and request.content_length > limit:
        raise ApiError("too_large", f"a file is at most {limits.max_bytes} bytes")
    chunks: list[bytes] = []
    total = 0
    try:
        async with asyncio.timeout(limits.timeout):
            while chunk := await request.content.read(64 * 1024):
                total += len(chunk)
                if total > limit:
                    raise ApiError("too_large", f"a file is at most {limits.max_bytes} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise ApiError("timeout") from None
    try:
        body = json.loads(b"".join(chunks) or b"{}")
    except (ValueError, RecursionError):
        raise ApiError("bad_request", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError("bad_request", "the body must be a JSON object")
    return body


def decode_file_data(encoded: object) -> bytes:
    """The bytes of an upload body's ``data`` (strict base64); 400 when it is missing or not base64."""
    if not isinstance(encoded, str) or not encoded:
        raise ApiError("bad_request", "'data' (base64) is required")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError("bad_request", "'data' is not base64") from None


class Attachments(Handlers):
    """The console's attachment routes. ``limits``: the same :class:`UploadLimits` as the chat port's."""

    def __init__(
        self, backend: ConsoleBackend, options: OpsOptions, now: Clock, *, limits: UploadLimits | None = None
    ) -> None:
        super().__init__(backend, options, now)
        self.limits = limits or UploadLimits()

    async def _upload_body(self, request: web.Request) -> dict[str, Any]:
        return await read_upload_body(request, self.limits)

    async def _h_upload_attachment(self, request: web.Request) -> web.StreamResponse:
        """An agent's file for the customer (201 with the stored attachment and its event). 400 for a body without
        the fields, 413/415/422 for a refused file (codes of :mod:`channels.uploads`), 409 unless the agent holds
        the conversation, 404 for no conversation."""
        cid = self._conversation_id(request)
        body = await self._upload_body(request)
        filename, content_type, encoded = body.get("filename"), body.get("content_type"), body.get("data")
        if filename is not None and not isinstance(filename, str):
            raise ApiError("bad_request", "'filename' must be a string")
        if not isinstance(content_type, str) or not isinstance(encoded, str) or not encoded:
            raise ApiError("bad_request", "'content_type' and 'data' (base64) are required")
        message_id = body.get("message_id") or f"agent-file-{uuid.uuid4().hex}"
        if not isinstance(message_id, str) or not p.MESSAGE_ID_RE.fullmatch(message_id):
            raise ApiError("bad_request", "'message_id' must be 1-64 characters of [A-Za-z0-9_-]")
        data = decode_file_data(encoded)
        try:
            checked = check_upload(data, content_type, filename, self.limits)
        except UploadRefused as exc:
            raise ApiError(exc.code, exc.reason) from None
        await self._summary(cid)
        agent = request[USER].username
        try:
            attachment, event = await self.backend.add_attachment(
                cid, direction="agent", filename=checked.filename, content_type=checked.content_type,
                data=checked.data, uploader=agent, message_id=message_id,
            )
        except HandoffConflict:
            raise ApiError("conflict", "take the conversation over first") from None
        logger.info("attachment %s (%s, %d bytes) sent by %s on %s", attachment.id, attachment.content_type,
                    attachment.size, agent, cid)
        return json_response(
            {"attachment": attachment_json(event.data, None), "event": p.event_to_json(event)}, status=201
        )

    async def _h_attachment(self, request: web.Request) -> web.StreamResponse:
        """A stored file, for staff (who may read every conversation): 404 for an unknown or malformed id. The id
        is random (128 bits), and the conversation's events are where staff find it."""
        attachment_id = request.match_info["id"]
        if not ATTACHMENT_ID_RE.fullmatch(attachment_id):
            raise ApiError("not_found", "no such attachment")
        found = await self.backend.get_attachment(attachment_id)
        if found is None:
            raise ApiError("not_found", "no such attachment")
        attachment, data = found
        headers = download_headers(attachment.content_type, attachment.filename, data)
        headers.pop("Cross-Origin-Resource-Policy")  # the console's own (same-origin) applies
        return web.Response(body=data, headers=headers)
