"""Conversation store tests; every test runs on SQLite and PostgreSQL (see conftest.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa

from dialogue.errors import (
    ConcurrentUpdate,
    ConversationExists,
    ConversationNotFound,
    DialogueError,
    DuplicateMessage,
    HandoffConflict,
    InvalidQuery,
    StoreError,
    StoreUnavailable,
    UserExists,
    UserNotFound,
)
from dialogue.store import MIGRATIONS_DIR, SEARCH_CAP, Store, conversations, encode_cursor
from dialogue.types import (
    ACTION,
    AGENT_MESSAGE,
    BOT_MESSAGE,
    CORRECTION,
    HANDBACK,
    HANDOFF,
    NLU_PARSE,
    REVIEW,
    SAFETY_INPUT,
    SAFETY_OUTPUT,
    TAKEOVER,
    USER_MESSAGE,
    Conversation,
    ConversationFilter,
    ConversationSummary,
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


def _head() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


HEAD = _head()  # the newest migration: what Store.open upgrades to


async def _reload(store: Store, conv_id: str) -> Conversation:
    conv = await store.get(conv_id)
    assert conv is not None
    return conv


# ---------------------------------------------------------------- schema


async def test_migration_creates_schema_and_reopen_is_idempotent(store_target: StoreTarget, store: Store) -> None:
    assert await store.schema_version() == HEAD

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
    assert {"conversations", "events", "alembic_version", "conversation_intents", "users", "sessions"} <= info["tables"]
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
        "reviewed",
        "flagged",
        "tags",
        "min_confidence",
        "fallbacks",
        "safety_flags",
        "handoff_status",
        "agent",
        "search_text",
    }
    assert info["event_cols"] >= {"id", "conversation_id", "seq", "turn", "type", "data", "message_id", "timestamp"}
    assert {
        "ix_conversations_updated_at",
        "ix_conversations_created_at",
        "ix_conversations_language",
        "ix_conversations_handoff_status",
        "ix_conversations_last_intent",
    } <= info["conv_indexes"]
    assert ("conversation_id", "seq") in info["uniques"]
    assert ("conversation_id", "type", "message_id") in info["uniques"]
    assert info["fks"] and info["fks"][0][0] == "conversations" and info["fks"][0][1].upper() == "CASCADE"

    conv = await store.create_conversation("en")
    # Reopening runs the migrations again: nothing is recreated, data survives.
    for _ in range(2):
        again = await store_target.open()
        try:
            assert await again.schema_version() == HEAD
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
    summary = (await store.list_conversations()).items[0]
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
    listed = (await store.list_conversations()).items
    assert [s.id for s in listed] == [c.id for c in reversed(convs)]  # newest first
    assert await store.count_conversations() == 5

    # A turn on the oldest conversation moves it to the top.
    await store.commit_turn(turn(convs[0], "m1"))
    page = await store.list_conversations()
    listed = page.items
    assert page.next_cursor is None
    assert listed[0].id == convs[0].id and listed[0].turn_count == 1 and listed[0].last_intent == "order_status"
    assert [s.updated_at for s in listed] == sorted((s.updated_at for s in listed), reverse=True)

    # The old limit/offset paging still works (the chat server's route used it).
    pages = [(await store.list_conversations(limit=2, offset=o)).items for o in (0, 2, 4, 6)]
    assert [len(p) for p in pages] == [2, 2, 1, 0]
    assert [s.id for p in pages for s in p] == [s.id for s in listed]
    for bad in ({"limit": 0}, {"limit": 1001}, {"offset": -1}, {"cursor": "not a cursor"}, {"cursor": "W10"},
                {"offset": 2, "cursor": encode_cursor(dt.datetime.now(dt.UTC), "x")}):
        with pytest.raises(InvalidQuery):
            await store.list_conversations(**bad)
    assert issubclass(InvalidQuery, StoreError)


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


# ---------------------------------------------------------------- console: denormalised columns (migration 0003)


def console_turn(
    conv: Conversation,
    message_id: str,
    *,
    intent: str = "greet",
    confidence: float = 0.9,
    action: str = "utter_greet",
    text: str = "hello",
    reply: str = "Hi! How can I help?",
    redacted: bool = False,
    blocked: bool = False,
    toxic: bool = False,
    handoff: bool = False,
    streak: int | None = None,
) -> TurnUpdate:
    """A turn as the engine writes it, with the facts the console derives chosen by the test."""
    events = [
        NewEvent(SAFETY_INPUT, {"redactions": [{"kind": "email", "start": 0, "end": 7}] if redacted else [],
                                "flags": ["pii"] if redacted else [], "blocked": blocked}),
        NewEvent(USER_MESSAGE, {"text": text, "message_id": message_id}, message_id),
        NewEvent(NLU_PARSE, {"intent": intent, "confidence": confidence, "language": conv.language}),
        NewEvent(ACTION, {"name": action}),
    ]
    if handoff:
        events.append(NewEvent(HANDOFF, {"reason": intent}))
    events.append(NewEvent(SAFETY_OUTPUT, {"score": 0.9 if toxic else 0.01, "toxic": toxic, "replaced": toxic}))
    events.append(NewEvent(BOT_MESSAGE, {"text": reply, "reply_to": message_id}, f"bot-{message_id}"))
    return TurnUpdate(conv.id, conv.version, "idle", {}, conv.language, handoff, tuple(events), last_intent=intent,
                      last_action=action, fallback_streak=streak)


async def _summary(store: Store, conv_id: str) -> ConversationSummary:
    summary = await store.summary(conv_id)
    assert summary is not None
    return summary


async def test_commit_turn_maintains_the_console_columns(store: Store) -> None:
    conv = await store.create_conversation("en")
    fresh = await _summary(store, conv.id)
    assert (fresh.min_confidence, fresh.fallbacks, fresh.safety_flags, fresh.handoff_status) == (None, 0, 0, "")
    assert fresh.tags == () and not fresh.reviewed and not fresh.flagged and fresh.agent is None

    await store.commit_turn(console_turn(conv, "m1", intent="greet", confidence=0.8, text="Hello THERE"))
    conv = await _reload(store, conv.id)
    await store.commit_turn(console_turn(conv, "m2", intent="out_of_scope", confidence=0.3, action="utter_fallback",
                                         text="my mail is [EMAIL]", redacted=True, streak=1))
    conv = await _reload(store, conv.id)
    assert conv.fallback_streak == 1
    await store.commit_turn(console_turn(conv, "m3", intent="complaint", confidence=0.95, action="action_handoff",
                                         text="Ich will einen Menschen", reply="A colleague will take over",
                                         handoff=True, toxic=True))
    s = await _summary(store, conv.id)
    assert s.min_confidence == pytest.approx(0.3)
    assert (s.fallbacks, s.safety_flags, s.turn_count) == (1, 2, 3)
    assert (s.handoff_status, s.handoffs, s.agent, s.handed_off) == ("waiting", 1, None, True)
    assert s.handoff_at is not None and s.last_action == "action_handoff"
    assert await store.conversation_intents(conv.id) == ["complaint", "greet", "out_of_scope"]
    assert (await _reload(store, conv.id)).fallback_streak == 1  # None in the update keeps it

    # The search text is the customer's, bot's and agent's text, case-insensitive, with LIKE wildcards literal.
    for query, hit in [("hello there", True), ("ICH WILL", True), ("colleague", True), ("[email]", True),
                       ("%", False), ("_", False), ("nothing like this", False)]:
        page = await store.list_conversations(ConversationFilter(query=query))
        assert [x.id for x in page.items] == ([conv.id] if hit else []), query

    # A second HANDOFF while already waiting does not count again.
    conv = await _reload(store, conv.id)
    await store.commit_turn(console_turn(conv, "m4", handoff=True))
    assert (await _summary(store, conv.id)).handoffs == 1


async def test_search_text_is_capped(store: Store) -> None:
    conv = await store.create_conversation("en")
    long = "x" * (SEARCH_CAP - 10)
    await store.commit_turn(console_turn(conv, "m1", text=long, reply="first reply"))
    conv = await _reload(store, conv.id)
    await store.commit_turn(console_turn(conv, "m2", text="needle after the cap"))
    assert [x.id for x in (await store.list_conversations(ConversationFilter(query="first"))).items] == [conv.id]
    assert (await store.list_conversations(ConversationFilter(query="needle"))).items == []


async def test_migration_0003_backfills_existing_conversations(store_target: StoreTarget) -> None:
    """A database with data at 0002 is upgraded in place: the console columns are derived from its events."""
    from alembic import command
    from alembic.config import Config

    from dialogue.store import MIGRATIONS_DIR

    store = await store_target.open()
    try:
        def downgrade(sync_conn: sa.Connection) -> None:
            cfg = Config()
            cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
            cfg.attributes["connection"] = sync_conn
            cfg.attributes["version_table_schema"] = store_target.schema
            command.downgrade(cfg, "0002")

        async with store._engine.begin() as conn:
            await conn.run_sync(downgrade)
        assert await store.schema_version() == "0002"
        now = dt.datetime.now(dt.UTC)
        legacy_conv = sa.table(
            "conversations", *(sa.column(n) for n in (
                "id", "sender", "language", "state", "turn_count", "handed_off", "last_intent", "last_action",
                "version", "created_at", "updated_at")), sa.column("slots", sa.JSON()),
        )
        legacy_events = sa.table(
            "events", *(sa.column(n) for n in ("conversation_id", "seq", "turn", "type", "message_id", "timestamp")),
            sa.column("data", sa.JSON()),
        )
        base: dict[str, Any] = {"sender": None, "language": "en", "state": "idle", "slots": {}, "version": 2, "created_at": now,
                "updated_at": now, "last_action": "utter_fallback"}
        rows = [
            {**base, "id": "old-1", "turn_count": 2, "handed_off": True, "last_intent": "complaint"},
            {**base, "id": "old-2", "turn_count": 0, "handed_off": False, "last_intent": None},
        ]
        evs = [
            (1, 1, SAFETY_INPUT, {"redactions": [], "flags": ["pii"], "blocked": False}),
            (2, 1, USER_MESSAGE, {"text": "Where is ORDER 5?"}),
            (3, 1, NLU_PARSE, {"intent": "order_status", "confidence": 0.4}),
            (4, 1, ACTION, {"name": "utter_fallback"}),
            (5, 1, BOT_MESSAGE, {"text": "Sorry?"}),
            (6, 2, NLU_PARSE, {"intent": "complaint", "confidence": 0.9}),
            (7, 2, ACTION, {"name": "action_handoff"}),
            (8, 2, HANDOFF, {"reason": "complaint"}),
        ]
        async with store._engine.begin() as conn:
            await conn.execute(legacy_conv.insert(), rows)
            await conn.execute(legacy_events.insert(), [
                {"conversation_id": "old-1", "seq": q, "turn": t, "type": ty, "data": d, "message_id": None,
                 "timestamp": now} for q, t, ty, d in evs
            ])
    finally:
        await store.close()

    store = await store_target.open()  # upgrades to head again, backfilling
    try:
        assert await store.schema_version() == HEAD
        s = await _summary(store, "old-1")
        assert s.min_confidence == pytest.approx(0.4)
        assert (s.fallbacks, s.safety_flags, s.handoff_status, s.handoffs) == (1, 1, "waiting", 1)
        assert s.handoff_at is not None
        assert await store.conversation_intents("old-1") == ["complaint", "order_status"]
        found = await store.list_conversations(ConversationFilter(query="order 5"))
        assert [x.id for x in found.items] == ["old-1"]
        empty = await _summary(store, "old-2")
        assert (empty.min_confidence, empty.fallbacks, empty.handoff_status, empty.tags) == (None, 0, "", ())
    finally:
        await store.close()


# ---------------------------------------------------------------- console: filtered keyset listing

T0 = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Spec:
    """One conversation of the listing fixture and the facts it should be found by."""

    id: str
    language: str
    intents: tuple[str, ...] = ()
    confidence: float = 0.9
    fallback: bool = False
    safety: bool = False
    handoff: str = ""  # "" | "waiting" | "agent"
    tags: tuple[str, ...] = ()
    reviewed: bool = False
    flagged: bool = False
    text: str = "hello"
    created: int = 0  # hours after T0
    updated: int = 0  # hours after T0 (two rows share one, to exercise the id tie-break)


SPECS = [
    Spec("c00", "en", ("greet",), created=0, updated=30),
    Spec("c01", "zh", ("order_status", "inform"), 0.42, created=1, updated=29, text="我的订单在哪里"),
    Spec("c02", "en", ("out_of_scope",), 0.2, fallback=True, created=2, updated=28, tags=("bug",)),
    Spec("c03", "en", ("complaint",), handoff="waiting", created=3, updated=27, text="I want a MANAGER"),
    Spec("c04", "zh", ("complaint",), handoff="agent", created=4, updated=27, tags=("vip", "bug")),
    Spec("c05", "en", ("return_request",), 0.55, safety=True, created=5, updated=26, reviewed=True),
    Spec("c06", "en", ("greet", "order_status"), 0.49, fallback=True, created=6, updated=25, flagged=True),
    Spec("c07", "zh", (), created=7, updated=24),  # opened, never written
    Spec("c08", "en", ("payment_problem",), created=8, updated=23, safety=True, tags=("vip",), text="100% sure"),
    Spec("c09", "en", ("greet",), created=9, updated=22, reviewed=True, flagged=True),
    Spec("c10", "zh", ("order_status",), 0.3, created=10, updated=21, handoff="waiting"),
    Spec("c11", "en", ("shipping_question",), created=11, updated=20, text="ship_it to Paris"),
]


def _hours(h: int) -> dt.datetime:
    return T0 + dt.timedelta(hours=h)


def _matches(spec: Spec, f: ConversationFilter) -> bool:
    """The filter semantics, written independently of the store's SQL."""
    updated, created = _hours(spec.updated), _hours(spec.created)
    min_conf = spec.confidence if spec.intents else None
    checks = [
        f.since is None or updated >= f.since,
        f.until is None or updated < f.until,
        f.created_since is None or created >= f.created_since,
        f.created_until is None or created < f.created_until,
        f.language is None or spec.language == f.language,
        f.intent is None or f.intent in spec.intents,
        f.low_confidence is None or ((min_conf is not None and min_conf < 0.5) == f.low_confidence),
        f.fallback is None or spec.fallback == f.fallback,
        f.safety is None or spec.safety == f.safety,
        f.handoff is None
        or {"any": spec.handoff != "", "none": spec.handoff == ""}.get(f.handoff, spec.handoff == f.handoff),
        f.tag is None or f.tag in spec.tags,
        f.reviewed is None or spec.reviewed == f.reviewed,
        f.flagged is None or spec.flagged == f.flagged,
        f.query is None or f.query.lower() in f"{spec.text}\nok".lower(),
    ]
    return all(checks)


