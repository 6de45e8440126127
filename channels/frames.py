"""The frames of the chat wire protocol: the client frames (types, parsing, validation), the server frames
(builders) and their serialisation, with the wire's limits on sizes and identifiers.

Pure functions and frozen dataclasses, no I/O: :func:`parse_client_frame` turns what the WebSocket layer delivered
into a :data:`ClientFrame` or raises the :class:`~channels.errors.ProtocolError` to answer; the ``*_frame``
functions build the dicts that :func:`encode_frame` writes. The wire spec that these implement is the docstring
of :mod:`channels.protocol` (one text for clients to read; the README points at it). Which stored events become
frames (history, pushes) is :mod:`channels.transcript`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from channels.error_codes import BAD_FRAME, BAD_JSON, ERROR_MESSAGES, TOO_LARGE, error_code_for
from channels.errors import ProtocolError
from channels.json_api import json_default
from dialogue.types import AVATAR_DIGEST_RE, MAX_RATING_COMMENT, Event, TurnReply

# ---------------------------------------------------------------------------------------------------------- limits
MAX_FRAME_BYTES: Final = 64 * 1024
MAX_TEXT_CHARS: Final = 2000
MAX_MESSAGE_ID_CHARS: Final = 64
MAX_CONVERSATION_ID_CHARS: Final = 128
RATING_SCORES: Final = range(1, 6)
MAX_AGENT_NAME_CHARS: Final = 64
MAX_DECLARED_TYPE_CHARS: Final = 100  # an upload's declared media type

AVATARS_PATH: Final = "/avatars/"  # the chat port's staff pictures: /avatars/<sha256 hex> (channels.chat_http)

MESSAGE_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
CONVERSATION_ID_RE: Final = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
USER_ID_RE: Final = re.compile(r"[A-Za-z0-9_.:@+-]{1,255}")
SECRET_RE: Final = re.compile(r"[A-Za-z0-9_-]{16,128}")
LANGUAGES: Final = ("en", "zh")


# --------------------------------------------------------------------------------------------------- client frames
@dataclass(frozen=True)
class Hello:
    """``{"type": "hello"}``: open or resume a conversation (``secret`` proves the resumed one)."""

    conversation_id: str | None
    language: str | None = None
    user: str | None = None
    secret: str | None = None

    def __repr__(self) -> str:  # never the secret (it is a credential)
        return (
            f"Hello(conversation_id={self.conversation_id!r}, language={self.language!r}, "
            f"user={'set' if self.user else None}, secret={'set' if self.secret else None})"
        )


@dataclass(frozen=True)
class UserMessage:
    """``{"type": "message"}``: a customer message (``text`` is stripped). ``secret``/``user`` prove the named
    conversation when the connection has no session yet (no ``hello``)."""

    conversation_id: str | None
    message_id: str
    text: str
    secret: str | None = None
    user: str | None = None

    def __repr__(self) -> str:
        return (
            f"UserMessage(conversation_id={self.conversation_id!r}, message_id={self.message_id!r}, "
            f"chars={len(self.text)})"
        )


@dataclass(frozen=True)
class Rating:
    """``{"type": "rating"}``: the customer's score (1..5) of a resolved conversation and an optional comment
    (stripped; ``None`` when absent or empty)."""

    score: int
    comment: str | None = None

    def __repr__(self) -> str:  # the comment is customer text
        return f"Rating(score={self.score}, comment={'set' if self.comment else None})"


@dataclass(frozen=True)
class Typing:
    """``{"type": "typing"}``: the customer is typing (``state=True``) or stopped. Never stored: see
    :class:`channels.presence.TypingBoard`."""

    state: bool


@dataclass(frozen=True)
class UploadStart:
    """``{"type": "upload"}``: the customer is about to send a file of ``size`` bytes in binary frames. What it
    declares is checked by :func:`channels.uploads.check_declared` (limits), then the bytes by
    :func:`channels.uploads.check_upload` (content): here only the fields' shapes."""

    upload_id: str
    filename: str | None
    content_type: str
    size: int

    def __repr__(self) -> str:  # the name is the customer's
        return f"UploadStart(upload_id={self.upload_id!r}, content_type={self.content_type!r}, size={self.size})"


ClientFrame = Hello | UserMessage | Rating | Typing | UploadStart


