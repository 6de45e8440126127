"""`kefu policy` on a bot folder: the simulator's view of the bot, training with its gate, and evaluate's JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kefu.config import Bot
from kefu.errors import ConfigError
from kefu.policy_cli import PolicySetupError, app, measure_noise, policy_config, sim_bot, train_policy
from policy.gate import gate_status
from policy.train import TrainConfig
from tests.policy.tinybot import NOISE, write_tiny_bot

HELD_OUT = NOISE.__class__.from_dict({**NOISE.to_dict(), "confusion": {"order_food": {"out_of_scope": 5}},
                                      "source": "another made-up NLU"})


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_bot(tmp_path_factory.mktemp("tiny"))


def test_the_simulator_reads_values_from_annotations_lookups_and_the_bots_data(tiny_dir: Path) -> None:
    bot = sim_bot(Bot.load(tiny_dir))
    assert bot.values["party_size"] == ("2", "4", "6")  # annotations
    assert {"dumplings", "fried rice"} <= set(bot.values["dish"])  # the lookup table
    assert {"spring rolls", "mapo tofu", "noodles"} <= set(bot.values["dish"])  # data/menu.yml, annotations
    assert bot.values["note"] == ()  # said in free text only: the simulator makes values up
    assert bot.entities == ("party_size", "day", "dish") and bot.confidence_threshold == 0.5
    assert {m.slot for m in bot.from_text} == {"note"}


def test_noise_is_measured_on_a_trained_nlu_only(tiny_dir: Path) -> None:
    with pytest.raises(PolicySetupError, match="no trained NLU"):
        measure_noise(Bot.load(tiny_dir))


def test_train_gate_and_evaluate_a_bot_folder(tiny_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "policy"
    config = TrainConfig(steps=2000, eval_every=2000, eval_episodes=30, eval_noise=(0.0, 0.3), gate_episodes=60,
                         warmup_steps=200, hidden=(32,), batch_size=64, progress=False)
    report = train_policy(tiny_dir, out, config, noise={"training": NOISE, "held_out": HELD_OUT})
    assert (out / "noise.json").is_file() and (out / "gate.json").is_file()
    assert gate_status(out)[0] == report["gate"]["passed"]
    runner = CliRunner()
    args = ["evaluate", "--bot", str(tiny_dir), "--policy", str(out), "--episodes", "40", "--noise", "0,0.3", "--json"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    result = json.loads(first.output)
    assert [r["noise"] for r in result["levels"]] == [0.0, 0.3]
    assert set(result["levels"][0]) == {"noise", "learned", "fsm"}
    assert runner.invoke(app, args).output == first.output
    held = runner.invoke(app, [*args, "--users", "held-out"])
    assert held.exit_code == 0 and json.loads(held.output) != result
    bad = runner.invoke(app, [*args, "--users", "nobody"])
    assert bad.exit_code != 0


def test_the_policy_step_budget_comes_from_bot_yml_and_the_command_line(tiny_dir: Path) -> None:
    bot = Bot.load(tiny_dir)
    assert policy_config(bot) == TrainConfig()
    bot.config.policy_training = {"steps": 80_000, "gamma": 0.9}
    assert (policy_config(bot).steps, policy_config(bot).gamma) == (80_000, 0.9)
    assert policy_config(bot, steps=500, seed=3) == TrainConfig(steps=500, gamma=0.9, seed=3)  # the command line wins
    assert policy_config(bot, steps=None).steps == 80_000  # an option not given changes nothing
    bot.config.policy_training = {"deviation_margins": [1.0, 2.0]}  # a YAML list: the config's tuple
    assert policy_config(bot).deviation_margins == (1.0, 2.0)
    bot.config.policy_training = {"stepz": 1}
    with pytest.raises(ConfigError, match="policy_training: unknown setting.*stepz"):
        policy_config(bot)
