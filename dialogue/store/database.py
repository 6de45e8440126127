"""The database underneath the store: engine set-up, migrations, transactions and error mapping.

:class:`Database` is the base every concern of the store builds on (see :class:`dialogue.store.Store`). It owns
the SQLAlchemy engine and decides, once, how the store talks to each database:

* :meth:`Database.open` creates the engine for any SQLAlchemy async URL and runs the Alembic migrations in
  ``dialogue/migrations`` to head (under an advisory lock on PostgreSQL, so two processes opening a fresh database
  do not both create the tables).
* On PostgreSQL with asyncpg the engine's default isolation is ``AUTOCOMMIT``: a read is its statement(s) without
  ``BEGIN``/``COMMIT`` (under ``READ COMMITTED`` a transaction gives a read nothing more); every write transaction
  sets ``READ COMMITTED``. An ``isolation_level`` in ``engine_kwargs`` turns this off. On SQLite a write transaction
  begins with ``BEGIN IMMEDIATE``, which serialises writers.
* No pre-ping round trip on checkout for SQLite and asyncpg (it was a quarter of a turn's round trips). A pooled
  asyncpg connection the server closed (a restart, ``pg_terminate_backend``) already knows it is closed, since the
  event loop read the server's goodbye, so the pool replaces it at checkout without asking the server
  (:func:`_replace_closed_asyncpg`); a connection that dies in use raises :class:`~dialogue.errors.StoreUnavailable`
  and SQLAlchemy invalidates the pool's older connections, as before. A SQLite file has no connection to lose.
  Other drivers keep SQLAlchemy's ``pool_pre_ping``; ``engine_kwargs`` can set it either way.
* Every connection is opened through :class:`_Tx`, which maps driver failures to the store's errors:
  :class:`~dialogue.errors.StoreUnavailable` when the database is not there, :class:`~dialogue.errors.StoreError`
  otherwise, never SQLAlchemy's wrapper (whose message lists the bound parameters, i.e. customer text).
"""

from __future__ import annotations

import logging
import zlib
from pathlib import Path
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from dialogue.errors import StoreError, StoreUnavailable
from dialogue.store.rows import _dumps

log = logging.getLogger("dialogue.store")  # one logger for the whole store, as before it was a package

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
_IMMEDIATE = "kefu_sqlite_immediate"  # execution option: open this SQLite transaction with BEGIN IMMEDIATE
_MIGRATION_LOCK = zlib.crc32(b"kefu.dialogue.store.migrations")  # PostgreSQL advisory lock key

# Errors that mean "cannot talk to the database" rather than "this statement is wrong".
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (OSError, TimeoutError, ConnectionError)
#: SQLSTATEs that mean "the database is not there right now": class 08 (connection exception) and 57P01-57P03
#: (admin shutdown, crash shutdown, cannot connect now: "the database system is shutting down / starting up").
_UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03")


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


class Database:
    """The engine and its transactions; the base of :class:`dialogue.store.Store` (create that with :meth:`open`)."""

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
    ) -> Self:
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
        asyncpg = backend == "postgresql" and sa_url.get_driver_name() == "asyncpg"
        # Pre-ping costs a round trip per checkout; SQLite and asyncpg do without it (see the module docstring).
        kwargs: dict[str, Any] = {"json_serializer": _dumps, "pool_pre_ping": not (backend == "sqlite" or asyncpg)}
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
        if asyncpg and "isolation_level" not in (engine_kwargs or {}):
            # Reads run without BEGIN/COMMIT; writes switch back to PostgreSQL's default level, so they are one
            # transaction as before (see _Tx).
            kwargs["isolation_level"] = "AUTOCOMMIT"
            transactional = "READ COMMITTED"
        kwargs.update(engine_kwargs or {})

        try:
            engine = create_async_engine(sa_url, **kwargs)
        except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ImportError) as exc:
            raise StoreError(f"cannot create engine for {masked}: {exc}", operation="open") from None
        if backend == "sqlite":
            _install_sqlite_hooks(engine)
        elif asyncpg and not kwargs["pool_pre_ping"]:
            sa_event.listen(engine.sync_engine, "checkout", _replace_closed_asyncpg)
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


class _Tx:
    """``async with`` one connection + transaction; maps driver failures to the store's errors."""

    def __init__(self, store: Database, operation: str, conversation_id: str | None, *, write: bool) -> None:
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


def _replace_closed_asyncpg(_dbapi_connection: Any, _record: Any, proxy: Any) -> None:
    """Pool checkout hook: an asyncpg connection the server has closed is replaced before use, with no round trip.

    ``DisconnectionError`` is SQLAlchemy's signal to invalidate this connection and check out a fresh one (it tries
    three times, then raises, which :class:`_Tx` maps to :class:`~dialogue.errors.StoreUnavailable`).
    """
    if proxy.driver_connection.is_closed():
        raise sa_exc.DisconnectionError("the server closed this pooled connection")


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