def bad_frame_error(reason: str, reply_to: str | None = None) -> ProtocolError:
    """The ``bad_frame`` error (``reason`` names fields, never their values)."""
    return ProtocolError(BAD_FRAME, reason, reply_to=reply_to)


def _conversation_id(obj: Mapping[str, Any], reply_to: str | None) -> str | None:
    value = obj.get("conversation_id")
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_frame_error("field 'conversation_id' must be a string or null", reply_to)
    if not CONVERSATION_ID_RE.fullmatch(value):
        raise bad_frame_error("field 'conversation_id' must be 1-128 characters of [A-Za-z0-9_.:-]", reply_to)
    return value


def _user(obj: Mapping[str, Any], reply_to: str | None) -> str | None:
    user = obj.get("user")
    if user is None:
        return None
    if not isinstance(user, str):
        raise bad_frame_error("field 'user' must be a string or null", reply_to)
    if not USER_ID_RE.fullmatch(user):
        raise bad_frame_error("field 'user' must be 1-255 characters of [A-Za-z0-9_.:@+-]", reply_to)
    return user


def _secret(obj: Mapping[str, Any], reply_to: str | None) -> str | None:
    secret = obj.get("secret")
    if secret is None:
        return None
    if not isinstance(secret, str) or not SECRET_RE.fullmatch(secret):
        raise bad_frame_error("field 'secret' must be null or 16-128 characters of [A-Za-z0-9_-]", reply_to)
    return secret


def _parse_hello(obj: Mapping[str, Any]) -> Hello:
    conversation_id = _conversation_id(obj, None)
    language = obj.get("language")
    if language is not None:
        if not isinstance(language, str):
            raise bad_frame_error("field 'language' must be a string or null")
        # Accept browser tags like "zh-CN" / "en-GB": the primary subtag decides; unknown languages are dropped.
        primary = language.split("-", 1)[0].split("_", 1)[0].lower()
        language = primary if primary in LANGUAGES else None
    return Hello(
        conversation_id=conversation_id, language=language, user=_user(obj, None), secret=_secret(obj, None)
    )


def _parse_message(obj: Mapping[str, Any]) -> UserMessage:
    if "message_id" not in obj:
        raise bad_frame_error("missing field 'message_id'")
    message_id = obj["message_id"]
    if not isinstance(message_id, str):
        raise bad_frame_error("field 'message_id' must be a string")
    if not MESSAGE_ID_RE.fullmatch(message_id):
        raise bad_frame_error("field 'message_id' must be 1-64 characters of [A-Za-z0-9_-]")
    conversation_id = _conversation_id(obj, message_id)
    if "text" not in obj:
        raise bad_frame_error("missing field 'text'", message_id)
    text = obj["text"]
    if not isinstance(text, str):
        raise bad_frame_error("field 'text' must be a string", message_id)
    if not _encodable(text):
        raise bad_frame_error("field 'text' holds a lone surrogate (not valid Unicode)", message_id)
    text = text.strip()
    if not text:
        raise bad_frame_error("field 'text' is empty", message_id)
    if len(text) > MAX_TEXT_CHARS:
        raise ProtocolError(TOO_LARGE, f"field 'text' is longer than {MAX_TEXT_CHARS} characters", reply_to=message_id)
    return UserMessage(
        conversation_id=conversation_id,
        message_id=message_id,
        text=text,
        secret=_secret(obj, message_id),
        user=_user(obj, message_id),
    )


def _parse_rating(obj: Mapping[str, Any]) -> Rating:
    score = obj.get("score")
    if isinstance(score, bool) or not isinstance(score, int) or score not in RATING_SCORES:
        raise bad_frame_error("field 'score' must be an integer 1..5")
    comment = obj.get("comment")
    if comment is not None:
        if not isinstance(comment, str):
            raise bad_frame_error("field 'comment' must be a string or null")
        if not _encodable(comment):
            raise bad_frame_error("field 'comment' holds a lone surrogate (not valid Unicode)")
        comment = comment.strip() or None
        if comment is not None and len(comment) > MAX_RATING_COMMENT:
            raise ProtocolError(TOO_LARGE, f"field 'comment' is longer than {MAX_RATING_COMMENT} characters")
    return Rating(score=score, comment=comment)


