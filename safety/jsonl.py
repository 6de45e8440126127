"""The one reader of the safety package's JSON-lines files (labelled sets, clean dialogue, the public intent sets).

One JSON value a line, blank lines skipped; a file that is missing, unreadable or holds a line that is not JSON
raises :class:`~safety.errors.SafetyDataError` naming the file and the line. Lines are the file's own (``\\n``), not
``str.splitlines()``'s, which would also split inside a string at U+2028 and friends. The NLU has its own reader
(:func:`nlu.data.read_jsonl`): the two packages are siblings and may not import each other.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from safety.errors import SafetyDataError


def read_rows(path: str | Path) -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` for every non-blank line of ``path`` (1-based), read lazily."""
    p = Path(path)
    try:
        with p.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise SafetyDataError(p, lineno, f"invalid JSON: {exc}") from exc
                yield lineno, value
    except FileNotFoundError:
        raise SafetyDataError(p, 0, "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SafetyDataError(p, 0, f"unreadable: {exc}") from exc


def read_texts(path: str | Path) -> list[str]:
    """The ``text`` of every line of a file of ``{"text": ...}`` objects (other keys ignored)."""
    texts: list[str] = []
    for lineno, row in read_rows(path):
        text = row.get("text") if isinstance(row, dict) else None
        if not isinstance(text, str):
            raise SafetyDataError(path, lineno, 'expected a JSON object with a string "text"')
        texts.append(text)
    return texts
