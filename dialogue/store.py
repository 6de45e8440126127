"""The conversation store: snapshot rows plus an append-only event log, on any SQLAlchemy async URL.

* ``conversations`` holds one snapshot row per conversation (state, slots, turn count, handoff flag, version),
  so running a turn never replays history.
* ``events`` is append-only: each row has a per-conversation ``seq`` (1, 2, 3... gap-free), the ``turn`` it
  belongs to, a type from :mod:`dialogue.types`, JSON ``data`` and an optional client/bot ``message_id``.
  ``UNIQUE(conversation_id, type, message_id)`` makes a client message id processable once.

Concurrency is optimistic: :meth:`Store.commit_turn` carries the version the caller read; inside one transaction
the store locks the row (``SELECT ... FOR UPDATE`` on PostgreSQL; ``BEGIN IMMEDIATE`` on SQLite, which
serialises writers), compares versions (:class:`~dialogue.errors.ConcurrentUpdate` on mismatch), appends the
events and rewrites the snapshot with ``version + 1``. The snapshot ``UPDATE`` is additionally guarded by
``WHERE version = :expected``. A turn reads once (:meth:`Store.get_for_message`: the snapshot and whether its client
message id is already stored, one statement) and writes once (:meth:`Store.commit_turn`).

On PostgreSQL with asyncpg the engine's default isolation is ``AUTOCOMMIT``: a read is its statement(s) without
``BEGIN``/``COMMIT`` (under PostgreSQL's ``READ COMMITTED`` a transaction gives a read nothing more, since each
statement sees its own snapshot), and the pool's pre-ping is one round trip instead of three; every write
transaction sets ``READ COMMITTED`` and is one transaction as before. An ``isolation_level`` in ``engine_kwargs``
turns this off.

The console reads conversations by facts that otherwise live in the event log, so the snapshot row also carries
denormalised columns (lowest NLU confidence, fallback and safety turn counts, the redacted text for search, the
hand-off status, review flags and tags) and ``conversation_intents`` every intent seen. Every write path keeps them
in the same transaction as the events it appends, so the list can never disagree with the log. The list pages by
keyset on ``(updated_at, id)`` (an opaque cursor), which stays as fast on page 2,000 as on page 1.

Staff ``users`` and their login ``sessions`` (keyed by the sha256 of the cookie token) live here too: the ops
console authenticates against the same database the bot writes.

The schema is owned by the Alembic migrations in ``dialogue/migrations``; :meth:`Store.open` upgrades to head.
Nothing here logs customer text: only ids, counts and event types.

Usage::

    store = await Store.open("sqlite+aiosqlite:///.kefu/shop.db")
    conv = await store.create_conversation("en")
    events = await store.commit_turn(TurnUpdate(conv.id, conv.version, "idle", {}, "en", False, (...)))
    await store.close()
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import logging
import unicodedata
import uuid
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from dialogue import types as ev
from dialogue.canned import (
    CannedReply,
    CannedReplyExists,
    CannedReplyNotFound,
    check_reply,
)
from dialogue.errors import (
    AlreadyRated,
    ConcurrentUpdate,
    ConversationExists,
    ConversationNotFound,
    DuplicateMessage,
    HandoffConflict,
    InvalidQuery,
    NotResolved,
    StoreError,
    StoreUnavailable,
    UserExists,
    UserNotFound,
)
from dialogue.types import (
    CONSOLE_LOCALES,
    EVENT_TYPES,
    HANDOFF_AGENT,
    HANDOFF_FILTERS,
    HANDOFF_NONE,
    HANDOFF_WAITING,
    MAX_RATING_COMMENT,
    ROLES,
    Conversation,
    ConversationFilter,
    ConversationPage,
    ConversationSummary,
    DashboardStats,
    Event,
    NewEvent,
    Session,
    TurnUpdate,
    User,
)
from safety.pii import redact_verbatim

__all__ = ["MIGRATIONS_DIR", "Store", "decode_cursor", "encode_cursor"]

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_IMMEDIATE = "kefu_sqlite_immediate"  # execution option: open this SQLite transaction with BEGIN IMMEDIATE
_MIGRATION_LOCK = zlib.crc32(b"kefu.dialogue.store.migrations")  # PostgreSQL advisory lock key
_MAX_LIST = 1000
SEARCH_CAP = 32_000  # characters of text kept per conversation for search (the beginning of long ones)
MAX_TAGS = 20
MAX_TAG_LENGTH = 32
MAX_NOTE_CHARS = 2000  # an internal note: as long as a message may be
PREVIEW_CHARS = 200  # characters of the last message kept for the inbox (migration 0009)
ASSIGNABLE_ROLES = ("agent", "admin")  # who a conversation can be assigned to
_MESSAGE_AUTHORS = {ev.USER_MESSAGE: "customer", ev.BOT_MESSAGE: "bot", ev.AGENT_MESSAGE: "agent"}
RESOLVED_STATUS = "resolved"  # handoff_statuses' value for a resolved conversation still to be rated

# Table definitions mirror migrations/versions/*.py (the migrations own the schema; these are for queries).
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_metadata = sa.MetaData()
conversations = sa.Table(
    "conversations",
    _metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("sender", sa.String(255), nullable=True),
    sa.Column("language", sa.String(16), nullable=False),
    sa.Column("state", sa.String(64), nullable=False),
    sa.Column("slots", _JSON, nullable=False),
    sa.Column("turn_count", sa.Integer(), nullable=False),
    sa.Column("handed_off", sa.Boolean(), nullable=False),
    sa.Column("last_intent", sa.String(64), nullable=True),
    sa.Column("last_action", sa.String(64), nullable=True),  # migration 0002: the policy reads it
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # migration 0003: review, hand-off and the console's denormalised facts
    sa.Column("reviewed", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("flagged", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("tags", _JSON, nullable=False, server_default=sa.text("'[]'")),
    sa.Column("min_confidence", sa.Float(), nullable=True),
    sa.Column("fallbacks", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("safety_flags", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("safety_blocks", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("redactions", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("handoff_status", sa.String(16), nullable=False, server_default=""),
    sa.Column("agent", sa.String(64), nullable=True),
    sa.Column("handoff_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("handoffs", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("fallback_streak", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("search_text", sa.Text(), nullable=False, server_default=""),
    sa.Column("secret_hash", sa.String(64), nullable=True),  # migration 0005: sha256 of the chat resume secret
    sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),  # migration 0008: the workspace
    sa.Column("resolved_by", sa.String(64), nullable=True),
    sa.Column("rating", sa.Integer(), nullable=True),
    sa.Column("rating_comment", sa.Text(), nullable=True),
    sa.Column("first_agent_reply_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("assignee", sa.String(64), nullable=True),  # migration 0009: the inbox
    sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_message", sa.Text(), nullable=False, server_default=""),
    sa.Column("last_message_by", sa.String(16), nullable=False, server_default=""),
    sa.Column("last_customer_seq", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("assignee_seen_seq", sa.Integer(), nullable=False, server_default="0"),
)
canned_replies = sa.Table(  # migration 0008: the team's saved answers per language
    "canned_replies",
    _metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("language", sa.String(16), nullable=False),
    sa.Column("title", sa.String(64), nullable=False),
    sa.Column("text", sa.Text(), nullable=False),
    sa.Column("created_by", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("language", "title", name="uq_canned_replies_language_title"),
)
conversation_intents = sa.Table(
    "conversation_intents",
    _metadata,
    sa.Column("conversation_id", sa.String(64), sa.ForeignKey("conversations.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("intent", sa.String(64), primary_key=True),
)
users = sa.Table(
    "users",
    _metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("username", sa.String(64), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("disabled", sa.Boolean(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("locale", sa.String(16), nullable=True),  # migration 0010
)
sessions = sa.Table(
    "sessions",
    _metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("csrf_token", sa.String(128), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)
events = sa.Table(
    "events",
    _metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("conversation_id", sa.String(64), sa.ForeignKey("conversations.id", ondelete="CASCADE")),
    sa.Column("seq", sa.Integer(), nullable=False),
    sa.Column("turn", sa.Integer(), nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("data", _JSON, nullable=False),
    sa.Column("message_id", sa.String(128), nullable=True),
    sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
)

# Errors that mean "cannot talk to the database" rather than "this statement is wrong".
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (OSError, TimeoutError, ConnectionError)
#: SQLSTATEs that mean "the database is not there right now": class 08 (connection exception) and 57P01-57P03
#: (admin shutdown, crash shutdown, cannot connect now: "the database system is shutting down / starting up").
_UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(value: dt.datetime) -> dt.datetime:
    """SQLite returns naive datetimes; everything the store writes is UTC."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _dumps(value: Any) -> str:
    # ensure_ascii=False: Chinese is stored as UTF-8 text, not \\u escapes (readable in psql / sqlite3).
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _sqlstate(exc: BaseException | None) -> str | None:
    """The SQLSTATE of a driver error: on the error itself, or on the driver exception SQLAlchemy's asyncpg adapter
    wraps (its adapted ``Error`` classes carry the original as ``__cause__``)."""
    seen = 0
    while exc is not None and seen < 5:
        for attr in ("sqlstate", "pgcode"):
            value = getattr(exc, attr, None)
            if isinstance(value, str) and value:
                return value
        exc = exc.__cause__
        seen += 1
    return None


def _is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        orig = exc.orig
        if isinstance(orig, _CONNECTION_ERRORS):
            return True
        # PostgreSQL shutting down or starting up (a restart) arrives as a plain driver error with SQLSTATE 57P0x.
        sqlstate = _sqlstate(orig)
        if sqlstate is not None and sqlstate.startswith(_UNAVAILABLE_SQLSTATES):
            return True
        name = type(orig).__name__
        # asyncpg: CannotConnectNowError, ConnectionDoesNotExistError, InvalidCatalogNameError (no such
        # database), InvalidAuthorizationSpecificationError; sqlite: "unable to open database file".
        if any(key in name for key in ("Connect", "Connection", "InvalidCatalogName", "InvalidAuthorization")):
            return True
        return "unable to open database file" in str(orig)
    return isinstance(exc, _CONNECTION_ERRORS)


def _cause(exc: BaseException) -> BaseException:
    """The driver's exception, not SQLAlchemy's wrapper (whose message lists bound parameters = customer text)."""
    if isinstance(exc, sa_exc.StatementError) and exc.orig is not None:
        return exc.orig
    return exc


