"""Agent presence and the inbox pulse over the console's HTTP API (no browser): the status routes, what the status
does to the bot's hand-off decision (everyone away: the nobody-online reply), the pulse's token and its
round-robin routing (on only when the bot's config says so), presence recorded from console requests, the
process's shared queue read (:class:`channels.ops.desk.QueueFeed`), and ``bot.yml``'s ``handoff:`` key."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa

from channels.ops import OpsServer, run_ops_server
from channels.ops.desk import QueueFeed, queue_token
from dialogue.handoff import staffing_probe
from dialogue.store import users
from kefu.console import Console
from tests.channels.conftest import ConsoleEnv, password_hashes
from tests.channels.test_ops import Staff, as_role, error

OFFLINE_MARK = "support@shop.example"  # in every English variant of the shop's utter_handoff_offline


@dataclasses.dataclass
class Desk:
    env: ConsoleEnv
    engine: Any  # the light engine asking the store who is online (as kefu serve does)
    ops: OpsServer

    async def customer(self, text: str = "I want to complain about my broken kettle") -> tuple[str, Any]:
        conv = await self.env.store.create_conversation("en", "Alice Wong",
                                                        state=self.engine.parts.flows.initial_state)
        reply = await self.engine.handle_message(conv.id, uuid.uuid4().hex, text)
        return conv.id, reply


async def _desk(console_env: ConsoleEnv, *, auto_assign: bool) -> AsyncIterator[Desk]:
    store = console_env.store
    await store.add_user("bea", password_hashes()["agent"], "agent")
    engine = console_env.engine.with_parts(staffing=staffing_probe(store.count_agents_online, None))
    console = Console(engine, console_env.nlu_files, auto_assign=auto_assign)
    async with run_ops_server(console, port=0) as ops:
        yield Desk(console_env, engine, ops)


@pytest_asyncio.fixture(loop_scope="session")
async def desk(console_env: ConsoleEnv) -> AsyncIterator[Desk]:
    async for d in _desk(console_env, auto_assign=True):
        yield d


@pytest_asyncio.fixture(loop_scope="session")
async def manual_desk(console_env: ConsoleEnv) -> AsyncIterator[Desk]:
    async for d in _desk(console_env, auto_assign=False):
        yield d


async def _login(ops: OpsServer, name: str) -> Staff:
    client = Staff(ops)
    res = await client.login(name, "agent-password-1" if name == "bea" else None)
    assert res.status_code == 200, res.text
    return client


async def _pulse(client: Staff, since: str | None = None) -> dict[str, Any]:
    await asyncio.sleep(0.2)  # past the feed's shared read (0.15 s)
    res = await client.get("/api/inbox/pulse", params={"since": since} if since else None)
    assert res.status_code == 200, res.text
    return dict(res.json())


async def test_status_routes(desk: Desk) -> None:
    agent = await _login(desk.ops, "agent")
    assert (await agent.get("/api/me/status")).json() == {"status": "online", "effective": "online"}
    res = await agent.post("/api/me/status", {"status": "away"})
    assert res.status_code == 200 and res.json() == {"status": "away", "effective": "away"}
    again = await _login(desk.ops, "agent")  # remembered with the account, not the session
    assert (await again.get("/api/me/status")).json()["status"] == "away"
    # The assign menu says who is what now: never-seen consoles are offline.
    assert (await again.get("/api/assignees")).json()["presence"] == {"admin": "offline", "agent": "away",
                                                                     "bea": "offline"}
    for bad in ({"status": "busy"}, {"status": 3}, {}):
        res = await agent.post("/api/me/status", bad)
        assert res.status_code == 400 and error(res) == "bad_request"
    assert (await agent.post("/api/me/status", {"status": "online"}, csrf=None)).status_code == 403
    viewer = await as_role(desk.ops, "viewer")
    assert (await viewer.get("/api/me/status")).status_code == 403
    assert (await viewer.post("/api/me/status", {"status": "online"})).status_code == 403
    anonymous = Staff(desk.ops)
    assert (await anonymous.get("/api/me/status")).status_code == 401
    for client in (agent, again, viewer, anonymous):
        await client.aclose()


async def test_everyone_away_gets_the_nobody_online_reply_and_one_online_queues(desk: Desk) -> None:
    agent, bea = await _login(desk.ops, "agent"), await _login(desk.ops, "bea")
    for client in (agent, bea):
        assert (await client.post("/api/me/status", {"status": "away"})).status_code == 200
    cid, reply = await desk.customer()
    assert OFFLINE_MARK in reply.text and not reply.handed_off
    assert (await desk.env.store.summary(cid)).handoff_status == ""  # type: ignore[union-attr]
    await bea.post("/api/me/status", {"status": "online"})
    cid, reply = await desk.customer()
    assert OFFLINE_MARK not in reply.text and reply.handed_off
    assert (await desk.env.store.summary(cid)).handoff_status == "waiting"  # type: ignore[union-attr]
    # Logging out is going offline at once (no live session), whatever the status says.
    assert (await bea.post("/api/logout")).status_code == 200
    assert await desk.env.store.count_agents_online(dt.datetime.now(dt.UTC)) == 0
    await agent.aclose()
    await bea.aclose()


async def test_pulse_token_and_round_robin_between_two_online_agents(desk: Desk) -> None:
    agent, bea = await _login(desk.ops, "agent"), await _login(desk.ops, "bea")
    first = await _pulse(agent)
    assert first["changed"] and first["waiting"] == [] and len(first["token"]) == 32
    assert await _pulse(agent, first["token"]) == {"token": first["token"], "changed": False}
    names = []
    for _ in range(4):
        cid, _reply = await desk.customer()
        seen = await _pulse(bea, first["token"])
        assert seen["changed"] and seen["token"] != first["token"]
        entry = next(w for w in seen["waiting"] if w["id"] == cid)
        assert entry["customer"] == "Alice Wong"
        names.append(entry["assignee"])
    assert names == ["agent", "bea", "agent", "bea"]  # least recently assigned first; never assigned: by name
    # An away agent is skipped; a claim or a hand assignment shows in the next pulse's token.
    await bea.post("/api/me/status", {"status": "away"})
    cid, _reply = await desk.customer()
    seen = await _pulse(agent)
    assert next(w for w in seen["waiting"] if w["id"] == cid)["assignee"] == "agent"
    res = await agent.post(f"/api/conversations/{cid}/assign", {"username": None})
    assert res.status_code == 200
    after = await _pulse(agent, seen["token"])
    assert after["changed"] and next(w for w in after["waiting"] if w["id"] == cid)["assignee"] is None
    assert (await _pulse(agent, after["token"]))["changed"] is False  # unassigned on purpose: not routed again
    for bad in ({"since": "NOT-A-TOKEN"}, {"view": "all"}):
        res = await agent.get("/api/inbox/pulse", params=bad)
        assert res.status_code == 400 and error(res) == "bad_request"
    viewer = await as_role(desk.ops, "viewer")  # viewers see the queue (and its alerts), never get assigned
    assert (await viewer.get("/api/inbox/pulse")).status_code == 200
    for client in (agent, bea, viewer):
        await client.aclose()


async def test_without_auto_assign_the_pulse_routes_nothing(manual_desk: Desk) -> None:
    agent = await _login(manual_desk.ops, "agent")
    cid, reply = await manual_desk.customer()
    assert reply.handed_off
    seen = await _pulse(agent)
    assert [w["assignee"] for w in seen["waiting"] if w["id"] == cid] == [None]
    await agent.aclose()


async def test_console_requests_record_presence_at_most_every_few_seconds(desk: Desk) -> None:
    store = desk.env.store
    old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)

    async def age() -> None:
        async with store.transaction("test") as conn:
            await conn.execute(sa.update(users).where(users.c.username == "agent").values(last_seen_at=old))

    agent = await _login(desk.ops, "agent")
    await age()
    assert (await agent.get("/api/me")).status_code == 200
    seen = (await store.agent_presence("agent")).last_seen_at  # type: ignore[union-attr]
    assert seen is not None and seen > old + dt.timedelta(minutes=59)
    await age()
    assert (await agent.get("/api/inbox/pulse")).status_code == 200  # within PRESENCE_BEAT: not written again
    assert (await store.agent_presence("agent")).last_seen_at == old  # type: ignore[union-attr]
    assert (await agent.get("/api/me/status")).json()["effective"] == "offline"  # what the bot sees now
    await agent.aclose()


# --------------------------------------------------------------------------------------------- the feed
class CountingBackend:
    """What :class:`QueueFeed` calls, counted: the queue (one waiting, unassigned conversation) and routing."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items
        self.reads = 0
        self.routes = 0

    async def handoff_queue(self, limit: int, filter: Any = None) -> list[Any]:
        self.reads += 1
        await asyncio.sleep(0.01)
        return list(self.items)

    async def auto_assign(self, now: dt.datetime) -> list[tuple[str, str]]:
        self.routes += 1
        return []


