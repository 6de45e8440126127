"""The tiny bot of tests/policy/tinybot.py, compiled once per session."""

from __future__ import annotations

import pytest

from policy.simulator import SimBot, SimConfig, Users
from tests.policy.tinybot import NOISE, tiny_sim_bot


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> SimBot:
    return tiny_sim_bot(tmp_path_factory.mktemp("tinybot"))


@pytest.fixture(scope="session")
def trainees() -> Users:
    return Users(SimConfig(), NOISE, "training")
