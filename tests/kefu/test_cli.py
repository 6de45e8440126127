"""The `kefu` command line: help everywhere, scenario replay exit codes, a clear error for a bad bot folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from kefu.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "args",
    [[], ["serve"], ["train"], ["nlu"], ["nlu", "train"], ["nlu", "evaluate"], ["scenarios"], ["scenarios", "run"],
     ["safety"], ["runtime"]],
)
def test_help_everywhere(args: list[str]) -> None:
    result = runner.invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_scenarios_run_passes_and_fails(shop_bot: Path, tmp_path: Path) -> None:
    good = ROOT / "scenarios" / "en_greet_thanks_goodbye.yml"
    result = runner.invoke(app, ["scenarios", "run", str(good), "--bot", str(shop_bot)])
    assert result.exit_code == 0, result.output
    assert "1 passed, 0 failed" in result.output

    bad = tmp_path / "wrong.yml"
    bad.write_text('name: wrong on purpose\nlanguage: en\nturns:\n  - user: "hello there"\n    action: action_return\n')
    result = runner.invoke(app, ["scenarios", "run", str(bad), "--bot", str(shop_bot)])
    assert result.exit_code == 1
    assert "expected 'action_return'" in result.output


def test_bad_bot_folder_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--bot", str(tmp_path)])
    assert result.exit_code == 2
    assert "bot.yml" in result.output



def test_a_dead_database_fails_the_start_cleanly(shop_bot: Path) -> None:
    """`kefu serve` on an unreachable database: StoreUnavailable (one clear line), models closed again."""
    import asyncio

    from dialogue.errors import StoreUnavailable
    from kefu.app import running_bot

    async def start() -> None:
        async with running_bot(shop_bot, store_url="postgresql+asyncpg://kefu@127.0.0.1:1/none", toxicity=False):
            raise AssertionError("started without a database")

    with pytest.raises(StoreUnavailable):
        asyncio.run(start())
