"""The demo shop's flows: the mask the FSM gives, the transitions it takes, and its default policy."""

from __future__ import annotations

import itertools
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from statemachine.exceptions import TransitionNotAllowed

from dialogue.domain import Domain
from dialogue.flows import FlowContext, FlowError, Flows, load_flows
from policy import FSMPolicy, Observation
from tests.conftest import shop_dialogue

SHOP = Path(__file__).resolve().parents[2] / "examples" / "shop"


@pytest.fixture(scope="module")
def flows() -> Flows:
    """The shop's compiled ``dialogue.yml``: these expectations were written for its hand-written FSM and still hold."""
    return shop_dialogue()[1]


@pytest.mark.parametrize(
    ("state", "intent", "slots", "must", "must_not"),
    [
        ("idle", "order_status", {}, {"utter_ask_order_id"}, {"action_order_status", "action_return"}),
        ("idle", "order_status", {"order_id": "10234"}, {"action_order_status"}, {"action_return"}),
        ("idle", "return_request", {"order_id": "10234"}, {"utter_ask_reason"}, {"action_return"}),
        ("return_need_reason", "inform", {"order_id": "10234", "reason": "broken"}, {"action_return"}, set()),
        ("status_need_id", "inform", {"order_id": "10234"}, {"action_order_status"}, {"action_return"}),
        ("idle", "greet", {}, {"utter_greet", "utter_fallback", "action_handoff"}, {"utter_ask_order_id"}),
        ("handed_off", "greet", {}, {"utter_handoff"}, {"utter_greet", "action_order_status"}),
    ],
)
def test_mask(flows: Flows, state: str, intent: str, slots: dict[str, str], must: set[str], must_not: set[str]) -> None:
    allowed = set(flows.allowed(FlowContext(state, intent, slots)))
    assert must <= allowed
    assert not (must_not & allowed)


@pytest.mark.parametrize(
    ("state", "intent", "slots", "action", "next_state"),
    [
        ("idle", "order_status", {}, "utter_ask_order_id", "status_need_id"),
        ("status_need_id", "inform", {"order_id": "10234"}, "action_order_status", "idle"),
        ("idle", "return_request", {}, "utter_ask_order_id", "return_need_id"),
        ("return_need_id", "inform", {"order_id": "10234"}, "utter_ask_reason", "return_need_reason"),
        ("return_need_reason", "inform", {"order_id": "1", "reason": "x"}, "action_return", "idle"),
        ("return_need_id", "goodbye", {}, "utter_goodbye", "idle"),
        ("idle", "complaint", {}, "action_handoff", "handed_off"),
    ],
)
def test_transitions(flows: Flows, state: str, intent: str, slots: dict[str, str], action: str, next_state: str) -> None:
    assert flows.advance(FlowContext(state, intent, slots), action) == next_state


def test_forbidden_transition_raises(flows: Flows) -> None:
    with pytest.raises(FlowError):
        flows.advance(FlowContext("idle", "greet", {}), "action_order_status")


def test_unknown_stored_state_raises(flows: Flows) -> None:
    with pytest.raises(FlowError):
        flows.allowed(FlowContext("no_such_state", "greet", {}))


@pytest.mark.parametrize(
    ("state", "intent", "slots", "low", "expected"),
    [
        ("idle", "greet", {}, False, "utter_greet"),
        ("idle", "order_status", {}, False, "utter_ask_order_id"),
        ("idle", "order_status", {"order_id": "1"}, False, "action_order_status"),
        ("idle", "return_request", {"order_id": "1"}, False, "utter_ask_reason"),
        ("return_need_reason", "inform", {"order_id": "1", "reason": "x"}, False, "action_return"),
        ("idle", "shipping_question", {}, False, "action_answer_kb"),
        ("idle", "complaint", {}, False, "action_handoff"),
        ("idle", "order_status", {"order_id": "1"}, True, "utter_fallback"),
        ("idle", "inform", {"order_id": "1"}, False, "utter_fallback"),
        ("handed_off", "order_status", {}, False, "utter_handoff"),
    ],
)
def test_default_policy_within_mask(
    flows: Flows, state: str, intent: str, slots: dict[str, str], low: bool, expected: str
) -> None:
    policy = FSMPolicy(flows.default_policy)
    allowed = flows.allowed(FlowContext(state, intent, slots))
    obs = Observation(state=state, intent=intent, confidence=0.3 if low else 0.95, filled_slots=frozenset(slots),
                      low_confidence=low)
    assert policy.choose(obs, allowed).action == expected


def test_broken_flows_file_names_itself(tmp_path: Path) -> None:
    bad = tmp_path / "flows.py"
    bad.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(FlowError, match="flows.py"):
        load_flows(bad)


# ---------------------------------------------------------------- the reused machine answers like a fresh one


def _fresh_allowed(flows: Flows, state: str, intent: str, slots: dict[str, str]) -> list[str]:
    """The mask as computed before machines were reused: a new python-statemachine instance per call."""
    return sorted(e.id for e in flows.machine(FlowContext(state, intent, dict(slots))).enabled_events())


def _fresh_advance(flows: Flows, state: str, intent: str, slots: dict[str, str], action: str) -> str | None:
    context = FlowContext(state, intent, dict(slots))
    try:
        flows.machine(context).send(action)
    except TransitionNotAllowed:
        return None
    return context.state


def test_reused_machine_equals_a_fresh_one_for_every_state_intent_slots_and_action(flows: Flows) -> None:
    domain = Domain.load(SHOP / "domain.yml")
    slot_values: list[dict[str, str]] = []
    for order_id, reason in itertools.product((None, "", "10234"), (None, "", "broken")):
        slots = {k: v for k, v in (("order_id", order_id), ("reason", reason)) if v is not None}
        slot_values.append(slots)
    cases = list(itertools.product(flows.states, [*domain.intents, "nlu_fallback"], slot_values))
    random.Random(7).shuffle(cases)  # interleave states, so a call never finds the machine where the last left it
    checked = 0
    for state, intent, slots in cases:
        assert flows.allowed(FlowContext(state, intent, dict(slots))) == _fresh_allowed(flows, state, intent, slots)
        for action in flows.actions:
            expected = _fresh_advance(flows, state, intent, slots, action)
            context = FlowContext(state, intent, dict(slots))
            if expected is None:
                with pytest.raises(FlowError):
                    flows.advance(context, action)
            else:
                assert flows.advance(context, action) == expected == context.state
            # the reused machine was not moved by the call: the same question gets the same answer
            assert flows.allowed(FlowContext(state, intent, dict(slots))) == _fresh_allowed(flows, state, intent, slots)
            checked += 1
    assert checked == len(flows.states) * (len(domain.intents) + 1) * 9 * len(flows.actions)


def test_flows_are_shared_safely_between_threads(flows: Flows) -> None:
    """Each thread reuses a machine of its own: concurrent turns never see each other's state."""
    contexts = [("idle", "order_status", {}), ("status_need_id", "inform", {"order_id": "1"}),
                ("return_need_id", "inform", {"order_id": "1"}), ("handed_off", "greet", {})]
    expected = [_fresh_allowed(flows, *c) for c in contexts]

    def work(i: int) -> bool:
        state, intent, slots = contexts[i % len(contexts)]
        return all(flows.allowed(FlowContext(state, intent, dict(slots))) == expected[i % len(contexts)]
                   for _ in range(200))

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(work, range(16)))
