"""The PII suite: real-format PII in English and Chinese sentences, and tricky near-PII that must not be redacted.

Positives (:func:`pii_positives`): e-mails, Chinese mobiles with +86 and separators, international/NANP/trunk-0
landline phones with and without separators, cards incl. UnionPay with spaces, dots, dashes or a mix, a fifth with a
wrong check digit, Chinese resident IDs with their check character, IBANs with their mod-97 checksum, some full-width
or with zero-width characters. Negatives (:func:`pii_negatives`): order numbers, dates, times, prices, quantities,
versions, IPs, timestamps, IDs with a wrong check character, IBANs with a wrong checksum, ISBNs, tracking numbers
labelled, letter-prefixed or grouped, labelled marketplace order numbers, 12-digit or 1[0-2]x numbers, ...
:func:`score_pii` scores a finder on both.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PiiCase:
    """A text and the PII it holds: ``(kind, exact substring of text)`` pairs (empty for a negative)."""

    text: str
    expected: tuple[tuple[str, str], ...]
    language: str
    category: str


def _luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    for d in "0123456789":
        if _luhn_ok(body + d):
            return body + d
    raise AssertionError("unreachable")


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _luhn_break(number: str) -> str:
    last = int(number[-1])
    return number[:-1] + str((last + 1 + (last == 9)) % 10) if _luhn_ok(number) else number


_CN_W = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_AREAS = ("110101", "110105", "310104", "440305", "330106", "510107", "420111", "320102", "500103", "610113")


def _cn_id(rng: random.Random, valid: bool = True) -> str:
    year = rng.randint(1950, 2008)
    month = rng.randint(1, 12)
    day = rng.randint(1, 28)
    body = f"{rng.choice(_AREAS)}{year}{month:02d}{day:02d}{rng.randint(0, 999):03d}"
    check = "10X98765432"[sum(int(c) * w for c, w in zip(body, _CN_W, strict=True)) % 11]
    if not valid:
        check = rng.choice([c for c in "0123456789X" if c != check])
    return body + check


_IBAN_SPECS = {"DE": 18, "GB": 18, "FR": 23, "ES": 20, "IT": 23, "NL": 14, "CH": 17, "BE": 12, "AT": 16, "PL": 24}


def _iban(rng: random.Random, valid: bool = True) -> str:
    cc = rng.choice(sorted(_IBAN_SPECS))
    n = _IBAN_SPECS[cc]
    if cc == "GB":
        bban = "".join(rng.choice(string.ascii_uppercase) for _ in range(4)) + "".join(
            rng.choice(string.digits) for _ in range(14)
        )
    elif cc == "NL":
        bban = "".join(rng.choice(string.ascii_uppercase) for _ in range(4)) + "".join(
            rng.choice(string.digits) for _ in range(10)
        )
    else:
        bban = "".join(rng.choice(string.digits) for _ in range(n))
    numeric = "".join(str(int(ch, 36)) for ch in bban + cc + "00")
    check = 98 - int(numeric) % 97
    if not valid:
        check = (check + rng.randint(1, 90)) % 97 + 2 if check < 97 else 2
        check = check if check != 98 - int(numeric) % 97 else (check % 97) + 1
    return f"{cc}{check:02d}{bban}"


def _group(s: str, size: int = 4, sep: str = " ") -> str:
    return sep.join(s[i : i + size] for i in range(0, len(s), size))


def fullwidth(s: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else ("\u3000" if c == " " else c) for c in s)


def _zero_width(s: str, rng: random.Random) -> str:
    out = []
    for i, ch in enumerate(s):
        out.append(ch)
        if i < len(s) - 1 and rng.random() < 0.3:
            out.append(rng.choice(["\u200b", "\u200c", "\u200d", "\ufeff"]))
    return "".join(out)


_FIRST = ("john", "mary", "li.wei", "zhang_san", "anna", "peter", "wang", "chen88", "o.brien", "j.smith", "sara")
_DOMAINS = ("example.com", "qq.com", "163.com", "gmail.com", "mail.example.co.uk", "outlook.com", "126.com", "shop.cn")


def _email(rng: random.Random) -> str:
    user = rng.choice(_FIRST) + rng.choice(["", str(rng.randint(1, 999)), "+shop", "-" + rng.choice(_FIRST)])
    return f"{user}@{rng.choice(_DOMAINS)}"


def _cn_mobile(rng: random.Random) -> str:
    digits = f"1{rng.choice('3456789')}{rng.randint(0, 9)}{rng.randint(0, 99999999):08d}"
    fmt = rng.randrange(9)
    if fmt == 0:
        return digits
    if fmt == 1:
        return f"+86 {digits}"
    if fmt == 2:
        return f"+86-{digits[:3]}-{digits[3:7]}-{digits[7:]}"
    if fmt == 3:
        return f"{digits[:3]} {digits[3:7]} {digits[7:]}"
    if fmt == 4:
        return f"(+86){digits}"
    if fmt == 5:
        return f"0086 {digits}"
    if fmt == 6:
        return f"+86 {digits[:3]} {digits[3:7]} {digits[7:]}"
    if fmt == 7:
        return f"{digits[:3]}.{digits[3:7]}.{digits[7:]}"
    return f"{digits[:3]}-{digits[3:7]}-{digits[7:]}"


def _nanp(rng: random.Random) -> tuple[str, str, str]:
    return str(rng.randint(201, 989)), str(rng.randint(200, 999)), f"{rng.randint(0, 9999):04d}"


def _intl_phone(rng: random.Random) -> str:
    """International, North American and trunk-0 landline numbers, with and without separators."""
    area, exchange, line = _nanp(rng)
    local8 = f"{rng.randint(1, 9)}{rng.randint(0, 9999999):07d}"
    fmt = rng.randrange(16)
    return [
        f"+44 20 {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}",
        f"+1 ({area}) {exchange}-{line}",
        f"({area}) {exchange}-{line}",
        f"{area}-{exchange}-{line}",
        f"+49 30 {rng.randint(10000000, 99999999)}",
        f"0{rng.choice(['10', '21', '755', '20'])}-{rng.randint(1, 9)}{rng.randint(0, 9999999):07d}",
        f"{area} {exchange} {line}",
        f"{area}{exchange}{line}",
        f"{area}.{exchange}.{line}",
        f"+1 {area} {exchange} {line}",
        f"1-{area}-{exchange}-{line}",
        f"0{rng.choice(['10', '20', '21'])}{local8}",
        f"(0{rng.choice(['10', '20', '755'])}) {local8[:4]} {local8[4:]}",
        f"0{rng.choice(['571', '755', '512'])} {local8[:4]}-{local8[4:]}",
        f"+86 {rng.choice(['10', '20', '21'])} {local8[:4]} {local8[4:]}",
        f"020 {rng.randint(7000, 8999)} {rng.randint(0, 9999):04d}",
    ][fmt]


def _card(rng: random.Random) -> str:
    """Card numbers compact or grouped with spaces, dashes, dots or a mix; a fifth with a wrong check digit (a
    mistyped card number is still one)."""
    kind = rng.randrange(5)
    if kind == 0:
        number = _luhn_complete("4", 16, rng)
    elif kind == 1:
        number = _luhn_complete(rng.choice(["51", "52", "53", "54", "55", "2221", "2720"]), 16, rng)
    elif kind == 2:
        number = _luhn_complete(rng.choice(["34", "37"]), 15, rng)
    else:  # UnionPay, 16-19 digits
        number = _luhn_complete(rng.choice(["62", "6222", "6228", "6217", "81"]), rng.choice([16, 17, 18, 19]), rng)
    if rng.random() < 0.2:
        number = _luhn_break(number)
    style = rng.randrange(6)
    if kind == 2 and style:
        seps = [rng.choice(" -.") for _ in range(2)] if style == 5 else [" -.  "[style - 1]] * 2
        return f"{number[:4]}{seps[0]}{number[4:10]}{seps[1]}{number[10:]}"
    if style == 0:
        return number
    if style == 5:  # a mix of separators
        groups = [number[i : i + 4] for i in range(0, len(number), 4)]
        return groups[0] + "".join(rng.choice(" .-") + g for g in groups[1:])
    return _group(number, 4, " -. "[style - 1])


_EN_TEMPLATES = (
    "my {label} is {value}",
    "You can reach me at {value}, thanks.",
    "{value}",
    "Please update the {label} to {value} for order 10234.",
    "the {label} ({value}) is wrong",
    "hi, {label}: {value}. can you check?",
)
_ZH_TEMPLATES = (
    "我的{label}是{value}",
    "{label}{value}谢谢",
    "请把{label}改成{value}，订单10234",
    "{label}：{value}。",
    "麻烦帮我查一下{value}这个{label}",
)
_LABELS = {
    "email": ("email", "邮箱"),
    "phone": ("phone number", "手机号"),
    "card": ("card number", "卡号"),
    "id_cn": ("ID number", "身份证号"),
    "iban": ("IBAN", "银行账号"),
}
_MAKERS: dict[str, Callable[[random.Random], str]] = {
    "email": _email,
    "phone": lambda r: _cn_mobile(r) if r.random() < 0.55 else _intl_phone(r),
    "card": _card,
    "id_cn": _cn_id,
    "iban": lambda r: _iban(r) if r.random() < 0.5 else _group(_iban(r)),
}


def pii_positives(n: int = 1200, seed: int = 7) -> list[PiiCase]:
    """``n`` sentences, each with one (sometimes two) real-format PII values; a tenth full-width/zero-width."""
    rng = random.Random(seed)
    kinds = sorted(_MAKERS)
    cases: list[PiiCase] = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        lang = "zh" if rng.random() < 0.5 else "en"
        value = _MAKERS[kind](rng)
        trick = rng.random()
        if trick < 0.05:
            value = fullwidth(value)
        elif trick < 0.10:
            value = _zero_width(value, rng)
        label = _LABELS[kind][lang == "zh"]
        template = rng.choice(_ZH_TEMPLATES if lang == "zh" else _EN_TEMPLATES)
        text = template.format(label=label, value=value)
        expected: tuple[tuple[str, str], ...] = ((kind, value),)
        if rng.random() < 0.15:  # a second value
            kind2 = rng.choice(kinds)
            value2 = _MAKERS[kind2](rng)
            text += ("，还有" if lang == "zh" else " and also ") + value2
            expected += ((kind2, value2),)
        cases.append(PiiCase(text, expected, lang, kind))
    return cases


def _neg_isbn(rng: random.Random) -> str:
    body = "978" + "".join(rng.choice(string.digits) for _ in range(9))
    check = (10 - sum(int(c) * (1 if i % 2 == 0 else 3) for i, c in enumerate(body)) % 10) % 10
    s = body + str(check)
    return f"{s[:3]}-{s[3]}-{s[4:6]}-{s[6:12]}-{s[12]}"


_NEGATIVE_MAKERS: dict[str, Callable[[random.Random], str]] = {
    "order_number": lambda r: rng_choice(r, ["order {}", "订单{}", "order #{}", "订单号：{}"]).format(
        r.randint(10000, 99999)
    ),
    "date": lambda r: rng_choice(r, ["delivered {}-{:02d}-{:02d}", "{}年{}月{}日到货"]).format(
        r.randint(2019, 2026), r.randint(1, 12), r.randint(1, 28)
    ),
    "price": lambda r: rng_choice(r, ["${:,}.99", "¥{}元", "total {} USD", "一共{}块"]).format(r.randint(1, 999999)),
    "id_bad_check": lambda r: "身份证" + _cn_id(r, valid=False),
    "iban_bad_checksum": lambda r: "IBAN " + _iban(r, valid=False),
    "isbn": lambda r: "ISBN " + _neg_isbn(r),
    "tracking": lambda r: rng_choice(r, ["tracking {}", "快递单号{}", "运单号 {}"]).format(
        rng_choice(r, ["SF", "YT", "JD", "1Z", "ZTO"]) + str(r.randint(10**11, 10**13))
    ),
    "tracking_digits": lambda r: "运单号" + str(r.choice("789")) + str(r.randint(10**13, 10**14)),
    "not_mobile": lambda r: rng_choice(r, ["编号{}", "ref {}"]).format(
        rng_choice(
            r,
            [
                f"12{r.randint(0, 999999999):09d}",
                f"138{r.randint(0, 999999999):09d}",
                f"10{r.randint(0, 999999999):09d}",
            ],
        )
    ),
    "time_qty": lambda r: rng_choice(r, ["at {}:{:02d}", "{}点{}分送到"]).format(r.randint(0, 23), r.randint(0, 59)),
    "version_ip": lambda r: rng_choice(r, ["app v{}.{}.{}", "ip 192.168.{}.{}"]).format(
        r.randint(0, 9), r.randint(0, 255), r.randint(0, 255)
    ),
    "handle": lambda r: rng_choice(r, ["follow @{}", "email me at {} (no domain)", "user@localhost"]).format(
        rng_choice(r, list(_FIRST)).replace(".", "")
    ),
    "sku": lambda r: f"SKU-{r.randint(1000, 9999)}-{r.randint(1000, 9999)}-{r.randint(10, 99)}",
    "zip_qty": lambda r: rng_choice(r, ["zip {}", "邮编{}", "{} pcs", "{}件"]).format(r.randint(100000, 999999)),
    "range": lambda r: f"orders {r.randint(10000, 50000)}-{r.randint(50001, 99999)} and {r.randint(10000, 99999)}",
    "same_digits": lambda r: rng_choice(r, ["0000 0000 0000 0000", "1111111111111111", "card 0000-0000-0000-0000"]),
    "date_forms": lambda r: rng_choice(
        r,
        [
            "ordered {2:02d}/{1:02d}/{0}",
            "{0}.{1:02d}.{2:02d}",
            "{0}{1:02d}{2:02d}",
            "{0}/{1}/{2}到的",
            "since {0}-{1:02d}-{2:02d} {3:02d}:{4:02d}:00",
            "{0}年{1:02d}月{2:02d}日{3}点",
        ],
    ).format(r.randint(2019, 2026), r.randint(1, 12), r.randint(1, 28), r.randint(0, 23), r.randint(0, 59)),
    "time_range": lambda r: rng_choice(r, ["open {}:00-{}:30", "{}:15-{}:45送达", "between {}.30 and {}.45"]).format(
        r.randint(7, 11), r.randint(12, 22)
    ),
    "price_forms": lambda r: rng_choice(r, ["¥{:,}.00", "${}.50", "RMB {}", "US${:,}.00", "price {}.00-{}.00"]).format(
        *(r.randint(100, 999_999_999) for _ in range(2))
    ),
    "tracking_labelled": lambda r: rng_choice(
        r,
        [
            "DHL tracking {d10}",
            "快递单号：{d13}",
            "韵达快递 {d13}",
            "waybill no. {d12}",
            "运单号 {d14}",
            "tracking # {d10}",
            "物流单号{d11}",
            "parcel {d12}",
        ],
    ).format(
        **{f"d{k}": f"{r.randint(1, 9)}{r.randint(0, 10 ** (k - 1) - 1):0{k - 1}d}" for k in (10, 11, 12, 13, 14)}
    ),
    "usps_grouped": lambda r: (
        "USPS " + _group(r.choice(["9400", "9205", "9261", "9270"]) + str(r.randint(10**17, 10**18)))
    ),
    "marketplace_order": lambda r: rng_choice(r, ["淘宝订单号 {}", "order no. {}", "订单编号：{}", "Order #{}"]).format(
        r.randint(10**17, 10**19 - 1)
    ),
    "timestamp": lambda r: rng_choice(r, ["ts {}", "created_at={}", "时间戳{}"]).format(
        r.randint(1_500_000_000, 1_999_999_999) * r.choice([1, 1000])
    ),
    "ip_version": lambda r: rng_choice(r, ["ip 172.16.{}.{}", "iOS 17.{}.{}", "build 2024.{}.{}", "v{}.10.{}"]).format(
        r.randint(0, 255), r.randint(0, 9999)
    ),
    "quantity_list": lambda r: rng_choice(
        r, ["sizes 38 39 40 41 and {}", "qty 2 x {}", "orders 10234 10235 10236 {}", "{} 件，每件 3 个"]
    ).format(r.randint(1000, 99999)),
    "measure": lambda r: rng_choice(r, ["{} x {} x {} cm", "尺寸{}*{}*{}毫米", "{}mm {}mm {}mm"]).format(
        r.randint(100, 999), r.randint(10, 999), r.randint(1000, 9999)
    ),
}


def rng_choice(rng: random.Random, seq: Sequence[str]) -> str:
    return seq[rng.randrange(len(seq))]


def pii_negatives(n: int = 1200, seed: int = 11) -> list[PiiCase]:
    """``n`` texts full of numbers and near-PII that must NOT be redacted."""
    rng = random.Random(seed)
    cats = sorted(_NEGATIVE_MAKERS)
    cases = []
    for i in range(n):
        cat = cats[i % len(cats)]
        text = _NEGATIVE_MAKERS[cat](rng)
        lang = "zh" if any("\u4e00" <= c <= "\u9fff" for c in text) else "en"
        cases.append(PiiCase(text, (), lang, cat))
    return cases


@dataclass(frozen=True)
class PiiScore:
    recall: float
    precision: float
    positives: int
    negatives: int
    expected: int
    found: int
    correct: int
    misses: tuple[str, ...]  # categories of missed expectations (never the text itself)
    false_categories: tuple[str, ...]


def score_pii(finder: Callable[[str], list[tuple[str, int, int]]], cases: Sequence[PiiCase]) -> PiiScore:
    """``finder(text)`` returns ``(kind, start, end)`` spans of the ORIGINAL text. A detection is correct when
    kind and span equal an expected value's (span of its first occurrence)."""
    expected_total = found_total = correct = 0
    misses: list[str] = []
    false_cats: list[str] = []
    positives = sum(1 for c in cases if c.expected)
    for case in cases:
        want = set()
        for kind, value in case.expected:
            start = case.text.index(value)
            want.add((kind, start, start + len(value)))
        got = set(finder(case.text))
        expected_total += len(want)
        found_total += len(got)
        correct += len(want & got)
        misses.extend(case.category for _ in want - got)
        false_cats.extend(case.category for _ in got - want)
    return PiiScore(
        recall=correct / expected_total if expected_total else 1.0,
        precision=correct / found_total if found_total else 1.0,
        positives=positives,
        negatives=len(cases) - positives,
        expected=expected_total,
        found=found_total,
        correct=correct,
        misses=tuple(misses),
        false_categories=tuple(false_cats),
    )

