"""Store fixtures shared by the suite (the root ``conftest.py`` exposes them): a real SQLite file or PostgreSQL.

* ``store_target`` — parametrised over ``sqlite`` (a temp file) and ``postgresql``. Each PostgreSQL test gets
  a fresh schema ``kefu_test_<random>`` (tables *and* Alembic's version table live there; dropped afterwards),
  so tests never see each other's rows. PostgreSQL is ``postgresql+asyncpg://postgres@127.0.0.1:5432/test``
  (user ``root`` if ``postgres`` is refused; override with ``KEFU_TEST_PG_URL``). When it is unreachable the
  PostgreSQL variants are SKIPPED with the reason shown by ``-ra`` — except when ``CI=true``, where they FAIL.
* ``store`` — an open :class:`dialogue.store.Store` on that target, closed after the test.

Use ``store_target.open()`` to open further stores on the same database (reopen / second-process checks).
The fixtures are function-scoped but run on the session event loop, like the suite's tests
(``asyncio_default_test_loop_scope = "session"``): an engine must be used on the loop that created it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from dialogue.store import Store

PG_HOST, PG_PORT, PG_DB = "127.0.0.1", 5432, "test"
_pg_probe: dict[str, str | None] = {}  # cached per test session: {"url": ..., "error": ...}


@dataclass
class StoreTarget:
    """Where a test's store lives: the URL, and the PostgreSQL schema (``None`` for SQLite)."""

    backend: str
    url: str
    schema: str | None = None

    async def open(self) -> Store:
        return await Store.open(self.url, schema=self.schema)


async def probe_postgres() -> tuple[str | None, str | None]:
    """(working asyncpg URL, None) or (None, why not)."""
    if "url" in _pg_probe:
        return _pg_probe["url"], _pg_probe["error"]
    import asyncpg

    explicit = os.environ.get("KEFU_TEST_PG_URL")
    users = [None] if explicit else ["postgres", "root"]
    errors = []
    url: str | None = None
    for user in users:
        candidate = explicit or f"postgresql+asyncpg://{user}@{PG_HOST}:{PG_PORT}/{PG_DB}"
        dsn = candidate.replace("postgresql+asyncpg://", "postgresql://")
        try:
            conn = await asyncpg.connect(dsn, timeout=5)
        except Exception as exc:  # noqa: BLE001 - any failure means "not usable", reported below
            errors.append(f"{user or 'KEFU_TEST_PG_URL'}: {type(exc).__name__}: {exc}")
            continue
        await conn.close()
        url = candidate
        break
    error = None if url else "PostgreSQL not reachable ({})".format("; ".join(errors))
    _pg_probe.update(url=url, error=error)
    return url, error


async def drop_schema(url: str, schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"), timeout=5)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest_asyncio.fixture(loop_scope="session", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreTarget]:
    if request.param == "sqlite":
        yield StoreTarget("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'db' / 'kefu.db'}")
        return
    url, error = await probe_postgres()
    if url is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{error} — PostgreSQL is required when CI=true")
        pytest.skip(str(error))
    schema = f"kefu_test_{uuid.uuid4().hex[:12]}"
    try:
        yield StoreTarget("postgresql", url, schema)
    finally:
        await drop_schema(url, schema)


@pytest_asyncio.fixture(loop_scope="session")
async def store(store_target: StoreTarget) -> AsyncIterator[Store]:
    s = await store_target.open()
    try:
        yield s
    finally:
        await s.close()
