"""The support team's workspace in the store: resolve / reopen, the customer's rating, first agent reply, and the
dashboard's CSAT, first-response and resolution figures (SQLite and PostgreSQL: the ``store`` fixture)."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from dialogue.errors import AlreadyRated, HandoffConflict, InvalidQuery, NotResolved
from dialogue.store import Store, conversations, events
from dialogue.types import (
    ACTION,
    BOT_MESSAGE,
    HANDBACK,
    HANDOFF,
    NLU_PARSE,
    RATING,
    REOPENED,
    RESOLVED,
    USER_MESSAGE,
    Conversation,
    NewEvent,
    TurnUpdate,
)


def chat_turn(conv: Conversation, message_id: str, *, handoff: bool = False) -> TurnUpdate:
    """A customer turn as the engine writes it (optionally queueing the conversation for a human)."""
    new = [
        NewEvent(USER_MESSAGE, {"text": "hello", "message_id": message_id}, message_id),
        NewEvent(NLU_PARSE, {"intent": "complaint", "confidence": 0.9}),
        NewEvent(ACTION, {"name": "utter_greet"}),
        NewEvent(BOT_MESSAGE, {"text": "Hi", "reply_to": message_id}, f"bot-{message_id}"),
    ]
    if handoff:
        new.append(NewEvent(HANDOFF, {"reason": "complaint"}))
    return TurnUpdate(conv.id, conv.version, "idle", {}, conv.language, False, tuple(new), last_intent="complaint")


async def _conv(store: Store, *, handoff: bool = False) -> Conversation:
    conv = await store.create_conversation("en", state="idle")
    await store.commit_turn(chat_turn(conv, "m1", handoff=handoff))
    got = await store.get(conv.id)
    assert got is not None
    return got


async def test_resolve_and_reopen_record_events_and_are_idempotent(store: Store) -> None:
    conv = await _conv(store)
    s = await store.resolve(conv.id, "ann")
    assert s.resolved_by == "ann" and s.resolved_at is not None and s.rating is None
    assert await store.resolve(conv.id, "bob") == s  # already resolved: nothing changes, no second event
    log = await store.events(conv.id)
    assert [e.type for e in log if e.type == RESOLVED] == [RESOLVED] and log[-1].data == {"agent": "ann"}
    assert HANDBACK not in {e.type for e in log}  # no hand-off to end

    r = await store.reopen(conv.id, "bob")
    assert r.resolved_at is None and r.resolved_by is None
    assert (await store.events(conv.id))[-1].data == {"agent": "bob", "reason": "agent"}
    assert await store.reopen(conv.id, "bob") == r
    assert [e.type for e in await store.events(conv.id)].count(REOPENED) == 1


async def test_resolve_ends_the_hand_off_like_hand_back(store: Store) -> None:
    conv = await _conv(store, handoff=True)
    await store.take_over(conv.id, "ann")
    with pytest.raises(HandoffConflict):  # a colleague's live conversation is not closed under them
        await store.resolve(conv.id, "bob")
    version = (await store.get(conv.id)).version  # type: ignore[union-attr]
    s = await store.resolve(conv.id, "ann", "start")
    assert (s.handoff_status, s.agent, s.handed_off, s.handoff_at, s.state) == ("", None, False, None, "start")
    after = await store.get(conv.id)
    assert after is not None and after.version == version + 1  # customer-visible: a stale turn is redone
    assert [e.type for e in await store.events(conv.id)][-2:] == [HANDBACK, RESOLVED]
    assert await store.handoff_statuses([conv.id]) == {conv.id: "resolved"}  # polled until rated

    waiting = await _conv(store, handoff=True)  # from the queue, without taking over
    s = await store.resolve(waiting.id, "bob")
    assert s.handoff_status == "" and s.resolved_by == "bob"


async def test_rate_once_per_resolution_validated_and_redacted(store: Store) -> None:
    conv = await _conv(store)
    with pytest.raises(NotResolved):
        await store.rate(conv.id, 4, None)
    await store.resolve(conv.id, "ann")
    for bad in (0, 6, True, 4.0, "4"):
        with pytest.raises(InvalidQuery):
            await store.rate(conv.id, bad, None)  # type: ignore[arg-type]
    with pytest.raises(InvalidQuery):
        await store.rate(conv.id, 4, "x" * 1001)
    version = (await store.get(conv.id)).version  # type: ignore[union-attr]

    s = await store.rate(conv.id, 4, "  Great, write to jane.doe@example.com  ")
    assert s.rating == 4
    last = (await store.events(conv.id))[-1]
    assert last.type == RATING and last.data["score"] == 4
    assert "jane.doe@example.com" not in last.data["comment"] and last.data["comment"].startswith("Great, write to")
    async with store._engine.connect() as c:
        stored = (await c.execute(sa.select(conversations.c.rating_comment)
                                  .where(conversations.c.id == conv.id))).scalar_one()
    assert stored == last.data["comment"]
    assert (await store.get(conv.id)).version == version  # type: ignore[union-attr]  # a rating is not a turn
    assert await store.handoff_statuses([conv.id]) == {}  # rated: nothing more to push

    with pytest.raises(AlreadyRated):  # the first rating stands
        await store.rate(conv.id, 1, None)
    assert (await store.summary(conv.id)).rating == 4  # type: ignore[union-attr]

    await store.reopen(conv.id, "ann")
    assert (await store.summary(conv.id)).rating == 4  # type: ignore[union-attr]  # kept until the next one
    with pytest.raises(NotResolved):
        await store.rate(conv.id, 5, None)
    s = await store.resolve(conv.id, "ann")
    assert s.rating is None  # a new resolution is rated anew
    assert (await store.rate(conv.id, 2, "")).rating == 2


async def test_customer_message_reopens_a_resolved_conversation(store: Store) -> None:
    conv = await _conv(store)
    await store.resolve(conv.id, "ann")
    conv = await store.get(conv.id)  # type: ignore[assignment]
    written = await store.commit_turn(chat_turn(conv, "m2"))
    assert written[-1].type == REOPENED and written[-1].data == {"agent": None, "reason": "customer"}
    s = await store.summary(conv.id)
    assert s is not None and s.resolved_at is None and s.resolved_by is None and s.turn_count == 2
    seqs = [e.seq for e in await store.events(conv.id)]
    assert seqs == list(range(1, len(seqs) + 1))  # the log stays gap-free
    conv = await store.get(conv.id)  # type: ignore[assignment]
    again = await store.commit_turn(chat_turn(conv, "m3"))  # open: no second reopened event
    assert REOPENED not in {e.type for e in again}


async def test_first_agent_reply_is_set_once(store: Store) -> None:
    conv = await _conv(store, handoff=True)
    await store.take_over(conv.id, "ann")

    async def first() -> dt.datetime | None:
        async with store._engine.connect() as c:
            return (await c.execute(sa.select(conversations.c.first_agent_reply_at)
                                    .where(conversations.c.id == conv.id))).scalar_one()

    assert await first() is None
    await store.append_agent_message(conv.id, "ann", "Hello", "a1")
    at = await first()
    assert at is not None
    await store.append_agent_message(conv.id, "ann", "Still there?", "a2")
    assert await first() == at


async def test_dashboard_csat_first_response_and_resolution(store: Store) -> None:
    now = dt.datetime(2026, 11, 30, 18, 0, tzinfo=dt.UTC)
    empty = await store.dashboard(days=7, now=now)
    assert (empty.ratings, empty.csat_mean, empty.csat_satisfied) == (0, None, None)
    assert empty.first_response_median is None and empty.resolution_median is None

    # (rating, minutes from creation to resolution, minutes from hand-off to the first agent reply)
    plan = [(5, 60, 2), (4, 120, 4), (2, 30, None), (None, None, 10), (None, None, None)]
    for n, (score, resolve_after, reply_after) in enumerate(plan):
        conv = await _conv(store, handoff=reply_after is not None)
        created = now - dt.timedelta(days=1, hours=n)
        if reply_after is not None:
            await store.take_over(conv.id, "ann")
            await store.append_agent_message(conv.id, "ann", "Hi", f"a{n}")
        if resolve_after is not None:
            await store.resolve(conv.id, "ann")
        if score is not None:
            await store.rate(conv.id, score, None)
        async with store._engine.begin() as c:  # move the timeline to known instants
            await c.execute(conversations.update().where(conversations.c.id == conv.id).values(
                created_at=created,
                resolved_at=created + dt.timedelta(minutes=resolve_after) if resolve_after is not None else None,
                first_agent_reply_at=(created + dt.timedelta(minutes=5 + reply_after)
                                      if reply_after is not None else None),
            ))
            await c.execute(events.update().where(events.c.conversation_id == conv.id, events.c.type == HANDOFF)
                            .values(timestamp=created + dt.timedelta(minutes=5)))
    old = await _conv(store)  # outside the window: not counted
    await store.resolve(old.id, "ann")
    await store.rate(old.id, 1, None)
    async with store._engine.begin() as c:
        await c.execute(conversations.update().where(conversations.c.id == old.id)
                        .values(created_at=now - dt.timedelta(days=20)))

    stats = await store.dashboard(days=7, now=now)
    assert stats.ratings == 3
    assert stats.csat_mean == pytest.approx(11 / 3)
    assert stats.csat_satisfied == pytest.approx(2 / 3)
    assert stats.resolution_median == pytest.approx(60 * 60)  # of 30, 60, 120 minutes
    assert stats.first_response_median == pytest.approx(4 * 60)  # of 2, 4, 10 minutes
