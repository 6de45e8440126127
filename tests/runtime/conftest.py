"""Shared fixtures for the runtime tests: the fixture domain and a briefly trained embedded generator."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.model import GeneratorConfig
from runtime.templates import Templates

DATA = Path(__file__).parent / "data"
DOMAIN = DATA / "domain.yml"


@pytest.fixture(scope="session")
def templates() -> Templates:
    return Templates.from_file(DOMAIN)


@pytest.fixture(scope="session")
def trained_dir(tmp_path_factory: pytest.TempPathFactory, templates: Templates) -> Path:
    """The generator trained briefly (small config) on the fixture domain; folder with model + tokenizer."""
    from runtime.train import train_generator

    out = tmp_path_factory.mktemp("generator")
    cfg = GeneratorConfig(n_layer=2, n_embd=128, n_head=4, steps=160, batch_size=8, lr=3e-3, warmup_steps=10)
    train_generator(templates, out, cfg, progress=False, evaluate=False)
    return out


@pytest.fixture()
def tiny_tokenizer(templates: Templates):  # type: ignore[no-untyped-def]
    from runtime.tokenizer import build_tokenizer
    from runtime.train import training_pairs

    pairs = training_pairs(templates)
    return build_tokenizer(
        [p.prompt for p in pairs] + [p.target for p in pairs],
        {s for v in templates.all_variants() for s in v.placeholders},
        templates.languages(),
    )
