"""Scenario replays with the learned policy in the loop (needs the demo bot's trained models)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.conftest import SCENARIOS, SHOP

POLICY_DIR = SHOP / "models" / "policy"
FILES = sorted(SCENARIOS.glob("*.yml"))
pytestmark = pytest.mark.skipif(
    not (POLICY_DIR / "model.safetensors").is_file() or not (SHOP / "models" / "nlu" / "model.safetensors").is_file(),
    reason="run `kefu train` and `kefu policy train` first",
)


class _WithLastAction:
    """Fills ``Observation.last_action`` the way the engine should (the previous turn's action).

    Scenarios replay one conversation at a time, so remembering the last decision is exact here.
    """

    name = "learned"

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.last: str | None = None

    def choose(self, observation: object, allowed: object) -> object:
        import dataclasses

        if observation.last_action is None and observation.turn > 1:  # type: ignore[attr-defined]
            observation = dataclasses.replace(observation, last_action=self.last)  # type: ignore[call-overload]
        decision = self.inner.choose(observation, allowed)  # type: ignore[attr-defined]
        self.last = decision.action
        return decision


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def learned_shop(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[object]:
    from kefu.app import running_bot
    from policy.learned import LearnedPolicy

    db = tmp_path_factory.mktemp("shop-learned") / "shop.db"
    async with running_bot(SHOP, store_url=f"sqlite+aiosqlite:///{db}", generation="template", toxicity=False) as running:
        running.engine.parts.policy = _WithLastAction(LearnedPolicy.load(POLICY_DIR))  # type: ignore[attr-defined]
        yield running


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
async def test_scenario_with_the_learned_policy(learned_shop: object, path: Path) -> None:
    from dialogue.scenarios import Scenario, run_scenario

    result = await run_scenario(learned_shop.engine, Scenario.load(path))  # type: ignore[attr-defined]
    assert result.passed, "\n" + result.describe()
