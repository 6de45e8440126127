"""Every scenario file in scenarios/ is one test per policy, replayed against the real demo bot."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dialogue.scenarios import Scenario, run_scenario
from policy import FSMPolicy
from tests.conftest import SCENARIOS

FILES = sorted(SCENARIOS.glob("*.yml"))


def test_there_are_scenarios_for_both_languages() -> None:
    languages = {Scenario.load(p).language for p in FILES}
    assert len(FILES) >= 20 and languages == {"en", "zh"}


@pytest.fixture(params=["fsm", "served"])
def engine(request: pytest.FixtureRequest, shop: Any) -> Iterator[Any]:
    """The running bot with the FSM's default policy, or with the policy it serves (``policy: auto``: the learned,
    deep-RL one when it passed its gate at training time, which replays these very scenarios; else the rules). A
    learned policy that fails a scenario is never served: the gate, not this test, is where that shows
    (``models/policy/gate.json``, and ``kefu serve`` logs why)."""
    parts = shop.engine.parts
    original = parts.policy
    if request.param == "fsm":
        parts.policy = FSMPolicy(parts.flows.default_policy)
    try:
        yield shop.engine
    finally:
        parts.policy = original


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
async def test_scenario(engine: Any, path: Path) -> None:
    result = await run_scenario(engine, Scenario.load(path))
    assert result.passed, "\n" + result.describe()
