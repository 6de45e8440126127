"""PII detection and redaction: e-mails, phones, bank cards, Chinese resident IDs (check character), IBANs (mod 97).

Detectors work on any text and return :class:`PiiSpan` objects (half-open spans). Digit boundaries use
``(?<!\\d)`` / ``(?!\\d)`` look-arounds instead of ``\\b``: Python's ``\\b`` treats Chinese characters as word
characters, so ``\\b`` would miss ``卡号6222021234567890128谢谢``; and a match never takes digits of a longer
number (no digit, and no digit joined by a dot or a dash, on either side). Short numbers such as 5-digit order
numbers, dates, times, prices, versions and IP addresses are never matched.

Cards are matched by shape, not by checksum (:func:`find_cards`): a mistyped card number is still one. Phones
are matched with or without separators in the Chinese, North American, trunk-0 landline and international
forms (:func:`find_phones`); a compact number right after an order/tracking/invoice label is left alone.

:func:`redact` works on the normalised text and maps the spans back to the original text; :func:`redact_verbatim`
is the same redaction applied to the text as written (staff replies and corrections keep their layout).
"""

from __future__ import annotations

import itertools
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


# Digit groups joined by one separator: a space, a dot or a dash (a dot or dash may have a space on either side).
# A card or phone never starts or ends inside such a chain where a dot or dash binds it to more digits, and a
# card never takes only part of a group: "no digits of a longer number".
_CHAIN = re.compile(r"(?<![0-9])[0-9]+(?:(?: ?[.\-] ?| )[0-9]+)*")
_GROUP = re.compile(r"[0-9]+")

# Card networks by first digits: 2-series Mastercard, Amex/Diners/JCB, Visa, Mastercard/Maestro, UnionPay/Discover
# (62, 81). Tracking, ISBN and marketplace order numbers mostly start otherwise.
_CARD_PREFIX = re.compile(r"[2-6]|81")

# Just before a number, a label saying it is something else: a compact number after it is that (unless a card
# checksum says otherwise). Chinese labels are matched anywhere, English ones as words.
_OTHER_NUMBER_LABEL = re.compile(
    r"(?:(?<![A-Za-z])(?:tracking|waybill|shipment|parcel|package|order|invoice|receipt|ref|reference|sku|isbn"
    r"|serial|barcode|ean|upc|awb|item|product)"
    r"|运单|快递|物流|单号|订单|发票|条码|编号|序列号|货号|流水号|批次|包裹)"
    r"(?:\s?(?:number|no|num|id|code|#|号码|号|码))?\.?\s?[:：#]?\s?$",
    re.IGNORECASE,
)
_LABEL_WINDOW = 24


def _labelled_other(text: str, start: int) -> bool:
    """Whether the number at ``start`` follows a tracking/order/invoice/... label (``运单号``, ``order #``)."""
    return bool(_OTHER_NUMBER_LABEL.search(text[max(0, start - _LABEL_WINDOW) : start]))


def _card_shape(lengths: tuple[int, ...]) -> bool:
    """Printed card layouts: compact 13-19 digits, 4-4-4-4 with an optional 1-3 digit tail (UnionPay 17-19),
    4-4-4 plus 1-3 (13-15), Amex 4-6-5 and Diners 4-6-4."""
    if len(lengths) == 1:
        return 13 <= lengths[0] <= 19
    if lengths[:3] == (4, 4, 4):
        rest = lengths[3:]
        return (len(rest) == 1 and 1 <= rest[0] <= 4) or (len(rest) == 2 and rest[0] == 4 and 1 <= rest[1] <= 3)
    return lengths in ((4, 6, 5), (4, 6, 4))


