"""The FSM default policy obeys the mask and follows the bot's rule."""

from __future__ import annotations

import dataclasses
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


def test_the_rules_read_the_top_intent_and_never_take_the_runner_ups_actions(policy: FSMPolicy) -> None:
    obs = Observation(state="idle", intent="greet", confidence=0.4, runner_up="order_status",
                      runner_up_actions=("action_order_status",))
    decision = FSMPolicy(lambda o, allowed: allowed[-1]).choose(obs, ["utter_greet", "action_order_status"])
    assert decision.action == "utter_greet" and decision.allowed == ("utter_greet", "action_order_status")
    with pytest.raises(MaskViolation):  # the rule proposes the runner-up's action: outside the top intent's mask
        policy.choose(dataclasses.replace(obs, intent="order_status"), ["utter_greet", "action_order_status"])