def _parse_typing(obj: Mapping[str, Any]) -> Typing:
    state = obj.get("state")
    if not isinstance(state, bool):  # not 0/1 or "true": a client that sends those has a bug worth seeing
        raise bad_frame_error("field 'state' must be true or false")
    return Typing(state=state)


def _encodable(text: str) -> bool:
    """``False`` when ``text`` holds a lone surrogate (JSON allows ``"\\ud800"``; UTF-8 storage does not)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _parse_upload(obj: Mapping[str, Any]) -> UploadStart:
    upload_id = obj.get("upload_id")
    if not isinstance(upload_id, str) or not MESSAGE_ID_RE.fullmatch(upload_id):
        raise bad_frame_error("field 'upload_id' must be 1-64 characters of [A-Za-z0-9_-]")
    filename = obj.get("filename")
    if filename is not None and (not isinstance(filename, str) or not _encodable(filename)):
        raise bad_frame_error("field 'filename' must be a string or null")
    content_type = obj.get("content_type")
    if not isinstance(content_type, str) or len(content_type) > MAX_DECLARED_TYPE_CHARS:
        raise bad_frame_error(f"field 'content_type' must be a string of at most {MAX_DECLARED_TYPE_CHARS} characters")
    size = obj.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise bad_frame_error("field 'size' must be a non-negative integer")
    return UploadStart(upload_id=upload_id, filename=filename, content_type=content_type, size=size)


_PARSERS: dict[str, Callable[[Mapping[str, Any]], ClientFrame]] = {
    "hello": _parse_hello, "message": _parse_message, "rating": _parse_rating, "typing": _parse_typing,
    "upload": _parse_upload,
}


def parse_client_frame(data: str | bytes, *, max_bytes: int = MAX_FRAME_BYTES) -> ClientFrame:
    """Parse and validate one client frame.

    ``data`` is what the WebSocket layer delivered: ``str`` for a text frame, ``bytes`` for a binary frame
    (always refused with ``bad_frame``). Raises :class:`ProtocolError` with the wire code to send back.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        raise bad_frame_error("binary frames are not supported; send JSON in a text frame")
    if len(data) > max_bytes or len(data.encode("utf-8", "surrogatepass")) > max_bytes:
        raise ProtocolError(TOO_LARGE, f"frame is larger than {max_bytes} bytes")
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        raise ProtocolError(BAD_JSON, "frame is not valid JSON") from None
    if not isinstance(obj, dict):
        raise bad_frame_error("frame must be a JSON object")
    frame_type = obj.get("type")
    if not isinstance(frame_type, str):
        raise bad_frame_error("field 'type' must be a string")
    parser = _PARSERS.get(frame_type)
    if parser is None:
        raise bad_frame_error("unknown frame type")
    return parser(obj)


# --------------------------------------------------------------------------------------------------- server frames
def session_frame(conversation_id: str, secret: str | None = None) -> dict[str, Any]:
    """``{"type": "session"}``; ``secret`` only when the server issued a new conversation (see the wire spec)."""
    frame: dict[str, Any] = {"type": "session", "conversation_id": conversation_id}
    if secret is not None:
        frame["secret"] = secret
    return frame


def ack_frame(message_id: str) -> dict[str, Any]:
    return {"type": "ack", "message_id": message_id}


def typing_frame(on: bool) -> dict[str, Any]:
    return {"type": "typing", "on": on}


def token_frame(reply_to: str, text: str) -> dict[str, Any]:
    return {"type": "token", "reply_to": reply_to, "text": text}


def message_frame(reply: TurnReply) -> dict[str, Any]:
    return {
        "type": "message",
        "conversation_id": reply.conversation_id,
        "message_id": reply.message_id,
        "reply_to": reply.reply_to,
        "text": reply.text,
        "intent": reply.intent,
        "confidence": None if reply.confidence is None else float(reply.confidence),
        "action": reply.action,
        "handed_off": bool(reply.handed_off),
        "quick_replies": list(reply.quick_replies),
        "buttons": [{"title": title, "payload": payload} for title, payload in reply.buttons],
        "replayed": bool(reply.replayed),
    }


