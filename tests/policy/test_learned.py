"""The learned policy never leaves the mask, and saves and loads without changing a decision."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from policy import Decision, Observation, PolicyError
from policy.features import FeatureSpace
from policy.learned import LearnedPolicy
from policy.model import PolicyNetConfig, QNetwork
from policy.simulator import DialogueSimulation, SimBot, Users
from policy.train import feature_space


def policy_with_bias(bot: SimBot, bias: dict[str, float], seed: int = 0) -> LearnedPolicy:
    """A network whose Q-values are exactly ``bias`` whatever the input (an adversarial net)."""
    torch.manual_seed(seed)
    config = PolicyNetConfig(features=feature_space(bot), hidden=(8,))
    net = QNetwork(config)
    last = net.net[-1]
    assert isinstance(last, torch.nn.Linear)
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([bias.get(a, 0.0) for a in config.features.actions]))
    return LearnedPolicy(net, config)


def test_a_forbidden_action_is_never_taken_even_with_the_highest_q(tiny: SimBot) -> None:
    obs = Observation(state="idle", intent="greet", confidence=0.9)
    allowed = ["utter_fallback", "utter_greet"]
    for forbidden in tiny.flows.actions:
        if forbidden in allowed:
            continue
        pol = policy_with_bias(tiny, {forbidden: 1e9, "utter_greet": -5.0, "utter_fallback": -7.0})
        decision = pol.choose(obs, allowed)
        assert decision.action == "utter_greet" and decision.score == pytest.approx(-5.0)
        assert decision.allowed == tuple(allowed) and decision.policy == "learned"


def test_adversarial_policies_stay_inside_the_real_flows_masks(tiny: SimBot, trainees: Users) -> None:
    sim = DialogueSimulation(tiny, trainees)
    rng = random.Random(0)
    checked = 0
    for trial in range(10):
        inner = policy_with_bias(tiny, {a: rng.uniform(-1e6, 1e6) for a in tiny.flows.actions})

        class Checked:
            name = "checked"
            policy = inner

            def choose(self, obs: Observation, allowed: Sequence[str]) -> Decision:
                nonlocal checked
                d = self.policy.choose(obs, allowed)
                assert d.action in allowed
                checked += 1
                return d

        for i in range(10):
            sim.run(Checked(), 0.3, trial * 100 + i)
    assert checked > 100


def test_a_mask_of_unknown_actions_is_an_error(tiny: SimBot) -> None:
    pol = policy_with_bias(tiny, {})
    actions = tiny.flows.actions
    assert pol.compatible(actions) and not pol.compatible([*actions, "utter_new_thing"])
    with pytest.raises(PolicyError):
        pol.choose(Observation(state="idle", intent="greet", confidence=0.9), ["utter_new_thing"])
    with pytest.raises(PolicyError):
        pol.choose(Observation(state="idle", intent="greet", confidence=0.9), [])


def test_save_load_round_trip_gives_identical_decisions(tiny: SimBot, trainees: Users, tmp_path: Path) -> None:
    first = policy_with_bias(tiny, {a: float(i) for i, a in enumerate(tiny.flows.actions)})
    torch.nn.init.normal_(first.net.net[-1].weight)  # type: ignore[arg-type]
    first.save(tmp_path)
    second = LearnedPolicy.load(tmp_path)
    seen: list[tuple[Observation, tuple[str, ...]]] = []

    class Recorder:
        name = "recorder"

        def choose(self, obs: Observation, allowed: Sequence[str]) -> Decision:
            seen.append((obs, tuple(allowed)))
            return first.choose(obs, allowed)

    sim = DialogueSimulation(tiny, trainees)
    for i in range(60):
        sim.run(Recorder(), 0.3, i)
    assert len(seen) > 100
    assert all(first.choose(obs, allowed) == second.choose(obs, allowed) for obs, allowed in seen)


@pytest.mark.parametrize(("margin", "expected"), [(None, "utter_greet"), (0.5, "utter_greet"), (3.0, "utter_fallback")])
def test_the_rules_hold_unless_the_network_is_sure_by_the_margin(tiny: SimBot, margin: float | None,
                                                                 expected: str, tmp_path: Path) -> None:
    """The network prefers utter_greet by 2.0 over the rules' choice: it leaves the rules only under a smaller margin."""
    from policy import FSMPolicy

    obs = Observation(state="idle", intent="greet", confidence=0.9)
    allowed = ["utter_fallback", "utter_greet"]
    rules = FSMPolicy(lambda observation, mask: "utter_fallback")
    inner = policy_with_bias(tiny, {"utter_greet": 1.0, "utter_fallback": -1.0})
    meta = {} if margin is None else {"deviation_margin": margin}
    config = PolicyNetConfig(features=inner.config.features, hidden=inner.config.hidden, meta=meta)
    LearnedPolicy(inner.net, config).save(tmp_path)
    assert LearnedPolicy.load(tmp_path, rules=rules).choose(obs, allowed).action == expected
    assert LearnedPolicy.load(tmp_path).choose(obs, allowed).action == "utter_greet"  # no rules given: greedy