async def _build_listing_fixture(store: Store) -> None:
    for spec in SPECS:
        conv = await store.create_conversation(spec.language, conversation_id=spec.id)
        for i, intent in enumerate(spec.intents):
            conv = await _reload(store, conv.id)
            await store.commit_turn(console_turn(
                conv, f"{spec.id}-m{i}", intent=intent, confidence=spec.confidence if i == 0 else 0.95,
                action="utter_fallback" if spec.fallback and i == 0 else "utter_greet", text=spec.text, reply="ok",
                redacted=spec.safety and i == 0, handoff=spec.handoff != "" and i == 0,
            ))
        if spec.handoff == "agent":
            await store.take_over(spec.id, "ann")
        if spec.tags or spec.reviewed or spec.flagged:
            await store.review(spec.id, by="rev", reviewed=spec.reviewed or None, flagged=spec.flagged or None,
                               add_tags=spec.tags)
    # Pin the times (the tests must not depend on how fast the rows were written).
    async with store._engine.begin() as conn:
        for spec in SPECS:
            await conn.execute(
                conversations.update().where(conversations.c.id == spec.id)
                .values(created_at=_hours(spec.created), updated_at=_hours(spec.updated))
            )


FILTERS = [
    ConversationFilter(),
    ConversationFilter(language="zh"),
    ConversationFilter(intent="order_status"),
    ConversationFilter(intent="complaint", language="en"),
    ConversationFilter(low_confidence=True),
    ConversationFilter(low_confidence=False),
    ConversationFilter(fallback=True),
    ConversationFilter(fallback=False, language="en"),
    ConversationFilter(safety=True),
    ConversationFilter(handoff="waiting"),
    ConversationFilter(handoff="agent"),
    ConversationFilter(handoff="any"),
    ConversationFilter(handoff="none", language="zh"),
    ConversationFilter(tag="vip"),
    ConversationFilter(tag="bug", handoff="none"),
    ConversationFilter(reviewed=True),
    ConversationFilter(reviewed=False, flagged=False),
    ConversationFilter(flagged=True),
    ConversationFilter(query="manager"),
    ConversationFilter(query="订单"),
    ConversationFilter(query="100%"),
    ConversationFilter(query="p_it"),
    ConversationFilter(since=_hours(25), until=_hours(29)),
    ConversationFilter(created_since=_hours(3), created_until=_hours(9), low_confidence=False),
    ConversationFilter(since=_hours(27), until=_hours(28)),  # exactly the two tied rows
    ConversationFilter(language="fr"),
]