def _row_to_conversation(row: sa.Row[Any]) -> Conversation:
    m = row._mapping
    return Conversation(
        id=m["id"],
        state=m["state"],
        slots=dict(m["slots"] or {}),
        language=m["language"],
        turn_count=m["turn_count"],
        handed_off=bool(m["handed_off"]),
        version=m["version"],
        created_at=_aware(m["created_at"]),
        updated_at=_aware(m["updated_at"]),
        sender=m["sender"],
        last_action=m["last_action"],
        handoff_status=m["handoff_status"],
        agent=m["agent"],
        fallback_streak=m["fallback_streak"],
        secret_hash=m["secret_hash"],
        handoff_at=_aware(m["handoff_at"]) if m.get("handoff_at") is not None else None,
    )


_c = conversations.c
# Everything a summary shows (not the slots or the search text: the list must stay cheap and free of PII).
_SUMMARY_COLUMNS = (
    _c.id, _c.language, _c.turn_count, _c.handed_off, _c.state, _c.created_at, _c.updated_at, _c.last_intent,
    _c.last_action, _c.reviewed, _c.flagged, _c.tags, _c.min_confidence, _c.fallbacks, _c.safety_flags,
    _c.handoff_status, _c.agent, _c.handoff_at, _c.handoffs, _c.resolved_at, _c.resolved_by, _c.rating,
    _c.assignee, _c.assigned_at, _c.sender, _c.last_message, _c.last_message_by,
    (_c.last_customer_seq > _c.assignee_seen_seq).label("unread"),
)


def _row_to_summary(row: Any) -> ConversationSummary:  # a Row of _SUMMARY_COLUMNS
    m = row._mapping
    return ConversationSummary(
        id=m["id"],
        language=m["language"],
        turn_count=m["turn_count"],
        handed_off=bool(m["handed_off"]),
        state=m["state"],
        created_at=_aware(m["created_at"]),
        updated_at=_aware(m["updated_at"]),
        last_intent=m["last_intent"],
        reviewed=bool(m["reviewed"]),
        flagged=bool(m["flagged"]),
        tags=tuple(m["tags"] or ()),
        min_confidence=m["min_confidence"],
        fallbacks=m["fallbacks"],
        safety_flags=m["safety_flags"],
        handoff_status=m["handoff_status"],
        agent=m["agent"],
        last_action=m["last_action"],
        handoff_at=_aware(m["handoff_at"]) if m["handoff_at"] is not None else None,
        handoffs=m["handoffs"],
        resolved_at=_aware(m["resolved_at"]) if m["resolved_at"] is not None else None,
        resolved_by=m["resolved_by"],
        rating=m["rating"],
        assignee=m["assignee"],
        assigned_at=_aware(m["assigned_at"]) if m["assigned_at"] is not None else None,
        unread=bool(m["unread"]),
        sender=m["sender"],
        preview=m["last_message"] or "",
        preview_by=m["last_message_by"] or "",
    )


def _assignment(row: Any, assignee: str) -> dict[str, Any]:
    """The column values that assign the (locked) row to ``assignee``; nothing when it already is. A new assignee
    has seen nothing yet (``assignee_seen_seq`` 0: unread while any customer message exists)."""
    if row.assignee == assignee:
        return {}
    return {"assignee": assignee, "assigned_at": _now(), "assignee_seen_seq": 0}


def _inbox_values(stored: Sequence[Event]) -> dict[str, Any]:
    """The inbox columns a batch of stored events changes: the last message's text (as stored, so redacted) and
    author, and the ``seq`` of the last customer message (what makes the conversation unread for its assignee)."""
    values: dict[str, Any] = {}
    for event in stored:
        author = _MESSAGE_AUTHORS.get(event.type)
        if author is None:
            continue
        text = event.data.get("text")
        values.update(last_message=(text if isinstance(text, str) else "")[:PREVIEW_CHARS], last_message_by=author)
        if author == "customer":
            values["last_customer_seq"] = event.seq
    return values


def _row_to_user(row: sa.Row[Any]) -> User:
    m = row._mapping
    return User(
        id=m["id"],
        username=m["username"],
        role=m["role"],
        disabled=bool(m["disabled"]),
        created_at=_aware(m["created_at"]),
        password_hash=m["password_hash"],
        locale=m["locale"],
    )


def _row_to_session(row: sa.Row[Any]) -> Session:
    m = row._mapping
    return Session(
        token_hash=m["token_hash"],
        user_id=m["user_id"],
        csrf_token=m["csrf_token"],
        created_at=_aware(m["created_at"]),
        expires_at=_aware(m["expires_at"]),
    )


def _median(values: Sequence[float]) -> float | None:
    """The median of ``values`` (the mean of the middle two for an even count), ``None`` for none."""
    ordered = sorted(values)
    n = len(ordered)
    if not n:
        return None
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


# ---------------------------------------------------------------------- cursors


def encode_cursor(updated_at: dt.datetime, conversation_id: str) -> str:
    """The opaque cursor that continues a listing after the conversation ``(updated_at, id)``."""
    raw = _dumps([_aware(updated_at).isoformat(), conversation_id]).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    """Inverse of :func:`encode_cursor`; :class:`~dialogue.errors.InvalidQuery` on anything malformed."""
    try:
        if len(cursor) > 512:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw.decode("utf-8"))
        if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
            raise ValueError("not a pair of strings")
        return _aware(dt.datetime.fromisoformat(value[0])), value[1]
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise InvalidQuery("malformed cursor", operation="list_conversations") from None


# ---------------------------------------------------------------------- what a batch of events tells the console


@dataclass
class _Facts:
    """What a batch of events (one turn, or one agent message) changes on the snapshot's console columns."""

    confidences: list[float] = field(default_factory=list)
    intents: set[str] = field(default_factory=set)
    fallback: bool = False
    safety: bool = False
    blocked: bool = False  # the message was blocked or the reply replaced
    redacted: bool = False  # PII was redacted from the message
    handoff: bool = False
    handoff_end: bool = False
    texts: list[str] = field(default_factory=list)

    def min_confidence(self, current: float | None) -> float | None:
        values = [*self.confidences, *([] if current is None else [current])]
        return min(values) if values else None

    def search_text(self, current: str) -> str:
        if not self.texts or len(current) >= SEARCH_CAP:
            return current
        added = "\n".join(self.texts).lower()  # lower(): one case-insensitive LIKE on every database
        return (f"{current}\n{added}" if current else added)[:SEARCH_CAP]


def _turn_facts(new_events: Iterable[NewEvent]) -> _Facts:
    """Derive the console's per-turn facts from the events the engine wrote.

    A turn is a *fallback* when the bot answered it (an ``action`` event) with the fallback reply or the customer
    was out of scope; a *safety* turn when an input filter blocked, redacted or masked something or the output
    classifier replaced the reply.
    """
    facts = _Facts()
    actions: list[str] = []
    for new in new_events:
        data = new.data
        if new.type == ev.NLU_PARSE:
            confidence = data.get("confidence")
            if isinstance(confidence, int | float):
                facts.confidences.append(float(confidence))
            intent = data.get("intent")
            if isinstance(intent, str) and intent:
                facts.intents.add(intent[:64])
        elif new.type == ev.ACTION:
            actions.append(str(data.get("name")))
        elif new.type == ev.SAFETY_INPUT:
            facts.safety |= bool(data.get("blocked") or data.get("redactions") or data.get("flags"))
            facts.blocked |= bool(data.get("blocked"))
            facts.redacted |= bool(data.get("redactions"))
        elif new.type == ev.SAFETY_OUTPUT:
            facts.safety |= bool(data.get("toxic") or data.get("replaced"))
            facts.blocked |= bool(data.get("replaced"))
        elif new.type == ev.HANDOFF:
            facts.handoff = True
        elif new.type == ev.HANDOFF_END:
            facts.handoff_end = True
        if new.type in (ev.USER_MESSAGE, ev.BOT_MESSAGE, ev.AGENT_MESSAGE):
            for key in ("text", "normalized"):  # a search matches the text as written or as the models read it
                text = data.get(key)
                if isinstance(text, str) and text:
                    facts.texts.append(text)
    facts.fallback = bool(actions) and (ev.FALLBACK_ACTION in actions or ev.OUT_OF_SCOPE in facts.intents)
    return facts


def _clean_tag(tag: str) -> str:
    """Tags are staff-written labels: trimmed, 1..32 printable characters, PII redacted like all staff text (a
    phone number typed as a tag is stored, and filtered by, as ``[PHONE]``)."""
    value = tag.strip() if isinstance(tag, str) else ""
    if not value or len(value) > MAX_TAG_LENGTH or any(unicodedata.category(ch)[0] == "C" for ch in value):
        raise InvalidQuery(f"a tag must be 1..{MAX_TAG_LENGTH} printable characters", operation="review")
    return redact_verbatim(value)[0]


def _check_agent(agent: str, operation: str) -> None:
    if not isinstance(agent, str) or not 1 <= len(agent) <= 64:
        raise StoreError("agent must be a username of 1..64 characters", operation=operation)


def _check_role(role: str, operation: str) -> None:
    if role not in ROLES:
        raise StoreError(f"role must be one of {', '.join(ROLES)}, got {role!r}", operation=operation)


def _clean_canned(language: str, title: str, text: str, languages: Sequence[str]) -> tuple[str, str, str]:
    """A canned reply's fields checked (:func:`dialogue.canned.check_reply`) and redacted like all staff text; a
    redaction that makes the title too long (a placeholder is longer than what it hides) is refused too."""
    language, title, text = check_reply(language, title, text, languages)
    title, text = redact_verbatim(title)[0], redact_verbatim(text)[0]
    return check_reply(language, title, text, languages)


def _row_to_canned(row: sa.Row[Any]) -> CannedReply:
    m = row._mapping
    return CannedReply(
        id=int(m["id"]),
        language=m["language"],
        title=m["title"],
        text=m["text"],
        created_by=m["created_by"],
        created_at=_aware(m["created_at"]),
    )


def _row_to_event(row: sa.Row[Any]) -> Event:
    m = row._mapping
    return Event(
        conversation_id=m["conversation_id"],
        seq=m["seq"],
        turn=m["turn"],
        type=m["type"],
        data=dict(m["data"] or {}),
        timestamp=_aware(m["timestamp"]),
        message_id=m["message_id"],
    )


def _check_events(new_events: Sequence[NewEvent], conversation_id: str, operation: str) -> None:
    seen: set[tuple[str, str]] = set()
    for new in new_events:
        if new.type not in EVENT_TYPES:
            raise StoreError(f"unknown event type {new.type!r}", operation=operation, conversation_id=conversation_id)
        if not isinstance(new.data, dict):
            raise StoreError(
                f"event data must be a dict, got {type(new.data).__name__}",
                operation=operation,
                conversation_id=conversation_id,
            )
        try:
            _dumps(new.data)
        except (TypeError, ValueError) as exc:
            raise StoreError(
                f"{new.type} event data is not JSON-serialisable: {type(exc).__name__}",
                operation=operation,
                conversation_id=conversation_id,
            ) from None
        if new.message_id is not None:
            key = (new.type, new.message_id)
            if key in seen:
                raise DuplicateMessage(conversation_id, new.message_id, operation=operation)
            seen.add(key)


