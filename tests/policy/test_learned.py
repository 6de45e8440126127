"""The learned policy: masking under adversarial Q-values, save/load, and a tiny training run."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from policy import Decision, Observation, PolicyError
from policy.learned import LearnedPolicy
from policy.model import PolicyNetConfig, QNetwork
from policy.simulator import DialogueSimulation, ShopDomain, summarise
from policy.train import TrainConfig, feature_space, train

BOT = Path(__file__).resolve().parents[2] / "examples" / "shop"


@pytest.fixture(scope="module")
def domain() -> ShopDomain:
    return ShopDomain.from_bot(BOT)


def policy_with_bias(domain: ShopDomain, bias: dict[str, float]) -> LearnedPolicy:
    """A network whose Q-values are exactly ``bias`` whatever the input (an adversarial net)."""
    config = PolicyNetConfig(features=feature_space(domain), hidden=(8,))
    net = QNetwork(config)
    last = net.net[-1]
    assert isinstance(last, torch.nn.Linear)
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([bias.get(a, 0.0) for a in config.features.actions]))
    return LearnedPolicy(net, config)


def test_a_forbidden_action_is_never_taken_even_when_it_has_the_highest_q(domain: ShopDomain) -> None:
    actions = domain.flows.actions
    obs = Observation(state="idle", intent="greet", confidence=0.9)
    allowed = ["utter_fallback", "utter_greet"]
    for forbidden in actions:
        if forbidden in allowed:
            continue
        pol = policy_with_bias(domain, {forbidden: 1e9, "utter_greet": -5.0, "utter_fallback": -7.0})
        decision = pol.choose(obs, allowed)
        assert decision.action == "utter_greet" and decision.score == pytest.approx(-5.0)
        assert decision.allowed == tuple(allowed) and decision.policy == "learned"


def test_adversarial_policies_stay_inside_the_real_flows_masks(domain: ShopDomain) -> None:
    sim = DialogueSimulation(domain)
    rng = random.Random(0)
    checked = 0
    for trial in range(20):
        bias = {a: rng.uniform(-1e6, 1e6) for a in domain.flows.actions}
        inner = policy_with_bias(domain, bias)

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
    assert checked > 200


def test_a_mask_of_unknown_actions_is_an_error(domain: ShopDomain) -> None:
    pol = policy_with_bias(domain, {})
    assert pol.compatible(domain.flows.actions) and not pol.compatible([*domain.flows.actions, "utter_new_thing"])
    with pytest.raises(PolicyError):
        pol.choose(Observation(state="idle", intent="greet", confidence=0.9), ["utter_new_thing"])
    with pytest.raises(PolicyError):
        pol.choose(Observation(state="idle", intent="greet", confidence=0.9), [])


class RandomPolicy:
    name = "random"

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def choose(self, obs: Observation, allowed: Sequence[str]) -> Decision:
        return Decision(self.rng.choice(list(allowed)), 0.0, tuple(allowed), self.name)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("policy")
    cfg = TrainConfig(episodes=1500, eval_every=1500, eval_episodes=50, eval_noise=(0.1,), warmup_steps=300,
                      eps_fraction=0.5, hidden=(64, 64), max_minutes=0, progress=False)
    return out, train(BOT, out, cfg)


def test_tiny_training_beats_random_and_writes_its_artifacts(tiny: tuple[Path, dict], domain: ShopDomain) -> None:
    out, _ = tiny
    assert (out / "model.safetensors").is_file() and (out / "curves.png").stat().st_size > 1000
    assert json.loads((out / "report.json").read_text())["algorithm"].startswith("double DQN")
    assert not list(out.glob("*.pt")) and not list(out.glob("*.pkl"))
    sim = DialogueSimulation(domain)
    learned = LearnedPolicy.load(out)
    trained = summarise([sim.run(learned, 0.1, 900_000 + i) for i in range(300)])
    rand = RandomPolicy(0)
    baseline = summarise([sim.run(rand, 0.1, 900_000 + i) for i in range(300)])
    assert trained["success_rate"] > baseline["success_rate"] + 0.3
    assert trained["avg_reward"] > baseline["avg_reward"]


def test_save_load_round_trip_gives_identical_decisions(tiny: tuple[Path, dict], domain: ShopDomain,
                                                        tmp_path: Path) -> None:
    out, _ = tiny
    first = LearnedPolicy.load(out)
    first.save(tmp_path)
    second = LearnedPolicy.load(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text()) == json.loads((out / "config.json").read_text())
    seen: list[tuple[Observation, tuple[str, ...]]] = []

    class Recorder:
        name = "recorder"

        def choose(self, obs: Observation, allowed: Sequence[str]) -> Decision:
            seen.append((obs, tuple(allowed)))
            return first.choose(obs, allowed)

    sim = DialogueSimulation(domain)
    for i in range(100):
        sim.run(Recorder(), 0.3, i)
    assert len(seen) > 150
    for obs, allowed in seen:
        assert first.choose(obs, allowed) == second.choose(obs, allowed)


def test_training_is_deterministic(tmp_path: Path) -> None:
    cfg = TrainConfig(episodes=200, eval_every=200, eval_episodes=10, eval_noise=(0.1,), warmup_steps=100,
                      hidden=(16,), max_minutes=0, progress=False)
    train(BOT, tmp_path / "a", cfg)
    train(BOT, tmp_path / "b", cfg)
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()