@pytest.mark.parametrize("flt", FILTERS, ids=lambda f: repr(f).removeprefix("ConversationFilter"))
async def test_listing_with_filters_and_cursors_returns_exactly_the_right_rows(
    store: Store, flt: ConversationFilter
) -> None:
    await _build_listing_fixture(store)
    ordered = sorted(SPECS, key=lambda s: (_hours(s.updated), s.id), reverse=True)
    expected = [s.id for s in ordered if _matches(s, flt)]

    one_page = await store.list_conversations(flt, limit=100)
    assert [x.id for x in one_page.items] == expected and one_page.next_cursor is None
    assert await store.count_conversations(flt) == len(expected)

    for limit in (1, 2, 5):
        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            page = await store.list_conversations(flt, limit=limit, cursor=cursor)
            assert len(page.items) <= limit
            seen += [x.id for x in page.items]
            pages += 1
            if page.next_cursor is None:
                break
            assert len(page.items) == limit
            cursor = page.next_cursor
        assert seen == expected, limit
        assert pages == max(1, -(-len(expected) // limit))  # no empty trailing page


async def test_listing_summaries_carry_the_console_fields(store: Store) -> None:
    await _build_listing_fixture(store)
    by_id = {s.id: s for s in (await store.list_conversations(limit=100)).items}
    assert by_id["c04"].handoff_status == "agent" and by_id["c04"].agent == "ann"
    assert set(by_id["c04"].tags) == {"vip", "bug"} and by_id["c09"].reviewed and by_id["c09"].flagged
    assert by_id["c07"].min_confidence is None and by_id["c02"].fallbacks == 1
    # A turn moves a conversation to the top while someone pages: the pages after the cursor neither repeat
    # rows nor shift (with offsets, every row would slide down by one and one would be shown twice).
    first = await store.list_conversations(limit=3)
    assert [x.id for x in first.items] == ["c00", "c01", "c02"]
    conv = await _reload(store, "c11")
    await store.commit_turn(console_turn(conv, "late"))
    rest = await store.list_conversations(limit=100, cursor=first.next_cursor)
    ids = [x.id for x in first.items + rest.items]
    assert len(ids) == len(set(ids)) and set(ids) == {s.id for s in SPECS} - {"c11"}
    assert (await store.list_conversations(limit=1)).items[0].id == "c11"


async def test_invalid_filters_are_refused(store: Store) -> None:
    for bad in (ConversationFilter(handoff="maybe"), ConversationFilter(tag=""), ConversationFilter(tag="x" * 33)):
        with pytest.raises(InvalidQuery):
            await store.list_conversations(bad)


# ---------------------------------------------------------------- console: review, hand-off, queue, dashboard


async def test_review_sets_flags_and_tags_and_records_who(store: Store) -> None:
    conv = await store.create_conversation("en")
    await store.commit_turn(console_turn(conv, "m1"))
    before = await _reload(store, conv.id)
    s = await store.review(conv.id, by="rita", flagged=True, add_tags=[" refund ", "vip", "vip"])
    assert s.flagged and not s.reviewed and s.tags == ("refund", "vip")
    s = await store.review(conv.id, by="rita", reviewed=True, remove_tags=["refund"], add_tags=["late"])
    assert s.reviewed and s.tags == ("vip", "late")
    same = await store.review(conv.id, by="rita", reviewed=True, add_tags=["vip"])  # nothing changes: no event
    assert same == s
    reviews = [e for e in await store.events(conv.id) if e.type == REVIEW]
    assert [e.data for e in reviews] == [
        {"by": "rita", "flagged": True, "tags_added": ["refund", "vip"]},
        {"by": "rita", "reviewed": True, "tags_added": ["late"], "tags_removed": ["refund"]},
    ]
    # Reviewing neither reorders the list nor makes a customer's turn retry.
    after = await _reload(store, conv.id)
    assert (after.version, after.updated_at) == (before.version, before.updated_at)
    with pytest.raises(InvalidQuery):
        await store.review(conv.id, by="rita", add_tags=[f"t{i}" for i in range(30)])
    with pytest.raises(InvalidQuery):
        await store.review(conv.id, by="rita", add_tags=["bad\ntag"])
    with pytest.raises(ConversationNotFound):
        await store.review("ghost", by="rita", flagged=True)

    event = await store.add_correction(conv.id, by="rita", seq=2, text="hello", intent="greet",
                                       entities=[{"entity": "x", "value": "y", "start": 0, "end": 1}])
    assert event.type == CORRECTION and event.data["seq"] == 2 and event.data["entities"][0]["end"] == 1
    assert (await _summary(store, conv.id)).reviewed


async def test_take_over_agent_message_and_hand_back(store: Store) -> None:
    conv = await store.create_conversation("en", state="idle")
    await store.commit_turn(console_turn(conv, "m1", intent="complaint", handoff=True))
    assert (await store.handoff_statuses([conv.id, "ghost"])) == {conv.id: "waiting"}

    with pytest.raises(HandoffConflict) as info:  # nobody holds it yet
        await store.append_agent_message(conv.id, "ann", "Hi", "a1")
    assert info.value.holder is None and info.value.status == "waiting"

    version = (await _reload(store, conv.id)).version
    s = await store.take_over(conv.id, "ann")
    assert (s.handoff_status, s.agent, s.handed_off, s.handoffs) == ("agent", "ann", True, 1)
    assert (await _reload(store, conv.id)).version == version + 1
    assert await store.take_over(conv.id, "ann") == s  # idempotent for the holder
    with pytest.raises(HandoffConflict) as info:
        await store.take_over(conv.id, "bob")
    assert info.value.holder == "ann" and isinstance(info.value, StoreError)
    with pytest.raises(HandoffConflict):
        await store.append_agent_message(conv.id, "bob", "Hi", "b1")
    with pytest.raises(HandoffConflict):
        await store.hand_back(conv.id, "bob", "idle")

    msg = await store.append_agent_message(conv.id, "ann", "Hi, Ann here. Which ORDER?", "a1")
    assert msg.type == AGENT_MESSAGE and msg.message_id == "a1"
    assert msg.data == {"text": "Hi, Ann here. Which ORDER?", "agent": "ann", "message_id": "a1"}
    with pytest.raises(DuplicateMessage):
        await store.append_agent_message(conv.id, "ann", "again", "a1")
    found = await store.list_conversations(ConversationFilter(query="ann here"))
    assert [x.id for x in found.items] == [conv.id]

    s = await store.hand_back(conv.id, "ann", "idle")
    assert (s.handoff_status, s.agent, s.handed_off, s.state, s.handoff_at) == ("", None, False, "idle", None)
    assert (await _reload(store, conv.id)).fallback_streak == 0
    assert await store.handoff_statuses([conv.id]) == {}
    types = [e.type for e in await store.events(conv.id)]
    assert types[-3:] == [TAKEOVER, AGENT_MESSAGE, HANDBACK]
    with pytest.raises(HandoffConflict):  # nothing to hand back
        await store.hand_back(conv.id, "ann", "idle")

    # Taking over a conversation the bot still handles counts as a hand-off; a waiting one can be resolved
    # from the queue without taking it over.
    other = await store.create_conversation("en")
    assert (await store.take_over(other.id, "bob")).handoffs == 1
    with pytest.raises(ConversationNotFound):
        await store.take_over("ghost", "ann")
    third = await store.create_conversation("en")
    await store.commit_turn(console_turn(third, "x1", handoff=True))
    assert (await store.hand_back(third.id, "bob", "idle")).handoff_status == ""


async def test_concurrent_take_over_exactly_one_agent_wins(store: Store) -> None:
    conv = await store.create_conversation("en")
    results = await asyncio.gather(*(store.take_over(conv.id, f"agent{i}") for i in range(4)),
                                   return_exceptions=True)
    winners = [r for r in results if isinstance(r, ConversationSummary)]
    assert len(winners) == 1 and sum(isinstance(r, HandoffConflict) for r in results) == 3, results
    assert sum(e.type == TAKEOVER for e in await store.events(conv.id)) == 1


async def test_handoff_queue_waiting_oldest_first_then_agents(store: Store) -> None:
    ids = []
    for i in range(4):
        conv = await store.create_conversation("en")
        await store.commit_turn(console_turn(conv, f"m{i}", handoff=True))
        ids.append(conv.id)
    quiet = await store.create_conversation("en")
    await store.commit_turn(console_turn(quiet, "q"))
    await store.take_over(ids[0], "ann")
    # The customer keeps writing in the oldest waiting conversation: it keeps its place in the queue.
    await store.commit_turn(console_turn(await _reload(store, ids[1]), "again"))
    queue = await store.handoff_queue()
    assert [s.id for s in queue] == [ids[1], ids[2], ids[3], ids[0]]
    assert [s.handoff_status for s in queue] == ["waiting", "waiting", "waiting", "agent"]
    assert [s.id for s in await store.handoff_queue(limit=2)] == ids[1:3]


async def test_dashboard(store: Store) -> None:
    now = dt.datetime(2026, 11, 30, 18, 0, tzinfo=dt.UTC)
    plan = [  # (days ago, intents, fallback last, handoff, safety)
        (0, ["greet"], False, False, False),
        (0, ["order_status", "inform"], False, False, True),
        (1, ["complaint"], False, True, False),
        (1, ["out_of_scope"], True, False, False),
        (3, ["greet", "order_status"], False, False, False),
        (10, ["greet"], False, False, False),  # outside a 7-day window
    ]
    for n, (ago, intents, fallback, handoff, safety) in enumerate(plan):
        conv = await store.create_conversation("en")
        for i, intent in enumerate(intents):
            conv = await _reload(store, conv.id)
            last = i == len(intents) - 1
            await store.commit_turn(console_turn(
                conv, f"d{n}-{i}", intent=intent, action="utter_fallback" if fallback and last else "utter_greet",
                handoff=handoff and last, redacted=safety,
            ))
        async with store._engine.begin() as conn:
            await conn.execute(conversations.update().where(conversations.c.id == conv.id)
                               .values(created_at=now - dt.timedelta(days=ago, hours=1)))
    await store.create_conversation("en")  # no turns: not counted

    stats = await store.dashboard(days=7, now=now)
    assert stats.conversations == 5 and stats.turns == 7
    assert len(stats.per_day) == 7 and stats.per_day[0][0] == dt.date(2026, 11, 24)
    assert dict(stats.per_day) == {
        **{dt.date(2026, 11, 24) + dt.timedelta(days=i): 0 for i in range(7)},
        dt.date(2026, 11, 30): 2, dt.date(2026, 11, 29): 2, dt.date(2026, 11, 27): 1,
    }
    assert stats.resolution_rate == pytest.approx(3 / 5)
    assert stats.handoff_rate == pytest.approx(1 / 5)
    assert stats.fallback_rate == pytest.approx(1 / 7)
    assert (stats.safety_blocks, stats.redactions) == (0, 2)  # redacted turns: a redaction is not a block
    assert stats.top_intents[:2] == [("greet", 2), ("order_status", 2)]
    assert dict(stats.top_intents)["complaint"] == 1

    empty = await store.dashboard(days=1, now=now - dt.timedelta(days=100))
    assert (empty.conversations, empty.resolution_rate, empty.top_intents) == (0, 0.0, [])
    with pytest.raises(InvalidQuery):
        await store.dashboard(days=0)


# ---------------------------------------------------------------- console: staff accounts and sessions


async def test_users_and_sessions(store: Store) -> None:
    ann = await store.add_user("ann", "$argon2id$v=19$fake", "agent")
    assert ann.id > 0 and ann.role == "agent" and not ann.disabled
    assert "argon2" not in repr(ann)
    with pytest.raises(UserExists):
        await store.add_user("ann", "$argon2id$other", "viewer")
    with pytest.raises(StoreError):
        await store.add_user("eve", "$argon2id$x", "root")
    await store.add_user("bob", "$argon2id$b", "viewer")
    assert [u.username for u in await store.list_users()] == ["ann", "bob"]
    assert await store.get_user("ann") == ann and await store.get_user("nobody") is None
    assert await store.get_user_by_id(ann.id) == ann

    now = dt.datetime.now(dt.UTC)
    token = "a" * 64
    session = await store.create_session(token, ann.id, "csrf-123", now + dt.timedelta(hours=8))
    assert "csrf-123" not in repr(session) and token not in repr(session)
    got = await store.get_session(token, now)
    assert got is not None and got[0] == session and got[1].username == "ann"
    assert await store.get_session(token, now + dt.timedelta(hours=9)) is None  # expired on read
    assert await store.get_session("b" * 64, now) is None
    assert await store.touch_session(token, now + dt.timedelta(hours=10))
    assert await store.get_session(token, now + dt.timedelta(hours=9)) is not None

    assert (await store.set_role("ann", "admin")).role == "admin"
    assert await store.get_session(token, now) is not None  # a role change keeps the session
    changed = await store.set_password("ann", "$argon2id$new")
    assert changed.password_hash == "$argon2id$new"
    assert await store.get_session(token, now) is None  # a password change logs out everywhere

    await store.create_session("c" * 64, ann.id, "x", now + dt.timedelta(hours=1))
    assert (await store.disable_user("ann")).disabled
    assert await store.get_session("c" * 64, now) is None
    assert not (await store.disable_user("ann", False)).disabled
    with pytest.raises(UserNotFound):
        await store.set_role("nobody", "viewer")

    await store.create_session("d" * 64, ann.id, "x", now - dt.timedelta(seconds=1))
    await store.create_session("e" * 64, ann.id, "x", now + dt.timedelta(hours=1))
    assert await store.purge_sessions(now) == 1
    assert await store.delete_session("e" * 64) and not await store.delete_session("e" * 64)
    with pytest.raises(StoreError):
        await store.create_session("short", ann.id, "x", now)


# ---------------------------------------------------------------- console: listing at scale (PostgreSQL)


@pytest.mark.postgres
@pytest.mark.parametrize("store_target", ["postgresql"], indirect=True)
async def test_listing_100k_conversations_stays_fast(store_target: StoreTarget, store: Store) -> None:
    """100,000 conversations bulk-loaded with COPY: a filtered first page and a page 95,000 rows deep each answer
    in well under 0.2 s (keyset pagination on the (updated_at, id) index; no OFFSET scan)."""
    import time

    import asyncpg

    n = 100_000
    base = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
    intents = ["greet", "order_status", "return_request", "complaint", "shipping_question"]
    rows = []
    intent_rows = []
    for i in range(n):
        updated = base - dt.timedelta(seconds=i)
        rows.append((
            f"p{i:06d}", None, "zh" if i % 3 == 0 else "en", "idle", "{}", 1 + i % 5, i % 500 == 0,
            intents[i % 5], "utter_greet", 1, updated - dt.timedelta(minutes=5), updated,
            i % 17 == 0, i % 23 == 0, '["vip"]' if i % 50 == 0 else "[]", (i % 10) / 10, i % 7 == 0, i % 11 == 0,
            "waiting" if i % 500 == 0 else "", None, updated if i % 500 == 0 else None, int(i % 500 == 0), 0,
            f"where is my order {i}, it was due tuesday\nsorry, let me check" + (" needle" if i % 10_000 == 0 else ""),
        ))
        intent_rows.append((f"p{i:06d}", intents[i % 5]))
        if i % 4 == 0:
            intent_rows.append((f"p{i:06d}", "inform"))
    columns = [
        "id", "sender", "language", "state", "slots", "turn_count", "handed_off", "last_intent", "last_action",
        "version", "created_at", "updated_at", "reviewed", "flagged", "tags", "min_confidence", "fallbacks",
        "safety_flags", "handoff_status", "agent", "handoff_at", "handoffs", "fallback_streak", "search_text",
    ]
    conn = await asyncpg.connect(store_target.url.replace("postgresql+asyncpg://", "postgresql://"),
                                 server_settings={"search_path": str(store_target.schema)})
    try:
        await conn.copy_records_to_table("conversations", records=rows, columns=columns)
        await conn.copy_records_to_table("conversation_intents", records=intent_rows,
                                         columns=["conversation_id", "intent"])
        await conn.execute("ANALYZE conversations; ANALYZE conversation_intents")
    finally:
        await conn.close()

    async def timed(flt: ConversationFilter | None, cursor: str | None = None) -> tuple[float, list[str]]:
        await store.list_conversations(flt, limit=50, cursor=cursor)  # warm: pool connection, plan cache
        t = time.perf_counter()
        page = await store.list_conversations(flt, limit=50, cursor=cursor)
        return time.perf_counter() - t, [x.id for x in page.items]

    deep = encode_cursor(base - dt.timedelta(seconds=95_000), "p095000")
    cases = {
        "first page, filtered": (ConversationFilter(language="zh", intent="order_status", low_confidence=True), None),
        "deep cursor page": (None, deep),
        "deep cursor page, filtered": (ConversationFilter(language="en", fallback=False), deep),
        "handoff queue filter": (ConversationFilter(handoff="waiting"), None),
        "tag": (ConversationFilter(tag="vip", reviewed=False), None),
        "rare text search": (ConversationFilter(query="NEEDLE"), None),
    }
    timings = {}
    for name, (flt, cursor) in cases.items():
        seconds, ids = await timed(flt, cursor)
        timings[name] = seconds
        expected = [
            f"p{i:06d}" for i in range(n)
            if (cursor is None or i > 95_000) and (flt is None or _perf_match(i, flt))
        ][:50]
        assert ids == expected, name
    assert all(seconds < 0.2 for seconds in timings.values()), timings


def _perf_match(i: int, f: ConversationFilter) -> bool:
    intents = {["greet", "order_status", "return_request", "complaint", "shipping_question"][i % 5]}
    if i % 4 == 0:
        intents.add("inform")
    return all([
        f.language is None or f.language == ("zh" if i % 3 == 0 else "en"),
        f.intent is None or f.intent in intents,
        f.low_confidence is None or ((i % 10) / 10 < 0.5) == f.low_confidence,
        f.fallback is None or (i % 7 == 0) == f.fallback,
        f.handoff is None or (f.handoff == "waiting") == (i % 500 == 0),
        f.tag is None or (i % 50 == 0),
        f.reviewed is None or (i % 17 == 0) == f.reviewed,
        f.query is None or i % 10_000 == 0,
    ])


# ---------------------------------------------------------------- the turn's read, the replay index (migration 0004)


async def test_get_for_message_reads_the_snapshot_and_whether_the_message_was_processed(store: Store) -> None:
    conv = await store.create_conversation("en", sender="cust-1")
    assert await store.get_for_message(conv.id, "m1") == (conv, False)
    await store.commit_turn(turn(conv, "m1"))
    after = await store.get(conv.id)
    assert await store.get_for_message(conv.id, "m1") == (after, True)
    assert await store.get_for_message(conv.id, "bot-m1") == (after, True)  # the bot reply's id is stored too
    assert await store.get_for_message(conv.id, "m2") == (after, False)
    other = await store.create_conversation("en")
    assert await store.get_for_message(other.id, "m1") == (other, False)  # message ids are per conversation
    assert await store.get_for_message("no-such-conversation", "m1") == (None, False)


async def _migrate_to(store_target: StoreTarget, store: Store, revision: str, *, down: bool) -> None:
    from alembic import command
    from alembic.config import Config

    from dialogue.store import MIGRATIONS_DIR

    def run(sync_conn: sa.Connection) -> None:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.attributes["connection"] = sync_conn
        cfg.attributes["version_table_schema"] = store_target.schema
        (command.downgrade if down else command.upgrade)(cfg, revision)

    async with store.transaction("test") as conn:
        await conn.run_sync(run)


async def _event_indexes(store: Store) -> dict[str, list[str]]:
    async with store.transaction("test", write=False) as conn:
        found = await conn.run_sync(lambda sync_conn: sa.inspect(sync_conn).get_indexes("events"))
    return {i["name"]: list(i["column_names"]) for i in found}


async def test_migration_0004_adds_the_replay_index_and_downgrades_cleanly(store_target: StoreTarget) -> None:
    store = await store_target.open()
    try:
        conv = await store.create_conversation("en")
        await store.commit_turn(turn(conv, "m1"))
        assert (await _event_indexes(store))["ix_events_conversation_message"] == ["conversation_id", "message_id"]

        await _migrate_to(store_target, store, "0003", down=True)
        assert await store.schema_version() == "0003"
        assert "ix_events_conversation_message" not in await _event_indexes(store)
        assert "ix_events_conversation_turn" in await _event_indexes(store)  # 0001's index is left alone
        async with store.transaction("test", write=False) as conn:  # the data is untouched (a raw read: the
            stored = await conn.execute(sa.text(  # store's queries expect the newest schema's columns)
                "SELECT count(*) FROM events WHERE conversation_id = :c AND message_id = :m"), {"c": conv.id, "m": "m1"})
            assert stored.scalar_one() >= 1

        await _migrate_to(store_target, store, "head", down=False)
        assert await store.schema_version() == HEAD
        assert "ix_events_conversation_message" in await _event_indexes(store)
    finally:
        await store.close()


@pytest.mark.postgres
@pytest.mark.parametrize("store_target", ["postgresql"], indirect=True)
async def test_the_replay_check_uses_the_index(store_target: StoreTarget, store: Store) -> None:
    """PostgreSQL finds a message id with the (conversation_id, message_id) index, not by reading the events of
    the conversation (the unique (conversation_id, type, message_id) index can only narrow to the conversation)."""
    conv = await store.create_conversation("en")
    await store.commit_turn(turn(conv, "m1"))
    async with store.transaction("test", write=False) as conn:
        await conn.execute(sa.text("SET enable_seqscan = off"))  # a tiny table: make the planner choose an index
        await conn.execute(sa.text("ANALYZE events"))
        plan = "\n".join(
            row[0] for row in await conn.execute(
                sa.text("EXPLAIN SELECT 1 FROM events WHERE conversation_id = :c AND message_id = :m"),
                {"c": conv.id, "m": "m1"},
            )
        )
    assert "ix_events_conversation_message" in plan, plan


# ---------------------------------------------------------------- the public transaction


async def test_transaction_commits_rolls_back_and_maps_errors(store: Store) -> None:
    conv = await store.create_conversation("en")
    async with store.transaction("test", conversation_id=conv.id) as conn:
        await conn.execute(conversations.update().where(conversations.c.id == conv.id).values(language="zh"))
    assert (await store.get(conv.id)).language == "zh"  # type: ignore[union-attr]

    with pytest.raises(RuntimeError):
        async with store.transaction("test") as conn:
            await conn.execute(conversations.update().where(conversations.c.id == conv.id).values(language="fr"))
            raise RuntimeError("abandon")
    assert (await store.get(conv.id)).language == "zh"  # type: ignore[union-attr]

    async with store.transaction("test", write=False) as conn:
        count = (await conn.execute(sa.select(sa.func.count()).select_from(conversations))).scalar_one()
    assert count == 1

    with pytest.raises(StoreError) as info:
        async with store.transaction("custom_query", conversation_id=conv.id) as conn:
            await conn.execute(sa.text("SELECT * FROM no_such_table"))
    assert not isinstance(info.value, StoreUnavailable)
    assert (info.value.operation, info.value.conversation_id) == ("custom_query", conv.id)


# ---------------------------------------------------------------- a restarting PostgreSQL is "unavailable"


class _DriverError(Exception):
    """What asyncpg raises while PostgreSQL shuts down or starts up: an error with a SQLSTATE."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__("the database system is shutting down")
        self.sqlstate = sqlstate


class Error(Exception):  # named like SQLAlchemy's adapted asyncpg error class, which is the point
    """SQLAlchemy's asyncpg adapter re-raises driver errors as its own ``Error`` with the original as __cause__."""


def _adapted(sqlstate: str) -> sa.exc.DBAPIError:
    try:
        try:
            raise _DriverError(sqlstate)
        except _DriverError as driver:
            raise Error(f"<class 'asyncpg.exceptions.X'>: {driver}") from driver
    except Error as adapted:
        return sa.exc.DBAPIError("SELECT ...", None, adapted)


@pytest.mark.parametrize("sqlstate", ["57P01", "57P02", "57P03", "08006", "08001"])
def test_shutdown_and_startup_sqlstates_are_store_unavailable(sqlstate: str) -> None:
    store = Store.__new__(Store)  # only the error mapping is under test: no database
    store._url = sa.engine.make_url("postgresql+asyncpg://kefu:secret@db/kefu")
    translated = store._translate(_adapted(sqlstate), "get", "c-1")
    assert isinstance(translated, StoreUnavailable) and translated.operation == "get"
    assert "secret" not in str(translated)


def test_other_sqlstates_stay_store_errors() -> None:
    store = Store.__new__(Store)
    store._url = sa.engine.make_url("postgresql+asyncpg://kefu@db/kefu")
    translated = store._translate(_adapted("23505"), "get", "c-1")  # a unique violation is not an outage
    assert isinstance(translated, StoreError) and not isinstance(translated, StoreUnavailable)


@pytest.mark.postgres
@pytest.mark.parametrize("store_target", ["postgresql"], indirect=True)
async def test_a_terminated_backend_is_store_unavailable(store_target: StoreTarget, store: Store) -> None:
    """SQLSTATE 57P01 (admin shutdown, what a fast restart sends to every session) from a real server."""

    async def terminate_soon(pid: int) -> None:
        await asyncio.sleep(0.3)
        other = await store_target.open()
        try:
            async with other.transaction("test", write=False) as conn:
                await conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        finally:
            await other.close()

    killer: asyncio.Task[None] | None = None
    with pytest.raises(StoreUnavailable):
        async with store.transaction("slow_query") as conn:
            pid = (await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
            killer = asyncio.create_task(terminate_soon(pid))
            await conn.execute(sa.text("SELECT pg_sleep(5)"))
    assert killer is not None
    await killer
    await store.ping()  # the pool replaced the dead connection


# ---------------------------------------------------------------- the chat resume secret (migration 0005)
async def test_migration_0005_adds_the_secret_hash_and_downgrades_cleanly(store_target: StoreTarget) -> None:
    async def columns(store: Store) -> set[str]:
        async with store.transaction("test", write=False) as conn:
            found = await conn.run_sync(lambda sync_conn: sa.inspect(sync_conn).get_columns("conversations"))
        return {c["name"] for c in found}

    store = await store_target.open()
    try:
        made = await store.create_conversation("en", conversation_id="c-secret", secret_hash="ab" * 32)
        assert made.secret_hash == "ab" * 32 and "ab" * 32 not in repr(made)
        assert await store.get("c-secret") == made
        await store.commit_turn(turn(made, "m1"))
        events = await store.events("c-secret")
        await _migrate_to(store_target, store, "0004", down=True)
        assert await store.schema_version() == "0004" and "secret_hash" not in await columns(store)
        await _migrate_to(store_target, store, "head", down=False)
        assert await store.schema_version() == HEAD and "secret_hash" in await columns(store)
        again = await store.get("c-secret")  # the row survived; its hash did not: no longer resumable by chat
        assert again is not None and again.secret_hash is None and again.turn_count == 1
        assert await store.events("c-secret") == events  # a table rebuild would have cascaded to the events
    finally:
        await store.close()


async def test_dashboard_counts_blocks_and_redactions_apart(store: Store) -> None:
    conv = await store.create_conversation("en")
    for message_id, kind in [("r1", "redacted"), ("b1", "blocked"), ("t1", "toxic"), ("ok", None)]:
        conv = await _reload(store, conv.id)
        await store.commit_turn(console_turn(conv, message_id, **({kind: True} if kind else {})))
    stats = await store.dashboard(days=1)
    assert (stats.safety_blocks, stats.redactions) == (2, 1)
    assert (await _summary(store, conv.id)).safety_flags == 3  # the console's "safety" filter still sees all three
