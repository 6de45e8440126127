"""Tokenizer shared by training and inference.

Each CJK character is its own token (Chinese is modelled at character level); runs of Latin/other letters and digits
form one token (a letter->digit switch splits, so ``order10234`` -> ``order``, ``10234``); apostrophes inside words are
kept (``don't``); a redaction placeholder (``[CARD]``) is one token; every other non-space character (punctuation,
symbols) is a token of its own. Offsets are character offsets into the original text, so
``text[t.start:t.end] == t.text``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import NamedTuple

_CJK = (
    "\u2e80-\u2fdf\u3005\u3007\u3021-\u3029\u3038-\u303b\u3040-\u30ff\u3100-\u312f\u3190-\u31ff"
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"
)
_CJK_PUNCT = "\u3000-\u3004\u3008-\u3020\u3030\uff00-\uffef"
_LETTERS = rf"(?:(?![{_CJK}])[^\W\d_])+"
_PLACEHOLDER = r"\[[A-Z_]+\]"  # the input filter's redactions ([CARD], [PHONE], ...)
_TOKEN_RE = re.compile(
    _PLACEHOLDER  # a placeholder is one token, so never a slot value "[CARD"
    + rf"|[{_CJK}]"  # one CJK character
    rf"|{_LETTERS}(?:['\u2019]{_LETTERS})*"  # a word, with inner apostrophes
    r"|\d+(?:[.,]\d+)*"  # a number (1,299.00 stays whole)
    r"|\S",  # any other single character
)
_CJK_RE = re.compile(rf"[{_CJK}{_CJK_PUNCT}]")
_KANA_RE = re.compile(r"[\u3040-\u30ff]")
_LATIN_WORD_RE = re.compile(r"[A-Za-z\u00c0-\u024f]{2,}")
_HAN = r"\u3400-\u4dbf\u4e00-\u9fff\U00020000-\U0002fa1f"  # Han characters, compatibility ideographs aside
_HAN_RE = re.compile(rf"[{_HAN}\uf900-\ufaff]")
_PLACEHOLDER_RE = re.compile(_PLACEHOLDER)  # a placeholder says nothing about the language
_HAN_RUN_RE = re.compile(rf"[{_HAN}]+")


class Token(NamedTuple):
    text: str
    start: int
    end: int


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens with character offsets (see module docstring)."""
    return [Token(m.group(), m.start(), m.end()) for m in _TOKEN_RE.finditer(text)]


def simplified(text: str) -> str:
    """``text`` with traditional Chinese written as simplified, and nothing else changed: the result has the same
    length and every other character where it was, so offsets into it are offsets into ``text``.

    Why: the bots' training data, jieba's dictionary and the Chinese word vectors are simplified; a customer in Hong
    Kong or Taiwan writes 關稅 and 筆電, which no model here has read (the shop's knowledge base filed 關稅是誰付呢 under
    double charges, 关税是谁付呢 under international shipping). Every model input goes through this, training data
    included, so a bot written in traditional Chinese reads the same. OpenCC's phrase tables convert each run of Han
    characters (乾燥 -> 干燥, 頭髮 -> 头发); a run whose conversion would change its length is converted character by
    character."""
    if not _HAN_RUN_RE.search(text):
        return text
    convert = _to_simplified()

    def run(match: re.Match[str]) -> str:
        chars = match.group()
        out = convert(chars)
        if len(out) == len(chars):
            return out
        return "".join(c if len(c) == 1 else ch for ch, c in ((ch, convert(ch)) for ch in chars))

    return _HAN_RUN_RE.sub(run, text)


@functools.cache
def _to_simplified() -> Callable[[str], str]:
    """OpenCC's traditional-to-simplified converter (``opencc-python-reimplemented``: its tables load on first use)."""
    from opencc import OpenCC

    convert: Callable[[str], str] = OpenCC("t2s").convert
    return convert


def detect_language(text: str) -> str:
    """``"zh"`` when CJK characters dominate (at least as many CJK chars as Latin words), else ``"en"``.

    The one rule that reads a language off a text (a parse's language, the augmenter's pools); a conversation's turn
    uses :func:`clear_language`, and the safety filters take the language the engine decided instead of guessing."""
    n_cjk = len(_CJK_RE.findall(text)) - len(_KANA_RE.findall(text))
    if n_cjk == 0:
        return "en"
    return "zh" if n_cjk >= len(_LATIN_WORD_RE.findall(text)) else "en"


def is_placeholder(token: str) -> bool:
    """Whether ``token`` is a redaction placeholder of the input filter (``[CARD]``, ``[PHONE]``...)."""
    return _PLACEHOLDER_RE.fullmatch(token) is not None


def clear_language(text: str) -> str | None:
    """The language ``text`` is *clearly* written in, or ``None`` when it does not say.

    :func:`detect_language` always answers, which is right for tokenising but wrong for a conversation: a Chinese
    customer who sends ``14388``, an emoji, a phone number or ``ok`` has not switched to English. Clearly Chinese:
    two Han characters at least as many as the Latin words (or one Han character and no Latin word: ``好``).
    Clearly English: no Han character and at least two Latin words (redaction placeholders and digits do not count).
    """
    text = _PLACEHOLDER_RE.sub(" ", text)
    n_han = len(_HAN_RE.findall(text))
    n_words = len(_LATIN_WORD_RE.findall(text))
    if n_han and (n_han >= 2 or n_words == 0) and n_han >= n_words:
        return "zh"
    if not n_han and n_words >= 2:
        return "en"
    return None
