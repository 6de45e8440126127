"""Helpers for the nlu tests (a uniquely named module: test folders have no __init__.py)."""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "data"
TINY = {"word_dim": 48, "char_dim": 16, "char_filters": 32, "shape_dim": 8, "hidden": 96}


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path
