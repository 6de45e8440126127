"""Suite-wide fixtures: where things are, and the demo shop bot, trained once and run on a temp store."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

from safety.shared_data import shared_data_dir
from tests.stores import store, store_target  # noqa: F401 - fixtures for every test package

if TYPE_CHECKING:
    from dialogue.domain import Domain
    from dialogue.flows import Flows

ROOT = Path(__file__).resolve().parents[1]
SHOP = ROOT / "examples" / "shop"
SCENARIOS = ROOT / "scenarios"
SHARED_DATA = shared_data_dir()  # $KEFU_SHARED_DATA, else ../shared/data (one definition: safety.shared_data)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def root_logging_restored() -> Iterator[None]:
    """Put the root logger back as each test found it. A CLI command run by ``CliRunner`` installs its handler on
    the runner's stderr (``kefu.logs.configure``), which is closed when the command returns: left in place, a later
    test's log record fails on it and Python prints "--- Logging error ---" wherever stderr is then (once, into
    another CliRunner's output)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


def shop_dialogue() -> tuple[Domain, Flows]:
    """The demo shop's domain and its compiled dialogue definition's flows (no models needed)."""
    from kefu.app import bot_dialogue
    from kefu.config import Bot

    return bot_dialogue(Bot.load(SHOP), None)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the shared datasets are not at {SHARED_DATA} (set KEFU_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def shop_bot() -> Path:
    """The demo bot folder with every model built (`make test` builds them first; this is a no-op then)."""
    from kefu.app import train_bot

    train_bot(SHOP)
    return SHOP


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def shop(shop_bot: Path, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[object]:
    """The running demo bot (real models, real actions) on a fresh SQLite store for this test session."""
    from kefu.app import running_bot

    db = tmp_path_factory.mktemp("shop") / "shop.db"
    async with running_bot(shop_bot, store_url=f"sqlite+aiosqlite:///{db}") as running:
        yield running