def _first_message_id(new_events: Sequence[NewEvent]) -> str | None:
    """The id a duplicate most likely concerns: the user message's, else the first one in the batch."""
    users = [e.message_id for e in new_events if e.message_id is not None and e.type == "user_message"]
    ids = [e.message_id for e in new_events if e.message_id is not None]
    return users[0] if users else (ids[0] if ids else None)


class Store:
    """Async conversation store. Create with :meth:`open`; all methods are coroutines; returns dataclasses only."""

    def __init__(self, engine: AsyncEngine, url: URL, schema: str | None = None) -> None:
        self._engine = engine
        self._url = url
        self._schema = schema
        self._dialect = engine.dialect.name
        # The isolation level a write transaction sets when the engine's default is AUTOCOMMIT (see open).
        self._transactional: str | None = None

    def __repr__(self) -> str:
        return f"Store(url={self.url!r})"

    @property
    def url(self) -> str:
        """The database URL with the password masked."""
        return self._url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        """``"sqlite"``, ``"postgresql"``..."""
        return self._dialect

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    async def open(
        cls,
        url: str | URL = "sqlite+aiosqlite:///.kefu/kefu.db",
        *,
        create_dir: bool = True,
        schema: str | None = None,
        engine_kwargs: dict[str, Any] | None = None,
    ) -> Store:
        """Connect, run the Alembic migrations up to head, and return the store.

        ``create_dir`` creates the parent folder of a SQLite database file. ``schema`` (PostgreSQL only) puts the
        tables and Alembic's version table in that schema (created if missing) via ``search_path``; it is how
        tests isolate themselves and how several bots share one database. Raises
        :class:`~dialogue.errors.StoreUnavailable` when the database cannot be reached.
        """
        try:
            sa_url = make_url(url)
        except sa_exc.ArgumentError as exc:
            raise StoreError(f"invalid database URL: {exc}", operation="open") from None
        masked = sa_url.render_as_string(hide_password=True)
        backend = sa_url.get_backend_name()
        kwargs: dict[str, Any] = {"json_serializer": _dumps, "pool_pre_ping": True}
        connect_args: dict[str, Any] = {}

        if backend == "sqlite":
            database = sa_url.database
            if database and database != ":memory:" and not database.startswith("file:"):
                path = Path(database).expanduser()
                if create_dir:
                    try:
                        path.parent.mkdir(parents=True, exist_ok=True)
                    except OSError as exc:
                        raise StoreUnavailable(masked, exc, operation="open") from None
            connect_args["timeout"] = 30.0  # seconds a writer waits for another's lock
            if schema is not None:
                raise StoreError("schema= is only supported on PostgreSQL", operation="open")
        elif backend == "postgresql":
            if sa_url.get_driver_name() == "asyncpg":
                connect_args["timeout"] = 10.0  # connect timeout: a dead host fails in seconds, not a minute
                if schema is not None:
                    connect_args["server_settings"] = {"search_path": schema}
            elif schema is not None:
                raise StoreError("schema= needs the asyncpg driver", operation="open")
        if connect_args:
            kwargs["connect_args"] = connect_args
        transactional: str | None = None
        if backend == "postgresql" and sa_url.get_driver_name() == "asyncpg" and "isolation_level" not in (
            engine_kwargs or {}
        ):
            # Reads run without BEGIN/COMMIT (and the pool's pre-ping is one round trip instead of three); writes
            # switch back to PostgreSQL's default level, so they are one transaction as before (see _Tx).
            kwargs["isolation_level"] = "AUTOCOMMIT"
            transactional = "READ COMMITTED"
        kwargs.update(engine_kwargs or {})

        try:
            engine = create_async_engine(sa_url, **kwargs)
        except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ImportError) as exc:
            raise StoreError(f"cannot create engine for {masked}: {exc}", operation="open") from None
        if backend == "sqlite":
            _install_sqlite_hooks(engine)
        store = cls(engine, sa_url, schema)
        store._transactional = transactional
        try:
            await store._migrate()
        except BaseException:
            await engine.dispose()
            raise
        log.info("conversation store open: %s (%s)", masked, store.dialect)
        return store

    async def _migrate(self) -> None:
        schema = self._schema

        def upgrade(sync_conn: sa.Connection) -> None:
            from alembic import command
            from alembic.config import Config

            if sync_conn.dialect.name == "postgresql":
                # Two processes opening the same fresh database must not both create the tables.
                sync_conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
                if schema is not None:
                    sync_conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            cfg = Config()
            cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
            cfg.attributes["connection"] = sync_conn
            cfg.attributes["version_table_schema"] = schema
            command.upgrade(cfg, "head")

        if schema is not None and not schema.replace("_", "").isalnum():
            raise StoreError(f"invalid schema name {schema!r}", operation="open")
        async with self._write("open") as conn:
            await conn.run_sync(upgrade)

    async def schema_version(self) -> str | None:
        """The Alembic revision the database is at (``"0001"``...), ``None`` if never migrated."""
        async with self._read("schema_version") as conn:
            if not await conn.run_sync(lambda sync_conn: sa.inspect(sync_conn).has_table("alembic_version")):
                return None
            value = (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).scalar_one_or_none()
        return str(value) if value is not None else None

    async def close(self) -> None:
        """Close every pooled connection. The store cannot be used afterwards."""
        await self._engine.dispose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def ping(self) -> None:
        """Round-trip ``SELECT 1``; raises :class:`~dialogue.errors.StoreUnavailable` when the database is down."""
        async with self._read("ping") as conn:
            await conn.execute(sa.text("SELECT 1"))

    # ------------------------------------------------------------------ connections and error mapping

    def _translate(self, exc: BaseException, operation: str, conversation_id: str | None) -> BaseException:
        if isinstance(exc, StoreError):
            return exc
        if _is_connection_error(exc):
            return StoreUnavailable(self.url, _cause(exc), operation=operation)
        if isinstance(exc, sa_exc.IntegrityError):
            return StoreError(
                f"integrity error: {type(_cause(exc)).__name__}", operation=operation, conversation_id=conversation_id
            )
        if isinstance(exc, sa_exc.SQLAlchemyError):
            cause = _cause(exc)
            return StoreError(f"{type(cause).__name__}: {cause}", operation=operation, conversation_id=conversation_id)
        return exc

    def transaction(self, operation: str, *, write: bool = True, conversation_id: str | None = None) -> _Tx:
        """``async with store.transaction("expire") as conn:`` one connection and transaction of this store.

        For code that needs SQL the store has no method for (:mod:`dialogue.retention`, tests): ``conn`` is a
        SQLAlchemy ``AsyncConnection``, committed when the block ends and rolled back when it raises. A ``write``
        transaction excludes other writers on SQLite (``BEGIN IMMEDIATE``), so read-then-write logic is safe there
        too; on PostgreSQL lock rows with ``SELECT ... FOR UPDATE``. ``write=False`` is for reads only (on
        PostgreSQL its statements run without a transaction, each one consistent on its own). Driver errors are
        mapped like those of every store method (:class:`~dialogue.errors.StoreUnavailable`,
        :class:`~dialogue.errors.StoreError`); ``operation`` and ``conversation_id`` name the work in them.
        """
        return _Tx(self, operation, conversation_id, write=write)

    def _read(self, operation: str, conversation_id: str | None = None) -> _Tx:
        return _Tx(self, operation, conversation_id, write=False)

    def _write(self, operation: str, conversation_id: str | None = None) -> _Tx:
        return _Tx(self, operation, conversation_id, write=True)

    # ------------------------------------------------------------------ conversations

    async def create_conversation(
        self,
        language: str,
        sender: str | None = None,
        conversation_id: str | None = None,
        *,
        state: str = "start",
        slots: dict[str, Any] | None = None,
        secret_hash: str | None = None,
    ) -> Conversation:
        """Insert a new conversation (version 0, no turns). ``conversation_id`` defaults to a random UUID.

        ``state`` is stored as given: callers running an FSM pass its initial state (``flows.initial_state``);
        the store knows no FSM, so the default ``"start"`` is only a placeholder. ``secret_hash`` is the sha256 (hex)
        of the chat channel's resume secret (``None``: the conversation cannot be resumed from the chat port).

        Raises :class:`~dialogue.errors.ConversationExists` when the given id is taken (the caller re-reads it: two
        copies of a first message racing to create the same id is normal, see ``DialogueEngine.handle_message``).
        """
        cid = conversation_id or str(uuid.uuid4())
        if len(cid) > 64:
            raise StoreError("conversation id longer than 64 characters", operation="create_conversation")
        now = _now()
        values = {
            "id": cid,
            "sender": sender,
            "language": language,
            "state": state,
            "slots": dict(slots or {}),
            "turn_count": 0,
            "handed_off": False,
            "last_intent": None,
            "last_action": None,
            "version": 0,
            "created_at": now,
            "updated_at": now,
            "secret_hash": secret_hash,
        }
        async with self._write("create_conversation", cid) as conn:
            try:
                await conn.execute(conversations.insert().values(**values))
            except sa_exc.IntegrityError:
                raise ConversationExists(cid) from None
        log.debug("created conversation %s", cid)
        return Conversation(
            id=cid,
            state=state,
            slots=dict(slots or {}),
            language=language,
            turn_count=0,
            handed_off=False,
            version=0,
            created_at=now,
            updated_at=now,
            sender=sender,
            secret_hash=secret_hash,
        )

    async def get(self, conversation_id: str) -> Conversation | None:
        """The snapshot of one conversation, or ``None``."""
        async with self._read("get", conversation_id) as conn:
            row = (await conn.execute(conversations.select().where(conversations.c.id == conversation_id))).first()
        return _row_to_conversation(row) if row is not None else None

    async def get_for_message(self, conversation_id: str, message_id: str) -> tuple[Conversation | None, bool]:
        """The snapshot of one conversation (or ``None``) and whether ``message_id`` is already stored in it.

        A turn's one read: the engine needs the snapshot and must know whether a client retried a message it
        already answered (then it answers from :meth:`find_events_by_message_id`, without running the turn
        again). One statement (an ``EXISTS`` probe on the ``(conversation_id, message_id)`` index) instead of two
        round trips for every fresh message.
        """
        c = events.c
        seen = (
            sa.exists()
            .where(c.conversation_id == conversation_id, c.message_id == message_id)
            .label("kefu_message_seen")
        )
        query = sa.select(conversations, seen).where(conversations.c.id == conversation_id)
        async with self._read("get_for_message", conversation_id) as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None, False
        return _row_to_conversation(row), bool(row.kefu_message_seen)

    async def delete_conversation(self, conversation_id: str) -> bool:
        """Delete a conversation and (ON DELETE CASCADE) its events, e.g. for a data-erasure request."""
        async with self._write("delete_conversation", conversation_id) as conn:
            result = await conn.execute(conversations.delete().where(conversations.c.id == conversation_id))
        return bool(result.rowcount)

    async def list_conversations(
        self,
        filter: ConversationFilter | None = None,
        limit: int = 50,
        cursor: str | None = None,
        *,
        offset: int = 0,
        low_confidence_below: float = 0.5,
    ) -> ConversationPage:
        """Conversations matching ``filter``, most recently active first (ties broken by id, so pages are stable).

        Pagination is by keyset: pass the page's ``next_cursor`` as ``cursor`` for the next page. A page costs
        the same however deep it is (an index range scan on ``(updated_at, id)``), and a conversation that moves
        to the top while someone pages is not shown twice. ``offset`` is the old way (``limit``/``offset``), kept
        for callers that page by number; it cannot be combined with a cursor. Raises
        :class:`~dialogue.errors.InvalidQuery` for a bad limit, offset, cursor or filter value.
        """
        if not 1 <= limit <= _MAX_LIST:
            raise InvalidQuery(f"limit must be in 1..{_MAX_LIST}, got {limit}", operation="list_conversations")
        if offset < 0:
            raise InvalidQuery(f"offset must be >= 0, got {offset}", operation="list_conversations")
        if offset and cursor is not None:
            raise InvalidQuery("pass a cursor or an offset, not both", operation="list_conversations")
        c = conversations.c
        query = sa.select(*_SUMMARY_COLUMNS).where(*self._conditions(filter, low_confidence_below))
        if cursor is not None:
            updated_at, after_id = decode_cursor(cursor)
            # A row-value comparison is one index range on (updated_at, id) (PostgreSQL, SQLite >= 3.15).
            query = query.where(sa.tuple_(c.updated_at, c.id) < sa.tuple_(updated_at, after_id))
        query = query.order_by(c.updated_at.desc(), c.id.desc()).limit(limit + 1).offset(offset)
        async with self._read("list_conversations") as conn:
            rows = (await conn.execute(query)).all()
        items = [_row_to_summary(r) for r in rows[:limit]]
        more = len(rows) > limit
        return ConversationPage(
            items=items, next_cursor=encode_cursor(items[-1].updated_at, items[-1].id) if more else None
        )

    def _conditions(self, f: ConversationFilter | None, low_confidence_below: float) -> list[sa.ColumnElement[bool]]:
        """The WHERE clauses of a filter; every one of them can use an index or is a cheap row check."""
        if f is None:
            return []
        c = conversations.c
        where: list[sa.ColumnElement[bool]] = []
        for value, column, op in (
            (f.since, c.updated_at, "ge"),
            (f.until, c.updated_at, "lt"),
            (f.created_since, c.created_at, "ge"),
            (f.created_until, c.created_at, "lt"),
        ):
            if value is not None:
                if not isinstance(value, dt.datetime):
                    raise InvalidQuery("time bounds must be datetimes", operation="list_conversations")
                where.append(column >= _aware(value) if op == "ge" else column < _aware(value))
        if f.language is not None:
            where.append(c.language == f.language)
        if f.intent is not None:
            ci = conversation_intents.c
            where.append(sa.exists().where(ci.conversation_id == c.id, ci.intent == f.intent))
        if f.low_confidence is not None:
            low = c.min_confidence < low_confidence_below
            where.append(low if f.low_confidence else sa.or_(c.min_confidence.is_(None), sa.not_(low)))
        if f.fallback is not None:
            where.append(c.fallbacks > 0 if f.fallback else c.fallbacks == 0)
        if f.safety is not None:
            where.append(c.safety_flags > 0 if f.safety else c.safety_flags == 0)
        if f.handoff is not None:
            if f.handoff not in HANDOFF_FILTERS:
                raise InvalidQuery(
                    f"handoff must be one of {', '.join(HANDOFF_FILTERS)}, got {f.handoff!r}",
                    operation="list_conversations",
                )
            if f.handoff == "any":
                where.append(c.handoff_status.in_((HANDOFF_WAITING, HANDOFF_AGENT)))
            elif f.handoff == "none":
                where.append(c.handoff_status == HANDOFF_NONE)
            else:
                where.append(c.handoff_status == f.handoff)
        if f.tag is not None:
            tag = _clean_tag(f.tag)
            if self._dialect == "postgresql":
                where.append(sa.type_coerce(c.tags, postgresql.JSONB()).contains([tag]))
            else:
                each = sa.func.json_each(c.tags).table_valued("value")
                where.append(sa.exists().select_from(each).where(each.c.value == tag))
        if f.reviewed is not None:
            where.append(c.reviewed.is_(f.reviewed))
        if f.flagged is not None:
            where.append(c.flagged.is_(f.flagged))
        if f.assignee is not None:
            where.append(c.assignee == f.assignee)
        if f.assigned is not None:
            where.append(c.assignee.is_not(None) if f.assigned else c.assignee.is_(None))
        if f.query is not None and f.query.strip():
            # search_text is stored lower-cased (Unicode-aware, in Python), so LIKE on it is case-insensitive
            # everywhere; autoescape makes % and _ in the query literal.
            where.append(c.search_text.contains(f.query.strip().lower(), autoescape=True))
        return where

    async def count_conversations(
        self, filter: ConversationFilter | None = None, *, low_confidence_below: float = 0.5
    ) -> int:
        """How many conversations match ``filter`` (all of them by default)."""
        query = sa.select(sa.func.count()).select_from(conversations)
        query = query.where(*self._conditions(filter, low_confidence_below))
        async with self._read("count_conversations") as conn:
            return int((await conn.execute(query)).scalar_one())

    async def summary(self, conversation_id: str) -> ConversationSummary | None:
        """The console row of one conversation, or ``None``."""
        query = sa.select(*_SUMMARY_COLUMNS).where(conversations.c.id == conversation_id)
        async with self._read("summary", conversation_id) as conn:
            row = (await conn.execute(query)).first()
        return _row_to_summary(row) if row is not None else None

    async def conversation_intents(self, conversation_id: str) -> list[str]:
        """Every intent seen in the conversation, sorted."""
        ci = conversation_intents.c
        query = sa.select(ci.intent).where(ci.conversation_id == conversation_id).order_by(ci.intent)
        async with self._read("conversation_intents", conversation_id) as conn:
            return [str(v) for v in (await conn.execute(query)).scalars()]

    async def handoff_statuses(self, conversation_ids: Sequence[str]) -> dict[str, str]:
        """``{id: handoff_status}`` for those of ``conversation_ids`` that are ``waiting`` or with an ``agent``,
        and ``{id: "resolved"}`` for those resolved and not yet rated (their ``resolved`` event is what the widget
        turns into a rating prompt); others are left out: one query for every open socket of a chat server, which
        then polls only these."""
        ids = list(dict.fromkeys(conversation_ids))
        if not ids:
            return {}
        if len(ids) > _MAX_LIST:
            raise InvalidQuery(f"at most {_MAX_LIST} ids per call", operation="handoff_statuses")
        c = conversations.c
        awaiting_rating = sa.and_(c.resolved_at.is_not(None), c.rating.is_(None))
        query = sa.select(c.id, c.handoff_status).where(
            c.id.in_(ids), sa.or_(c.handoff_status != HANDOFF_NONE, awaiting_rating)
        )
        async with self._read("handoff_statuses") as conn:
            return {str(i): str(st) or RESOLVED_STATUS for i, st in (await conn.execute(query)).all()}

    async def handoff_queue(
        self, limit: int = 100, filter: ConversationFilter | None = None
    ) -> list[ConversationSummary]:
        """Conversations that need or have a human: waiting ones first (longest waiting first), then those an
        agent holds (oldest take-over first). ``filter`` narrows it (the inbox's views: ``assignee`` /
        ``assigned``); its ``handoff`` cannot widen it."""
        if not 1 <= limit <= _MAX_LIST:
            raise InvalidQuery(f"limit must be in 1..{_MAX_LIST}, got {limit}", operation="handoff_queue")
        c = conversations.c
        waiting_first = sa.case((c.handoff_status == HANDOFF_WAITING, 0), else_=1)
        query = (
            sa.select(*_SUMMARY_COLUMNS)
            .where(c.handoff_status.in_((HANDOFF_WAITING, HANDOFF_AGENT)), *self._conditions(filter, 0.5))
            .order_by(waiting_first, c.handoff_at.asc(), c.id)
            .limit(limit)
        )
        async with self._read("handoff_queue") as conn:
            rows = (await conn.execute(query)).all()
        return [_row_to_summary(r) for r in rows]

    async def dashboard(self, days: int = 30, now: dt.datetime | None = None) -> DashboardStats:
        """Aggregates over the conversations created in the last ``days`` days (see
        :class:`~dialogue.types.DashboardStats` for the definitions). A few aggregate queries; no event reads."""
        if not 1 <= days <= 366:
            raise InvalidQuery(f"days must be in 1..366, got {days}", operation="dashboard")
        until = _aware(now) if now is not None else _now()
        first_day = until.date() - dt.timedelta(days=days - 1)
        since = dt.datetime.combine(first_day, dt.time(), tzinfo=dt.UTC)
        c = conversations.c
        window = sa.and_(c.created_at >= since, c.created_at <= until, c.turn_count > 0)
        if self._dialect == "postgresql":
            day = sa.func.date(sa.func.timezone("UTC", c.created_at))
        else:  # SQLite stores UTC text "YYYY-MM-DD HH:MM:SS.ffffff"
            day = sa.func.date(c.created_at)
        resolved = sa.and_(
            c.handoffs == 0,
            sa.or_(c.last_action.is_(None), c.last_action != ev.FALLBACK_ACTION),
            sa.or_(c.last_intent.is_(None), c.last_intent != ev.OUT_OF_SCOPE),
        )
        totals = sa.select(
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(c.turn_count), 0),
            sa.func.coalesce(sa.func.sum(sa.case((resolved, 1), else_=0)), 0),
            sa.func.coalesce(sa.func.sum(sa.case((c.handoffs > 0, 1), else_=0)), 0),
            sa.func.coalesce(sa.func.sum(c.fallbacks), 0),
            sa.func.coalesce(sa.func.sum(c.safety_blocks), 0),
            sa.func.coalesce(sa.func.sum(c.redactions), 0),
        ).where(window)
        per_day = sa.select(day.label("day"), sa.func.count()).where(window).group_by(day)
        ci = conversation_intents.c
        n = sa.func.count().label("n")
        top = (
            sa.select(ci.intent, n)
            .select_from(conversation_intents.join(conversations, ci.conversation_id == c.id))
            .where(window)
            .group_by(ci.intent)
            .order_by(n.desc(), ci.intent)
            .limit(10)
        )
        csat, resolution_times, first_response = self._team_queries(window)
        async with self._read("dashboard") as conn:
            count, turns, resolved_n, handoffs, fallbacks, blocks, redactions = (await conn.execute(totals)).one()
            by_day = {str(d): int(k) for d, k in (await conn.execute(per_day)).all()}
            top_intents = [(str(i), int(k)) for i, k in (await conn.execute(top)).all()]
            ratings, rating_sum, satisfied = (await conn.execute(csat)).one()
            resolution_seconds = [
                (_aware(done) - _aware(created)).total_seconds()
                for created, done in (await conn.execute(resolution_times)).all()
            ]
            response_seconds = [
                (_aware(replied) - _aware(started)).total_seconds()
                for replied, started in (await conn.execute(first_response)).all()
                if started is not None
            ]
        ratings = int(ratings)
        count, turns = int(count), int(turns)
        return DashboardStats(
            days=days,
            since=since,
            until=until,
            conversations=count,
            turns=turns,
            per_day=[
                (d, by_day.get(d.isoformat(), 0)) for d in (first_day + dt.timedelta(days=i) for i in range(days))
            ],
            resolution_rate=int(resolved_n) / count if count else 0.0,
            handoff_rate=int(handoffs) / count if count else 0.0,
            fallback_rate=int(fallbacks) / turns if turns else 0.0,
            safety_blocks=int(blocks),
            redactions=int(redactions),
            top_intents=top_intents,
            ratings=ratings,
            csat_mean=float(rating_sum) / ratings if ratings else None,
            csat_satisfied=int(satisfied) / ratings if ratings else None,
            first_response_median=_median([max(0.0, v) for v in response_seconds]),
            resolution_median=_median([max(0.0, v) for v in resolution_seconds]),
        )

    @staticmethod
    def _team_queries(window: sa.ColumnElement[bool]) -> tuple[sa.Select[Any], sa.Select[Any], sa.Select[Any]]:
        """The dashboard's workspace queries (CSAT, resolution times, first-response times) over ``window``.

        Medians are computed in Python from the per-conversation durations: PostgreSQL has
        ``percentile_cont`` but SQLite has nothing alike, and the rows are two timestamps per resolved (or
        answered) conversation of the window. The first response starts at the conversation's *first*
        ``handoff`` or ``takeover`` event, not at ``handoff_at``: a take-over rewrites that column and a hand-back
        or resolution clears it, so by the time a conversation is resolved it no longer says when the customer
        began to wait. The events are read through the ``(conversation_id, type, message_id)`` index, and only for
        conversations an agent wrote to (``first_agent_reply_at`` set).
        """
        c = conversations.c
        e = events.c
        csat = sa.select(
            sa.func.count(c.rating),
            sa.func.coalesce(sa.func.sum(c.rating), 0),
            sa.func.coalesce(sa.func.sum(sa.case((c.rating >= 4, 1), else_=0)), 0),
        ).where(window, c.rating.is_not(None))
        resolution_times = sa.select(c.created_at, c.resolved_at).where(window, c.resolved_at.is_not(None))
        first_response = (
            sa.select(c.first_agent_reply_at, sa.func.min(e.timestamp))
            .select_from(conversations.join(events, e.conversation_id == c.id))
            .where(window, c.first_agent_reply_at.is_not(None), e.type.in_((ev.HANDOFF, ev.TAKEOVER)))
            .group_by(c.id, c.first_agent_reply_at)
        )
        return csat, resolution_times, first_response

    # ------------------------------------------------------------------ writes

    async def commit_turn(self, update: TurnUpdate) -> list[Event]:
        """Append one turn's events and rewrite the snapshot, atomically.

        The events get ``turn = turn_count + 1`` and ``seq`` numbers continuing the conversation's log; the
        snapshot gets the update's state/slots/language/handoff/last_intent, ``turn_count + 1`` and
        ``version + 1``, and the console's columns are derived from the events in the same transaction: lowest
        confidence, fallback and safety turn counts, every intent, the search text, and ``handoff_status``
        ``"waiting"`` when the turn carries a ``handoff`` event (unless an agent already holds it). A customer
        message on a resolved conversation reopens it (a ``reopened`` event with reason ``customer`` follows the
        turn's events, and is returned with them): the customer is not done after all.
        Raises :class:`~dialogue.errors.ConversationNotFound`,
        :class:`~dialogue.errors.ConcurrentUpdate` (someone committed since ``expected_version`` was read:
        nothing is written) or :class:`~dialogue.errors.DuplicateMessage` (an event's ``(type, message_id)``
        is already stored: nothing is written; answer from :meth:`find_events_by_message_id`).
        """
        cid = update.conversation_id
        _check_events(update.events, cid, "commit_turn")
        facts = _turn_facts(update.events)
        async with self._write("commit_turn", cid) as conn:
            row = await self._lock_row(conn, cid, "commit_turn")
            current = _row_to_conversation(row)
            if current.version != update.expected_version:
                raise ConcurrentUpdate(cid, update.expected_version, current.version)
            now = _now()
            turn = current.turn_count + 1
            stored = await self._insert_events(conn, cid, turn, update.events, now, "commit_turn")
            values: dict[str, Any] = {
                "state": update.state,
                "slots": dict(update.slots),
                "language": update.language,
                "handed_off": update.handed_off,
                "last_intent": update.last_intent,
                "last_action": update.last_action,
                "turn_count": turn,
                "version": update.expected_version + 1,
                "updated_at": now,
                **self._fact_values(row, facts),
            }
            if update.fallback_streak is not None:
                values["fallback_streak"] = update.fallback_streak
            status = row.handoff_status
            if facts.handoff_end and status == HANDOFF_WAITING:  # the wait ended (time-out, offline, the customer)
                status = HANDOFF_NONE
                values.update(handoff_status=HANDOFF_NONE, handoff_at=None)
            if facts.handoff and status == HANDOFF_NONE:
                values.update(handoff_status=HANDOFF_WAITING, handoff_at=now, handoffs=row.handoffs + 1)
            values.update(_inbox_values(stored))
            if row.resolved_at is not None and any(e.type == ev.USER_MESSAGE for e in update.events):
                reopened = NewEvent(ev.REOPENED, {"agent": None, "reason": "customer"})
                stored += await self._insert_events(conn, cid, turn, [reopened], now, "commit_turn")
                values.update(resolved_at=None, resolved_by=None)
            result = await conn.execute(
                conversations.update()
                .where(conversations.c.id == cid, conversations.c.version == update.expected_version)
                .values(**values)
            )
            if result.rowcount != 1:  # only reachable on a dialect without row locks
                raise ConcurrentUpdate(cid, update.expected_version, current.version + 1)
            await self._add_intents(conn, cid, facts.intents)
        log.debug("conversation %s: turn %d committed, %d events", cid, turn, len(stored))
        return stored

    @staticmethod
    def _fact_values(row: sa.Row[Any], facts: _Facts) -> dict[str, Any]:
        return {
            "min_confidence": facts.min_confidence(row.min_confidence),
            "fallbacks": row.fallbacks + int(facts.fallback),
            "safety_flags": row.safety_flags + int(facts.safety),
            "safety_blocks": row.safety_blocks + int(facts.blocked),
            "redactions": row.redactions + int(facts.redacted),
            "search_text": facts.search_text(row.search_text or ""),
        }

    async def _add_intents(self, conn: AsyncConnection, cid: str, intents: set[str]) -> None:
        if not intents:
            return
        ci = conversation_intents.c
        known = set(
            (await conn.execute(sa.select(ci.intent).where(ci.conversation_id == cid, ci.intent.in_(intents))))
            .scalars()
            .all()
        )  # the conversation row is locked: nobody else adds this conversation's intents meanwhile
        missing = sorted(intents - known)
        if missing:
            await conn.execute(conversation_intents.insert(), [{"conversation_id": cid, "intent": i} for i in missing])

    async def append_events(self, conversation_id: str, new_events: Sequence[NewEvent]) -> list[Event]:
        """Append events outside a user turn (agent messages, handoff notes...).

        They belong to the conversation's current turn (``turn = turn_count``; ``0`` before the first turn) and
        continue its ``seq``. ``version`` is bumped and ``updated_at`` refreshed (a turn computed from an older
        snapshot then fails with :class:`~dialogue.errors.ConcurrentUpdate`, so it sees what the agent wrote);
        ``turn_count`` is unchanged; message texts are added to the search text. Raises
        :class:`~dialogue.errors.ConversationNotFound` / :class:`~dialogue.errors.DuplicateMessage`.
        """
        cid = conversation_id
        new_events = tuple(new_events)
        _check_events(new_events, cid, "append_events")
        if not new_events:
            return []
        async with self._write("append_events", cid) as conn:
            row = await self._lock_row(conn, cid, "append_events")
            stored = await self._append(conn, row, new_events, "append_events", activity=True)
        log.debug("conversation %s: %d events appended", cid, len(stored))
        return stored

    async def _append(
        self,
        conn: AsyncConnection,
        row: sa.Row[Any],
        new_events: Sequence[NewEvent],
        operation: str,
        *,
        activity: bool,
        **values: Any,
    ) -> list[Event]:
        """Insert events in the current turn and update the (locked) row with ``values``.

        ``activity`` marks something the customer sees (an agent message, a take-over): it bumps ``version`` so
        that a turn computed from the older snapshot is redone, and refreshes ``updated_at`` (the list's order).
        Staff bookkeeping (reviews, corrections) does neither: reviewing must not reshuffle the list being
        reviewed, nor make a customer's turn retry.
        """
        now = _now()
        stored = await self._insert_events(conn, row.id, row.turn_count, new_events, now, operation)
        facts = _turn_facts(new_events)
        if facts.texts:
            values["search_text"] = facts.search_text(row.search_text or "")
        values.update(_inbox_values(stored))
        if activity:
            values.update(version=conversations.c.version + 1, updated_at=now)
        if values:
            await conn.execute(conversations.update().where(conversations.c.id == row.id).values(**values))
        return stored

    async def _lock(self, conn: AsyncConnection, cid: str, operation: str) -> Conversation:
        return _row_to_conversation(await self._lock_row(conn, cid, operation))

    async def _lock_row(self, conn: AsyncConnection, cid: str, operation: str) -> sa.Row[Any]:
        # FOR UPDATE is rendered where the dialect has it (PostgreSQL, MySQL) and omitted on SQLite, whose
        # write transactions start with BEGIN IMMEDIATE and so already exclude other writers.
        query = conversations.select().where(conversations.c.id == cid).with_for_update()
        row = (await conn.execute(query)).first()
        if row is None:
            raise ConversationNotFound(cid, operation=operation)
        return row

    async def _summary_in(self, conn: AsyncConnection, cid: str) -> ConversationSummary:
        row = (await conn.execute(sa.select(*_SUMMARY_COLUMNS).where(conversations.c.id == cid))).one()
        return _row_to_summary(row)

    # ------------------------------------------------------------------ review

    async def review(
        self,
        conversation_id: str,
        *,
        by: str,
        flagged: bool | None = None,
        reviewed: bool | None = None,
        add_tags: Iterable[str] = (),
        remove_tags: Iterable[str] = (),
    ) -> ConversationSummary:
        """Set the review flags and tags; a ``review`` event records who changed what (nothing when nothing
        changed). Tags are trimmed, 1..32 printable characters, at most 20 per conversation
        (:class:`~dialogue.errors.InvalidQuery` otherwise). Neither ``version`` nor ``updated_at`` moves."""
        cid = conversation_id
        adding = [_clean_tag(t) for t in add_tags]
        removing = {_clean_tag(t) for t in remove_tags}
        async with self._write("review", cid) as conn:
            row = await self._lock_row(conn, cid, "review")
            tags = [str(t) for t in (row.tags or [])]
            new_tags = [t for t in tags if t not in removing]
            new_tags += [t for t in dict.fromkeys(adding) if t not in new_tags]
            if len(new_tags) > MAX_TAGS:
                raise InvalidQuery(f"at most {MAX_TAGS} tags per conversation", operation="review",
                                   conversation_id=cid)
            data: dict[str, Any] = {"by": by}
            values: dict[str, Any] = {}
            if flagged is not None and bool(flagged) != bool(row.flagged):
                data["flagged"] = values["flagged"] = bool(flagged)
            if reviewed is not None and bool(reviewed) != bool(row.reviewed):
                data["reviewed"] = values["reviewed"] = bool(reviewed)
            added = [t for t in new_tags if t not in tags]
            removed = [t for t in tags if t not in new_tags]
            if added:
                data["tags_added"] = added
            if removed:
                data["tags_removed"] = removed
            if added or removed:
                values["tags"] = new_tags
            if values:
                await self._append(conn, row, [NewEvent(ev.REVIEW, data)], "review", activity=False, **values)
            summary = await self._summary_in(conn, cid)
        return summary

    async def add_correction(
        self,
        conversation_id: str,
        *,
        by: str,
        seq: int,
        text: str,
        intent: str,
        entities: Sequence[Mapping[str, Any]] = (),
    ) -> Event:
        """Record a reviewer's corrected reading of the customer message at ``seq`` (a ``correction`` event; the
        training file is edited by :func:`dialogue.review.add_training_example`). Also marks it reviewed."""
        cid = conversation_id
        data = {
            "by": by,
            "seq": int(seq),
            "text": text,
            "intent": intent,
            "entities": [
                {"entity": str(e["entity"]), "value": str(e["value"]), "start": int(e["start"]), "end": int(e["end"])}
                for e in entities
            ],
        }
        new = NewEvent(ev.CORRECTION, data)
        _check_events([new], cid, "add_correction")
        async with self._write("add_correction", cid) as conn:
            row = await self._lock_row(conn, cid, "add_correction")
            (stored,) = await self._append(conn, row, [new], "add_correction", activity=False, reviewed=True)
        return stored

    # ------------------------------------------------------------------ hand-off

    async def take_over(self, conversation_id: str, agent: str) -> ConversationSummary:
        """An agent takes the conversation: the bot stops answering until :meth:`hand_back`.

        Works from the queue (``waiting``) and on a conversation the bot still handles. Taking over again by the
        same agent changes nothing; :class:`~dialogue.errors.HandoffConflict` when another agent holds it. The
        conversation is then assigned to ``agent`` too (whoever talks to the customer owns it in the inbox), also
        when it was assigned to a colleague who had not taken it over: someone covering for them answers.
        """
        cid = conversation_id
        _check_agent(agent, "take_over")
        async with self._write("take_over", cid) as conn:
            row = await self._lock_row(conn, cid, "take_over")
            if row.handoff_status == HANDOFF_AGENT:
                if row.agent != agent:
                    raise HandoffConflict(cid, row.agent, row.handoff_status, operation="take_over")
            else:
                await self._append(
                    conn, row, [NewEvent(ev.TAKEOVER, {"agent": agent})], "take_over", activity=True,
                    handoff_status=HANDOFF_AGENT, agent=agent, handed_off=True, handoff_at=_now(),
                    handoffs=row.handoffs + (1 if row.handoff_status == HANDOFF_NONE else 0),
                    **_assignment(row, agent),
                )
            summary = await self._summary_in(conn, cid)
        log.info("conversation %s taken over", cid)
        return summary

    async def hand_back(self, conversation_id: str, agent: str, initial_state: str) -> ConversationSummary:
        """Give the conversation back to the bot, which restarts its flow at ``initial_state`` (the slots stay).

        Allowed for the holding agent, and on a ``waiting`` conversation (an agent resolves it from the queue
        without taking over). :class:`~dialogue.errors.HandoffConflict` when another agent holds it or nobody
        does.
        """
        cid = conversation_id
        _check_agent(agent, "hand_back")
        async with self._write("hand_back", cid) as conn:
            row = await self._lock_row(conn, cid, "hand_back")
            status = row.handoff_status
            if status == HANDOFF_NONE or (status == HANDOFF_AGENT and row.agent != agent):
                raise HandoffConflict(cid, row.agent, status, operation="hand_back")
            await self._append(
                conn, row, [NewEvent(ev.HANDBACK, {"agent": agent})], "hand_back", activity=True,
                handoff_status=HANDOFF_NONE, agent=None, handed_off=False, handoff_at=None, state=initial_state,
                fallback_streak=0, assignee=None, assigned_at=None,
            )
            summary = await self._summary_in(conn, cid)
        log.info("conversation %s handed back", cid)
        return summary

    async def append_agent_message(self, conversation_id: str, agent: str, text: str, message_id: str) -> Event:
        """Store a message of the agent who holds the conversation (``agent_message`` event).

        :class:`~dialogue.errors.HandoffConflict` unless ``agent`` holds it; a reused ``message_id`` raises
        :class:`~dialogue.errors.DuplicateMessage` (answer from :meth:`find_events_by_message_id`). The first agent
        message of a conversation sets ``first_agent_reply_at`` (the dashboard's first-response time).
        """
        cid = conversation_id
        _check_agent(agent, "append_agent_message")
        if not message_id or len(message_id) > 128:
            raise StoreError("message id must be 1..128 characters", operation="append_agent_message",
                             conversation_id=cid)
        new = NewEvent(ev.AGENT_MESSAGE, {"text": text, "agent": agent, "message_id": message_id}, message_id)
        _check_events([new], cid, "append_agent_message")
        async with self._write("append_agent_message", cid) as conn:
            row = await self._lock_row(conn, cid, "append_agent_message")
            if row.handoff_status != HANDOFF_AGENT or row.agent != agent:
                raise HandoffConflict(cid, row.agent, row.handoff_status, operation="append_agent_message")
            first = {"first_agent_reply_at": _now()} if row.first_agent_reply_at is None else {}
            (stored,) = await self._append(conn, row, [new], "append_agent_message", activity=True, **first)
        return stored

    # ------------------------------------------------------------------ the inbox: assignment and unread (0009)
    # Assignment is the ``assignee`` column, not ``agent``: ``agent`` is who holds the conversation after a
    # take-over (the bot is paused, their messages reach the customer); an assignment only says whose it is in the
    # inbox, and may come first (claimed from the queue, given to a busy colleague) without pausing the bot or
    # letting the assignee write. A take-over assigns too; a hand-back or a resolution ends the assignment.

    async def claim(self, conversation_id: str, agent: str) -> ConversationSummary:
        """``agent`` takes an unassigned conversation for themselves. Claiming one's own again changes nothing;
        :class:`~dialogue.errors.HandoffConflict` (``holder`` = the colleague) when it is assigned to, or held after a
        take-over by, someone else: two agents clicking "claim" at once get one claim and one 409."""
        cid = conversation_id
        _check_agent(agent, "claim")
        async with self._write("claim", cid) as conn:
            row = await self._lock_row(conn, cid, "claim")
            other = row.assignee if row.assignee not in (None, agent) else None
            if other is None and row.handoff_status == HANDOFF_AGENT and row.agent != agent:
                other = row.agent
            if other is not None:
                raise HandoffConflict(cid, other, row.handoff_status, operation="claim")
            values = _assignment(row, agent)
            if values:
                await conn.execute(conversations.update().where(conversations.c.id == cid).values(**values))
            summary = await self._summary_in(conn, cid)
        log.info("conversation %s claimed", cid)
        return summary

    async def assign(self, conversation_id: str, assignee: str | None, by: str) -> ConversationSummary:
        """Assign the conversation to ``assignee`` (``None``: unassign), on behalf of ``by``.

        ``assignee`` must be an enabled account of role agent or admin (a viewer cannot answer customers):
        :class:`~dialogue.errors.InvalidQuery` otherwise. While a colleague holds the conversation after a
        take-over it can only be assigned to them (:class:`~dialogue.errors.HandoffConflict`): the assignment
        would name someone who cannot write to the customer until the holder hands it back. Reassigning resets
        the unread marker to the new assignee's view (they have seen nothing of it yet).
        """
        cid = conversation_id
        _check_agent(by, "assign")
        async with self._write("assign", cid) as conn:
            if assignee is not None:
                _check_agent(assignee, "assign")
                account = (await conn.execute(
                    sa.select(users.c.role, users.c.disabled).where(users.c.username == assignee)
                )).first()
                if account is None or account.disabled or account.role not in ASSIGNABLE_ROLES:
                    raise InvalidQuery("assign to an enabled agent or admin account", operation="assign",
                                       conversation_id=cid)
            row = await self._lock_row(conn, cid, "assign")
            if row.handoff_status == HANDOFF_AGENT and row.agent not in (None, assignee):
                raise HandoffConflict(cid, row.agent, row.handoff_status, operation="assign")
            values = (
                _assignment(row, assignee) if assignee is not None
                else {"assignee": None, "assigned_at": None} if row.assignee is not None else {}
            )
            if values:
                await conn.execute(conversations.update().where(conversations.c.id == cid).values(**values))
            summary = await self._summary_in(conn, cid)
        log.info("conversation %s assigned by %s", cid, by)
        return summary

    async def mark_seen(self, conversation_id: str, username: str, seq: int) -> bool:
        """The assignee ``username`` has seen the conversation up to event ``seq``: its unread marker clears if no
        customer message is newer. Anyone else viewing it changes nothing (unread is the assignee's). One
        conditional UPDATE, no lock and no version change: the console calls it on reads, and it must neither
        block nor retry a customer's turn. True when something changed."""
        c = conversations.c
        query = (
            conversations.update()
            .where(c.id == conversation_id, c.assignee == username, c.assignee_seen_seq < seq)
            .values(assignee_seen_seq=seq)
        )
        async with self._write("mark_seen", conversation_id) as conn:
            result = await conn.execute(query)
        return bool(result.rowcount)

    # ------------------------------------------------------------------ workspace: resolution and rating
    # (migration 0008; the customer's rating arrives over the chat protocol, resolve/reopen from the console)

    async def resolve(
        self, conversation_id: str, agent: str, initial_state: str | None = None
    ) -> ConversationSummary:
        """Staff mark the conversation resolved (``resolved`` event, ``resolved_at`` / ``resolved_by``); the widget
        then asks the customer for a rating, so a rating of an earlier resolution is cleared.

        A pending or active hand-off ends with it, as :meth:`hand_back` ends one (a ``handback`` event first; the
        bot restarts at ``initial_state`` when given): "resolved" means nobody owes the customer an answer, so
        leaving the conversation in the queue, or held by an agent, would contradict it, and refusing would only
        make every agent click "hand back" before "resolve". A conversation another agent holds is refused
        (:class:`~dialogue.errors.HandoffConflict`): closing a colleague's live conversation is their call.
        Resolving a resolved conversation changes nothing (two agents clicking at once get one resolution).
        """
        cid = conversation_id
        _check_agent(agent, "resolve")
        async with self._write("resolve", cid) as conn:
            row = await self._lock_row(conn, cid, "resolve")
            if row.resolved_at is None:
                status = row.handoff_status
                if status == HANDOFF_AGENT and row.agent != agent:
                    raise HandoffConflict(cid, row.agent, status, operation="resolve")
                new = [NewEvent(ev.RESOLVED, {"agent": agent})]
                values: dict[str, Any] = {
                    "resolved_at": _now(), "resolved_by": agent, "rating": None, "rating_comment": None,
                }
                if status != HANDOFF_NONE:
                    new.insert(0, NewEvent(ev.HANDBACK, {"agent": agent}))
                    values.update(handoff_status=HANDOFF_NONE, agent=None, handed_off=False, handoff_at=None,
                                  fallback_streak=0)
                    if initial_state is not None:
                        values["state"] = initial_state
                values.update(assignee=None, assigned_at=None)  # nobody owes the customer an answer now
                await self._append(conn, row, new, "resolve", activity=True, **values)
            summary = await self._summary_in(conn, cid)
        log.info("conversation %s resolved", cid)
        return summary

    async def reopen(self, conversation_id: str, agent: str) -> ConversationSummary:
        """Staff reopen a resolved conversation (``reopened`` event with reason ``agent``; ``resolved_at`` /
        ``resolved_by`` cleared). The rating of the past resolution stays until the next one. Reopening an open
        conversation changes nothing. A customer message reopens one too (see :meth:`commit_turn`)."""
        cid = conversation_id
        _check_agent(agent, "reopen")
        async with self._write("reopen", cid) as conn:
            row = await self._lock_row(conn, cid, "reopen")
            if row.resolved_at is not None:
                await self._append(
                    conn, row, [NewEvent(ev.REOPENED, {"agent": agent, "reason": "agent"})], "reopen",
                    activity=True, resolved_at=None, resolved_by=None,
                )
            summary = await self._summary_in(conn, cid)
        log.info("conversation %s reopened", cid)
        return summary

    async def rate(self, conversation_id: str, score: int, comment: str | None = None) -> ConversationSummary:
        """Store the customer's rating of the current resolution: ``score`` 1..5 and an optional ``comment`` (at
        most 1000 characters after trimming; PII redacted like all staff-visible text), on the row and as a
        ``rating`` event.

        Once per resolution: a second rating raises :class:`~dialogue.errors.AlreadyRated` and the first stands,
        so a score cannot be rewritten (or a CSAT figure pumped) by resending frames; a reopened and again
        resolved conversation can be rated anew. :class:`~dialogue.errors.NotResolved` when the conversation is
        not resolved, :class:`~dialogue.errors.InvalidQuery` for a bad score or comment. Neither ``version`` nor
        ``updated_at`` moves: a rating is not a turn, and must not reorder the list an agent is reading.
        """
        cid = conversation_id
        if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
            raise InvalidQuery("a rating is an integer score 1..5", operation="rate", conversation_id=cid)
        text: str | None = None
        if comment is not None:
            if not isinstance(comment, str):
                raise InvalidQuery("a rating comment is text", operation="rate", conversation_id=cid)
            if len(comment.strip()) > MAX_RATING_COMMENT:
                raise InvalidQuery(f"a rating comment is at most {MAX_RATING_COMMENT} characters",
                                   operation="rate", conversation_id=cid)
            text = redact_verbatim(comment.strip())[0] or None
        async with self._write("rate", cid) as conn:
            row = await self._lock_row(conn, cid, "rate")
            if row.resolved_at is None:
                raise NotResolved("the conversation is not resolved", operation="rate", conversation_id=cid)
            if row.rating is not None:
                raise AlreadyRated("this resolution is already rated", operation="rate", conversation_id=cid)
            await self._append(
                conn, row, [NewEvent(ev.RATING, {"score": score, "comment": text})], "rate", activity=False,
                rating=score, rating_comment=text,
            )
            summary = await self._summary_in(conn, cid)
        log.info("conversation %s rated", cid)
        return summary

    async def _insert_events(
        self,
        conn: AsyncConnection,
        cid: str,
        turn: int,
        new_events: Sequence[NewEvent],
        now: dt.datetime,
        operation: str,
    ) -> list[Event]:
        if not new_events:
            return []
        last = (
            await conn.execute(sa.select(sa.func.max(events.c.seq)).where(events.c.conversation_id == cid))
        ).scalar_one()
        seq0 = int(last or 0)
        # A repeated (type, message_id) is rejected by UNIQUE(conversation_id, type, message_id), race-free.
        stored = [
            Event(
                conversation_id=cid,
                seq=seq0 + i,
                turn=turn,
                type=new.type,
                data=dict(new.data),
                timestamp=now,
                message_id=new.message_id,
            )
            for i, new in enumerate(new_events, start=1)
        ]
        rows = [
            {
                "conversation_id": cid,
                "seq": e.seq,
                "turn": turn,
                "type": e.type,
                "data": e.data,
                "message_id": e.message_id,
                "timestamp": now,
            }
            for e in stored
        ]
        try:
            await conn.execute(events.insert(), rows)
        except sa_exc.IntegrityError as exc:
            cause = _cause(exc)
            text = f"{getattr(cause, 'constraint_name', '')} {cause}".lower()
            if "uq_events_conversation_type_message" in text or "events.message_id" in text:
                raise DuplicateMessage(cid, _first_message_id(new_events), operation=operation) from None
            raise StoreError(
                f"integrity error: {type(cause).__name__}", operation=operation, conversation_id=cid
            ) from None
        return stored

    # ------------------------------------------------------------------ staff accounts and sessions

    async def add_user(self, username: str, password_hash: str, role: str) -> User:
        """Create a staff account (the hash comes from ``channels.auth``; the store never sees a password).
        Raises :class:`~dialogue.errors.UserExists` when the username is taken."""
        if not isinstance(username, str) or not 1 <= len(username) <= 64:
            raise StoreError("username must be 1..64 characters", operation="add_user")
        if not password_hash:
            raise StoreError("password hash is empty", operation="add_user")
        _check_role(role, "add_user")
        now = _now()
        async with self._write("add_user") as conn:
            try:
                result = await conn.execute(
                    users.insert().values(
                        username=username, password_hash=password_hash, role=role, disabled=False, created_at=now
                    )
                )
            except sa_exc.IntegrityError:
                raise UserExists(username) from None
            user_id = int(result.inserted_primary_key[0])  # type: ignore[index]
        log.info("user %s added with role %s", username, role)
        return User(user_id, username, password_hash, role, False, now)

    async def get_user(self, username: str) -> User | None:
        async with self._read("get_user") as conn:
            row = (await conn.execute(users.select().where(users.c.username == username))).first()
        return _row_to_user(row) if row is not None else None

    async def get_user_by_id(self, user_id: int) -> User | None:
        async with self._read("get_user_by_id") as conn:
            row = (await conn.execute(users.select().where(users.c.id == user_id))).first()
        return _row_to_user(row) if row is not None else None

    async def list_users(self) -> list[User]:
        async with self._read("list_users") as conn:
            rows = (await conn.execute(users.select().order_by(users.c.username))).all()
        return [_row_to_user(r) for r in rows]

    async def _update_user(self, username: str, operation: str, *, end_sessions: bool, **values: Any) -> User:
        async with self._write(operation) as conn:
            row = (
                await conn.execute(
                    users.update().where(users.c.username == username).values(**values).returning(*users.c)
                )
            ).first()
            if row is None:
                raise UserNotFound(username, operation=operation)
            if end_sessions:
                await conn.execute(sessions.delete().where(sessions.c.user_id == row.id))
        return _row_to_user(row)

    async def set_password(self, username: str, password_hash: str) -> User:
        """Replace the password hash and end every session of the user (a changed password logs out everywhere)."""
        if not password_hash:
            raise StoreError("password hash is empty", operation="set_password")
        return await self._update_user(username, "set_password", end_sessions=True, password_hash=password_hash)

    async def set_role(self, username: str, role: str) -> User:
        """Change the role; sessions continue (the ops server reads the role from the user row on each request)."""
        _check_role(role, "set_role")
        return await self._update_user(username, "set_role", end_sessions=False, role=role)

    async def disable_user(self, username: str, disabled: bool = True) -> User:
        """Disable (or re-enable) an account; disabling ends its sessions. Accounts are not deleted: events name
        their agents."""
        return await self._update_user(username, "disable_user", end_sessions=disabled, disabled=disabled)

    async def set_locale(self, username: str, locale: str | None) -> User:
        """Remember the console language a staff member chose (one of ``CONSOLE_LOCALES``), or forget it
        (``None``: the console follows the browser again). Sessions continue: every page reads it on load."""
        if locale is not None and locale not in CONSOLE_LOCALES:
            raise StoreError(f"locale must be one of {', '.join(CONSOLE_LOCALES)} or None", operation="set_locale")
        return await self._update_user(username, "set_locale", end_sessions=False, locale=locale)

    async def create_session(
        self, token_hash: str, user_id: int, csrf_token: str, expires_at: dt.datetime
    ) -> Session:
        """Store a login session keyed by the sha256 hex of its cookie token (never the token itself)."""
        if not isinstance(token_hash, str) or len(token_hash) != 64:
            raise StoreError("token hash must be 64 hex characters (sha256)", operation="create_session")
        now = _now()
        session = Session(token_hash, user_id, csrf_token, now, _aware(expires_at))
        async with self._write("create_session") as conn:
            try:
                await conn.execute(
                    sessions.insert().values(
                        token_hash=token_hash, user_id=user_id, csrf_token=csrf_token, created_at=now,
                        expires_at=session.expires_at,
                    )
                )
            except sa_exc.IntegrityError:
                raise StoreError("session token collision or unknown user", operation="create_session") from None
        return session

    async def get_session(self, token_hash: str, now: dt.datetime) -> tuple[Session, User] | None:
        """The session and its user, or ``None`` when unknown, expired at ``now``, or the user is disabled."""
        query = (
            sa.select(sessions, users)
            .join(users, users.c.id == sessions.c.user_id)
            .where(sessions.c.token_hash == token_hash, sessions.c.expires_at > _aware(now))
        )
        async with self._read("get_session") as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        m = row._mapping
        user = User(
            id=m[users.c.id],
            username=m[users.c.username],
            role=m[users.c.role],
            disabled=bool(m[users.c.disabled]),
            created_at=_aware(m[users.c.created_at]),
            password_hash=m[users.c.password_hash],
            locale=m[users.c.locale],
        )
        if user.disabled:
            return None
        session = Session(
            token_hash=m[sessions.c.token_hash],
            user_id=m[sessions.c.user_id],
            csrf_token=m[sessions.c.csrf_token],
            created_at=_aware(m[sessions.c.created_at]),
            expires_at=_aware(m[sessions.c.expires_at]),
        )
        return session, user

    async def touch_session(self, token_hash: str, expires_at: dt.datetime) -> bool:
        """Move a session's expiry (sliding idle timeout); ``False`` when it no longer exists."""
        async with self._write("touch_session") as conn:
            result = await conn.execute(
                sessions.update().where(sessions.c.token_hash == token_hash).values(expires_at=_aware(expires_at))
            )
        return bool(result.rowcount)

    async def delete_session(self, token_hash: str) -> bool:
        async with self._write("delete_session") as conn:
            result = await conn.execute(sessions.delete().where(sessions.c.token_hash == token_hash))
        return bool(result.rowcount)

    async def count_agents_online(self, now: dt.datetime) -> int:
        """Staff who can answer customers now: enabled agents and admins with a console session alive at ``now``
        (signed in and not idle past the session time-out). What the hand-off decision asks before queueing."""
        query = (
            sa.select(sa.func.count(sa.distinct(users.c.id)))
            .select_from(sessions.join(users, users.c.id == sessions.c.user_id))
            .where(sessions.c.expires_at > _aware(now), users.c.disabled.is_(False), users.c.role.in_(("agent", "admin")))
        )
        async with self._read("count_agents_online") as conn:
            return int((await conn.execute(query)).scalar_one())

    async def purge_sessions(self, now: dt.datetime) -> int:
        """Delete the sessions expired at ``now``; returns how many."""
        async with self._write("purge_sessions") as conn:
            result = await conn.execute(sessions.delete().where(sessions.c.expires_at <= _aware(now)))
        return int(result.rowcount or 0)

    # ------------------------------------------------------------------ internal notes and canned replies

    async def add_note(self, conversation_id: str, agent: str, text: str) -> Event:
        """Record an internal note by staff (a ``note`` event): for colleagues only, never sent to the customer.

        The text is trimmed, 1..:data:`MAX_NOTE_CHARS` characters (:class:`~dialogue.errors.InvalidQuery`
        otherwise), and its PII redacted like every staff text before it is stored. A note is bookkeeping: it
        neither bumps ``version`` (a customer's turn is not retried for it) nor moves ``updated_at``, nor joins
        the search text or any message count.
        """
        cid = conversation_id
        _check_agent(agent, "add_note")
        value = text.strip() if isinstance(text, str) else ""
        if not value or len(value) > MAX_NOTE_CHARS:
            raise InvalidQuery(f"a note must be 1..{MAX_NOTE_CHARS} characters", operation="add_note",
                               conversation_id=cid)
        new = NewEvent(ev.NOTE, {"agent": agent, "text": redact_verbatim(value)[0]})
        async with self._write("add_note", cid) as conn:
            row = await self._lock_row(conn, cid, "add_note")
            (stored,) = await self._append(conn, row, [new], "add_note", activity=False)
        return stored

    async def list_canned_replies(self, language: str | None = None) -> list[CannedReply]:
        """The team's canned replies (of one ``language``, or all), ordered by language then title."""
        c = canned_replies.c
        query = canned_replies.select().order_by(c.language, c.title, c.id)
        if language is not None:
            query = query.where(c.language == language)
        async with self._read("list_canned_replies") as conn:
            rows = (await conn.execute(query)).all()
        return [_row_to_canned(r) for r in rows]

    async def get_canned_reply(self, reply_id: int) -> CannedReply | None:
        async with self._read("get_canned_reply") as conn:
            row = (await conn.execute(canned_replies.select().where(canned_replies.c.id == int(reply_id)))).first()
        return _row_to_canned(row) if row is not None else None

    async def add_canned_reply(
        self, language: str, title: str, text: str, created_by: str, *, languages: Sequence[str] = ()
    ) -> CannedReply:
        """Save a canned reply (checked by :func:`dialogue.canned.check_reply` against the bot's ``languages``;
        title and text redacted like all staff text). :class:`~dialogue.canned.CannedReplyExists` when its
        language already has that title."""
        _check_agent(created_by, "add_canned_reply")
        language, title, text = _clean_canned(language, title, text, languages)
        now = _now()
        async with self._write("add_canned_reply") as conn:
            try:
                result = await conn.execute(
                    canned_replies.insert().values(
                        language=language, title=title, text=text, created_by=created_by, created_at=now
                    )
                )
            except sa_exc.IntegrityError:
                raise CannedReplyExists("a canned reply with this title exists", operation="add_canned_reply") \
                    from None
            reply_id = int(result.inserted_primary_key[0])  # type: ignore[index]
        return CannedReply(reply_id, language, title, text, created_by, now)

    async def update_canned_reply(
        self, reply_id: int, language: str, title: str, text: str, *, languages: Sequence[str] = ()
    ) -> CannedReply:
        """Replace a canned reply's language, title and text (same rules as :meth:`add_canned_reply`; its author
        and creation time stay). :class:`~dialogue.canned.CannedReplyNotFound` for an unknown id."""
        language, title, text = _clean_canned(language, title, text, languages)
        c = canned_replies.c
        async with self._write("update_canned_reply") as conn:
            try:
                result = await conn.execute(
                    canned_replies.update().where(c.id == int(reply_id)).values(language=language, title=title,
                                                                               text=text)
                )
            except sa_exc.IntegrityError:
                raise CannedReplyExists("a canned reply with this title exists", operation="update_canned_reply") \
                    from None
            if not result.rowcount:
                raise CannedReplyNotFound("no such canned reply", operation="update_canned_reply")
            row = (await conn.execute(canned_replies.select().where(c.id == int(reply_id)))).one()
        return _row_to_canned(row)

    async def delete_canned_reply(self, reply_id: int) -> bool:
        """Delete a canned reply; ``False`` when there was none with that id."""
        async with self._write("delete_canned_reply") as conn:
            result = await conn.execute(canned_replies.delete().where(canned_replies.c.id == int(reply_id)))
        return bool(result.rowcount)

    # ------------------------------------------------------------------ event reads

    async def events(self, conversation_id: str, after_seq: int = 0) -> list[Event]:
        """The conversation's events with ``seq > after_seq``, in order (``[]`` for an unknown conversation)."""
        query = (
            events.select()
            .where(events.c.conversation_id == conversation_id, events.c.seq > after_seq)
            .order_by(events.c.seq)
        )
        async with self._read("events", conversation_id) as conn:
            rows = (await conn.execute(query)).all()
        return [_row_to_event(r) for r in rows]

    async def find_events_by_message_id(self, conversation_id: str, message_id: str) -> list[Event]:
        """All events of the turn that contains an event carrying ``message_id``, in order; ``[]`` if none.

        Used for idempotent retries: when a client resends a user message, the channel answers from the stored
        turn (its ``BOT_MESSAGE`` events, ``data["reply_to"] == message_id``) instead of running it again. A
        turn is defined by the ``turn`` column, so events appended later by :meth:`append_events` in the same
        turn (agent messages) are included: pick by type.
        """
        c = events.c
        turn_of = (
            sa.select(c.turn)
            .where(c.conversation_id == conversation_id, c.message_id == message_id)
            .order_by(c.seq)
            .limit(1)
            .scalar_subquery()
        )
        query = events.select().where(c.conversation_id == conversation_id, c.turn == turn_of).order_by(c.seq)
        async with self._read("find_events_by_message_id", conversation_id) as conn:
            rows = (await conn.execute(query)).all()
        return [_row_to_event(r) for r in rows]


