"""Every example bot besides the shop (examples/*/ with a scenarios/ folder) passes its own scenarios with the FSM's
rules compiled from its dialogue.yml and with the policy it serves (``policy: auto``: its learned policy when that
passed its gate, which replays these very scenarios, else the rules). One test per file and policy; nothing here names
a bot."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from dialogue.scenarios import Scenario, run_scenario
from policy import FSMPolicy
from tests.conftest import ROOT, SHOP

BOTS = sorted(p for p in (ROOT / "examples").iterdir() if p != SHOP and (p / "bot.yml").is_file()
              and (p / "scenarios").is_dir())
CASES = [(bot, path) for bot in BOTS for path in sorted((bot / "scenarios").glob("*.yml"))]


@pytest.mark.parametrize("bot", BOTS, ids=[b.name for b in BOTS])
def test_each_example_bot_has_scenarios_in_both_languages(bot: Path) -> None:
    files = sorted((bot / "scenarios").glob("*.yml"))
    by_language = {lang: sum(Scenario.load(p).language == lang for p in files) for lang in ("en", "zh")}
    assert by_language["en"] >= 15 and by_language["zh"] >= 15, by_language


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def example_bots() -> AsyncIterator[dict[Path, Any]]:
    """The example bots, trained (a no-op after `make models`) and running on throw-away SQLite stores."""
    from contextlib import AsyncExitStack

    from kefu.app import running_bot, train_bot

    running: dict[Path, Any] = {}
    async with AsyncExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        for bot in BOTS:
            train_bot(bot)
            running[bot] = await stack.enter_async_context(
                running_bot(bot, store_url=f"sqlite+aiosqlite:///{tmp / bot.name}.db"))
        yield running


@pytest.fixture(params=["fsm", "served"])
def policy_name(request: pytest.FixtureRequest) -> Iterator[str]:
    yield str(request.param)


@pytest.mark.parametrize(("bot", "path"), CASES, ids=[f"{b.name}-{p.stem}" for b, p in CASES])
async def test_example_bot_scenario(example_bots: dict[Path, Any], policy_name: str, bot: Path, path: Path) -> None:
    parts = example_bots[bot].engine.parts
    original = parts.policy
    if policy_name == "fsm":
        parts.policy = FSMPolicy(parts.flows.default_policy)
    try:
        result = await run_scenario(example_bots[bot].engine, Scenario.load(path))
    finally:
        parts.policy = original
    assert result.passed, "\n" + result.describe()
