"""The wire protocol's error codes: the ``code`` of an ``error`` frame, its customer-safe message, the code of an
exception raised while serving a client, and the HTTP status of each code.

Pure data and one function; the codes themselves are specified in the wire spec (:mod:`channels.protocol`).
Every other module of the core builds its :class:`~channels.errors.ProtocolError` with these constants, so a code
is spelled once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from channels.errors import ProtocolError
from dialogue.errors import AlreadyRated, ConcurrentUpdate, ConversationNotFound, NotResolved, StoreUnavailable

BAD_JSON: Final = "bad_json"
BAD_FRAME: Final = "bad_frame"
TOO_LARGE: Final = "too_large"
BUSY: Final = "busy"
RATE_LIMITED: Final = "rate_limited"
RESUME_DENIED: Final = "resume_denied"
TIMEOUT: Final = "timeout"
NOT_FOUND: Final = "not_found"
STORE_UNAVAILABLE: Final = "store_unavailable"
INTERNAL: Final = "internal"
NOT_RESOLVED: Final = "not_resolved"
ALREADY_RATED: Final = "already_rated"
ERROR_CODES: Final = (
    BAD_JSON, BAD_FRAME, TOO_LARGE, BUSY, RATE_LIMITED, RESUME_DENIED, TIMEOUT, NOT_FOUND, STORE_UNAVAILABLE,
    INTERNAL, NOT_RESOLVED, ALREADY_RATED,
)

#: Generic, customer-safe English message for each code (the widget shows its own localised strings).
ERROR_MESSAGES: Final[Mapping[str, str]] = {
    BAD_JSON: "The frame is not valid JSON.",
    BAD_FRAME: "The frame is not a valid Kefu frame.",
    TOO_LARGE: "The message is too long.",
    BUSY: "Too many messages are pending; please wait and retry.",
    RATE_LIMITED: "Messages are arriving too fast; please slow down and resend.",
    RESUME_DENIED: "This conversation cannot be resumed here; start a new one.",
    TIMEOUT: "The assistant did not answer in time; please retry.",
    NOT_FOUND: "The conversation does not exist.",
    STORE_UNAVAILABLE: "The service is temporarily unavailable; please retry.",
    INTERNAL: "Something went wrong on our side.",
    NOT_RESOLVED: "This conversation is not resolved, so it cannot be rated.",
    ALREADY_RATED: "This conversation was already rated.",
}

#: Exception class -> wire error code. :func:`error_code_for` walks the exception's MRO, so subclasses match too.
#: Classes, not their names: a class of another package that happens to share a name (or a renamed one) cannot
#: slip into, or out of, a code unnoticed. The dialogue package's errors are the store's and engine's failures
#: that the channel reports (channels may import dialogue; the layers allow it).
EXCEPTION_CODES: Final[Mapping[type[BaseException], str]] = {
    StoreUnavailable: STORE_UNAVAILABLE,
    ConversationNotFound: NOT_FOUND,
    ConcurrentUpdate: BUSY,
    TimeoutError: TIMEOUT,
    NotResolved: NOT_RESOLVED,
    AlreadyRated: ALREADY_RATED,
}

#: Wire error code -> HTTP status, for an HTTP API that answers the same errors (each code has one).
HTTP_STATUS_FOR_CODE: Final[Mapping[str, int]] = {
    BAD_JSON: 400,
    BAD_FRAME: 400,
    TOO_LARGE: 413,
    BUSY: 429,
    RATE_LIMITED: 429,
    RESUME_DENIED: 403,
    TIMEOUT: 504,
    NOT_FOUND: 404,
    STORE_UNAVAILABLE: 503,
    INTERNAL: 500,
    NOT_RESOLVED: 409,
    ALREADY_RATED: 409,
}


def error_code_for(exc: BaseException, mapping: Mapping[type[BaseException], str] | None = None) -> str:
    """The wire error code for an exception raised while serving a client.

    A :class:`ProtocolError` carries its own code; otherwise the first class in ``type(exc).__mro__`` that is a
    key of ``mapping`` (default :data:`EXCEPTION_CODES`) decides; anything else is ``internal``.
    """
    if isinstance(exc, ProtocolError):
        return exc.code
    table = EXCEPTION_CODES if mapping is None else mapping
    for cls in type(exc).__mro__:
        code = table.get(cls)
        if code is not None:
            return code
    return INTERNAL
