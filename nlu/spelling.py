"""Spelling correction of English words against a bot's own texts, for retrieval.

Why: MiniLM reads a misspelt word as unrelated pieces (``waranty`` -> ``wara ##nty``), so "so is it covered by the
waranty or what" scored the shop's warranty entry 0.41 and, spelt right, 0.80. The NLU has character n-grams for
typos; the knowledge base had nothing. A customer's typo is almost always of a word the bot's own texts use (its
entries' questions and answers), so those are the candidates: no dictionary to ship, and nothing outside the bot's
subject is ever "corrected" into it.

A word is corrected only when it is unknown (neither one of the bot's words nor a whole word of MiniLM's WordPiece
vocabulary, about 20,000 English words: "ward" and "amex" stay as they are), has at least :data:`MIN_LENGTH` letters,
and one bot word is nearest to it within one edit (two for words of :data:`TWO_EDITS` letters or more; an edit is an
insertion, a deletion, a substitution or a swap of neighbours). Between equally near words the more frequent one in
the bot's texts wins; a tie there too leaves the word alone. Pure: the known words are a parameter.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

MIN_LENGTH = 4
TWO_EDITS = 8
MEMO_SIZE = 4096  # unknown words remembered (with their correction or None); customers' typos are few, but unbounded
_WORD = re.compile(r"[A-Za-z]+")


def edit_distance(a: str, b: str, limit: int) -> int:
    """Optimal-string-alignment distance between ``a`` and ``b`` (Damerau-Levenshtein without repeated edits of one
    substring), or ``limit + 1`` as soon as it is known to exceed ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous: list[int] | None = None
    row = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            current[j] = min(row[j] + 1, current[j - 1] + 1, row[j - 1] + cost)
            if previous is not None and i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        previous, row = row, current
    return row[-1]


class Speller:
    """Corrects unknown words of a text to the nearest of ``vocabulary`` (word -> count in the bot's texts)."""

    def __init__(self, vocabulary: Counter[str], known: Iterable[str] = ()) -> None:
        self.vocabulary = Counter({w.lower(): n for w, n in vocabulary.items() if len(w) >= MIN_LENGTH - 1})
        self._known = frozenset(w.lower() for w in known) | frozenset(self.vocabulary)
        self._memo: dict[str, str | None] = {}

    def __repr__(self) -> str:
        return f"Speller(words={len(self.vocabulary)}, known={len(self._known)})"

    @classmethod
    def from_texts(cls, texts: Iterable[str], known: Iterable[str] = ()) -> Speller:
        return cls(Counter(w.lower() for text in texts for w in _WORD.findall(text)), known)

    def word(self, word: str) -> str | None:
        """The bot word ``word`` is a typo of, or ``None`` (known, too short, nothing near, or a tie)."""
        lower = word.lower()
        if len(lower) < MIN_LENGTH or lower in self._known:
            return None
        if lower not in self._memo:
            if len(self._memo) >= MEMO_SIZE:
                self._memo.clear()
            limit = 2 if len(lower) >= TWO_EDITS else 1
            scored = [(edit_distance(lower, w, limit), -n, w) for w, n in self.vocabulary.items()]
            near = sorted(s for s in scored if s[0] <= limit)
            best = near[0] if near else None
            tie = len(near) > 1 and near[1][:2] == near[0][:2]
            self._memo[lower] = None if best is None or tie else best[2]
        return self._memo[lower]

    def correct(self, text: str) -> str:
        """``text`` with each correctable word replaced by its bot word (lower case); everything else unchanged."""
        return _WORD.sub(lambda m: self.word(m.group()) or m.group(), text)
