"""The benign sets: the texts of snips, clinc150 and cais (customer-style requests), for false positives."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from safety.jsonl import read_texts

BENIGN_SETS = ("snips", "clinc150", "cais")


def benign_texts(
    data_dir: str | Path, sets: Sequence[str] = BENIGN_SETS, splits: Sequence[str] | None = None
) -> Iterator[tuple[str, str]]:
    """``(set name, text)`` for every line of the benign intent data sets that exist (``splits``: e.g.
    ``("dev", "test")``; default every split)."""
    root = Path(data_dir)
    for name in sets:
        for path in sorted((root / name).glob("*.jsonl")):
            if splits is not None and path.stem not in splits:
                continue
            for text in read_texts(path):
                yield name, text