def agent_initials(name: str) -> str:
    """1-2 upper-case initials of a display name, for the widget's avatar circle: the first letter of its first two
    words (``"amy.lee"`` -> ``"AL"``, ``"amy"`` -> ``"A"``, ``"王小明"`` -> ``"王"``); ``"?"`` when it has none."""
    words = [w for w in re.split(r"[\W_]+", name) if w]
    return "".join(w[0] for w in words[:2]).upper() or "?"


@dataclass(frozen=True)
class ShownAgent:
    """What customers are shown of a staff member: ``name`` (their display name, else their username) and
    ``avatar``, the sha256 digest of their picture (``None``: initials only). The console makes one from the
    signed-in account for an ``agent_typing`` frame; stored events carry the same two facts as ``agent_name`` and
    ``agent_avatar`` (:func:`event_agent_card`)."""

    name: str
    avatar: str | None = None


def avatar_path(digest: object) -> str | None:
    """The chat port's path of a staff picture (``/avatars/<sha256>``), or ``None`` for anything that is not a
    sha256 hex digest (event data is read back from the store: nothing in it becomes a URL unchecked)."""
    if isinstance(digest, str) and AVATAR_DIGEST_RE.fullmatch(digest):
        return AVATARS_PATH + digest
    return None


def agent_card(name: str, avatar: str | None = None) -> dict[str, str]:
    """``{"name", "avatar", "picture"?}`` of a staff member as customers see them: the display name (cut to
    :data:`MAX_AGENT_NAME_CHARS`), its initials (``avatar``: what widgets draw in a coloured circle, and all that
    widgets older than pictures know), and ``picture``, the same-origin path of their picture on the chat port
    (``/avatars/<sha256>``, :func:`avatar_path`) when ``avatar`` is its digest. Plain text and one path of ours:
    the widget inserts the name with ``textContent`` and loads only ``/avatars/`` paths."""
    shown = " ".join(name.split())[:MAX_AGENT_NAME_CHARS] or "?"
    card = {"name": shown, "avatar": agent_initials(shown)}
    picture = avatar_path(avatar)
    if picture is not None:
        card["picture"] = picture
    return card


def event_agent_card(data: Mapping[str, Any]) -> dict[str, str] | None:
    """The :func:`agent_card` an agent's stored message or file was sent with: its ``agent_name`` and
    ``agent_avatar`` (recorded when it was sent, so a history shows what the customer saw then), else its ``agent``
    username (sent without a display name, or stored before profiles); ``None`` when the event names no agent."""
    name, username, avatar = data.get("agent_name"), data.get("agent"), data.get("agent_avatar")
    shown = name if isinstance(name, str) and name.strip() else username
    if not isinstance(shown, str) or not shown:
        return None
    return agent_card(shown, avatar if isinstance(avatar, str) else None)


def agent_field(event: Event) -> dict[str, Any]:
    """``{"agent": card}`` of an agent message event that names its agent (:func:`event_agent_card`), else ``{}``:
    the pushed ``message`` frame and the history entry of that message carry the same field."""
    card = event_agent_card(event.data)
    return {"agent": card} if card is not None else {}


def agent_typing_frame(state: bool, agent: str | ShownAgent) -> dict[str, Any]:
    """``{"type": "agent_typing"}``: the agent holding the conversation is typing (``state``) or stopped; ``agent``
    is what customers are shown of them (a bare username: its initials only)."""
    shown = agent if isinstance(agent, ShownAgent) else ShownAgent(agent)
    return {"type": "agent_typing", "state": bool(state), "agent": agent_card(shown.name, shown.avatar)}


def agent_message_frame(event: Event) -> dict[str, Any]:
    """The pushed ``message`` frame (``"role": "agent"``) of a stored AGENT_MESSAGE event; with ``agent`` (who
    wrote it) when the event names them."""
    message_id = event.message_id or event.data.get("message_id") or f"agent-{event.seq}"
    extra = agent_field(event)
    return {
        "type": "message",
        "role": "agent",
        "conversation_id": event.conversation_id,
        "message_id": str(message_id),
        "reply_to": None,
        "text": str(event.data.get("text", "")),
        "intent": None,
        "confidence": None,
        "action": None,
        "handed_off": True,
        "quick_replies": [],
        "replayed": False,
        **extra,
    }