def find_cards(text: str) -> list[PiiSpan]:
    """Bank-card numbers, whatever their checksum: a mistyped card number is still a card number.

    A card is a run of whole digit groups of one chain (see ``_CHAIN``) in a printed card layout
    (:func:`_card_shape`, any mix of spaces, dots and dashes between the groups) starting with a card network's
    digits. The Luhn checksum is required only where the shape alone is ambiguous: a compact 13-14 digit number
    (EAN barcodes, Chinese tracking numbers), a run followed by more 4-digit groups (a longer grouped number, or
    two cards; one group after it is taken for an expiry year). Where several layouts fit
    (``4111 1111 1111 1111 12/25``) the checksum picks the span. Never a card: a chain glued to letters or a ``+``
    (codes, tracking numbers, phones), a run continuing a 4-digit group (a longer grouped number such as a USPS
    tracking number, unless that group ends a card), a compact number right after an order/tracking/... label
    (a marketplace order number), one digit repeated, an 18-digit number shaped like a resident ID.
    """
    spans: list[PiiSpan] = []
    for chain in _CHAIN.finditer(text):
        start, end = chain.span()
        if start and ((text[start - 1].isascii() and text[start - 1].isalpha()) or text[start - 1] == "+"):
            continue
        glued_after = end < len(text) and text[end].isascii() and text[end].isalpha()
        groups = [(m.start() + start, m.end() + start) for m in _GROUP.finditer(chain.group())]
        # a space leaves neighbouring groups separate numbers; a dot or a dash binds them into one
        weak = [text[a_end:b_start] == " " for (_, a_end), (b_start, _) in itertools.pairwise(groups)]
        i, card_end = 0, -1
        while i < len(groups):
            continues = i > 0 and (not weak[i - 1] or (groups[i - 1][1] - groups[i - 1][0] == 4 and card_end != i))
            found = None if continues else _card_at(text, groups, weak, i, glued_after)
            if found is None:
                i += 1
                continue
            spans.append(PiiSpan("card", groups[i][0], groups[found - 1][1]))
            i = card_end = found
    return spans


def _card_at(text: str, groups: list[tuple[int, int]], weak: list[bool], i: int, glued_after: bool) -> int | None:
    """The end (exclusive group index) of the card starting at group ``i``, or ``None`` (see :func:`find_cards`)."""
    n = len(groups)
    if not _CARD_PREFIX.match(text, groups[i][0]):
        return None
    fallback: int | None = None
    for j in range(min(n, i + 5), i, -1):  # longest first
        if (j < n and not weak[j - 1]) or (j == n and glued_after):
            continue
        lengths = tuple(b - a for a, b in groups[i:j])
        if not _card_shape(lengths):
            continue
        run = text[groups[i][0] : groups[j - 1][1]]
        digits = _digits(run)
        if len(set(digits)) == 1 or (len(digits) == 18 and _CN_ID.fullmatch(run)):
            continue
        compact = len(lengths) == 1
        if compact and _labelled_other(text, groups[i][0]):
            return None
        if luhn_valid(digits):
            return j
        # more 4-digit groups follow (a longer grouped number, or two cards): ambiguous; one (a year) is not
        more_fours = j + 1 < n and groups[j][1] - groups[j][0] == 4
        if fallback is None and not more_fours and not (compact and len(digits) < 15):
            fallback = j
    return fallback


# Digit look-arounds of every phone pattern: no digit, and no digit joined by a dot or a dash, on either side.
_NO_DIGIT_BEFORE = r"(?<![0-9])(?<![0-9][.-])"
_NO_DIGIT_AFTER = r"(?![0-9])(?![.-][0-9])"

# Chinese mobile: 1[3-9]x xxxx xxxx with optional +86 / 0086 / (+86) prefix and space/dot/dash separators.
_CN_MOBILE = re.compile(
    r"(?<![0-9+])(?<![0-9][.-])"
    r"(?:(?:\(\s?(?:\+|00)86\s?\)|(?:\+|00)86)[ -]?)?"
    r"1[3-9][0-9](?:[ .-]?[0-9]{4}){2}" + _NO_DIGIT_AFTER
)

# International E.164-ish: +CC followed by 6-14 more digits in groups separated by space, dot, dash or ().
_INTL_PHONE = re.compile(
    r"(?<![0-9A-Za-z+])(?<![0-9][ .-])"
    r"(?:\+|00)[1-9][0-9]{0,2}"
    r"(?:[ .-]?\(?[0-9]{1,4}(?:\)(?=[ .-]?[0-9]))?){2,6}"
    r"(?![0-9])"
)

