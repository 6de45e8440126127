"""The user simulator: goal completion, patience, and the noise channel's statistics."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from policy import FSMPolicy
from policy.simulator import DialogueSimulation, Goal, NoiseChannel, ShopDomain, SimConfig, SimulatedUser, UserAct

BOT = Path(__file__).resolve().parents[2] / "examples" / "shop"
ORDERS = frozenset({"10234", "10388"})


@pytest.fixture(scope="module")
def domain() -> ShopDomain:
    return ShopDomain.from_bot(BOT)


def user(kind: str, intent: str, **kw: object) -> SimulatedUser:
    u = SimulatedUser(Goal(kind=kind, intent=intent, patience=2, **kw), ORDERS)  # type: ignore[arg-type]
    u.first_act()
    return u


def test_domain_is_read_from_the_bot(domain: ShopDomain) -> None:
    assert "10234" in domain.order_ids and "damaged" in domain.reasons
    assert domain.flows.initial_state == "idle" and domain.confidence_threshold == 0.5


def test_return_succeeds_only_with_the_right_order_and_reason() -> None:
    u = user("return", "return_request", order_id="10234", reason="damaged")
    assert u.react("action_return", {"order_id": "10234", "reason": "damaged"}) is None
    assert u.success and u.failed is None
    wrong_order = user("return", "return_request", order_id="10234", reason="damaged")
    wrong_order.react("action_return", {"order_id": "10388", "reason": "damaged"})
    assert not wrong_order.success and wrong_order.failed == "wrong_return"
    wrong_reason = user("return", "return_request", order_id="10234", reason="damaged")
    wrong_reason.react("action_return", {"order_id": "10234", "reason": "wrong size"})
    assert wrong_reason.failed == "wrong_return"


def test_order_status_needs_the_goal_order_and_never_a_strangers() -> None:
    u = user("order_status", "order_status", order_id="10234")
    assert u.react("action_order_status", {"order_id": "10234"}) is None and u.success
    leak = user("order_status", "order_status", order_id="10234")
    assert leak.react("action_order_status", {"order_id": "10388"}) is None
    assert leak.failed == "wrong_order_disclosed"
    missing = user("order_status", "order_status", order_id="10234")
    again = missing.react("action_order_status", {"order_id": "12043"})  # not an order: "can't find it"
    assert again == UserAct("order_status", (("order_id", "10234"),)) and not missing.done
    ret = user("return", "return_request", order_id="10234", reason="damaged")  # its own order's status
    assert ret.react("action_order_status", {"order_id": "10234"}) is not None
    assert not ret.done and ret.frustration == 1


def test_handoff_is_success_only_for_complaints() -> None:
    c = user("complaint", "complaint")
    c.react("action_handoff", {})
    assert c.success
    s = user("order_status", "order_status", order_id="10234")
    s.react("action_handoff", {})
    assert s.failed == "unwanted_handoff"


def test_kb_answer_must_follow_the_question_and_user_answers_requests() -> None:
    kb = user("kb", "shipping_question")
    kb.react("action_answer_kb", {})
    assert kb.success
    r = user("return", "return_request", order_id="10234", reason="damaged")
    assert r.react("utter_ask_order_id", {}) == UserAct("inform", (("order_id", "10234"),))
    assert r.react("utter_ask_reason", {"order_id": "10234"}) == UserAct("inform", (("reason", "damaged"),))
    assert r.frustration == 0  # nothing was asked twice


def test_patience_runs_out_after_unproductive_turns() -> None:
    u = user("order_status", "order_status", order_id="10234")  # patience 2
    assert u.react("utter_fallback", {}) is not None
    assert u.react("utter_fallback", {}) is not None
    assert u.react("utter_fallback", {}) is None
    assert u.failed == "patience" and not u.success


def test_chitchat_needs_matching_replies() -> None:
    u = SimulatedUser(Goal(kind="chitchat", intent="greet", smalltalk=("greet", "goodbye"), patience=1), ORDERS)
    assert u.first_act() == UserAct("greet")
    assert u.react("utter_greet", {}) == UserAct("goodbye")
    assert u.react("utter_goodbye", {}) is None and u.success


def test_closing_acts_after_the_task_and_out_of_scope_goals() -> None:
    u = user("kb", "shipping_question", smalltalk=("thanks", "goodbye"))
    assert u.react("action_answer_kb", {}) == UserAct("thanks") and not u.done
    assert u.react("utter_goodbye", {}) == UserAct("thanks") and u.frustration == 1  # wrong reply: said again
    assert u.react("utter_thanks", {}) == UserAct("goodbye")
    assert u.react("action_handoff", {}) is None and u.failed == "unwanted_handoff"
    oos = user("out_of_scope", "out_of_scope", smalltalk=("out_of_scope",))
    assert oos.react("utter_greet", {}) == UserAct("out_of_scope")
    assert oos.react("utter_fallback", {}) == UserAct("out_of_scope") and not oos.done
    assert oos.react("utter_fallback", {}) is None and oos.success


def test_noise_channel_error_rate_and_confidence(domain: ShopDomain) -> None:
    rng = random.Random(0)
    act = UserAct("return_request", (("order_id", "10234"), ("reason", "damaged")))
    clean = NoiseChannel(domain, SimConfig(), 0.0)
    assert all(clean.parse(act, rng).correct for _ in range(300))
    noisy = NoiseChannel(domain, SimConfig(), 0.3)
    hyps = [noisy.parse(act, rng) for _ in range(4000)]
    errors = [h for h in hyps if not h.correct]
    assert 0.27 < len(errors) / len(hyps) < 0.33
    assert any(h.intent != "return_request" for h in errors)
    assert any(dict(h.entities).get("order_id") not in (None, "10234") for h in errors)
    assert any("order_id" not in dict(h.entities) or "reason" not in dict(h.entities) for h in errors)
    right = [h.confidence for h in hyps if h.correct]
    wrong = [h.confidence for h in errors if h.intent != "return_request"]
    assert sum(right) / len(right) > sum(wrong) / len(wrong) + 0.15  # errors are less confident ...
    assert max(wrong) > sorted(right)[len(right) // 10]  # ... but they reach into the right ones' range
    for h in hyps[:200]:
        assert h.ranking[0] == (h.intent, h.confidence)
        assert abs(sum(p for _, p in h.ranking) - 1.0) < 1e-6
        assert all(p <= h.confidence for _, p in h.ranking)


def test_same_seed_same_user_and_the_fsm_is_perfect_without_noise(domain: ShopDomain) -> None:
    sim = DialogueSimulation(domain)
    fsm = FSMPolicy(domain.flows.default_policy)
    a, b = sim.run(fsm, 0.3, 7), sim.run(fsm, 0.3, 7)
    assert (a.goal, a.actions, a.success) == (b.goal, b.actions, b.success)
    clean = [sim.run(fsm, 0.0, i) for i in range(200)]
    assert sum(e.success for e in clean) / len(clean) > 0.97


@pytest.mark.skipif(not (BOT / "models" / "nlu" / "model.safetensors").is_file(), reason="needs the trained NLU")
def test_calibration_measures_the_real_nlu_on_its_held_out_split() -> None:
    from policy.calibrate import measure_nlu

    m = measure_nlu(BOT)
    assert m["n"] == m["right"] + m["wrong_intent"] + m["wrong_slots"] > 50
    assert 0.0 <= m["semantic_error_rate"] < 0.5
    a, b = m["conf_correct"]
    assert a / (a + b) > 0.5  # right parses are confident on average