def _summary(cid: str, assignee: str | None = None) -> Any:
    from types import SimpleNamespace

    return SimpleNamespace(id=cid, handoff_status="waiting", assignee=assignee, agent=None, unread=True,
                           handoff_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), sender="Alice Wong")


async def test_the_feed_shares_one_read_and_routes_new_arrivals_at_once_then_at_most_every_second() -> None:
    backend = CountingBackend([_summary("c1")])
    feed = QueueFeed(backend, 100, lambda: dt.datetime.now(dt.UTC), max_age=0.2, retry=1.0)  # type: ignore[arg-type]
    snapshots = await asyncio.gather(*(feed.snapshot() for _ in range(20)))
    assert len({s.token for s in snapshots}) == 1
    assert snapshots[0].waiting == ({"id": "c1", "customer": "Alice Wong", "assignee": None},)
    # One read for all 20 pulses; a conversation not seen waiting before is routed at once, then read again.
    assert (backend.reads, backend.routes) == (2, 1)
    await asyncio.sleep(0.25)
    await feed.snapshot()
    assert (backend.reads, backend.routes) == (3, 1)  # the same one still unassigned: not routed before a second
    backend.items.append(_summary("c2"))
    await asyncio.sleep(0.25)
    second = await feed.snapshot()
    assert (backend.reads, backend.routes) == (5, 2) and second.token != snapshots[0].token  # a new arrival
    feed.poke()  # someone came online in this process: the next pulse reads and routes at once
    await feed.snapshot()
    assert (backend.reads, backend.routes) == (7, 3)
    assert queue_token([_summary("c1")]) == queue_token([_summary("c1")]) != queue_token([_summary("c1", "ann")])


def test_bot_yml_handoff_auto_assign() -> None:
    from kefu.config import BotConfig

    base = {"name": "shop", "nlu_data": ["data/nlu.yml"]}
    assert BotConfig.model_validate(base).handoff.auto_assign is True
    assert BotConfig.model_validate({**base, "handoff": {"auto_assign": False}}).handoff.auto_assign is False
    with pytest.raises(ValueError, match="extra"):
        BotConfig.model_validate({**base, "handoff": {"auto_asign": True}})
