"""PII detection and redaction: e-mail addresses, phone numbers, bank-card numbers (Luhn-checked).

Detectors work on any text and return :class:`PiiSpan` objects (half-open spans). Digit boundaries use
``(?<!\\d)`` / ``(?!\\d)`` look-arounds instead of ``\\b``: Python's ``\\b`` treats Chinese characters as word
characters, so ``\\b`` would miss ``卡号6222021234567890128谢谢``. Short numbers such as 5-digit order numbers are
never matched. :func:`redact` works on the normalised text and maps the spans back to the original text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from safety.normalize import Normalized, normalize
from safety.types import Redaction

PLACEHOLDERS: dict[str, str] = {"email": "[EMAIL]", "phone": "[PHONE]", "card": "[CARD]"}


@dataclass(frozen=True)
class PiiSpan:
    """A detected PII span ``[start, end)`` of the scanned text; ``kind`` is ``email``, ``phone`` or ``card``."""

    kind: str
    start: int
    end: int

    @property
    def placeholder(self) -> str:
        return PLACEHOLDERS[self.kind]


_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])"
    r"[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}"
    r"(?![A-Za-z0-9-])"
)

# 13-19 digits (no card number starts with 0; a leading + means a phone), optionally separated by single spaces or dashes between groups.
_CARD = re.compile(r"(?<![0-9+])[1-9](?:[ -]?[0-9]){12,18}(?![0-9])")

# Chinese mobile: 1[3-9]x xxxx xxxx with optional +86 / 0086 / (+86) prefix and space/dash separators.
_CN_MOBILE = re.compile(
    r"(?<![0-9+])"
    r"(?:(?:\(\s?(?:\+|00)86\s?\)|(?:\+|00)86)[ -]?)?"
    r"1[3-9][0-9](?:[ -]?[0-9]{4}){2}"
    r"(?![0-9])"
)

# International E.164-ish: +CC followed by 6-14 more digits in groups separated by space, dot, dash or ().
_INTL_PHONE = re.compile(
    r"(?<![0-9A-Za-z+])"
    r"(?:\+|00)[1-9][0-9]{0,2}"
    r"(?:[ .-]?\(?[0-9]{1,4}\)?){2,6}"
    r"(?![0-9])"
)

# North-American style with mandatory separators: (555) 123-4567, 555-123-4567, 555.123.4567.
_NANP_PHONE = re.compile(r"(?<![0-9])(?:\([0-9]{3}\)\s?|[0-9]{3}[.-])[0-9]{3}[.-][0-9]{4}(?![0-9])")

# Chinese landline with area code and mandatory dash: 010-12345678, 0755-1234567.
_CN_LANDLINE = re.compile(r"(?<![0-9])0[1-9][0-9]{1,2}-[2-9][0-9]{6,7}(?![0-9])")


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum of a string of ASCII digits (True for a valid card number)."""
    if not digits.isdigit() or not digits.isascii():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _digits(s: str) -> str:
    return "".join(ch for ch in s if "0" <= ch <= "9")


def find_emails(text: str) -> list[PiiSpan]:
    return [PiiSpan("email", m.start(), m.end()) for m in _EMAIL.finditer(text)]


def find_cards(text: str) -> list[PiiSpan]:
    """Bank-card numbers: 13-19 digits (spaces/dashes allowed between groups) that pass the Luhn check."""
    spans = []
    for m in _CARD.finditer(text):
        digits = _digits(m.group())
        if 13 <= len(digits) <= 19 and luhn_valid(digits) and len(set(digits)) > 1:
            spans.append(PiiSpan("card", m.start(), m.end()))
    return spans


def find_phones(text: str) -> list[PiiSpan]:
    """Chinese mobiles, international (+CC / 00CC) numbers, NANP and Chinese landlines with separators."""
    spans: list[PiiSpan] = [PiiSpan("phone", m.start(), m.end()) for m in _CN_MOBILE.finditer(text)]
    for m in _INTL_PHONE.finditer(text):
        n = len(_digits(m.group()))
        if 8 <= n <= 17:  # E.164 allows up to 15 digits; 00-prefixed numbers carry 2 more
            spans.append(PiiSpan("phone", m.start(), m.end()))
    for pattern in (_NANP_PHONE, _CN_LANDLINE):
        spans.extend(PiiSpan("phone", m.start(), m.end()) for m in pattern.finditer(text))
    return spans


def find_pii(text: str) -> list[PiiSpan]:
    """All PII spans, non-overlapping, sorted by start. On overlap: card > email > phone, then the longer span."""
    priority = {"card": 0, "email": 1, "phone": 2}
    candidates = find_cards(text) + find_emails(text) + find_phones(text)
    candidates.sort(key=lambda s: (priority[s.kind], -(s.end - s.start), s.start))
    chosen: list[PiiSpan] = []
    for span in candidates:
        if all(span.end <= c.start or span.start >= c.end for c in chosen):
            chosen.append(span)
    return sorted(chosen, key=lambda s: s.start)


def redact_normalized(norm: Normalized) -> tuple[str, tuple[Redaction, ...]]:
    """Replace the PII in ``norm.text`` by placeholders; redactions carry spans of the ORIGINAL text."""
    out: list[str] = []
    redactions: list[Redaction] = []
    pos = 0
    for span in find_pii(norm.text):
        out.append(norm.text[pos : span.start])
        out.append(span.placeholder)
        o_start, o_end = norm.original_span(span.start, span.end)
        redactions.append(Redaction(span.kind, o_start, o_end, span.placeholder))
        pos = span.end
    out.append(norm.text[pos:])
    return "".join(out), tuple(redactions)


def redact(text: str) -> tuple[str, tuple[Redaction, ...]]:
    """Normalise ``text`` and redact its PII. Returns (normalised redacted text, redactions in original offsets)."""
    return redact_normalized(normalize(text))
