"""Text normalisation with an index map back to the original text.

``normalize`` applies NFKC (full-width forms become ASCII, compatibility characters are folded), drops
zero-width / format and control characters, and collapses every whitespace run into one space (leading and
trailing whitespace is removed). Every character of the result remembers the half-open span of the original
text it came from, so a span found in the normalised text can be mapped back with
:meth:`Normalized.original_span`. Pure functions, no state.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

# Characters that are not Cf/Cc but still render as nothing and are used to split words.
_INVISIBLE_EXTRA = frozenset({"\u115f", "\u1160", "\u3164", "\uffa0", "\u034f"})


@dataclass(frozen=True)
class Normalized:
    """A normalised text and, for each of its characters, the original span ``[starts[i], ends[i])``."""

    text: str = field(repr=False)
    starts: tuple[int, ...] = field(repr=False)
    ends: tuple[int, ...] = field(repr=False)
    original_length: int = 0

    def __repr__(self) -> str:  # never show customer text
        return f"Normalized(length={len(self.text)}, original_length={self.original_length})"

    def __len__(self) -> int:
        return len(self.text)

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """Map the half-open span ``[start, end)`` of ``text`` to the span of the original text it came from."""
        n = len(self.text)
        if not 0 <= start <= end <= n:
            raise ValueError(f"span ({start}, {end}) outside normalised text of length {n}")
        if start == end:
            pos = self.starts[start] if start < n else self.original_length
            return pos, pos
        return self.starts[start], self.ends[end - 1]


def _is_dropped(ch: str) -> bool:
    """Zero-width, format (Cf: ZWSP, ZWJ, BOM, bidi marks, soft hyphen) and non-whitespace control characters."""
    if ch.isspace():
        return False
    cat = unicodedata.category(ch)
    return cat in ("Cf", "Cc") or ch in _INVISIBLE_EXTRA


def _clusters(text: str) -> list[tuple[int, int]]:
    """Split ``text`` into runs that NFKC may compose together: a starter plus its combining marks."""
    spans: list[tuple[int, int]] = []
    start = 0
    for i in range(1, len(text) + 1):
        if i == len(text):
            spans.append((start, i))
            break
        ch = text[i]
        # Combining marks and Hangul medial/final jamo attach to the preceding character.
        if unicodedata.combining(ch) or "\u1160" <= ch <= "\u11ff":
            continue
        spans.append((start, i))
        start = i
    return spans


def normalize(text: str) -> Normalized:
    """Normalise ``text`` (NFKC, invisible/control characters removed, whitespace collapsed) with an index map."""
    chars: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    if not text:
        return Normalized("", (), (), 0)
    for c_start, c_end in _clusters(text):
        chunk = text[c_start:c_end]
        folded = unicodedata.normalize("NFKC", chunk) if not chunk.isascii() else chunk
        for ch in folded:
            if _is_dropped(ch):
                continue
            if ch.isspace():
                if chars and chars[-1] == " ":
                    ends[-1] = c_end  # extend the run's span
                    continue
                ch = " "
            chars.append(ch)
            starts.append(c_start)
            ends.append(c_end)
    # strip leading / trailing space
    lo, hi = 0, len(chars)
    if hi and chars[0] == " ":
        lo = 1
    if hi > lo and chars[hi - 1] == " ":
        hi -= 1
    return Normalized("".join(chars[lo:hi]), tuple(starts[lo:hi]), tuple(ends[lo:hi]), len(text))
