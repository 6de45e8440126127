"""The hand-off life cycle: office hours and staffing (pure), then the real demo bot offline, timing out, and letting
the customer go back to it; escalation counts failures inside a task only; the conversation keeps its language."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from dialogue import types as ev
from dialogue.engine import DialogueEngine
from dialogue.handoff import (
    HandoffConfigError,
    OfficeHours,
    Staffing,
    fixed_staffing,
    staffing_probe,
    wait_expired,
)
from dialogue.types import ConversationFilter, ConversationSummary

UTC = dt.UTC
MONDAY_10_SHANGHAI = dt.datetime(2026, 12, 7, 2, 0, tzinfo=UTC)  # 10:00 in Asia/Shanghai, a Monday


def mid() -> str:
    return uuid.uuid4().hex


# ------------------------------------------------------------------------------------------------- pure decisions
WEEKDAYS = {"timezone": "Asia/Shanghai", "days": ["mon", "tue", "wed", "thu", "fri"], "hours": "09:00-18:00"}


@pytest.mark.parametrize(
    ("raw", "now", "open_"),
    [
        (WEEKDAYS, MONDAY_10_SHANGHAI, True),
        (WEEKDAYS, MONDAY_10_SHANGHAI + dt.timedelta(hours=8), False),  # 18:00 local: closed
        (WEEKDAYS, MONDAY_10_SHANGHAI - dt.timedelta(hours=1, minutes=1), False),  # 08:59
        (WEEKDAYS, MONDAY_10_SHANGHAI - dt.timedelta(days=1), False),  # Sunday
        ({"hours": "22:00-06:00", "days": ["mon"]}, dt.datetime(2026, 12, 7, 23, 0, tzinfo=UTC), True),
        ({"hours": "22:00-06:00", "days": ["mon"]}, dt.datetime(2026, 12, 8, 5, 0, tzinfo=UTC), True),  # Monday's night
        ({"hours": "22:00-06:00", "days": ["mon"]}, dt.datetime(2026, 12, 7, 5, 0, tzinfo=UTC), False),  # Sunday's
        ({}, MONDAY_10_SHANGHAI, True),  # all day, every day
        ({"hours": "00:00-24:00", "days": ["sat"]}, MONDAY_10_SHANGHAI, False),
    ],
)
def test_office_hours(raw: dict[str, Any], now: dt.datetime, open_: bool) -> None:
    assert OfficeHours.parse(raw).open_at(now) is open_


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"days": ["funday"]}, "days"),
        ({"hours": "9-18"}, "hours"),
        ({"hours": "25:00-26:00"}, "hours"),
        ({"hour": "09:00-18:00"}, "unknown keys"),
    ],
)
def test_bad_office_hours_name_the_key(raw: dict[str, Any], names: str) -> None:
    with pytest.raises(HandoffConfigError, match=names):
        OfficeHours.parse(raw)


async def test_the_probe_asks_the_store_only_in_office_hours() -> None:
    asked: list[dt.datetime] = []

    async def count(now: dt.datetime) -> int:
        asked.append(now)
        return 2

    probe = staffing_probe(count, OfficeHours.parse(WEEKDAYS))
    assert await probe(MONDAY_10_SHANGHAI) == Staffing(agents_online=2)
    closed = await probe(MONDAY_10_SHANGHAI - dt.timedelta(days=1))
    assert not closed.available and asked == [MONDAY_10_SHANGHAI]
    assert (await staffing_probe(count, None)(MONDAY_10_SHANGHAI)).available


def test_wait_expired() -> None:
    queued = MONDAY_10_SHANGHAI
    assert not wait_expired(None, queued, dt.timedelta(minutes=15))
    assert not wait_expired(queued, queued + dt.timedelta(minutes=15), dt.timedelta(minutes=15))
    assert wait_expired(queued, queued + dt.timedelta(minutes=16), dt.timedelta(minutes=15))


# ------------------------------------------------------------------------------------------------- the real bot
class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime.now(UTC)

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def staffed(shop: Any, clock: Clock, agents: int) -> DialogueEngine:
    engine: DialogueEngine = shop.engine.with_parts(staffing=fixed_staffing(agents))
    engine.clock = clock
    return engine


async def _summary(engine: DialogueEngine, cid: str) -> ConversationSummary:
    page = await engine.store.list_conversations(ConversationFilter(), limit=500)
    return next(s for s in page.items if s.id == cid)


async def _ends(engine: DialogueEngine, cid: str) -> list[dict[str, Any]]:
    return [e.data for e in await engine.conversation_events(cid) if e.type == ev.HANDOFF_END]


@pytest.mark.parametrize(("text", "language"), [
    ("this is the worst service ever, I want to complain to a manager", "en"),
    ("你们服务太差了，我要投诉，给我找个人工", "zh"),
])
async def test_nobody_online_the_bot_says_so_and_keeps_the_customer(
    shop: Any, clock: Clock, text: str, language: str
) -> None:
    engine = staffed(shop, clock, agents=0)
    reply = await engine.handle_message(None, mid(), text)
    assert reply.action == "action_handoff" and not reply.handed_off
    assert (("available" in reply.text or "offline" in reply.text) if language == "en" else ("线" in reply.text)), reply.text
    cid = reply.conversation_id
    conversation = await engine.get_conversation(cid)
    assert conversation is not None and conversation.state == engine.parts.flows.initial_state
    assert (await _summary(engine, cid)).handoff_status == ""
    assert await _ends(engine, cid) == [{"reason": "offline", "wanted": "complaint"}]
    action = [e.data for e in await engine.conversation_events(cid) if e.type == ev.ACTION][-1]
    assert action["state_after"] == engine.parts.flows.initial_state  # where the conversation really is
    after = await engine.handle_message(cid, mid(), "where is my order 10234?" if language == "en" else "订单10234到哪了")
    assert after.action == "action_order_status" and "10234" in after.text  # the bot still helps


async def test_a_wait_times_out_at_the_next_message(shop: Any, clock: Clock) -> None:
    engine = staffed(shop, clock, agents=1)
    first = await engine.handle_message(None, mid(), "this is the worst service ever, I want to complain to a manager")
    cid = first.conversation_id
    assert first.handed_off and (await _summary(engine, cid)).handoff_status == "waiting"
    clock.now += dt.timedelta(minutes=5)
    still = await engine.handle_message(cid, mid(), "hello? anyone?")
    assert still.action == "utter_handoff" and still.handed_off  # small talk while waiting: still waiting
    clock.now += engine.parts.handoff_timeout
    late = await engine.handle_message(cid, mid(), "hello??")
    assert not late.handed_off and ("available" in late.text or "offline" in late.text)
    assert (await _summary(engine, cid)).handoff_status == ""
    assert [e["reason"] for e in await _ends(engine, cid)] == ["timeout"]


async def test_nobody_left_online_ends_the_wait(shop: Any, clock: Clock) -> None:
    engine = staffed(shop, clock, agents=1)
    first = await engine.handle_message(None, mid(), "I want to speak to a human right now, this is unacceptable")
    cid = first.conversation_id
    assert (await _summary(engine, cid)).handoff_status == "waiting"
    gone = staffed(shop, clock, agents=0)
    reply = await gone.handle_message(cid, mid(), "hello?")
    assert not reply.handed_off and (await _summary(engine, cid)).handoff_status == ""
    assert [e["reason"] for e in await _ends(engine, cid)] == ["offline"]


async def test_the_customer_can_go_back_to_the_bot_while_waiting(shop: Any, clock: Clock) -> None:
    engine = staffed(shop, clock, agents=1)
    first = await engine.handle_message(None, mid(), "this is ridiculous, I want to talk to a real person")
    cid = first.conversation_id
    back = await engine.handle_message(cid, mid(), "never mind, where is my order 10234?")
    assert back.action == "action_order_status" and "10234" in back.text and not back.handed_off
    assert (await _summary(engine, cid)).handoff_status == ""
    assert [e["reason"] for e in await _ends(engine, cid)] == ["customer"]


async def test_small_talk_outside_a_task_never_queues_a_handoff(shop: Any, clock: Clock) -> None:
    engine = staffed(shop, clock, agents=1)
    cid = None
    for text in ["how are you today?", "are you a robot?", "tell me a funny joke please", "what's the weather like"]:
        reply = await engine.handle_message(cid, mid(), text)
        cid = reply.conversation_id
        assert not reply.handed_off
    assert (await _summary(engine, cid)).handoff_status == ""  # type: ignore[arg-type]


async def test_two_misunderstood_turns_inside_a_task_queue_the_conversation(shop: Any, clock: Clock) -> None:
    engine = staffed(shop, clock, agents=1)
    first = await engine.handle_message(None, mid(), "I want to return an item")
    cid = first.conversation_id
    assert first.action == "utter_ask_order_id"
    await engine.handle_message(cid, mid(), "what's the weather like in London tomorrow?")
    second = await engine.handle_message(cid, mid(), "sing me a song")
    assert second.handed_off
    summary = await _summary(engine, cid)
    assert (summary.handoff_status, summary.handoffs) == ("waiting", 1)
    reasons = [e.data["reason"] for e in await engine.conversation_events(cid) if e.type == ev.HANDOFF]
    assert reasons == ["low_confidence_loop"]


async def test_an_understood_turn_resets_the_misunderstanding_count(shop: Any, clock: Clock) -> None:
    engine = staffed(shop, clock, agents=1)
    cid = (await engine.handle_message(None, mid(), "I want to return an item")).conversation_id
    await engine.handle_message(cid, mid(), "tell me a joke")
    assert (await engine.get_conversation(cid)).fallback_streak == 1  # type: ignore[union-attr]
    await engine.handle_message(cid, mid(), "it's order 10234")
    assert (await engine.get_conversation(cid)).fallback_streak == 0  # type: ignore[union-attr]
    await engine.handle_message(cid, mid(), "what is the meaning of life?")
    assert (await _summary(engine, cid)).handoff_status == ""


@pytest.mark.parametrize("text", ["14388", "😂😂", "[PHONE]", "+86 13812345678", "ok"])
async def test_a_chinese_conversation_stays_chinese(shop: Any, clock: Clock, text: str) -> None:
    engine = staffed(shop, clock, agents=1)
    cid = await engine.open_conversation(None, "zh")
    first = await engine.handle_message(cid, mid(), "我想查一下订单")
    cid = first.conversation_id
    reply = await engine.handle_message(cid, mid(), text)
    conversation = await engine.get_conversation(cid)
    assert conversation is not None and conversation.language == "zh"
    assert any("\u4e00" <= ch <= "\u9fff" for ch in reply.text), reply.text
    switched = await engine.handle_message(cid, mid(), "sorry, can you answer in english please")
    assert switched.text.isascii() and (await engine.get_conversation(cid)).language == "en"  # type: ignore[union-attr]