# North American numbers written with separators, optionally after the trunk 1: (415) 555-0132, 415-555-0132,
# 415.555.0132, 1-800-555-0199; with spaces or mixed separators only in the NANP number plan (area code and
# exchange start with 2-9): 415 555 0132, 415 555-0132.
_NANP_PHONE = re.compile(
    _NO_DIGIT_BEFORE + r"(?:1[ .-]?)?"
    r"(?:\([0-9]{3}\) ?[0-9]{3}[ .-]?[0-9]{4}"
    r"|[0-9]{3}-[0-9]{3}-[0-9]{4}|[0-9]{3}\.[0-9]{3}\.[0-9]{4}"
    r"|[2-9][0-9]{2}[ .-][2-9][0-9]{2}[ .-][0-9]{4})" + _NO_DIGIT_AFTER
)

# Chinese (and other trunk-0) landlines with an area code, separated: 020-12345678, 0755-1234567, (020) 1234 5678,
# 020 1234 5678 (also UK 020 7946 0958).
_LANDLINE = re.compile(
    _NO_DIGIT_BEFORE + r"(?:\(0[1-9][0-9]{1,2}\) ?|0[1-9][0-9]{1,2}[ -])[1-9][0-9]{2,3}[ -]?[0-9]{4}" + _NO_DIGIT_AFTER
)

# Phone numbers without any separator: NANP 10 digits (4155550132) and Chinese landlines 11-12 digits with their
# area code (02012345678, 075512345678). Skipped after an order/tracking/... label (:func:`_labelled_other`).
_COMPACT_PHONE = re.compile(
    r"(?<![0-9A-Za-z])(?<![0-9][.-])"
    r"(?:[2-9][0-9]{2}[2-9][0-9]{6}|0[12][0-9][1-9][0-9]{7}|0[3-9][0-9]{2}[1-9][0-9]{6,7})"
    r"(?![0-9A-Za-z])(?![.-][0-9])"
)

# A 4-digit group joined by one space on either side: the match is part of a longer grouped number (a USPS
# tracking number, a card), not a phone.
_FOUR_GROUP_BEFORE = re.compile(r"(?:^|[^0-9])[0-9]{4} $")
_FOUR_GROUP_AFTER = re.compile(r" [0-9]{4}(?![0-9])")


def _in_grouped_number(text: str, start: int, end: int) -> bool:
    return bool(_FOUR_GROUP_BEFORE.search(text, max(0, start - 6), start) or _FOUR_GROUP_AFTER.match(text, end))


def find_emails(text: str) -> list[PiiSpan]:
    return [PiiSpan("email", m.start(), m.end()) for m in _EMAIL.finditer(text)]


def find_phones(text: str) -> list[PiiSpan]:
    """Chinese mobiles, international (+CC / 00CC) numbers, North American numbers and trunk-0 landlines, with or
    without separators; compact ones not glued to letters nor right after an order/tracking/... label, none inside
    a longer grouped number."""
    found: list[re.Match[str]] = [*_CN_MOBILE.finditer(text), *_NANP_PHONE.finditer(text), *_LANDLINE.finditer(text)]
    found += (m for m in _INTL_PHONE.finditer(text) if 8 <= len(_digits(m.group())) <= 17)  # E.164: 15, 00CC: 17
    found += (m for m in _COMPACT_PHONE.finditer(text) if not _labelled_other(text, m.start()))
    return [PiiSpan("phone", m.start(), m.end()) for m in found if not _in_grouped_number(text, m.start(), m.end())]


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


def redact_verbatim(text: str, keep: frozenset[str] | set[str] = frozenset()) -> tuple[str, tuple[Redaction, ...]]:
    """``text`` as written with its PII (found exactly as :func:`redact` finds it) replaced by placeholders.

    For text that people write and read back as written, where normalising would change it (staff replies keep
    their line breaks and full-width punctuation; a correction keeps the offsets of its entities up to the first
    redaction). Returns (redacted text, redactions in offsets of ``text``)."""
    _, redactions = redact(text, keep)
    out: list[str] = []
    pos = 0
    for r in redactions:  # sorted and non-overlapping
        out.append(text[pos : r.start])
        out.append(r.placeholder)
        pos = r.end
    out.append(text[pos:])
    return "".join(out), redactions
