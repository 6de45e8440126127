"""A message that answers the bot's question is the answer: the task's values given before stay (a tagger's guess in
the answer does not replace them), on the real engine and store with model-free NLU."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.channels.conftest import light_engine

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def say(engine: Any, conversation_id: str | None, text: str) -> Any:
    return await engine.handle_message(conversation_id, uuid.uuid4().hex, text)


async def test_an_answer_keeps_the_values_given_before(store: Any) -> None:
    engine = light_engine(store)
    asked = await say(engine, None, "I want to return order 10234")
    assert asked.action == "utter_ask_reason"
    answered = await say(engine, asked.conversation_id, "the zip broke after 12345 minutes")  # an "order id" inside
    conversation = await engine.get_conversation(asked.conversation_id)
    assert conversation.slots["order_id"] == "10234"  # kept: the customer answered why, not which order
    assert conversation.slots.get("reason") in (None, "the zip broke after 12345 minutes")  # reset once done, or kept
    assert answered.action == "action_return"


async def test_a_new_value_outside_an_answer_still_replaces_the_old_one(store: Any) -> None:
    engine = light_engine(store)
    first = await say(engine, None, "where is my order 10234")
    await say(engine, first.conversation_id, "and order 55555?")
    conversation = await engine.get_conversation(first.conversation_id)
    assert conversation.slots["order_id"] == "55555"
