"""Which policy `kefu serve` serves: `policy: auto` takes the learned one only when it passed its training-time gate,
and says why not otherwise; a corrupt checkpoint never takes the server down."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from kefu.app import MissingModel, choose_policy
from kefu.config import Bot, BotConfig
from policy import FSMPolicy
from policy.features import FeatureSpace
from policy.gate import GATE_FILE, gate_status, write_gate
from policy.learned import LearnedPolicy
from policy.model import PolicyNetConfig, QNetwork

ACTIONS = ("utter_fallback", "utter_greet")


class FakeFlows:
    actions = ACTIONS


def make_bot(tmp_path: Path, policy: str) -> Bot:
    return Bot(tmp_path, BotConfig.model_validate({"name": "tiny", "nlu_data": ["data/nlu.yml"], "policy": policy}))


def save_policy(bot: Bot, actions: tuple[str, ...] = ACTIONS, gate: object | None = None) -> None:
    space = FeatureSpace(states=("idle",), intents=("greet",), slots=(), actions=actions)
    config = PolicyNetConfig(features=space, hidden=(4,))
    LearnedPolicy(QNetwork(config), config).save(bot.policy_model)
    if isinstance(gate, dict):
        write_gate(bot.policy_model, gate)  # records the digest of the weights it judged
    elif gate is not None:
        (bot.policy_model / GATE_FILE).write_text(json.dumps(gate), encoding="utf-8")


@pytest.fixture
def fallback() -> FSMPolicy:
    return FSMPolicy(lambda obs, allowed: "utter_fallback")


def test_fsm_mode_never_loads_a_policy(tmp_path: Path, fallback: FSMPolicy) -> None:
    bot = make_bot(tmp_path, "fsm")
    save_policy(bot, gate={"passed": True})
    assert choose_policy(bot, FakeFlows(), fallback) is fallback


def test_auto_serves_the_learned_policy_that_passed_its_gate(tmp_path: Path, fallback: FSMPolicy) -> None:
    bot = make_bot(tmp_path, "auto")
    save_policy(bot, gate={"passed": True, "reasons": []})
    assert isinstance(choose_policy(bot, FakeFlows(), fallback), LearnedPolicy)


@pytest.mark.parametrize(
    ("gate", "why"),
    [
        ({"passed": False, "reasons": ["noise 0.3: learned 0.80 < fsm 0.85"]}, "noise 0.3: learned 0.80 < fsm 0.85"),
        (None, "never gated"),
        (["not", "an", "object"], "not a JSON object"),
    ],
)
def test_auto_falls_back_to_the_rules_and_logs_why(
    tmp_path: Path, fallback: FSMPolicy, caplog: pytest.LogCaptureFixture, gate: object, why: str
) -> None:
    bot = make_bot(tmp_path, "auto")
    save_policy(bot, gate=gate)
    with caplog.at_level(logging.WARNING, logger="kefu"):
        assert choose_policy(bot, FakeFlows(), fallback) is fallback
    assert why in caplog.text and "did not pass its gate" in caplog.text


def test_a_gate_judged_other_weights_does_not_count(tmp_path: Path, fallback: FSMPolicy) -> None:
    bot = make_bot(tmp_path, "auto")
    save_policy(bot, gate={"passed": True})
    save_policy(bot)  # retrained after its gate: the old verdict is not this policy's
    assert choose_policy(bot, FakeFlows(), fallback) is fallback


def test_auto_without_a_policy_serves_the_rules(tmp_path: Path, fallback: FSMPolicy) -> None:
    assert choose_policy(make_bot(tmp_path, "auto"), FakeFlows(), fallback) is fallback
    with pytest.raises(MissingModel, match="has none"):
        choose_policy(make_bot(tmp_path, "learned"), FakeFlows(), fallback)


def test_a_corrupt_checkpoint_is_named_not_a_traceback(tmp_path: Path, fallback: FSMPolicy,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    bot = make_bot(tmp_path, "auto")
    save_policy(bot)
    (bot.policy_model / "model.safetensors").write_bytes(b"\x00garbage")
    write_gate(bot.policy_model, {"passed": True})  # even a gate that vouches for these bytes cannot make them load
    with caplog.at_level(logging.WARNING, logger="kefu"):
        assert choose_policy(bot, FakeFlows(), fallback) is fallback
    assert "does not load" in caplog.text
    with pytest.raises(MissingModel, match="does not load"):
        choose_policy(make_bot(tmp_path, "learned"), FakeFlows(), fallback)


def test_a_policy_for_other_actions_is_not_served(tmp_path: Path, fallback: FSMPolicy) -> None:
    bot = make_bot(tmp_path, "auto")
    save_policy(bot, actions=("utter_fallback", "utter_bye"), gate={"passed": True})
    assert choose_policy(bot, FakeFlows(), fallback) is fallback
    with pytest.raises(MissingModel, match="other actions"):
        choose_policy(make_bot(tmp_path, "learned"), FakeFlows(), fallback)


def test_gate_status_reads_reasons(tmp_path: Path) -> None:
    bot = make_bot(tmp_path, "auto")
    save_policy(bot, gate={"passed": False, "reasons": ["a", "b"]})
    assert gate_status(bot.policy_model) == (False, "a; b")
