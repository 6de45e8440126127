"""Agent presence and round-robin auto-assignment in the store (migration 0011), on SQLite and PostgreSQL: the status
an agent chooses, who counts as online for the bot (signed in, ``online``, console seen lately), the round-robin
that alternates between online agents and skips the away ones, one routing per wait, two workers routing at once,
and the migration's downgrade and backfill."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa

from dialogue.errors import StoreError, UserNotFound
from dialogue.handoff import OFFLINE, PRESENCE_TIMEOUT, AgentPresence, round_robin
from dialogue.store import Store, conversations
from tests.dialogue.test_store import _migrate_to, console_turn

StoreTarget = Any
HOUR = dt.timedelta(hours=1)


async def _agent(store: Store, name: str, role: str = "agent", *, signed_in: bool = True) -> None:
    user = await store.add_user(name, "x" * 20, role)
    if signed_in:
        await store.create_session(name[0] * 63 + str(user.id % 10), user.id, "csrf", dt.datetime.now(dt.UTC) + HOUR)


async def _queued(store: Store) -> str:
    conv = await store.create_conversation("en")
    await store.commit_turn(console_turn(conv, f"m-{conv.id[:8]}", intent="complaint", handoff=True))
    return conv.id


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def test_round_robin_is_least_recently_assigned_first_then_by_name() -> None:
    t = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    agents = [AgentPresence("cat", last_assigned_at=t), AgentPresence("bob"), AgentPresence("ann", last_assigned_at=t
                                                                                              - HOUR)]
    assert round_robin(agents, 5) == ["bob", "ann", "cat", "bob", "ann"]
    assert round_robin([], 3) == [] and round_robin(agents, 0) == []
    seen = AgentPresence("ann", "away", last_seen_at=t)
    assert seen.effective(t + PRESENCE_TIMEOUT) == "away"
    assert seen.effective(t + PRESENCE_TIMEOUT + dt.timedelta(seconds=1)) == OFFLINE
    assert AgentPresence("ann").effective(t) == OFFLINE  # never seen


async def test_status_is_remembered_and_checked(store: Store) -> None:
    await _agent(store, "ann")
    presence = await store.agent_presence("ann")
    assert presence is not None and presence.status == "online" and presence.last_seen_at is not None  # login = seen
    assert (await store.set_agent_status("ann", "away")).status == "away"
    assert (await store.agent_presence("ann")).status == "away"  # type: ignore[union-attr]
    with pytest.raises(StoreError):
        await store.set_agent_status("ann", "busy")
    with pytest.raises(UserNotFound):
        await store.set_agent_status("nobody", "online")
    assert await store.agent_presence("nobody") is None
    await _agent(store, "vic", "viewer")
    await _agent(store, "boss", "admin")
    assert [p.username for p in await store.team_presence()] == ["ann", "boss"]  # who can be assigned


async def test_only_online_agents_with_a_recent_console_count(store: Store) -> None:
    for name in ("ann", "bob"):
        await _agent(store, name)
    await _agent(store, "vic", "viewer")
    await _agent(store, "sam", signed_in=False)
    now = _now()
    assert await store.count_agents_online(now) == 2  # signed in (and seen at login); not the viewer, not sam
    await store.set_agent_status("bob", "away")
    assert await store.count_agents_online(now) == 1
    await store.set_agent_status("ann", "offline")
    assert await store.count_agents_online(now) == 0  # everyone away: the bot says nobody is online
    await store.set_agent_status("ann", "online")
    assert await store.count_agents_online(now) == 1
    # A console unseen for longer than the presence time-out is offline, whatever its status; a request revives it.
    later = now + PRESENCE_TIMEOUT + dt.timedelta(seconds=5)
    assert await store.count_agents_online(later) == 0
    assert await store.count_agents_online(later, seen_within=dt.timedelta(hours=2)) == 1
    assert await store.touch_presence("ann", later)
    assert await store.count_agents_online(later) == 1
    assert not await store.touch_presence("ann", now)  # never moves the clock back (workers record out of order)
    assert (await store.agent_presence("ann")).last_seen_at == later  # type: ignore[union-attr]
    await store.disable_user("ann")
    assert await store.count_agents_online(later) == 0


async def test_auto_assign_alternates_between_online_agents_and_skips_away(store: Store) -> None:
    for name in ("ann", "bob", "cat"):
        await _agent(store, name)
    await store.set_agent_status("cat", "away")
    first = [await _queued(store) for _ in range(3)]
    assigned = await store.auto_assign(_now())
    assert assigned == list(zip(first, ["ann", "bob", "ann"], strict=True))  # oldest wait first, round-robin
    for cid, name in assigned:
        s = await store.summary(cid)
        assert s is not None and s.assignee == name and s.handoff_status == "waiting" and s.unread
        assert s.agent is None  # an assignment, not a take-over: the bot is not paused by it
    assert await store.auto_assign(_now()) == []  # nothing left to route
    # The rotation goes on where it stopped, across calls: bob, then ann.
    more = [await _queued(store), await _queued(store)]
    assert [name for _, name in await store.auto_assign(_now())] == ["bob", "ann"]
    assert [(await store.summary(c)).assignee for c in more] == ["bob", "ann"]  # type: ignore[union-attr]
    # cat comes back and has never been given one: cat is first.
    await store.set_agent_status("cat", "online")
    again = await _queued(store)
    assert await store.auto_assign(_now()) == [(again, "cat")]


async def test_nobody_online_leaves_it_waiting_until_someone_is(store: Store) -> None:
    await _agent(store, "ann")
    await store.set_agent_status("ann", "away")
    cid = await _queued(store)
    assert await store.auto_assign(_now()) == []
    assert (await store.summary(cid)).assignee is None  # type: ignore[union-attr]
    await store.set_agent_status("ann", "online")
    assert await store.auto_assign(_now()) == [(cid, "ann")]
    # Unseen consoles are offline for routing too.
    other = await _queued(store)
    assert await store.auto_assign(_now() + PRESENCE_TIMEOUT + dt.timedelta(seconds=1)) == []
    assert await store.auto_assign(_now()) == [(other, "ann")]


async def test_one_routing_per_wait_and_hand_assignments_win(store: Store) -> None:
    for name in ("ann", "bob"):
        await _agent(store, name)
    claimed = await _queued(store)
    await store.claim(claimed, "bob")  # assigned by hand first: auto-assignment leaves it alone
    cid = await _queued(store)
    assert await store.auto_assign(_now()) == [(cid, "ann")]
    await store.assign(cid, None, "ann")  # unassigned on purpose: stays unassigned for this wait
    assert await store.auto_assign(_now()) == []
    assert (await store.summary(cid)).assignee is None  # type: ignore[union-attr]
    # A new wait (handed back, queued again) is routed again.
    await store.hand_back(cid, "ann", "idle")
    conv = await store.get(cid)
    assert conv is not None
    await store.commit_turn(console_turn(conv, "again", intent="complaint", handoff=True))
    assert [name for c, name in await store.auto_assign(_now()) if c == cid] == ["bob"]
    # Taken over or resolved conversations are not in the queue's waiting part: never routed.
    taken = await _queued(store)
    await store.take_over(taken, "ann")
    resolved = await _queued(store)
    await store.resolve(resolved, "ann", "idle")
    assert await store.auto_assign(_now()) == []


async def test_two_workers_routing_at_once_assign_each_conversation_once_and_fairly(
    store_target: StoreTarget, store: Store
) -> None:
    for name in ("ann", "bob"):
        await _agent(store, name)
    queued = [await _queued(store) for _ in range(6)]
    other = await store_target.open()  # a second worker process's store
    try:
        results = await asyncio.gather(*(s.auto_assign(_now(), limit=2) for s in (store, other, store, other)))
    finally:
        await other.close()
    done = [pair for result in results for pair in result]
    assert sorted(c for c, _ in done) == sorted(queued)  # every one routed, none twice
    names = [name for _, name in done]
    assert names.count("ann") == names.count("bob") == 3  # serialised: the rotation never skips a turn
    assert all(len({name for _, name in result}) == len(result) for result in results)
    rows = {s.id: s.assignee for s in await store.handoff_queue()}
    assert all(rows[c] == name for c, name in done)


async def test_migration_0011_downgrades_and_backfills(store_target: StoreTarget, store: Store) -> None:
    await _agent(store, "ann")
    cid = await _queued(store)  # waiting before the upgrade: not routed afterwards (routed_wait = handoffs)
    await _migrate_to(store_target, store, "0010_user_locale", down=True)
    async with store.transaction("test", write=False) as conn:
        columns = await conn.run_sync(lambda c: {col["name"] for col in sa.inspect(c).get_columns("users")})
    assert "status" not in columns and "last_seen_at" not in columns
    await _migrate_to(store_target, store, "head", down=False)
    async with store.transaction("test", write=False) as conn:
        row = (await conn.execute(sa.select(conversations.c.handoffs, conversations.c.routed_wait)
                                  .where(conversations.c.id == cid))).one()
    assert row.handoffs == row.routed_wait == 1
    presence = await store.agent_presence("ann")
    assert presence is not None and presence.status == "online" and presence.last_seen_at is None
    await store.touch_presence("ann", _now())
    assert await store.auto_assign(_now()) == []  # the upgrade routes only what is queued after it
