"""Rasa ``lookup:`` and ``regex:`` blocks as token features, like Rasa's ``RegexFeaturizer``.

Each pattern (one block) gives every token one binary feature: does the token lie inside a match? The tagger learns
what a match means (``lookup: city`` on -> likely ``B-city``), so values a lookup lists but no training example shows
are still found, and a lookup or regex that says nothing useful is simply ignored.

Lookups match whole token sequences (items tokenised like the utterances, compared lower-cased), which works the same
for English words and Chinese characters and stays fast for tables of thousands of items. Regexes match the
utterance's text, as in Rasa, where the tokens can be found in it in order (always for parsed text and Rasa data);
otherwise (tokens-only callers, JSONL tokens that differ from the text) they match the text rebuilt from the tokens by
:func:`detokenize`, so a feature never depends on a missing text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from nlu.tokenize import simplified, tokenize

KINDS = ("lookup", "regex")
_CJK_RE = re.compile(r"[\u2e80-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]")


@dataclass(frozen=True)
class Pattern:
    """One Rasa ``lookup:`` (literal items) or ``regex:`` (Python regular expressions) block."""

    name: str
    kind: str
    items: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "kind": self.kind, "items": list(self.items)}

    @classmethod
    def from_dict(cls, raw: dict[str, object]) -> Pattern:
        items = raw["items"]
        if raw["kind"] not in KINDS or not isinstance(items, list):
            raise ValueError(f"bad pattern {raw!r}")
        return cls(str(raw["name"]), str(raw["kind"]), tuple(str(i) for i in items))


def _wordy(ch: str) -> bool:
    return ch.isalnum() and not _CJK_RE.match(ch)


def detokenize(tokens: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """Text for regex matching and each token's (start, end) in it: a space only between two tokens that meet with
    word characters (``order 10234``), none around punctuation or next to Chinese (``555-1234``, ``订单44120``)."""
    parts: list[str] = []
    offsets: list[tuple[int, int]] = []
    pos = 0
    for i, tok in enumerate(tokens):
        if i and tok and parts[-1] and _wordy(parts[-1][-1]) and _wordy(tok[0]):
            parts.append(" ")
            pos += 1
        parts.append(tok)
        offsets.append((pos, pos + len(tok)))
        pos += len(tok)
    return "".join(parts), offsets


def align(tokens: Sequence[str], text: str) -> list[tuple[int, int]] | None:
    """Each token's (start, end) in ``text``, found left to right; None when some token is not there."""
    offsets: list[tuple[int, int]] = []
    pos = 0
    for tok in tokens:
        start = text.find(tok, pos)
        if start < 0:
            return None
        pos = start + len(tok)
        offsets.append((start, pos))
    return offsets


_GLOBAL_FLAGS = re.compile(r"^\(\?([aiLmsux]+)\)")


def _scoped(item: str) -> str:
    """``item`` as a group of an alternation: a leading global flag group (``(?i)cat``, as Rasa data often writes)
    becomes a scoped one (``(?i:cat)``), since Python refuses global flags anywhere but at the very start."""
    flags = _GLOBAL_FLAGS.match(item)
    if flags is None:
        return f"(?:{item})"
    return f"(?{flags.group(1)}:{item[flags.end():]})"


def compile_regex(items: Sequence[str]) -> re.Pattern[str]:
    """One alternation of a regex block's items; raises ``re.error`` on a bad item."""
    for item in items:
        re.compile(item)  # name the bad item, not the combined pattern
    return re.compile("|".join(_scoped(item) for item in items))


class Matcher:
    """Per-token bit masks (bit k = inside a match of pattern k) for a list of patterns."""

    def __init__(self, patterns: Sequence[Pattern]) -> None:
        self.n = len(patterns)
        self.lookups: list[tuple[int, frozenset[tuple[str, ...]], int]] = []
        self.regexes: list[tuple[int, re.Pattern[str]]] = []
        for k, p in enumerate(patterns):
            if p.kind == "lookup":
                seqs = frozenset(tuple(t.text.lower() for t in tokenize(simplified(item))) for item in p.items) - {()}
                self.lookups.append((k, seqs, max((len(s) for s in seqs), default=0)))
            else:
                self.regexes.append((k, compile_regex(p.items)))

    def match(self, tokens: Sequence[str], text: str | None = None) -> list[int]:
        """Bit masks of ``tokens``; regexes run on ``text`` when the tokens align with it (see module docstring)."""
        bits = [0] * len(tokens)
        if self.lookups:
            low = [t.lower() for t in tokens]
            for k, seqs, longest in self.lookups:
                for i in range(len(low)):
                    for n in range(min(longest, len(low) - i), 0, -1):
                        if tuple(low[i : i + n]) in seqs:
                            for j in range(i, i + n):
                                bits[j] |= 1 << k
                            break
        if self.regexes:
            offsets = align(tokens, text) if text is not None else None
            if text is None or offsets is None:
                text, offsets = detokenize(tokens)
            for k, rx in self.regexes:
                for m in rx.finditer(text):
                    if m.end() > m.start():
                        for j, (s, e) in enumerate(offsets):
                            if s < m.end() and e > m.start():
                                bits[j] |= 1 << k
        return bits