class _Tx:
    """``async with`` one connection + transaction; maps driver failures to the store's errors."""

    def __init__(self, store: Store, operation: str, conversation_id: str | None, *, write: bool) -> None:
        self._store = store
        self._operation = operation
        self._cid = conversation_id
        self._write = write
        self._conn: AsyncConnection | None = None

    async def __aenter__(self) -> AsyncConnection:
        store = self._store
        try:
            conn = await store._engine.connect()
        except Exception as exc:  # noqa: BLE001 - translated and re-raised
            raise store._translate(exc, self._operation, self._cid) from None
        try:
            if self._write:
                options: dict[str, Any] = {_IMMEDIATE: True}
                if store._transactional is not None:
                    options["isolation_level"] = store._transactional
                await conn.execution_options(**options)
            await conn.begin()
        except Exception as exc:  # noqa: BLE001 - translated and re-raised
            await conn.close()
            raise store._translate(exc, self._operation, self._cid) from None
        self._conn = conn
        return conn

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        conn = self._conn
        assert conn is not None
        store = self._store
        try:
            if exc is None:
                try:
                    await conn.commit()
                except Exception as commit_exc:  # noqa: BLE001 - translated and re-raised
                    raise store._translate(commit_exc, self._operation, self._cid) from None
            else:
                try:
                    await conn.rollback()
                except Exception:  # noqa: BLE001 - the original error matters more
                    log.debug("rollback failed during %s", self._operation)
        finally:
            await conn.close()
        if exc is not None:
            translated = store._translate(exc, self._operation, self._cid)
            if translated is not exc:
                raise translated from None


def _install_sqlite_hooks(engine: AsyncEngine) -> None:
    """Foreign keys on, WAL journal, and SQLAlchemy-controlled BEGIN (IMMEDIATE for writes)."""

    @sa_event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
        finally:
            cursor.close()

    @sa_event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_IMMEDIATE) else "BEGIN")
