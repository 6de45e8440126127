"""kefu.serving on a real store: customers as senders, metrics from committed turns, and turns of one conversation
raced by two "workers" (two engines on two Store connections to one PostgreSQL schema) without an error."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from channels.metrics import Metrics
from dialogue.engine import BotParts, DialogueEngine
from dialogue.store import Store
from dialogue.types import BOT_MESSAGE, USER_MESSAGE
from kefu.logs import JsonFormatter, configure, console_to_log
from kefu.serving import ServingBackend
from nlu.types import Parse
from policy import FSMPolicy
from runtime.nlg import NLG
from runtime.templates import Templates
from safety.filters import InputFilter
from tests.conftest import shop_dialogue
from tests.stores import StoreTarget

pytestmark = pytest.mark.asyncio(loop_scope="session")
SHOP = Path(__file__).resolve().parents[2] / "examples" / "shop"


class GreetParser:
    """A stand-in for the NLU model: every message greets (the turn logic is what is under test)."""

    def parse(self, text: str) -> Parse:
        return Parse(text=text, intent="greet", confidence=1.0, ranking=(("greet", 1.0),), language="en")


class NoActions:
    async def run(self, action_name: str, call_payload: dict[str, Any]) -> Any:
        raise AssertionError(f"no custom action expected, got {action_name}")


def build_engine(store: Store) -> DialogueEngine:
    domain, flows = shop_dialogue()
    parts = BotParts(domain=domain, flows=flows, policy=FSMPolicy(flows.default_policy), nlu=GreetParser(),
                     actions=NoActions(), input_filter=InputFilter())  # type: ignore[arg-type]
    return DialogueEngine(parts, store, NLG(Templates.from_domain(domain.raw), None, mode="template"))


async def test_user_becomes_sender_and_metrics_see_committed_turns(store_target: StoreTarget) -> None:
    store = await store_target.open()
    try:
        metrics = Metrics()
        backend = ServingBackend(build_engine(store), metrics)
        assert backend.engine.store is store  # metrics come from the turn's reply, not from a proxy of the store
        cid = await backend.open_conversation(None, "en", user="cust-7")
        assert (await store.get(cid)).sender == "cust-7"  # type: ignore[union-attr]
        assert await backend.open_conversation(cid, "en", user="someone-else") == cid  # resumed, not re-owned
        assert (await store.get(cid)).sender == "cust-7"  # type: ignore[union-attr]
        anonymous = await backend.open_conversation(None)
        assert (await store.get(anonymous)).sender is None  # type: ignore[union-attr]
        reply = await backend.handle_message(cid, "m1", "hello")
        assert reply.action == "utter_greet" and reply.text
        assert metrics.value("kefu_turn_latency_seconds_count", {"stage": "nlu"}) == 1
        assert metrics.value("kefu_turn_latency_seconds_count", {"stage": "generation"}) == 1
        assert (await backend.handle_message(cid, "m1", "hello")).replayed
        assert metrics.value("kefu_turn_latency_seconds_count", {"stage": "nlu"}) == 1  # replays commit nothing
        assert [e.type for e in await backend.conversation_events(cid)].count(USER_MESSAGE) == 1
        assert len(backend._locks) == 0  # per-conversation locks are forgotten once idle
    finally:
        await store.close()


@pytest.mark.postgres
@pytest.mark.parametrize("store_target", ["postgresql"], indirect=True)  # several workers share PostgreSQL
async def test_two_workers_racing_one_conversation_never_fail(store_target: StoreTarget) -> None:
    stores = [await store_target.open(), await store_target.open()]
    try:
        engines = [build_engine(s) for s in stores]
        for engine in engines:
            engine.max_attempts = 1  # every lost race reaches ServingBackend's own retry loop
        workers = [ServingBackend(engine, Metrics(), max_backoff=0.02) for engine in engines]
        cid = await workers[0].open_conversation(None, "en")
        ids = [f"m{i:02d}" for i in range(24)]
        # Every message twice, once to each worker (a client resending to another worker after a reconnect),
        # all at once: the two processes contend for the same row on every turn.
        calls = [workers[i % 2].handle_message(cid, mid, f"hello {mid}") for mid in ids for i in range(2)]
        replies = await asyncio.gather(*calls)
        events = await stores[0].events(cid)
        conversation = await stores[0].get(cid)
    finally:
        for s in stores:
            await s.close()
    assert conversation is not None and conversation.turn_count == len(ids)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    users = [e.message_id or "" for e in events if e.type == USER_MESSAGE]
    assert sorted(users) == ids  # each message once: nothing lost, nothing duplicated
    bots = {e.data["reply_to"]: e.data["text"] for e in events if e.type == BOT_MESSAGE}
    for mid, reply in zip([m for m in ids for _ in range(2)], replies, strict=True):
        assert reply.reply_to == mid and reply.text == bots[mid]
    assert sum(not r.replayed for r in replies) == len(ids)  # the other copy of each was answered from the store


async def test_json_logs_one_object_per_line_without_customer_text() -> None:
    stream = io.StringIO()
    handler = configure("json", logging.DEBUG, stream)
    try:
        log = logging.getLogger("kefu.test")
        log.info("turn failed: %s", "StoreUnavailable", extra={"conversation_id": "c-1", "message_id": "m-1"})
        try:
            raise ValueError("customer wrote SECRET-99")
        except ValueError:
            log.exception("action raised %s", "ValueError", extra={"conversation_id": "c-2"})
        log.warning("plain", extra={"conversation_id": object()})  # non-scalar context is dropped
        console_to_log("Kefu is serving [bold]shop[/bold] on http://127.0.0.1:8000/")
    finally:
        logging.getLogger().removeHandler(handler)
    lines = stream.getvalue().splitlines()
    entries = [json.loads(line) for line in lines]
    assert len(entries) == 4
    assert entries[3]["msg"] == "Kefu is serving shop on http://127.0.0.1:8000/" and entries[3]["logger"] == "kefu"
    assert entries[0]["msg"] == "turn failed: StoreUnavailable" and entries[0]["conversation_id"] == "c-1"
    assert entries[0]["message_id"] == "m-1" and entries[0]["level"] == "info" and entries[0]["logger"] == "kefu.test"
    assert entries[1]["exc_type"] == "ValueError" and entries[1]["exc_where"].startswith("test_serving.py:")
    assert "SECRET" not in stream.getvalue()
    assert "conversation_id" not in entries[2]
    assert isinstance(JsonFormatter().format(logging.LogRecord("x", 20, __file__, 1, "m %s", ("a",), None)), str)
    with pytest.raises(ValueError):
        configure("xml")
