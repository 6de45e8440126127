"""What a turn costs the database, statement by statement, on SQLite and PostgreSQL.

A turn's commit is five statements (it was seven on SQLite and six on PostgreSQL): on SQLite ``BEGIN IMMEDIATE``,
the locked row with ``max(seq)``, the events, the row's update and the intents; on PostgreSQL the locked row,
``max(seq)``, the events, the update and the intents. The intents are one ``INSERT ... ON CONFLICT DO NOTHING``
(was a select and an insert), a customer reopening a resolved conversation adds no statement (its event goes with
the turn's), and no checkout pre-pings (a pooled connection the server closed is replaced at checkout anyway).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa

from dialogue import types as ev
from dialogue.store import Store
from dialogue.types import Conversation, NewEvent, TurnUpdate
from tests.dialogue.test_store import _reload
from tests.stores import StoreTarget

COMMIT = {
    "sqlite": ["BEGIN", "SELECT conversations,events", "INSERT events", "UPDATE conversations",
               "INSERT conversation_intents"],
    "postgresql": ["SELECT conversations", "SELECT events", "INSERT events", "UPDATE conversations",
                   "INSERT conversation_intents"],
}

# The row with an EXISTS probe on events; SQLite reads in a deferred transaction, PostgreSQL in autocommit.
READ = {"sqlite": ["BEGIN", "SELECT conversations,events"], "postgresql": ["SELECT conversations,events"]}


@contextmanager
def statements(store: Store) -> Iterator[list[str]]:
    """The statements the store sends meanwhile, as ``VERB tables`` (every table named, sorted)."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        verb = statement.lstrip().split(None, 1)[0].upper()
        named = re.findall(r"\b(?:from|into|update)\s+\"?(\w+)", statement, re.IGNORECASE)
        tables = sorted({t.lower() for t in named})
        seen.append(f"{verb} {','.join(tables)}" if tables else verb)

    engine = store._engine.sync_engine
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def turn(conv: Conversation, n: int, intents: tuple[str, ...] = ("order_status",)) -> TurnUpdate:
    mid = f"m{n}"
    return TurnUpdate(
        conversation_id=conv.id,
        expected_version=conv.version,
        state="idle",
        slots={"order_id": "20001", "n": n},
        language=conv.language,
        handed_off=False,
        events=(
            NewEvent(ev.USER_MESSAGE, {"text": "where is my order", "message_id": mid}, mid),
            *(NewEvent(ev.NLU_PARSE, {"intent": intent, "confidence": 0.9}) for intent in intents),
            NewEvent(ev.ACTION, {"name": "action_order_status"}),
            NewEvent(ev.BOT_MESSAGE, {"text": "ok", "reply_to": mid}, f"bot-{mid}"),
        ),
        last_intent=intents[-1],
        last_action="action_order_status",
    )


async def test_a_commit_is_five_statements_and_intents_are_kept_once(store: Store) -> None:
    conv = await store.create_conversation("en")
    with statements(store) as sent:
        stored = await store.commit_turn(turn(conv, 1))
    assert sent == COMMIT[store.dialect]
    assert [e.seq for e in stored] == [1, 2, 3, 4]

    conv = await _reload(store, conv.id)
    with statements(store) as sent:  # a known intent and a new one: still one statement for both
        stored = await store.commit_turn(turn(conv, 2, ("order_status", "greet")))
    assert sent == COMMIT[store.dialect]
    assert [e.seq for e in stored] == [5, 6, 7, 8, 9] and {e.turn for e in stored} == {2}
    assert await store.conversation_intents(conv.id) == ["greet", "order_status"]

    conv = await _reload(store, conv.id)
    assert (conv.turn_count, conv.version, conv.slots) == (2, 2, {"order_id": "20001", "n": 2})
    assert [e.seq for e in await store.events(conv.id)] == list(range(1, 10))


async def test_reading_a_turn_is_one_statement_and_nothing_pre_pings(store: Store) -> None:
    conv = await store.create_conversation("en")
    await store.commit_turn(turn(conv, 1))
    engine = store._engine.sync_engine
    assert not engine.pool._pre_ping
    with statements(store) as sent:
        found, seen = await store.get_for_message(conv.id, "m1")
        assert found is not None and seen
        assert await store.get_for_message(conv.id, "m2") == (found, False)
    assert sent == READ[store.dialect] * 2


async def test_a_customer_reopening_a_resolved_conversation_adds_no_statement(store: Store) -> None:
    conv = await store.create_conversation("en")
    await store.commit_turn(turn(conv, 1))
    await store.resolve(conv.id, "alice")
    conv = await _reload(store, conv.id)
    with statements(store) as sent:
        stored = await store.commit_turn(turn(conv, 2))
    assert sent == COMMIT[store.dialect]
    assert [e.type for e in stored][-1] == ev.REOPENED and stored[-1].data == {"agent": None, "reason": "customer"}
    assert [e.seq for e in stored] == list(range(stored[0].seq, stored[0].seq + 5))
    summary = await store.summary(conv.id)
    assert summary is not None and summary.resolved_at is None
    assert [e.seq for e in await store.events(conv.id)] == list(range(1, stored[-1].seq + 1))


@pytest.mark.postgres
@pytest.mark.parametrize("store_target", ["postgresql"], indirect=True)
async def test_a_pooled_connection_the_server_closed_is_replaced_without_an_error(
    store_target: StoreTarget, store: Store
) -> None:
    """What the pre-ping used to guarantee: after a restart (here: its backend terminated) the next call works."""
    conv = await store.create_conversation("en")
    async with store.transaction("test", write=False) as conn:
        pid = (await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
    other = await store_target.open()
    try:
        async with other.transaction("test", write=False) as conn:
            assert (await conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})).scalar_one()
    finally:
        await other.close()
    await asyncio.sleep(0.2)  # the pooled connection reads the server's goodbye
    assert await store.get(conv.id) == conv
    async with store.transaction("test", write=False) as conn:
        assert (await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one() != pid
    await store.commit_turn(turn(conv, 1))
