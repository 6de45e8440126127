"""Data retention: erase every conversation of one customer, and expire conversations idle for too long.

"Deleted" means gone from every table: the conversation's snapshot row and every row of every other table that
refers to it (``events``, ``conversation_intents``... whatever the migrations add later). The tables are found
by reflecting the live schema, not from a fixed list: a table is a child of ``conversations`` when it has a
foreign key to ``conversations.id`` or a ``conversation_id`` column. Children are deleted explicitly (not left to
``ON DELETE CASCADE``, which SQLite only honours with its foreign-key pragma on), then the snapshot rows, in one
transaction per batch of conversations; the batch's snapshot rows are locked first (``SELECT ... FOR UPDATE`` on
PostgreSQL; SQLite write transactions exclude each other), so a turn committed meanwhile either lands before the
erasure (and is erased with it) or finds the conversation gone.

* :func:`delete_user` — every conversation whose ``sender`` is the customer's id (the ``user`` of the widget's
  ``hello`` frame): ``kefu conversations delete --user ID``.
* :func:`expire` — every conversation whose last activity (``updated_at``) is older than ``days`` days:
  ``kefu conversations expire --days N`` (run it from cron), or :func:`expire_every` inside ``kefu serve`` when
  ``bot.yml`` sets ``retention_days``.

Both return a :class:`RetentionReport` (counts only). Logs carry counts and table names, never ids or text.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from dialogue.errors import DialogueError, StoreError
from dialogue.store import ConversationStore

__all__ = ["RetentionError", "RetentionReport", "child_columns", "delete_conversations", "delete_user", "expire",
           "expire_every"]

log = logging.getLogger("kefu.dialogue.retention")

BATCH = 500  # conversations per transaction
CONVERSATIONS = "conversations"


class RetentionError(DialogueError):
    """A retention request is invalid (empty user id, negative days...)."""


@dataclass
class RetentionReport:
    """What was deleted: conversations, and rows per table (the conversations table included)."""

    conversations: int = 0
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    def add(self, table: str, count: int) -> None:
        self.rows[table] = self.rows.get(table, 0) + max(0, count)


def child_columns(metadata: sa.MetaData) -> list[sa.Column[Any]]:
    """Every column that points at ``conversations.id``, dependent tables first.

    A column qualifies when it has a foreign key to ``conversations.id`` or is named ``conversation_id``.
    Tables are ordered so that a table referencing another child table is emptied first.
    """
    columns: list[sa.Column[Any]] = []
    for table in reversed(metadata.sorted_tables):  # dependents first
        if table.name == CONVERSATIONS:
            continue
        for column in table.columns:
            points_at_conversations = any(
                fk.column.table.name == CONVERSATIONS and fk.column.name == "id" for fk in column.foreign_keys
            )
            if points_at_conversations or column.name == "conversation_id":
                columns.append(column)
    return columns


async def _reflect(conn: Any) -> sa.MetaData:
    metadata = sa.MetaData()
    await conn.run_sync(lambda sync_conn: metadata.reflect(sync_conn))
    if CONVERSATIONS not in metadata.tables:
        raise StoreError("no conversations table: open the store (it migrates the schema) first",
                         operation="retention")
    return metadata


async def _delete_batch(
    store: ConversationStore, where: Any, operation: str, report: RetentionReport, schema: dict[str, sa.MetaData]
) -> int:
    """Delete up to :data:`BATCH` conversations matching ``where(conversations_table)``; returns how many.

    ``schema`` caches the reflected tables across batches (reflected in the first batch's transaction).
    """
    # The store's write transaction: BEGIN IMMEDIATE on SQLite, driver errors mapped to StoreUnavailable/StoreError.
    async with store.transaction(operation) as conn:
        if "metadata" not in schema:
            schema["metadata"] = await _reflect(conn)
        metadata = schema["metadata"]
        conversations = metadata.tables[CONVERSATIONS]
        ids = [
            row[0]
            for row in (
                await conn.execute(
                    sa.select(conversations.c.id)
                    .where(where(conversations))
                    .order_by(conversations.c.id)
                    .limit(BATCH)
                    .with_for_update()
                )
            ).all()
        ]
        if not ids:
            return 0
        for column in child_columns(metadata):
            result = await conn.execute(sa.delete(column.table).where(column.in_(ids)))
            report.add(column.table.name, result.rowcount or 0)
        result = await conn.execute(sa.delete(conversations).where(conversations.c.id.in_(ids)))
        deleted = int(result.rowcount or 0)
        report.add(CONVERSATIONS, deleted)
        report.conversations += deleted
        return len(ids)


async def _delete_where(store: ConversationStore, where: Any, operation: str) -> RetentionReport:
    report = RetentionReport()
    schema: dict[str, sa.MetaData] = {}
    while True:
        n = await _delete_batch(store, where, operation, report, schema)
        if n < BATCH:
            break
    log.info("%s: deleted %d conversations (%d rows: %s)", operation, report.conversations, report.total_rows,
             ", ".join(f"{table}={count}" for table, count in sorted(report.rows.items())))
    return report


async def delete_user(store: ConversationStore, user: str) -> RetentionReport:
    """Erase every conversation whose ``sender`` is ``user``, from every table."""
    if not isinstance(user, str) or not user.strip():
        raise RetentionError("a user id is required")
    return await _delete_where(store, lambda c: c.c.sender == user, "delete_user")


async def delete_conversations(store: ConversationStore, conversation_ids: Sequence[str]) -> RetentionReport:
    """Erase the given conversations (unknown ids are ignored), from every table."""
    ids = sorted({str(i) for i in conversation_ids})
    report = RetentionReport()
    schema: dict[str, sa.MetaData] = {}
    for start in range(0, len(ids), BATCH):
        chunk = ids[start : start + BATCH]
        await _delete_batch(store, lambda c, chunk=chunk: c.c.id.in_(chunk), "delete_conversations", report, schema)
    return report


async def expire(store: ConversationStore, days: float, *, now: dt.datetime | None = None) -> RetentionReport:
    """Erase every conversation whose last activity (``updated_at``) is more than ``days`` days before ``now``."""
    if not days >= 0:
        raise RetentionError(f"days must be >= 0, got {days}")
    cutoff = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=days)
    return await _delete_where(store, lambda c: c.c.updated_at < cutoff, "expire")


async def expire_every(store: ConversationStore, days: float, interval_s: float = 3600.0) -> None:
    """Run :func:`expire` now and then every ``interval_s`` seconds until cancelled: the expiry policy of a
    running server. A failed run (database down) is logged and retried at the next tick, never fatal; several
    workers doing it at once is harmless (each batch locks its rows, and a deleted row is not deleted twice)."""
    while True:
        try:
            report = await expire(store, days)
            if report.conversations:
                log.info("expired %d conversations idle for more than %s days", report.conversations, days)
        except StoreError as exc:
            log.warning("expiry run failed (%s); retrying in %.0f s", type(exc).__name__, interval_s)
        await asyncio.sleep(interval_s)
