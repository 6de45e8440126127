"""Shared fixtures: the public data folder and a tiny joint model trained once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from nlu_testutil import TINY


@pytest.fixture(scope="session")
def snips_dir(shared_data: Path) -> Path:
    d = shared_data / "snips"
    if not (d / "train.jsonl").is_file():
        pytest.skip(f"SNIPS data not found at {d} (set KEFU_SHARED_DATA to the shared data folder)")
    return d


@pytest.fixture(scope="session")
def snips_subset(snips_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """~650 training lines (every 20th, all 7 intents) and 150 held-out lines from the test split, as JSONL files."""
    out = tmp_path_factory.mktemp("snips_subset")
    train_lines = (snips_dir / "train.jsonl").read_text(encoding="utf-8").splitlines()[::20]
    test_lines = (snips_dir / "test.jsonl").read_text(encoding="utf-8").splitlines()[::4][:150]
    (out / "train.jsonl").write_text("\n".join(train_lines) + "\n", encoding="utf-8")
    (out / "heldout.jsonl").write_text("\n".join(test_lines) + "\n", encoding="utf-8")
    return {"train": out / "train.jsonl", "heldout": out / "heldout.jsonl"}


@pytest.fixture(scope="session")
def tiny_model_dir(snips_subset: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small model trained for a few epochs on the SNIPS subset (10% of it held out for early stopping)."""
    from nlu.data import read_jsonl
    from nlu.model import NLUConfig
    from nlu.train import TrainConfig, train

    out = tmp_path_factory.mktemp("tiny_model")
    train(read_jsonl(snips_subset["train"]), out, None, NLUConfig(**TINY),
          TrainConfig(epochs=8, batch_size=16, lr=5e-3, patience=4, seed=1, progress=False),
          [str(snips_subset["train"])])
    return out
