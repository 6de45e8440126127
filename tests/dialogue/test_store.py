"""Conversation store tests; every test runs on SQLite and PostgreSQL (see conftest.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from typing import Any

import pytest
import sqlalchemy as sa

from dialogue.errors import (
    ConcurrentUpdate,
    ConversationExists,
    ConversationNotFound,
    DialogueError,
    DuplicateMessage,
    StoreError,
    StoreUnavailable,
)
from dialogue.store import Store
from dialogue.types import (
    ACTION,
    AGENT_MESSAGE,
    BOT_MESSAGE,
    NLU_PARSE,
    USER_MESSAGE,
    Conversation,
    NewEvent,
    TurnUpdate,
)

StoreTarget = Any  # conftest.StoreTarget (tests/ is not a package, so it is not importable here)


def turn(
    conv: Conversation,
    message_id: str,
    *,
    text: str = "where is my order",
    state: str = "idle",
    slots: dict[str, Any] | None = None,
    version: int | None = None,
    intent: str | None = "order_status",
    handed_off: bool = False,
) -> TurnUpdate:
    """A realistic turn: user message, parse, action, bot reply."""
    return TurnUpdate(
        conversation_id=conv.id,
        expected_version=conv.version if version is None else version,
        state=state,
        slots=slots if slots is not None else {},
        language=conv.language,
        handed_off=handed_off,
        events=(
            NewEvent(USER_MESSAGE, {"text": text, "message_id": message_id}, message_id),
            NewEvent(NLU_PARSE, {"intent": intent, "confidence": 0.9}),
            NewEvent(ACTION, {"name": "action_order_status"}),
            NewEvent(BOT_MESSAGE, {"text": "ok", "reply_to": message_id}, f"bot-{message_id}"),
        ),
        last_intent=intent,
    )


async def _reload(store: Store, conv_id: str) -> Conversation:
    conv = await store.get(conv_id)
    assert conv is not None
    return conv


# ---------------------------------------------------------------- schema


async def test_migration_creates_schema_and_reopen_is_idempotent(store_target: StoreTarget, store: Store) -> None:
    assert await store.schema_version() == "0002"

    def inspect(sync_conn: sa.Connection) -> dict[str, Any]:
        insp = sa.inspect(sync_conn)
        return {
            "tables": set(insp.get_table_names()),
            "conv_cols": {c["name"] for c in insp.get_columns("conversations")},
            "event_cols": {c["name"] for c in insp.get_columns("events")},
            "conv_indexes": {i["name"] for i in insp.get_indexes("conversations")},
            "uniques": {tuple(u["column_names"]) for u in insp.get_unique_constraints("events")},
            "fks": [(fk["referred_table"], fk["options"].get("ondelete")) for fk in insp.get_foreign_keys("events")],
        }

    async with store._engine.connect() as conn:
        info = await conn.run_sync(inspect)
    assert {"conversations", "events", "alembic_version"} <= info["tables"]
    assert info["conv_cols"] >= {
        "id",
        "sender",
        "language",
        "state",
        "slots",
        "turn_count",
        "handed_off",
        "last_intent",
        "version",
        "created_at",
        "updated_at",
    }
    assert info["event_cols"] >= {"id", "conversation_id", "seq", "turn", "type", "data", "message_id", "timestamp"}
    assert "ix_conversations_updated_at" in info["conv_indexes"]
    assert ("conversation_id", "seq") in info["uniques"]
    assert ("conversation_id", "type", "message_id") in info["uniques"]
    assert info["fks"] and info["fks"][0][0] == "conversations" and info["fks"][0][1].upper() == "CASCADE"

    conv = await store.create_conversation("en")
    # Reopening runs the migrations again: nothing is recreated, data survives.
    for _ in range(2):
        again = await store_target.open()
        try:
            assert await again.schema_version() == "0002"
            assert await again.get(conv.id) == conv
        finally:
            await again.close()


# ---------------------------------------------------------------- conversations


async def test_create_and_get(store: Store) -> None:
    conv = await store.create_conversation("zh", sender="wechat:42")
    assert conv.version == 0 and conv.turn_count == 0 and not conv.handed_off
    assert conv.language == "zh" and conv.sender == "wechat:42" and conv.slots == {}
    assert conv.created_at.tzinfo is not None
    loaded = await store.get(conv.id)
    assert loaded == conv
    assert await store.get("no-such-conversation") is None

    named = await store.create_conversation("en", conversation_id="client-chosen-id")
    assert named.id == "client-chosen-id" and named.sender is None
    with pytest.raises(ConversationExists) as info:
        await store.create_conversation("en", conversation_id="client-chosen-id")
    assert isinstance(info.value, StoreError) and isinstance(info.value, DialogueError)
    assert info.value.conversation_id == "client-chosen-id"


async def test_commit_turn_assigns_seq_and_bumps_version(store: Store) -> None:
    conv = await store.create_conversation("en")
    first = await store.commit_turn(turn(conv, "m1", slots={"order_id": "10234"}, state="awaiting_reason"))
    assert [e.seq for e in first] == [1, 2, 3, 4]
    assert {e.turn for e in first} == {1}
    assert [e.type for e in first] == [USER_MESSAGE, NLU_PARSE, ACTION, BOT_MESSAGE]

    conv = await _reload(store, conv.id)
    assert conv.version == 1 and conv.turn_count == 1
    assert conv.state == "awaiting_reason" and conv.slots == {"order_id": "10234"}

    second = await store.commit_turn(
        turn(conv, "m2", slots={"order_id": "10234", "reason": "wrong size"}, intent="inform", handed_off=True)
    )
    assert [e.seq for e in second] == [5, 6, 7, 8] and {e.turn for e in second} == {2}
    conv2 = await _reload(store, conv.id)
    assert conv2.version == 2 and conv2.turn_count == 2 and conv2.handed_off
    assert conv2.updated_at >= conv.updated_at
    summary = (await store.list_conversations())[0]
    assert summary.id == conv.id and summary.last_intent == "inform" and summary.turn_count == 2

    stored = await store.events(conv.id)
    assert stored == first + second  # what commit_turn returned is exactly what was stored


async def test_commit_turn_unknown_conversation(store: Store) -> None:
    ghost = Conversation("ghost", "idle", {}, "en", 0, False, 0, dt.datetime.now(dt.UTC), dt.datetime.now(dt.UTC))
    with pytest.raises(ConversationNotFound) as info:
        await store.commit_turn(turn(ghost, "m1"))
    assert info.value.conversation_id == "ghost"
    with pytest.raises(ConversationNotFound):
        await store.append_events("ghost", [NewEvent(AGENT_MESSAGE, {"text": "hi", "agent": "a"})])


async def test_stale_version_is_rejected_and_writes_nothing(store: Store) -> None:
    conv = await store.create_conversation("en")
    await store.commit_turn(turn(conv, "m1"))
    with pytest.raises(ConcurrentUpdate) as info:
        await store.commit_turn(turn(conv, "m2", state="other"))  # still carries version 0
    assert (info.value.expected, info.value.actual) == (0, 1)
    assert info.value.conversation_id == conv.id
    after = await _reload(store, conv.id)
    assert after.version == 1 and after.state == "idle"
    assert len(await store.events(conv.id)) == 4
    assert await store.find_events_by_message_id(conv.id, "m2") == []


async def test_concurrent_commits_exactly_one_wins(store: Store) -> None:
    """Several real tasks (separate pooled connections) commit on the same version at once."""
    for round_ in range(3):
        conv = await store.create_conversation("en")
        results = await asyncio.gather(
            *(store.commit_turn(turn(conv, f"r{round_}-m{i}", state=f"s{i}")) for i in range(4)),
            return_exceptions=True,
        )
        winners = [r for r in results if isinstance(r, list)]
        losers = [r for r in results if isinstance(r, BaseException)]
        assert len(winners) == 1, results
        assert len(losers) == 3 and all(isinstance(e, ConcurrentUpdate) for e in losers), losers
        assert all((e.expected, e.actual) == (0, 1) for e in losers if isinstance(e, ConcurrentUpdate))
        after = await _reload(store, conv.id)
        assert after.version == 1 and after.turn_count == 1
        assert [e.seq for e in await store.events(conv.id)] == [1, 2, 3, 4]
        assert await store.events(conv.id) == winners[0]


async def test_commit_waits_for_row_lock(store_target: StoreTarget, store: Store) -> None:
    """While another transaction holds the conversation row, both committers block; afterwards one wins.

    On PostgreSQL the blocker holds ``SELECT ... FOR UPDATE`` (what the store itself takes); on SQLite it holds
    the database write lock (``BEGIN IMMEDIATE``).
    """
    conv = await store.create_conversation("en")
    if store_target.backend == "postgresql":
        import asyncpg

        blocker = await asyncpg.connect(
            store_target.url.replace("postgresql+asyncpg://", "postgresql://"),
            server_settings={"search_path": str(store_target.schema)},
        )
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("SELECT version FROM conversations WHERE id = $1 FOR UPDATE", conv.id)

        async def release() -> None:
            await tx.commit()
            await blocker.close()
    else:
        path = store_target.url.split("///", 1)[1]
        raw = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        raw.execute("BEGIN IMMEDIATE")

        async def release() -> None:
            raw.execute("COMMIT")
            raw.close()

    tasks = [asyncio.create_task(store.commit_turn(turn(conv, f"m{i}"))) for i in range(2)]
    await asyncio.sleep(0.5)
    assert not any(t.done() for t in tasks), "commit_turn did not wait for the lock"
    await release()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert sum(isinstance(r, list) for r in results) == 1, results
    assert sum(isinstance(r, ConcurrentUpdate) for r in results) == 1, results
    assert (await _reload(store, conv.id)).version == 1


# ---------------------------------------------------------------- events


async def test_events_are_append_only_and_ordered(store: Store) -> None:
    conv = await store.create_conversation("en")
    await store.commit_turn(turn(conv, "m1"))
    snapshot = await store.events(conv.id)
    conv = await _reload(store, conv.id)
    await store.commit_turn(turn(conv, "m2"))
    agent = await store.append_events(conv.id, [NewEvent(AGENT_MESSAGE, {"text": "Hi, I'm Ann", "agent": "ann"})])
    assert [e.seq for e in agent] == [9] and agent[0].turn == 2  # belongs to the turn it followed

    everything = await store.events(conv.id)
    assert everything[: len(snapshot)] == snapshot  # earlier events untouched
    assert [e.seq for e in everything] == list(range(1, 10))
    assert [e.timestamp for e in everything] == sorted(e.timestamp for e in everything)
    assert await store.events(conv.id, after_seq=7) == everything[7:]
    assert await store.events(conv.id, after_seq=9) == []
    assert await store.events("no-such-conversation") == []

    # append_events bumps the version (not the turn count): a turn computed before it must be redone.
    after = await _reload(store, conv.id)
    assert after.version == 3 and after.turn_count == 2
    with pytest.raises(ConcurrentUpdate):
        await store.commit_turn(turn(conv, "m3", version=2))
    assert await store.append_events(conv.id, []) == []


async def test_find_events_by_message_id_returns_the_whole_turn(store: Store) -> None:
    conv = await store.create_conversation("en")
    t1 = await store.commit_turn(turn(conv, "client-1"))
    t2 = await store.commit_turn(turn(await _reload(store, conv.id), "client-2"))
    assert await store.find_events_by_message_id(conv.id, "client-1") == t1
    assert await store.find_events_by_message_id(conv.id, "client-2") == t2
    # The bot's own message id finds the same turn; unknown ids and other conversations find nothing.
    assert await store.find_events_by_message_id(conv.id, "bot-client-1") == t1
    assert await store.find_events_by_message_id(conv.id, "client-3") == []
    other = await store.create_conversation("en")
    assert await store.find_events_by_message_id(other.id, "client-1") == []
    replies = [e for e in t2 if e.type == BOT_MESSAGE and e.data["reply_to"] == "client-2"]
    assert len(replies) == 1


async def test_duplicate_message_id_is_rejected(store: Store) -> None:
    conv = await store.create_conversation("en")
    await store.commit_turn(turn(conv, "dup"))
    conv = await _reload(store, conv.id)
    with pytest.raises(DuplicateMessage) as info:
        await store.commit_turn(turn(conv, "dup", text="retry"))  # right version, reused client id
    assert isinstance(info.value, StoreError)
    assert info.value.message_id == "dup" and info.value.conversation_id == conv.id
    assert "retry" not in str(info.value)
    after = await _reload(store, conv.id)
    assert after.version == conv.version and after.turn_count == 1  # whole transaction rolled back
    assert len(await store.events(conv.id)) == 4

    # The same id twice within one batch, and via append_events.
    twice = TurnUpdate(
        conv.id,
        conv.version,
        "idle",
        {},
        "en",
        False,
        (NewEvent(USER_MESSAGE, {}, "x"), NewEvent(USER_MESSAGE, {}, "x")),
    )
    with pytest.raises(DuplicateMessage):
        await store.commit_turn(twice)
    with pytest.raises(DuplicateMessage):
        await store.append_events(conv.id, [NewEvent(BOT_MESSAGE, {"text": "again"}, "bot-dup")])
    # Same message id under another event type, or in another conversation, is fine.
    await store.append_events(conv.id, [NewEvent(AGENT_MESSAGE, {"text": "a", "agent": "ann"}, "dup")])
    other = await store.create_conversation("en")
    await store.commit_turn(turn(other, "dup"))


async def test_unique_constraint_backs_the_message_id_rule(store: Store) -> None:
    """The database itself refuses a second (conversation, type, message_id), whoever writes it."""
    conv = await store.create_conversation("en")
    await store.commit_turn(turn(conv, "m1"))
    now = dt.datetime.now(dt.UTC)
    with pytest.raises(sa.exc.IntegrityError):
        async with store._engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "INSERT INTO events (conversation_id, seq, turn, type, data, message_id, timestamp) "
                    "VALUES (:c, 99, 9, :t, :d, :m, :ts)"
                ),
                {"c": conv.id, "t": USER_MESSAGE, "d": "{}", "m": "m1", "ts": now},
            )


async def test_invalid_events_are_refused_without_leaking_text(store: Store) -> None:
    conv = await store.create_conversation("en")
    secret = "my card is 4111 1111 1111 1111"
    bad_type = TurnUpdate(conv.id, 0, "idle", {}, "en", False, (NewEvent("user_said", {"text": secret}),))
    with pytest.raises(StoreError) as info:
        await store.commit_turn(bad_type)
    assert secret not in str(info.value) and "user_said" in str(info.value)
    bad_data = TurnUpdate(conv.id, 0, "idle", {}, "en", False, (NewEvent(USER_MESSAGE, {"text": secret, "x": {1j}}),))
    with pytest.raises(StoreError) as info:
        await store.commit_turn(bad_data)
    assert secret not in str(info.value)
    assert (await _reload(store, conv.id)).version == 0


async def test_chinese_text_round_trips(store: Store) -> None:
    conv = await store.create_conversation("zh", sender="微信用户")
    slots = {"reason": "尺码不对", "product": "蓝牙耳机", "payment_method": "支付宝", "note": "😀 «ok»"}
    text = "我的订单10234还没到，质量有问题，想退货。"
    events = await store.commit_turn(turn(conv, "消息-1", text=text, slots=slots, intent="return_request"))
    loaded = await _reload(store, conv.id)
    assert loaded.slots == slots and loaded.sender == "微信用户"
    stored = await store.events(conv.id)
    assert stored[0].data["text"] == text and stored == events
    assert await store.find_events_by_message_id(conv.id, "消息-1") == events


async def test_delete_cascades_to_events(store: Store) -> None:
    conv = await store.create_conversation("en")
    await store.commit_turn(turn(conv, "m1"))
    assert await store.delete_conversation(conv.id) is True
    assert await store.get(conv.id) is None
    assert await store.events(conv.id) == []
    assert await store.delete_conversation(conv.id) is False


# ---------------------------------------------------------------- listing


async def test_list_orders_by_updated_at_and_paginates(store: Store) -> None:
    convs = [await store.create_conversation("en" if i % 2 else "zh") for i in range(5)]
    listed = await store.list_conversations()
    assert [s.id for s in listed] == [c.id for c in reversed(convs)]  # newest first
    assert await store.count_conversations() == 5

    # A turn on the oldest conversation moves it to the top.
    await store.commit_turn(turn(convs[0], "m1"))
    listed = await store.list_conversations()
    assert listed[0].id == convs[0].id and listed[0].turn_count == 1 and listed[0].last_intent == "order_status"
    assert [s.updated_at for s in listed] == sorted((s.updated_at for s in listed), reverse=True)

    pages = [await store.list_conversations(limit=2, offset=o) for o in (0, 2, 4, 6)]
    assert [len(p) for p in pages] == [2, 2, 1, 0]
    assert [s.id for p in pages for s in p] == [s.id for s in listed]
    with pytest.raises(StoreError):
        await store.list_conversations(limit=0)
    with pytest.raises(StoreError):
        await store.list_conversations(offset=-1)


# ---------------------------------------------------------------- availability


async def test_ping(store: Store) -> None:
    await store.ping()


async def test_dead_postgres_raises_store_unavailable() -> None:
    with pytest.raises(StoreUnavailable) as info:
        await Store.open("postgresql+asyncpg://kefu:s3cret@127.0.0.1:1/test")
    err = info.value
    assert isinstance(err, StoreError) and err.cause is not None
    assert "s3cret" not in str(err) and "s3cret" not in err.url
    assert "127.0.0.1:1" in str(err)


async def test_unopenable_sqlite_raises_store_unavailable(tmp_path: Any) -> None:
    missing = tmp_path / "missing-dir" / "kefu.db"
    with pytest.raises(StoreUnavailable):
        await Store.open(f"sqlite+aiosqlite:///{missing}", create_dir=False)
    assert not missing.parent.exists()
    store = await Store.open(f"sqlite+aiosqlite:///{missing}")  # create_dir=True (default) makes the folder
    try:
        await store.ping()
    finally:
        await store.close()


async def test_last_action_is_kept_on_the_snapshot_row(store: Store) -> None:
    conversation = await store.create_conversation("en", state="idle")
    await store.commit_turn(
        TurnUpdate(conversation_id=conversation.id, expected_version=conversation.version, state="idle", slots={},
                   language="en", handed_off=False, events=(NewEvent("user_message", {"text": "hi"}, "m-last"),),
                   last_action="utter_greet")
    )
    reloaded = await store.get(conversation.id)
    assert reloaded is not None and reloaded.last_action == "utter_greet"
