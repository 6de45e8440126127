"""Retention on SQLite and PostgreSQL: "deleted" means gone from every table of the live schema."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa

from dialogue.retention import (
    RetentionError,
    child_columns,
    delete_conversations,
    delete_user,
    expire,
    expire_every,
)
from dialogue.store import Store
from dialogue.types import ACTION, BOT_MESSAGE, NLU_PARSE, USER_MESSAGE, Conversation, NewEvent, TurnUpdate
from tests.stores import StoreTarget

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _commit(store: Store, conv: Conversation, turns: int, intent: str = "order_status") -> Conversation:
    for i in range(turns):
        current = await store.get(conv.id)
        assert current is not None
        message_id = f"{conv.id[:8]}-m{i}"
        await store.commit_turn(
            TurnUpdate(
                conversation_id=conv.id,
                expected_version=current.version,
                state="idle",
                slots={"order_id": "10234"},
                language=conv.language,
                handed_off=False,
                events=(
                    NewEvent(USER_MESSAGE, {"text": f"my order {i}", "message_id": message_id}, message_id),
                    NewEvent(NLU_PARSE, {"intent": intent, "confidence": 0.9}),
                    NewEvent(ACTION, {"name": "action_order_status"}),
                    NewEvent(BOT_MESSAGE, {"text": "ok", "reply_to": message_id}, f"bot-{message_id}"),
                ),
                last_intent=intent,
                last_action="action_order_status",
            )
        )
    again = await store.get(conv.id)
    assert again is not None
    return again


async def _tables(store: Store) -> sa.MetaData:
    metadata = sa.MetaData()
    async with store.transaction("test", write=False) as conn:
        await conn.run_sync(lambda c: metadata.reflect(c))
    return metadata


async def _counts(store: Store) -> dict[str, int]:
    """Rows of every table in the live schema."""
    metadata = await _tables(store)
    counts: dict[str, int] = {}
    async with store.transaction("test", write=False) as conn:
        for table in metadata.sorted_tables:
            counts[table.name] = int((await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one())
    return counts


async def _rows_of(store: Store, conversation_ids: set[str]) -> dict[str, int]:
    """Rows that belong to ``conversation_ids``, per table (the conversations table included)."""
    metadata = await _tables(store)
    found: dict[str, int] = {}
    async with store.transaction("test", write=False) as conn:
        conversations = metadata.tables["conversations"]
        found["conversations"] = int(
            (await conn.execute(
                sa.select(sa.func.count()).select_from(conversations).where(conversations.c.id.in_(conversation_ids))
            )).scalar_one()
        )
        for column in child_columns(metadata):
            count = (await conn.execute(
                sa.select(sa.func.count()).select_from(column.table).where(column.in_(conversation_ids))
            )).scalar_one()
            found[column.table.name] = found.get(column.table.name, 0) + int(count)
    return found


async def _set_updated_at(store: Store, conversation_id: str, when: dt.datetime) -> None:
    metadata = await _tables(store)
    conversations = metadata.tables["conversations"]
    async with store.transaction("test") as conn:
        await conn.execute(conversations.update().where(conversations.c.id == conversation_id).values(updated_at=when))


async def test_delete_user_removes_every_row_of_their_conversations(store_target: StoreTarget, store: Store) -> None:
    alice = [await store.create_conversation("en", sender="alice@example.com") for _ in range(3)]
    bob = await store.create_conversation("zh", sender="bob")
    anonymous = await store.create_conversation("en")
    for conv in [*alice, bob, anonymous]:
        await _commit(store, conv, 2)
    await store.append_events(alice[0].id, [NewEvent("agent_message", {"text": "hi", "agent": "ann"}, "agent-1")])
    before = await _counts(store)
    mine = await _rows_of(store, {c.id for c in alice})
    assert mine["conversations"] == 3 and mine["events"] == 3 * 2 * 4 + 1

    report = await delete_user(store, "alice@example.com")

    after = await _counts(store)
    assert report.conversations == 3
    assert all(count == 0 for count in (await _rows_of(store, {c.id for c in alice})).values())
    for table, count in before.items():  # exactly their rows went, in every table, and nothing else
        assert after[table] == count - mine.get(table, 0), table
        assert report.rows.get(table, 0) == mine.get(table, 0), table
    assert await store.get(bob.id) is not None and await store.get(anonymous.id) is not None
    assert len(await store.events(bob.id)) == 8
    assert (await delete_user(store, "alice@example.com")).conversations == 0  # idempotent
    with pytest.raises(RetentionError):
        await delete_user(store, " ")


async def test_expire_deletes_only_conversations_idle_longer_than_days(store_target: StoreTarget, store: Store) -> None:
    now = dt.datetime.now(dt.UTC)
    old = await _commit(store, await store.create_conversation("en", sender="carol"), 3)
    recent = await _commit(store, await store.create_conversation("en", sender="carol"), 1)
    fresh = await _commit(store, await store.create_conversation("en"), 1)
    await _set_updated_at(store, old.id, now - dt.timedelta(days=40))
    await _set_updated_at(store, recent.id, now - dt.timedelta(days=10))
    before = await _counts(store)
    old_rows = await _rows_of(store, {old.id})

    report = await expire(store, 30, now=now)

    assert report.conversations == 1
    assert all(count == 0 for count in (await _rows_of(store, {old.id})).values())
    after = await _counts(store)
    for table, count in before.items():
        assert after[table] == count - old_rows.get(table, 0), table
    assert await store.get(recent.id) is not None and await store.get(fresh.id) is not None
    assert (await expire(store, 5, now=now)).conversations == 1  # now `recent` (10 days idle) goes too
    assert await store.get(fresh.id) is not None
    with pytest.raises(RetentionError):
        await expire(store, -1)


async def test_expire_every_runs_now_and_keeps_running(store_target: StoreTarget, store: Store) -> None:
    import asyncio

    old = await _commit(store, await store.create_conversation("en"), 1)
    await _set_updated_at(store, old.id, dt.datetime.now(dt.UTC) - dt.timedelta(days=3))
    task = asyncio.create_task(expire_every(store, 2, interval_s=0.05))
    try:
        for _ in range(100):
            if await store.get(old.id) is None:
                break
            await asyncio.sleep(0.02)
        assert await store.get(old.id) is None
        later = await _commit(store, await store.create_conversation("en"), 1)
        await _set_updated_at(store, later.id, dt.datetime.now(dt.UTC) - dt.timedelta(days=3))
        for _ in range(100):  # the next tick erases a conversation that aged after the first run
            if await store.get(later.id) is None:
                break
            await asyncio.sleep(0.02)
        assert await store.get(later.id) is None and not task.done()
    finally:
        task.cancel()


async def test_retention_works_in_batches(store_target: StoreTarget, store: Store, monkeypatch: Any) -> None:
    from dialogue import retention

    monkeypatch.setattr(retention, "BATCH", 2)
    convs = [await _commit(store, await store.create_conversation("en", sender="dave"), 1) for _ in range(5)]
    keep = await _commit(store, await store.create_conversation("en", sender="erin"), 1)
    report = await delete_user(store, "dave")
    assert report.conversations == 5 and report.rows["events"] == 5 * 4
    assert [await store.get(c.id) for c in convs] == [None] * 5
    assert (await delete_conversations(store, [keep.id, "no-such-id"])).conversations == 1
    assert (await _counts(store))["conversations"] == 0
