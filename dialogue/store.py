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
``WHERE version = :expected``.

The schema is owned by the Alembic migrations in ``dialogue/migrations``; :meth:`Store.open` upgrades to head.
Nothing here logs customer text: only ids, counts and event types.

Usage::

    store = await Store.open("sqlite+aiosqlite:///.kefu/shop.db")
    conv = await store.create_conversation("en")
    events = await store.commit_turn(TurnUpdate(conv.id, conv.version, "idle", {}, "en", False, (...)))
    await store.close()
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from dialogue.errors import (
    ConcurrentUpdate,
    ConversationExists,
    ConversationNotFound,
    DuplicateMessage,
    StoreError,
    StoreUnavailable,
)
from dialogue.types import EVENT_TYPES, Conversation, ConversationSummary, Event, NewEvent, TurnUpdate

__all__ = ["MIGRATIONS_DIR", "Store"]

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_IMMEDIATE = "kefu_sqlite_immediate"  # execution option: open this SQLite transaction with BEGIN IMMEDIATE
_MIGRATION_LOCK = zlib.crc32(b"kefu.dialogue.store.migrations")  # PostgreSQL advisory lock key
_MAX_LIST = 1000

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


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(value: dt.datetime) -> dt.datetime:
    """SQLite returns naive datetimes; everything the store writes is UTC."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _dumps(value: Any) -> str:
    # ensure_ascii=False: Chinese is stored as UTF-8 text, not \\u escapes (readable in psql / sqlite3).
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        orig = exc.orig
        if isinstance(orig, _CONNECTION_ERRORS):
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
        kwargs.update(engine_kwargs or {})

        try:
            engine = create_async_engine(sa_url, **kwargs)
        except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ImportError) as exc:
            raise StoreError(f"cannot create engine for {masked}: {exc}", operation="open") from None
        if backend == "sqlite":
            _install_sqlite_hooks(engine)
        store = cls(engine, sa_url, schema)
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
    ) -> Conversation:
        """Insert a new conversation (version 0, no turns). ``conversation_id`` defaults to a random UUID.

        ``state`` is stored as given: callers running an FSM pass its initial state (``flows.initial_state``);
        the store knows no FSM, so the default ``"start"`` is only a placeholder.

        Raises :class:`~dialogue.errors.ConversationExists` when the given id is taken.
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
        )

    async def get(self, conversation_id: str) -> Conversation | None:
        """The snapshot of one conversation, or ``None``."""
        async with self._read("get", conversation_id) as conn:
            row = (await conn.execute(conversations.select().where(conversations.c.id == conversation_id))).first()
        return _row_to_conversation(row) if row is not None else None

    async def delete_conversation(self, conversation_id: str) -> bool:
        """Delete a conversation and (ON DELETE CASCADE) its events, e.g. for a data-erasure request."""
        async with self._write("delete_conversation", conversation_id) as conn:
            result = await conn.execute(conversations.delete().where(conversations.c.id == conversation_id))
        return bool(result.rowcount)

    async def list_conversations(self, limit: int = 50, offset: int = 0) -> list[ConversationSummary]:
        """Conversations, most recently updated first (ties broken by id, so pages are stable)."""
        if not 1 <= limit <= _MAX_LIST:
            raise StoreError(f"limit must be in 1..{_MAX_LIST}, got {limit}", operation="list_conversations")
        if offset < 0:
            raise StoreError(f"offset must be >= 0, got {offset}", operation="list_conversations")
        c = conversations.c
        query = (
            sa.select(c.id, c.language, c.turn_count, c.handed_off, c.state, c.created_at, c.updated_at, c.last_intent)
            .order_by(c.updated_at.desc(), c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        async with self._read("list_conversations") as conn:
            rows = (await conn.execute(query)).all()
        return [
            ConversationSummary(
                id=r.id,
                language=r.language,
                turn_count=r.turn_count,
                handed_off=bool(r.handed_off),
                state=r.state,
                created_at=_aware(r.created_at),
                updated_at=_aware(r.updated_at),
                last_intent=r.last_intent,
            )
            for r in rows
        ]

    async def count_conversations(self) -> int:
        """How many conversations exist (for the console's pager)."""
        async with self._read("count_conversations") as conn:
            return int((await conn.execute(sa.select(sa.func.count()).select_from(conversations))).scalar_one())

    # ------------------------------------------------------------------ writes

    async def commit_turn(self, update: TurnUpdate) -> list[Event]:
        """Append one turn's events and rewrite the snapshot, atomically.

        The events get ``turn = turn_count + 1`` and ``seq`` numbers continuing the conversation's log; the
        snapshot gets the update's state/slots/language/handoff/last_intent, ``turn_count + 1`` and
        ``version + 1``. Raises :class:`~dialogue.errors.ConversationNotFound`,
        :class:`~dialogue.errors.ConcurrentUpdate` (someone committed since ``expected_version`` was read:
        nothing is written) or :class:`~dialogue.errors.DuplicateMessage` (an event's ``(type, message_id)``
        is already stored: nothing is written; answer from :meth:`find_events_by_message_id`).
        """
        cid = update.conversation_id
        _check_events(update.events, cid, "commit_turn")
        async with self._write("commit_turn", cid) as conn:
            current = await self._lock(conn, cid, "commit_turn")
            if current.version != update.expected_version:
                raise ConcurrentUpdate(cid, update.expected_version, current.version)
            now = _now()
            turn = current.turn_count + 1
            stored = await self._insert_events(conn, cid, turn, update.events, now, "commit_turn")
            result = await conn.execute(
                conversations.update()
                .where(conversations.c.id == cid, conversations.c.version == update.expected_version)
                .values(
                    state=update.state,
                    slots=dict(update.slots),
                    language=update.language,
                    handed_off=update.handed_off,
                    last_intent=update.last_intent,
                    last_action=update.last_action,
                    turn_count=turn,
                    version=update.expected_version + 1,
                    updated_at=now,
                )
            )
            if result.rowcount != 1:  # only reachable on a dialect without row locks
                raise ConcurrentUpdate(cid, update.expected_version, current.version + 1)
        log.debug("conversation %s: turn %d committed, %d events", cid, turn, len(stored))
        return stored

    async def append_events(self, conversation_id: str, new_events: Sequence[NewEvent]) -> list[Event]:
        """Append events outside a user turn (agent messages, handoff notes...).

        They belong to the conversation's current turn (``turn = turn_count``; ``0`` before the first turn) and
        continue its ``seq``. ``version`` is bumped and ``updated_at`` refreshed (a turn computed from an older
        snapshot then fails with :class:`~dialogue.errors.ConcurrentUpdate`, so it sees what the agent wrote);
        ``turn_count`` is unchanged. Raises :class:`~dialogue.errors.ConversationNotFound` /
        :class:`~dialogue.errors.DuplicateMessage`.
        """
        cid = conversation_id
        new_events = tuple(new_events)
        _check_events(new_events, cid, "append_events")
        if not new_events:
            return []
        async with self._write("append_events", cid) as conn:
            current = await self._lock(conn, cid, "append_events")
            now = _now()
            stored = await self._insert_events(conn, cid, current.turn_count, new_events, now, "append_events")
            await conn.execute(
                conversations.update()
                .where(conversations.c.id == cid)
                .values(version=conversations.c.version + 1, updated_at=now)
            )
        log.debug("conversation %s: %d events appended", cid, len(stored))
        return stored

    async def _lock(self, conn: AsyncConnection, cid: str, operation: str) -> Conversation:
        # FOR UPDATE is rendered where the dialect has it (PostgreSQL, MySQL) and omitted on SQLite, whose
        # write transactions start with BEGIN IMMEDIATE and so already exclude other writers.
        query = conversations.select().where(conversations.c.id == cid).with_for_update()
        row = (await conn.execute(query)).first()
        if row is None:
            raise ConversationNotFound(cid, operation=operation)
        return _row_to_conversation(row)

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
                await conn.execution_options(**{_IMMEDIATE: True})
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
