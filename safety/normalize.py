"""Text normalisation with an index map back to the original text.

``normalize`` applies NFKC (full-width forms become ASCII, compatibility characters are folded), drops
zero-width / format and control characters, and collapses every whitespace run into one space (leading and
trailing whitespace is removed). Every character of the result remembers the half-open span of the original
text it came from, so a span found in the normalised text can be mapped back with
:meth:`Normalized.original_span`. Pure functions, no state.
"""

from __future__ import annotations

import itertools
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


# --- matching skeleton: defeats look-alike letters, leetspeak and characters spaced out --------------------
# Cyrillic and Greek letters that render like Latin ones (lower case: the skeleton is case-folded first).
CONFUSABLES: dict[str, str] = {
    # Cyrillic
    "а": "a",
    "в": "b",
    "е": "e",
    "ё": "e",
    "з": "3",
    "и": "u",
    "к": "k",
    "м": "m",
    "н": "h",
    "о": "o",
    "п": "n",
    "р": "p",
    "с": "c",
    "т": "t",
    "у": "y",
    "х": "x",
    "ц": "u",
    "ч": "4",
    "ш": "w",
    "щ": "w",
    "ь": "b",
    "ы": "bl",
    "і": "i",
    "ї": "i",
    "ј": "j",
    "ѕ": "s",
    "ԁ": "d",
    "ԛ": "q",
    "ԝ": "w",
    "һ": "h",
    "ӏ": "l",
    "ɡ": "g",
    "ɑ": "a",
    "ı": "i",
    "ℓ": "l",
    # Greek
    "α": "a",
    "β": "b",
    "γ": "y",
    "δ": "d",
    "ε": "e",
    "ζ": "z",
    "η": "n",
    "θ": "o",
    "ι": "i",
    "κ": "k",
    "λ": "l",
    "μ": "u",
    "ν": "v",
    "ξ": "e",
    "ο": "o",
    "π": "n",
    "ρ": "p",
    "σ": "o",
    "ς": "c",
    "τ": "t",
    "υ": "u",
    "φ": "o",
    "χ": "x",
    "ψ": "w",
    "ω": "w",
    "ά": "a",
    "έ": "e",
    "ή": "n",
    "ί": "i",
    "ό": "o",
    "ύ": "u",
    "ώ": "w",
}
# Leetspeak, applied only inside a token that also has a Latin letter (so "10234" stays a number).
# ``1``, ``|`` and ``!`` read as ``i`` or ``l``: the skeleton comes in two variants.
LEET: dict[str, str] = {"0": "o", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g", "@": "a", "$": "s"}
LEET_IL = frozenset("1|!")
_LEET_SYMBOLS = frozenset("@$|!")
# Characters an attacker inserts between letters ("i.d.i.o.t", "傻*逼"); sentence punctuation of Chinese is kept.
SEPARATORS = frozenset(" .-_*·•,:;/\\~+'\"`^=#()[]{}<>")


def _is_cjk(ch: str) -> bool:
    o = ord(ch)
    return 0x3400 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF or 0x20000 <= o <= 0x2FFFF


def _is_latin(ch: str) -> bool:
    return ("a" <= ch <= "z") or ("0" <= ch <= "9") or ("\u00e0" <= ch <= "\u024f")


@dataclass(frozen=True)
class Skeleton:
    """Matching forms of a normalised text: ``variants`` (``1|!`` read as ``i``, then as ``l``), each character's
    index in the normalised text (``src``), and ``glued`` (True where a character came out of a run of
    characters that were spaced out, so word boundaries inside that run do not apply)."""

    variants: tuple[str, ...] = field(repr=False)
    src: tuple[int, ...] = field(repr=False)
    glued: tuple[bool, ...] = field(repr=False)

    def __repr__(self) -> str:
        return f"Skeleton(length={len(self.src)})"

    def norm_span(self, start: int, end: int) -> tuple[int, int]:
        """The span of the normalised text that skeleton span ``[start, end)`` (non-empty) came from."""
        return self.src[start], self.src[end - 1] + 1


def _wordy_flags(chars: list[str]) -> list[bool]:
    """Word characters, plus leet symbols that stand for letters: ``@``/``$`` next to a Latin letter (``@ss``,
    ``a$$``), ``!``/``|`` only inside a word (``sh!t``, ``k|ll``; a closing ``!`` is punctuation); chains of
    symbols count (``8@$tard``)."""
    n = len(chars)
    flags = [_is_latin(c) or _is_cjk(c) or c.isalnum() for c in chars]
    for k in range(n - 1, -1, -1):  # right to left: a symbol is wordy if a Latin letter (or wordy symbol) follows
        ch = chars[k]
        if (
            ch in _LEET_SYMBOLS
            and k + 1 < n
            and (_is_latin(chars[k + 1]) or (chars[k + 1] in _LEET_SYMBOLS and flags[k + 1]))
        ):
            flags[k] = True
    for k in range(1, n):  # "a$$": trailing @/$ after a letter
        if chars[k] in "@$" and not flags[k] and (_is_latin(chars[k - 1]) or (chars[k - 1] in "@$" and flags[k - 1])):
            flags[k] = True
    return flags


def skeleton(
    text: str, blanks: tuple[tuple[int, int], ...] = (), vocabulary: frozenset[str] | set[str] = frozenset()
) -> Skeleton:
    """The matching skeleton of an already normalised ``text``.

    Case-folded; Cyrillic/Greek look-alikes become Latin; separators between spaced-out single characters are
    dropped ("k i l l", "i.d.i.o.t" -> "kill", "idiot"; any separator between two CJK characters: "傻 * 逼");
    leetspeak is read inside tokens that contain a Latin letter ("@ss", "1d10t"). ``blanks`` are spans of
    ``text`` (e.g. redacted PII) that become one ``#`` each, so they never take part in a match. Variants: ``1|!``
    read as ``i``; as ``l``; and, with a ``vocabulary``, per token whichever reading is a known word.
    """
    chars: list[str] = []
    src: list[int] = []
    blank_at = {s: e for s, e in blanks}
    i = 0
    while i < len(text):
        if i in blank_at:
            chars.append("#")
            src.append(i)
            i = max(blank_at[i], i + 1)
            continue
        for ch in text[i].casefold():
            for out in CONFUSABLES.get(ch, ch):
                chars.append(out)
                src.append(i)
        i += 1
    n = len(chars)
    wordy = _wordy_flags(chars)
    # tokens: maximal runs of word characters
    tokens: list[tuple[int, int]] = []
    k = 0
    while k < n:
        if wordy[k]:
            j = k
            while j < n and wordy[j] and not (_is_cjk(chars[j]) and j > k):
                j += 1
                if _is_cjk(chars[j - 1]):
                    break  # every CJK character is its own token
            tokens.append((k, j))
            k = j
        else:
            k += 1
    drop = [False] * n
    glued = [False] * n

    def sep_between(a: int, b: int) -> bool:
        return b - a <= 3 and all(chars[x] in SEPARATORS for x in range(a, b))

    # CJK: drop separators between two CJK characters
    for (s1, e1), (s2, _e2) in itertools.pairwise(tokens):
        if e1 < s2 and _is_cjk(chars[e1 - 1]) and _is_cjk(chars[s2]) and sep_between(e1, s2):
            for x in range(e1, s2):
                drop[x] = True
    # Latin: runs of >= 3 single-character tokens separated by separators are glued together
    t = 0
    while t < len(tokens):
        u = t
        while (
            u + 1 < len(tokens)
            and tokens[u][1] - tokens[u][0] == 1
            and tokens[u + 1][1] - tokens[u + 1][0] == 1
            and not _is_cjk(chars[tokens[u][0]])
            and not _is_cjk(chars[tokens[u + 1][0]])
            and tokens[u][1] < tokens[u + 1][0]
            and sep_between(tokens[u][1], tokens[u + 1][0])
        ):
            u += 1
        if u - t + 1 >= 3 and any("a" <= chars[tokens[x][0]] <= "z" for x in range(t, u + 1)):
            for x in range(tokens[t][0], tokens[u][1]):
                if wordy[x]:
                    glued[x] = True
                else:
                    drop[x] = True
        t = u + 1
    # leetspeak inside Latin tokens (after gluing, a token is a maximal run of kept word characters)
    variant_i = list(chars)
    variant_l = list(chars)
    variant_s = variant_i  # replaced by a copy when a token needs a per-token reading
    if vocabulary and any(c in LEET_IL for c in chars):
        variant_s = list(chars)
    k = 0
    while k < n:
        if drop[k] or not wordy[k]:
            k += 1
            continue
        j = k
        while j < n and (drop[j] or wordy[j]) and not _is_cjk(chars[j]):
            j += 1
        members = [x for x in range(k, j) if not drop[x]]
        if any("a" <= chars[x] <= "z" for x in members):
            for x in members:
                ch = chars[x]
                if ch in LEET:
                    variant_i[x] = variant_l[x] = LEET[ch]
                elif ch in LEET_IL:
                    variant_i[x], variant_l[x] = "i", "l"
        if variant_s is not variant_i:
            # mixed "1" readings ("41l prev10us"): per token, the reading that makes a known word
            as_l = "".join(variant_l[x] for x in members)
            reading = (
                variant_l
                if as_l in vocabulary and "".join(variant_i[x] for x in members) not in vocabulary
                else variant_i
            )
            for x in members:
                variant_s[x] = reading[x]
        k = max(j, k + 1)
    keep = [x for x in range(n) if not drop[x]]
    found: list[str] = []
    for variant in (variant_i, variant_l, variant_s):
        text_v = "".join(variant[x] for x in keep)
        if text_v not in found:
            found.append(text_v)
    variants = tuple(found)
    return Skeleton(variants, tuple(src[x] for x in keep), tuple(glued[x] for x in keep))


def _wide_punctuation(ch: str) -> bool:
    """Full-width and CJK punctuation (，。？！：；（）「」…): what NFKC folds but a reader wants kept."""
    return ("\u3000" < ch <= "\u303f" or "\uff00" <= ch <= "\uffef") and unicodedata.category(ch)[0] in "PS"


def with_original_punctuation(norm: Normalized, original: str) -> Normalized:
    """``norm`` with every character that came from one full-width or CJK punctuation mark of ``original`` put back.

    Models read the normalised text ("有人吗?"); people read what the customer typed ("有人吗？"). The result has the
    same length and index map as ``norm``, so spans found in the normalised text (redactions) apply to it unchanged;
    only punctuation comes back, never a letter or digit (a full-width digit stays folded, so PII found in the
    normalised text cannot reappear in another form).
    """
    chars = list(norm.text)
    for i, (start, end) in enumerate(zip(norm.starts, norm.ends)):
        if end - start == 1 and _wide_punctuation(original[start]):
            chars[i] = original[start]
    return Normalized("".join(chars), norm.starts, norm.ends, norm.original_length)
