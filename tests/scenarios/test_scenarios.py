"""Every scenario file in scenarios/ is one test, replayed against the real demo bot."""

from __future__ import annotations

from pathlib import Path

import pytest

from dialogue.scenarios import Scenario, run_scenario
from tests.conftest import SCENARIOS

FILES = sorted(SCENARIOS.glob("*.yml"))


def test_there_are_scenarios_for_both_languages() -> None:
    languages = {Scenario.load(p).language for p in FILES}
    assert len(FILES) >= 20 and languages == {"en", "zh"}


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
async def test_scenario(shop: object, path: Path) -> None:
    result = await run_scenario(shop.engine, Scenario.load(path))  # type: ignore[attr-defined]
    assert result.passed, "\n" + result.describe()
