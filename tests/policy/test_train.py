"""Training end to end on the tiny bot: it learns, it is gated, and one seed gives one policy."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from policy import Decision, Observation
from policy.evaluate import evaluate
from policy.gate import GATE_FILE, gate_status, write_gate
from policy.learned import LearnedPolicy
from policy.simulator import DialogueSimulation, SimBot, Users, summarise
from policy.train import TrainConfig, train

SMALL = TrainConfig(steps=3000, eval_every=1500, eval_episodes=40, eval_noise=(0.0, 0.3), gate_episodes=100,
                    warmup_steps=300, hidden=(32,), batch_size=64, target_every=250, progress=False)


@pytest.fixture(scope="module")
def trained(tiny: SimBot, trainees: Users, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    a, b = tmp_path_factory.mktemp("policy_a"), tmp_path_factory.mktemp("policy_b")
    report = train(tiny, trainees, a, SMALL)
    train(tiny, trainees, b, SMALL)
    return a, b, report


class Uniform:
    name = "random"

    def __init__(self) -> None:
        import random

        self.rng = random.Random(0)

    def choose(self, obs: Observation, allowed: Sequence[str]) -> Decision:
        return Decision(self.rng.choice(list(allowed)), 0.0, tuple(allowed), self.name)


def test_training_writes_its_artifacts_and_learns(trained: tuple[Path, Path, dict[str, Any]], tiny: SimBot,
                                                  trainees: Users) -> None:
    out, _, report = trained
    for name in ("model.safetensors", "config.json", "report.json", "curves.png", GATE_FILE):
        assert (out / name).is_file(), name
    assert not list(out.glob("*.pt")) and not list(out.glob("*.pkl"))
    assert report["env_steps"] >= SMALL.steps and report["history"][-1]["env_steps"] == report["env_steps"]
    sim = DialogueSimulation(tiny, trainees)
    learned = summarise([sim.run(LearnedPolicy.load(out), 0.1, 900_000 + i) for i in range(200)])
    rand = summarise([sim.run(Uniform(), 0.1, 900_000 + i) for i in range(200)])
    assert learned["success_rate"] > rand["success_rate"] + 0.3


def test_evaluate_compares_both_policies_on_the_same_users(trained: tuple[Path, Path, dict[str, Any]],
                                                           tiny: SimBot, trainees: Users) -> None:
    out, _, _ = trained
    result = evaluate(tiny, LearnedPolicy.load(out), trainees, episodes=100, noise=(0.0, 0.3), progress=False,
                      details=True)
    assert [row["noise"] for row in result["levels"]] == [0.0, 0.3]
    for row in result["levels"]:
        for name in ("learned", "fsm"):
            assert set(row[name]) == {"success_rate", "avg_turns", "avg_reward", "failures"}
    assert result["levels"][0]["fsm"]["success_rate"] == 1.0


def test_one_seed_gives_the_same_weights_and_the_same_evaluation(trained: tuple[Path, Path, dict[str, Any]],
                                                                 tiny: SimBot, trainees: Users) -> None:
    a, b, _ = trained
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    runs = [json.dumps(evaluate(tiny, LearnedPolicy.load(d), trainees, episodes=100, noise=(0.15,), progress=False))
            for d in (a, b)]
    assert runs[0] == runs[1]


def test_the_gate_compares_with_the_fsm_on_unseen_users(trained: tuple[Path, Path, dict[str, Any]]) -> None:
    out, _, report = trained
    gate = json.loads((out / GATE_FILE).read_text())
    assert gate["seeds"][0] >= 7_000_000 and len(gate["levels"]) == len(SMALL.eval_noise)
    beaten = [r for r in gate["levels"] if r["learned"]["success_rate"] < r["fsm"]["success_rate"]]
    assert gate["passed"] == (not beaten) and len(gate["reasons"]) == len(beaten)
    passed, why = gate_status(out)
    assert passed == gate["passed"] and why
    assert report["gate"]["passed"] == gate["passed"]


def test_gate_status_refuses_what_was_not_gated_or_not_passed(trained: tuple[Path, Path, dict[str, Any]],
                                                               tmp_path: Path) -> None:
    out, _, _ = trained
    assert gate_status(tmp_path) == (False, f"no learned policy at {tmp_path}")
    LearnedPolicy.load(out).save(tmp_path)
    passed, why = gate_status(tmp_path)
    assert not passed and "never gated" in why
    reason = "at noise 0.3 the learned policy's success 0.800 is below"
    write_gate(tmp_path, {"passed": False, "reasons": [reason], "levels": []})
    assert gate_status(tmp_path) == (False, reason)
    write_gate(tmp_path, {"passed": True, "reasons": [], "levels": []})
    (tmp_path / "model.safetensors").write_bytes(b"other weights")
    passed, why = gate_status(tmp_path)
    assert not passed and "other weights" in why


def test_a_bot_may_train_without_the_runner_up_reading(tiny: SimBot, trainees: Users, tmp_path: Path) -> None:
    import dataclasses

    quick = dataclasses.replace(SMALL, steps=600, warmup_steps=100, eval_every=600, eval_episodes=10,
                                gate_episodes=10, deviation_margins=(), runner_up=False)
    train(tiny, trainees, tmp_path, quick)
    assert not LearnedPolicy.load(tmp_path).space.runner_up  # served on the top intent's mask alone
