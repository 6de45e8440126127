"""What bank customers type, read into values: card digits, amounts of money and dates of birth.

The NLU hands the actions the words a customer used (``"¥1,200"``, ``"两千五"``, ``"17/04/1988"``,
``"1988年4月17日"``), and a slot answered in free text (``from_text``) holds the whole reply
(``"it ends with 4821"``). The actions compare these with the bank's records, so they need the value, not the
wording. Everything here is pure (no I/O, no clock: ``today`` comes in), so it is cheap to call and to test.

Dates are read generously and return *every* date the text can mean: ``03/11/1979`` is the 3rd of November or
the 11th of March depending on the writer's country, and an identity check only asks whether the date on record
is among them (the card's last 4 digits must match too).
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from decimal import Decimal, InvalidOperation

MAX_AMOUNT_CENTS = 100_000_000_000  # no retail transfer is a billion yuan: a bigger "amount" is a misread number

_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_CN_UNITS = {"十": 10, "百": 100, "千": 1000}
_CN_NUMBER = re.compile(r"[零〇一二两三四五六七八九十百千万]+")
_MONEY_NUMBER = re.compile(r"(\d+(?:\.\d+)?)\s*(k\b|千|w\b|万)?", re.IGNORECASE)
_FOUR_DIGITS = re.compile(r"(?<!\d)\d{4}(?!\d)")
_DIGIT_RUN = re.compile(r"\d+")

_MONTHS = {
    name: number
    for number, names in enumerate(
        [("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("may",), ("jun", "june"),
         ("jul", "july"), ("aug", "august"), ("sep", "sept", "september"), ("oct", "october"),
         ("nov", "november"), ("dec", "december")],
        start=1,
    )
    for name in names
}
_MONTH = r"(?<![a-z])(?P<month>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_ORD = r"(?:st|nd|rd|th)?"
_CN_NUM_CHARS = "零〇一二两三四五六七八九十"
_DATE_PATTERNS = (
    # 1988年4月17日 / 88年4月17号 / 一九八八年四月十七日
    re.compile(rf"(?P<year>[\d{_CN_NUM_CHARS}]{{2,4}})\s*年\s*(?P<month>[\d{_CN_NUM_CHARS}]{{1,3}})\s*月\s*"
               rf"(?P<day>[\d{_CN_NUM_CHARS}]{{1,3}})\s*[日号號]?"),
    # 1988-04-17 / 1988/4/17 / 1988.04.17 / 1988 04 17
    re.compile(r"(?<!\d)(?P<year>\d{4})\s?[-/.\s]\s?(?P<month>\d{1,2})\s?[-/.\s]\s?(?P<day>\d{1,2})(?!\d)"),
    # 17 April 1988 / 17th of Apr, 1988
    re.compile(rf"(?<!\d)(?P<day>\d{{1,2}})(?!\d){_ORD}\s*(?:of\s+)?{_MONTH}(?:,\s*|\s+)(?P<year>\d{{2,4}})(?!\d)",
               re.IGNORECASE),
    # April 17, 1988 / Apr 17th 88
    re.compile(rf"{_MONTH}\s*(?P<day>\d{{1,2}})(?!\d){_ORD}(?:,\s*|\s+)(?P<year>\d{{2,4}})(?!\d)", re.IGNORECASE),
)
_NUMERIC_DATE = re.compile(r"(?<!\d)(?P<a>\d{1,2})\s?[-/.]\s?(?P<b>\d{1,2})\s?[-/.]\s?(?P<year>\d{2,4})(?!\d)")
_COMPACT_DATE = re.compile(r"(?<!\d)(?P<digits>\d{8})(?!\d)")


def normalise(text: str) -> str:
    """Full-width digits and letters as ASCII (``４８２１`` -> ``4821``), as Chinese keyboards often type them."""
    return unicodedata.normalize("NFKC", text)


def card_last4(text: str | None) -> str | None:
    """The 4 digits a customer gave for "the last 4 digits of your card": the last group of exactly 4 digits
    (``"card ending 4821"``, ``"尾号4821"``), else ``None``. A longer number is not taken: a whole card number is
    redacted before the bot sees it, and any other long number is not what was asked for."""
    if not text:
        return None
    found = _FOUR_DIGITS.findall(normalise(text))
    return found[-1] if found else None


def cn_number(text: str) -> int | None:
    """A Chinese numeral as an integer, colloquial forms included: ``五百`` 500, ``两千五`` 2500 (a bare digit after
    a unit counts in the next unit down), ``一万二`` 12000, ``三千零五`` 3005, ``十五`` 15; ``None`` if not a number."""
    if not text or any(ch not in _CN_DIGITS and ch not in _CN_UNITS and ch != "万" for ch in text):
        return None
    if "万" in text:
        high, _, low = text.partition("万")
        high_value = _below_ten_thousand(high) if high else 1
        if high_value is None:
            return None
        if len(low) == 1 and low in _CN_DIGITS:  # 一万二: twelve thousand
            return high_value * 10_000 + _CN_DIGITS[low] * 1000
        low_value = _below_ten_thousand(low) if low else 0
        return None if low_value is None else high_value * 10_000 + low_value
    return _below_ten_thousand(text)


def _below_ten_thousand(text: str) -> int | None:
    total, digit, last_unit, after_zero = 0, None, 0, False
    for ch in text:
        if ch in ("零", "〇"):
            after_zero, digit = True, None
        elif ch in _CN_DIGITS:
            if digit is not None:  # two digits in a row (一二三): not a numeral this parser reads
                return None
            digit = _CN_DIGITS[ch]
        elif ch in _CN_UNITS:
            unit = _CN_UNITS[ch]
            total += (1 if digit is None else digit) * unit
            digit, last_unit, after_zero = None, unit, False
        else:
            return None
    if digit is not None:
        total += digit * (last_unit // 10 if last_unit and not after_zero else 1)
    return total


def amount_cents(text: str | None) -> int | None:
    """An amount of money in fen/cents: ``"500"``, ``"¥1,200.50"``, ``"5k"``, ``"1.5万"``, ``"3千"``, ``"五百块"``,
    ``"两千五"``; the first amount in the text. ``None`` when there is none, or it is zero or absurdly large."""
    if not text:
        return None
    plain = re.sub(r"(?<=\d)[,，](?=\d{3}\b|\d{3}(?!\d))", "", normalise(text))
    value: Decimal | None = None
    match = _MONEY_NUMBER.search(plain)
    if match:
        try:
            value = Decimal(match.group(1))
        except InvalidOperation:
            value = None
        unit = (match.group(2) or "").lower()
        if value is not None and unit:
            value *= 10_000 if unit in ("w", "万") else 1000
    else:
        for run in _CN_NUMBER.findall(plain):
            number = cn_number(run)
            if number is not None:
                value = Decimal(number)
                break
    if value is None:
        return None
    cents = int((value * 100).to_integral_value())
    return cents if 0 < cents <= MAX_AMOUNT_CENTS else None


def format_cents(cents: int) -> str:
    """``123456`` -> ``"1,234.56"`` (the templates add the currency: ``¥{amount}`` / ``{amount}元``)."""
    return f"{cents // 100:,}.{cents % 100:02d}"


def _year(raw: str, today: dt.date) -> int | None:
    if raw.isdigit():
        year = int(raw)
    else:  # 一九八八 / 八八: digit by digit
        digits = [_CN_DIGITS.get(ch) for ch in raw]
        if any(d is None for d in digits):
            return None
        year = int("".join(str(d) for d in digits))
        raw = "0" * len(raw)
    if len(raw) == 2:  # 88 -> 1988, 01 -> 2001: a date of birth is in the past
        year += 2000 if 2000 + year <= today.year else 1900
    return year


def _small(raw: str) -> int | None:
    return int(raw) if raw.isdigit() else cn_number(raw)


def _date(year: int | None, month: int | None, day: int | None, today: dt.date) -> dt.date | None:
    if year is None or month is None or day is None or not 1900 <= year <= today.year:
        return None
    try:
        value = dt.date(year, month, day)
    except ValueError:
        return None
    return value if value <= today else None


def dates_in(text: str | None, today: dt.date) -> set[dt.date]:
    """Every date (in the past) the text can mean: ``1988-04-17``, ``17/04/1988`` (day first or month first: both
    readings are returned), ``April 17, 1988``, ``17th of April 88``, ``19880417``, ``1988年4月17日``,
    ``一九八八年四月十七日``. Empty when there is none."""
    if not text:
        return set()
    plain = normalise(text)
    found: set[dt.date] = set()
    for pattern in _DATE_PATTERNS:
        for m in pattern.finditer(plain):
            month_raw = m.group("month")
            named = month_raw[0].isascii() and month_raw[0].isalpha()  # "Apr" (CJK characters are alphabetic too)
            month = _MONTHS.get(month_raw.lower().rstrip(".")) if named else _small(month_raw)
            value = _date(_year(m.group("year"), today), month, _small(m.group("day")), today)
            if value is not None:
                found.add(value)
    for m in _NUMERIC_DATE.finditer(plain):
        year = _year(m.group("year"), today)
        a, b = int(m.group("a")), int(m.group("b"))
        for month, day in ((b, a), (a, b)):
            value = _date(year, month, day, today)
            if value is not None:
                found.add(value)
    for m in _COMPACT_DATE.finditer(plain):
        d = m.group("digits")
        for y, mo, da in ((d[:4], d[4:6], d[6:]), (d[4:], d[2:4], d[:2]), (d[4:], d[:2], d[2:4])):
            value = _date(int(y), int(mo), int(da), today)
            if value is not None:
                found.add(value)
    return found


def digit_runs(text: str) -> list[str]:
    """The runs of digits in ``text`` (after full-width normalisation)."""
    return _DIGIT_RUN.findall(normalise(text))
