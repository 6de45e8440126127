"""The FSM default policy obeys the mask and follows the bot's rule."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from policy import FSMPolicy, MaskViolation, Observation, PolicyError


def rule(obs: Observation, allowed: Sequence[str]) -> str:
    return "utter_greet" if obs.intent == "greet" else "action_order_status"


@pytest.fixture
def policy() -> FSMPolicy:
    return FSMPolicy(rule)


def test_choice_is_the_rule_and_records_the_mask(policy: FSMPolicy) -> None:
    decision = policy.choose(Observation(state="idle", intent="greet", confidence=0.9), ["utter_greet", "utter_fallback"])
    assert decision.action == "utter_greet"
    assert decision.allowed == ("utter_greet", "utter_fallback")
    assert decision.to_dict()["policy"] == "fsm"


def test_a_rule_that_breaks_the_mask_raises(policy: FSMPolicy) -> None:
    with pytest.raises(MaskViolation) as info:
        policy.choose(Observation(state="idle", intent="order_status", confidence=0.9), ["utter_ask_order_id"])
    assert info.value.action == "action_order_status"


def test_an_empty_mask_is_a_flows_bug(policy: FSMPolicy) -> None:
    with pytest.raises(PolicyError):
        policy.choose(Observation(state="idle", intent="greet", confidence=0.9), [])
