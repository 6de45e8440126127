"""PII detection and redaction: e-mails, phones, bank cards (Luhn), Chinese resident IDs (check character), IBANs (mod 97).

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

PLACEHOLDERS: dict[str, str] = {
    "email": "[EMAIL]",
    "phone": "[PHONE]",
    "card": "[CARD]",
    "id_cn": "[ID]",
    "iban": "[IBAN]",
}
KINDS: tuple[str, ...] = tuple(PLACEHOLDERS)


@dataclass(frozen=True)
class PiiSpan:
    """A detected PII span ``[start, end)`` of the scanned text; ``kind`` is one of :data:`KINDS`."""

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

# 13-19 digits with a card-network first digit (2-6: Mastercard 2-series, Amex/Diners/JCB, Visa, Mastercard,
# UnionPay/Discover; 81: UnionPay), written compact or in the printed groups 4-4-4-4(-3) / 4-6-5 with one kind
# of separator. A leading + means a phone; ISBNs, tracking and order numbers fail the group or prefix rules.
_CARD = re.compile(
    r"(?<![0-9A-Za-z+])(?:[2-6][0-9]{12,18}|81[0-9]{11,17}"
    r"|(?:[2-6][0-9]{3}|81[0-9]{2})([ -])[0-9]{4}\1[0-9]{4}\1[0-9]{1,4}(?:\1[0-9]{1,3})?"
    r"|3[0-9]{3}([ -])[0-9]{6}\2[0-9]{4,5})(?![0-9A-Za-z])"
)

# Chinese mobile: 1[3-9]x xxxx xxxx with optional +86 / 0086 / (+86) prefix and space/dash separators.
_CN_MOBILE = re.compile(
    r"(?<![0-9+])"
    r"(?:(?:\(\s?(?:\+|00)86\s?\)|(?:\+|00)86)[ -]?)?"
    r"1[3-9][0-9](?:[ -]?[0-9]{4}){2}"
    r"(?![0-9])"
)

# International E.164-ish: +CC followed by 6-14 more digits in groups separated by space, dot, dash or ().
_INTL_PHONE = re.compile(
    r"(?<![0-9A-Za-z+])(?<![0-9][ .-])"
    r"(?:\+|00)[1-9][0-9]{0,2}"
    r"(?:[ .-]?\(?[0-9]{1,4}(?:\)(?=[ .-]?[0-9]))?){2,6}"
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
        if len(digits) == 18 and _CN_ID.fullmatch(m.group()):
            continue  # shaped like a resident ID (area code + birth date): an ID, valid or not, is no card
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


# Chinese resident identity number: 6-digit area code, birth date, 3-digit sequence, check character (0-9 or X).
_CN_ID = re.compile(
    r"(?<![0-9])[1-8][0-9]{5}[ -]?(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[ -]?"
    r"[0-9]{3}(?:[0-9](?![0-9])|[Xx](?![A-Za-z0-9]))"
)
_CN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CN_ID_CHECK = "10X98765432"


def cn_id_valid(number: str) -> bool:
    """ISO 7064 MOD 11-2 check character of an 18-character Chinese resident ID (separators ignored)."""
    s = "".join(ch for ch in number if ch not in " -").upper()
    if len(s) != 18 or not s[:17].isdigit() or not s[:17].isascii():
        return False
    total = sum((ord(c) - 48) * w for c, w in zip(s[:17], _CN_ID_WEIGHTS, strict=True))
    return _CN_ID_CHECK[total % 11] == s[17]


def find_cn_ids(text: str) -> list[PiiSpan]:
    """Chinese 18-character resident IDs with a valid birth date and check character."""
    return [PiiSpan("id_cn", m.start(), m.end()) for m in _CN_ID.finditer(text) if cn_id_valid(m.group())]


# IBAN length per country (SWIFT IBAN registry).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "BY": 28,
    "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15,
    "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19,
    "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip
_IBAN_START = re.compile(r"(?<![A-Za-z0-9])([A-Za-z]{2})([0-9]{2})")


def iban_valid(iban: str) -> bool:
    """ISO 13616 check: known country, right length, and the number mod 97 == 1 (spaces ignored)."""
    s = iban.replace(" ", "").replace("-", "").upper()
    if len(s) < 5 or IBAN_LENGTHS.get(s[:2]) != len(s) or not s.isalnum() or not s.isascii():
        return False
    rearranged = s[4:] + s[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def find_ibans(text: str) -> list[PiiSpan]:
    """IBANs written compact or in groups separated by single spaces/dashes, with a valid mod-97 checksum."""
    spans: list[PiiSpan] = []
    for m in _IBAN_START.finditer(text):
        length = IBAN_LENGTHS.get(m.group(1).upper())
        if length is None:
            continue
        i, count = m.end(), 4
        while count < length and i < len(text):
            ch = text[i]
            if ch.isascii() and ch.isalnum():
                count += 1
                i += 1
            elif ch in " -" and i + 1 < len(text) and text[i + 1].isascii() and text[i + 1].isalnum():
                i += 1
            else:
                break
        if count != length or (i < len(text) and text[i].isascii() and text[i].isalnum()):
            continue
        if iban_valid(text[m.start() : i]):
            spans.append(PiiSpan("iban", m.start(), i))
    return spans


_PRIORITY = {"iban": 0, "id_cn": 1, "card": 2, "email": 3, "phone": 4}


def find_pii(text: str) -> list[PiiSpan]:
    """All PII spans, non-overlapping, sorted by start.

    On overlap: iban > id_cn > card > email > phone (checksummed formats first), then the longer span.
    """
    priority = _PRIORITY
    candidates = find_ibans(text) + find_cn_ids(text) + find_cards(text) + find_emails(text) + find_phones(text)
    candidates.sort(key=lambda s: (priority[s.kind], -(s.end - s.start), s.start))
    chosen: list[PiiSpan] = []
    for span in candidates:
        if all(span.end <= c.start or span.start >= c.end for c in chosen):
            chosen.append(span)
    return sorted(chosen, key=lambda s: s.start)


def apply_redactions(norm: Normalized, spans: list[tuple[str, int, int, str]]) -> tuple[str, tuple[Redaction, ...]]:
    """Replace non-overlapping ``(kind, start, end, placeholder)`` spans of ``norm.text``; redactions carry spans
    of the ORIGINAL text."""
    out: list[str] = []
    redactions: list[Redaction] = []
    pos = 0
    for kind, start, end, placeholder in sorted(spans, key=lambda s: s[1]):
        if start < pos:
            continue
        out.append(norm.text[pos:start])
        out.append(placeholder)
        o_start, o_end = norm.original_span(start, end)
        redactions.append(Redaction(kind, o_start, o_end, placeholder))
        pos = end
    out.append(norm.text[pos:])
    return "".join(out), tuple(redactions)


def redact_normalized(
    norm: Normalized, keep: frozenset[str] | set[str] = frozenset()
) -> tuple[str, tuple[Redaction, ...]]:
    """Replace the PII in ``norm.text`` by placeholders (kinds in ``keep`` are left as they are); redactions
    carry spans of the ORIGINAL text."""
    spans = [(s.kind, s.start, s.end, s.placeholder) for s in find_pii(norm.text) if s.kind not in keep]
    return apply_redactions(norm, spans)


def redact(text: str, keep: frozenset[str] | set[str] = frozenset()) -> tuple[str, tuple[Redaction, ...]]:
    """Normalise ``text`` and redact its PII (except kinds in ``keep``).

    Returns (normalised redacted text, redactions in original offsets)."""
    return redact_normalized(normalize(text), keep)