def attachment_json(data: Mapping[str, Any], url: str | None) -> dict[str, Any]:
    """The wire's view of a stored attachment (an ``attachment`` event's data): id, name, type, size, whether it is
    an image (shown as a picture) and ``url``, the customer's download link relative to the server's base URL
    (absent when the server has none to give)."""
    content_type = str(data.get("content_type", ""))
    out: dict[str, Any] = {
        "id": str(data.get("id", "")),
        "filename": str(data.get("filename", "")),
        "content_type": content_type,
        "size": int(data.get("size") or 0),
        "image": content_type.startswith("image/"),
    }
    if url is not None:
        out["url"] = url
    return out


def upload_ready_frame(upload_id: str) -> dict[str, Any]:
    """``{"type": "upload_ready"}``: the declared upload is accepted; send its bytes in binary frames now."""
    return {"type": "upload_ready", "upload_id": upload_id}


def upload_ack_frame(upload_id: str, attachment: dict[str, Any], message_id: str | None = None) -> dict[str, Any]:
    """``{"type": "upload_ack"}``: the file is stored; ``attachment`` is what :func:`attachment_json` says of it."""
    return {"type": "upload_ack", "upload_id": upload_id, "message_id": message_id or upload_id,
            "attachment": attachment}


def upload_error_frame(upload_id: str | None, code: str, message: str) -> dict[str, Any]:
    """``{"type": "upload_error"}``: the upload is refused and nothing of it is stored (``code`` says why; the
    widget shows its own text for it, ``message`` is the server's English explanation)."""
    return {"type": "upload_error", "upload_id": upload_id, "code": code, "message": message}


def attachment_frame(event: Event, url: str | None) -> dict[str, Any]:
    """The pushed ``attachment`` frame of an agent's stored ``attachment`` event (with ``agent``, who sent it)."""
    agent = event_agent_card(event.data)
    frame: dict[str, Any] = {
        "type": "attachment",
        "role": "agent",
        "conversation_id": event.conversation_id,
        "message_id": event.message_id or f"attachment-{event.seq}",
        "attachment": attachment_json(event.data, url),
    }
    if agent is not None:
        frame["agent"] = agent
    return frame


def handoff_frame(conversation_id: str, status: str) -> dict[str, Any]:
    """``{"type": "handoff", "status": "agent" | "bot"}``: an agent took the conversation over / handed it back."""
    return {"type": "handoff", "conversation_id": conversation_id, "status": status}


def resolved_frame(conversation_id: str) -> dict[str, Any]:
    """``{"type": "resolved"}``: staff resolved the conversation; the widget asks for a rating."""
    return {"type": "resolved", "conversation_id": conversation_id}


def rating_ack_frame(conversation_id: str, score: int) -> dict[str, Any]:
    """``{"type": "rating_ack"}``: the customer's rating was stored."""
    return {"type": "rating_ack", "conversation_id": conversation_id, "score": int(score)}


def busy_frame(reply_to: str, retry_after_ms: int, reason: str) -> dict[str, Any]:
    """``{"type": "busy"}``: the message ``reply_to`` was shed by admission control, not stored; resend it after
    ``retry_after_ms`` (see the wire spec). Not an ``error`` frame: nothing failed, and old clients that ignore
    unknown frames resend it on their next reconnect."""
    return {"type": "busy", "reply_to": reply_to, "retry_after_ms": int(retry_after_ms), "reason": reason}


def error_frame(code: str, message: str | None = None, *, reply_to: str | None = None) -> dict[str, Any]:
    """An ``error`` frame; ``message`` defaults to the generic text for ``code`` (never customer text)."""
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message or ERROR_MESSAGES.get(code, code)}
    if reply_to is not None:
        frame["reply_to"] = reply_to
    return frame


def error_frame_for(exc: BaseException, *, reply_to: str | None = None) -> dict[str, Any]:
    """The ``error`` frame for an exception: a :class:`ProtocolError` keeps its reason (it names fields only);
    any other exception gets the generic message of its code, so exception text never reaches the client."""
    if isinstance(exc, ProtocolError):
        return error_frame(exc.code, exc.reason, reply_to=exc.reply_to if exc.reply_to is not None else reply_to)
    return error_frame(error_code_for(exc), reply_to=reply_to)


def encode_frame(frame: Mapping[str, Any]) -> str:
    """Serialise a server frame (compact JSON, UTF-8 characters kept as is)."""
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"), default=json_default)