RUNNER_UP = Observation(state="idle", intent="out_of_scope", confidence=0.4, runner_up="book_table",
                        ranking=(("out_of_scope", 0.4), ("book_table", 0.35)),
                        runner_up_actions=("utter_ask_party_size",))


@pytest.mark.parametrize("trained_with_it", [True, False])
def test_the_runner_up_reading_is_taken_only_by_a_policy_trained_with_it(tiny: SimBot, trained_with_it: bool) -> None:
    pol = policy_with_bias(tiny, {"utter_ask_party_size": 5.0, "utter_fallback": 1.0})
    if not trained_with_it:  # a checkpoint from before the reading: its features have no runner-up block
        space = dataclasses.replace(pol.space, runner_up=False)
        pol = LearnedPolicy(QNetwork(PolicyNetConfig(features=space, hidden=(8,))), PolicyNetConfig(space, (8,)))
        with torch.no_grad():
            last = pol.net.net[-1]
            assert isinstance(last, torch.nn.Linear)
            last.weight.zero_()
            last.bias.copy_(torch.tensor([5.0 if a == "utter_ask_party_size" else 0.0 for a in space.actions]))
    decision = pol.choose(RUNNER_UP, ["utter_fallback", "utter_ask_party_size"])
    assert decision.action == ("utter_ask_party_size" if trained_with_it else "utter_fallback")


def test_the_margin_guards_departures_among_the_rules_actions_not_the_runner_ups(tiny: SimBot,
                                                                               tmp_path: Path) -> None:
    """The network values the runner-up's question 2.0 above the rules' fallback: under a margin of 3.0 it still asks
    it (the rules have no opinion on it), while a departure inside the top intent's mask needs the margin."""
    from policy import FSMPolicy

    rules = FSMPolicy(lambda observation, mask: "utter_fallback")
    inner = policy_with_bias(tiny, {"utter_ask_party_size": 1.0, "utter_greet": 1.0, "utter_fallback": -1.0})
    config = PolicyNetConfig(features=inner.config.features, hidden=inner.config.hidden, meta={"deviation_margin": 3.0})
    LearnedPolicy(inner.net, config).save(tmp_path)
    pol = LearnedPolicy.load(tmp_path, rules=rules)
    assert pol.choose(RUNNER_UP, ["utter_fallback", "utter_ask_party_size"]).action == "utter_ask_party_size"
    plain = dataclasses.replace(RUNNER_UP, runner_up=None, runner_up_actions=())
    assert pol.choose(plain, ["utter_fallback", "utter_greet"]).action == "utter_fallback"


def test_the_features_say_which_actions_are_the_runner_ups(tiny: SimBot) -> None:
    space = feature_space(tiny)
    assert space.runner_up and space.dim == dataclasses.replace(space, runner_up=False).dim + len(space.actions)
    plain = dataclasses.replace(RUNNER_UP, runner_up=None, runner_up_actions=())
    allowed = ["utter_fallback", "utter_ask_party_size"]
    a, b = space.encode(RUNNER_UP, allowed), space.encode(plain, allowed)
    tail = slice(space.dim - len(space.actions), space.dim)
    assert list(a[tail].nonzero()[0]) == [space.actions.index("utter_ask_party_size")] and not b[tail].any()
    assert (a[: tail.start] == b[: tail.start]).all()
    assert FeatureSpace.from_dict(space.to_dict()) == space
    assert not FeatureSpace.from_dict({k: v for k, v in space.to_dict().items() if k != "runner_up"}).runner_up


def row(margin: float, worst: float, mean: float) -> dict[str, float]:
    return {"margin": margin, "worst_diff": worst, "mean_success": mean}


@pytest.mark.parametrize(("rows", "expected"), [
    # validation cannot tell them apart: the rules' side (the largest margin), not unvalidated departures
    ([row(0.0, 0.0, 0.978), row(1.0, 0.0, 0.978), row(4.0, 0.0, 0.978)], 4.0),
    # one validation dialogue (1/300) better is noise: still the largest
    ([row(0.0, 0.0033, 0.979), row(4.0, 0.0, 0.978)], 4.0),
    # a smaller margin that wins by more than a dialogue on the worst level is kept
    ([row(0.0, 0.01, 0.98), row(0.5, 0.0, 0.98), row(4.0, -0.01, 0.97)], 0.0),
    # the worst level decides before the mean
    ([row(0.5, 0.0, 0.95), row(2.0, -0.02, 0.99)], 0.5),
])
def test_the_margin_kept_is_the_largest_that_validation_cannot_tell_from_the_best(
        rows: list[dict[str, float]], expected: float) -> None:
    from policy.train import pick_margin

    assert pick_margin(rows, 1 / 300) == expected
