"""A message that answers the bot's question is the answer: the task's values given before stay (a tagger's guess in
the answer does not replace them), on the real engine and store with model-free NLU."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from dialogue.store import ConversationStore
from tests.channels.conftest import light_engine

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def say(engine: Any, conversation_id: str | None, text: str) -> Any:
    return await engine.handle_message(conversation_id, uuid.uuid4().hex, text)


async def test_an_answer_keeps_the_values_given_before(store: ConversationStore) -> None:
    engine = light_engine(store)
    asked = await say(engine, None, "I want to return order 10234")
    assert asked.action == "utter_ask_reason"
    answered = await say(engine, asked.conversation_id, "the zip broke after 12345 minutes")  # an "order id" inside
    conversation = await engine.get_conversation(asked.conversation_id)
    assert conversation.slots["order_id"] == "10234"  # kept: the customer answered why, not which order
    assert conversation.slots.get("reason") in (None, "the zip broke after 12345 minutes")  # reset once done, or kept
    assert answered.action == "action_return"


async def test_a_new_value_outside_an_answer_still_replaces_the_old_one(store: ConversationStore) -> None:
    engine = light_engine(store)
    first = await say(engine, None, "where is my order 10234")
    await say(engine, first.conversation_id, "and order 55555?")
    conversation = await engine.get_conversation(first.conversation_id)
    assert conversation.slots["order_id"] == "55555"


# -- the answer said before the question, after an aside, or with only a value as evidence ---------------------------
async def test_a_reason_said_in_the_request_is_not_asked_for_again(store: ConversationStore) -> None:
    engine = light_engine(store)
    reply = await say(engine, None, "I want to return order 10234, the zip broke")
    conversation = await engine.get_conversation(reply.conversation_id)
    assert reply.action == "action_return"
    assert conversation.slots.get("reason") in (None, "the zip broke")  # reset once the return is done


@pytest.mark.parametrize("text", [
    "hello, I want to return order 10234",  # a greeting is an aside, not a reason
    "I want to return order 10234",  # one clause: nothing besides the request
    "the zip broke, order 10234",  # no request clause: the message is left to the question
])
async def test_no_reason_is_made_up_from_the_request(store: ConversationStore, text: str) -> None:
    engine = light_engine(store)
    reply = await say(engine, None, text)
    assert reply.action in ("utter_ask_reason", "action_order_status", "utter_fallback")
    assert (await engine.get_conversation(reply.conversation_id)).slots.get("reason") in (None, "")


async def test_the_answer_may_come_after_an_aside(store: ConversationStore) -> None:
    engine = light_engine(store)
    asked = await say(engine, None, "I want to return order 10234")
    assert asked.action == "utter_ask_reason"
    aside = await say(engine, asked.conversation_id, "thank you")  # small talk: not the reason
    assert aside.action == "utter_thanks"
    answered = await say(engine, asked.conversation_id, "the zip broke")
    assert answered.action == "action_return"


async def test_the_message_after_a_finished_task_is_not_taken_as_its_answer(store: ConversationStore) -> None:
    engine = light_engine(store)
    done = await say(engine, None, "I want to return order 10234, the zip broke")
    assert done.action == "action_return"
    after = await say(engine, done.conversation_id, "what colours are there")
    assert after.action != "action_return"


class _ThresholdNLU:
    """The keyword parser, except that "where's ..." is turned away as out of scope by a threshold, the way the trained
    model turns away a message it is unsure of while its best in-scope intent is still ranked second."""

    def __init__(self) -> None:
        from tests.channels.conftest import KeywordNLU

        self.inner = KeywordNLU()

    def parse(self, text: str) -> Any:
        import dataclasses

        parse = self.inner.parse(text)
        if text.startswith("where's"):
            return dataclasses.replace(parse, intent="out_of_scope", confidence=0.35,
                                       ranking=(("out_of_scope", 0.35), ("order_status", 0.65), ("inform", 0.3)))
        return parse


@pytest.mark.parametrize(("text", "action"), [
    ("where's 19999", "action_order_status"),  # a value of the order task's slot: the bot's business
    ("where's the nearest cinema", "utter_fallback"),  # no value: out of scope stays out of scope
])
async def test_a_value_of_a_task_keeps_a_doubtful_message_in_scope(store: ConversationStore, text: str, action: str) -> None:
    engine = light_engine(store)
    engine.parts.nlu = _ThresholdNLU()
    assert (await say(engine, None, text)).action == action


async def test_a_value_asked_for_is_an_answer_however_unsure_the_intent(store: ConversationStore) -> None:
    engine = light_engine(store)
    asked = await say(engine, None, "where is my order")
    assert asked.action == "utter_ask_order_id"
    engine.parts.nlu = _DoubtfulNLU()
    answered = await say(engine, asked.conversation_id, "umm 10234 i think")
    assert answered.action == "action_order_status"
    unasked = await say(engine, None, "umm 10234 i think")  # asked nothing, but an order id is what a task starts on
    assert unasked.action == "action_order_status"
    doubtful = await say(engine, None, "umm i think so")  # no value: a doubtful message stays doubtful
    assert doubtful.action == "utter_fallback"


async def test_a_value_asked_for_is_an_answer_even_read_as_out_of_scope(store: ConversationStore) -> None:
    engine = light_engine(store)
    asked = await say(engine, None, "where is my order")
    engine.parts.nlu = _OutOfScopeNLU()
    answered = await say(engine, asked.conversation_id, "the thing, 10234")
    assert answered.action == "action_order_status"


class _OutOfScopeNLU(_ThresholdNLU):
    """Every message read confidently as out of scope (0.7), an order id tagged in it all the same."""

    def parse(self, text: str) -> Any:
        import dataclasses

        return dataclasses.replace(self.inner.parse(text), intent="out_of_scope", confidence=0.7,
                                   ranking=(("out_of_scope", 0.7), ("greet", 0.3)))


class _DoubtfulNLU(_ThresholdNLU):
    """Every message read as a greeting at 0.3, whatever order id it carries: the classifier is unsure of it."""

    def parse(self, text: str) -> Any:
        import dataclasses

        return dataclasses.replace(self.inner.parse(text), intent="greet", confidence=0.3,
                                   ranking=(("greet", 0.3), ("thanks", 0.2)))


class _TakesTheRunnerUp:
    """A learned policy's choice where it learned to trust the runner-up: its action whenever one is offered."""

    name = "learned"

    def __init__(self, rules: Any) -> None:
        self.rules = rules

    def choose(self, observation: Any, allowed: Any) -> Any:
        from policy import Decision

        if observation.runner_up_actions:
            return Decision(observation.runner_up_actions[0], 1.0, tuple(allowed), self.name)
        return self.rules.choose(observation, allowed)


async def test_a_policy_that_acts_on_the_runner_up_moves_the_conversation_as_that_intent(
        store: ConversationStore) -> None:
    engine = light_engine(store)
    engine.parts.nlu = _ThresholdNLU()
    rules = engine.parts.policy
    assert (await say(engine, None, "where's my parcel")).action == "utter_fallback"  # the rules read the top intent
    engine.parts.policy = _TakesTheRunnerUp(rules)
    asked = await say(engine, None, "where's my parcel")
    assert asked.action == "utter_ask_order_id"
    conversation = await engine.get_conversation(asked.conversation_id)
    assert conversation.state == "status_need_id" and conversation.fallback_streak == 0
    events = await engine.conversation_events(asked.conversation_id)
    action = next(e for e in events if e.type == "action")
    assert action.data["read_as"] == "order_status" and action.data["state_after"] == "status_need_id"
    engine.parts.policy = rules
    answered = await say(engine, asked.conversation_id, "10234")
    assert answered.action == "action_order_status"
