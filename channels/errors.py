"""Exceptions of the channels package: one root (:class:`ChannelError`), context on every error.

Messages and reprs carry error codes, frame types, field names and ids, never customer text.
"""

from __future__ import annotations

import traceback
from pathlib import Path


class ChannelError(Exception):
    """Root of every error raised by the ``channels`` package."""


class ProtocolError(ChannelError):
    """A client frame broke the wire protocol.

    ``code`` is the wire error code sent back in the ``error`` frame (``bad_json``, ``bad_frame``, ``too_large``,
    ``busy``...), ``reason`` a short human-readable explanation that names fields, never their values, and
    ``reply_to`` the client ``message_id`` the error answers when it could be read from the frame.
    """

    def __init__(self, code: str, reason: str, *, reply_to: str | None = None) -> None:
        self.code = code
        self.reason = reason
        self.reply_to = reply_to
        super().__init__(f"{code}: {reason}" + (f" (reply_to={reply_to!r})" if reply_to is not None else ""))

    def __repr__(self) -> str:
        return f"ProtocolError(code={self.code!r}, reason={self.reason!r}, reply_to={self.reply_to!r})"


class StaticFilesError(ChannelError):
    """The static directory (widget, demo page, console) is missing or lacks a required file.

    ``path`` is the directory or file involved.
    """

    def __init__(self, message: str, *, path: str) -> None:
        self.path = path
        super().__init__(f"{message} (path={path!r})")


def raised_at(exc: BaseException) -> str:
    """``file:line:function`` where ``exc`` was raised: log context without the (possibly customer) message."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "?"
    last = frames[-1]
    return f"{Path(last.filename).name}:{last.lineno}:{last.name}"
