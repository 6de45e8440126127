"""Security issue 19 / issue 13: card and phone formats that were stored unredacted, card numbers without a valid
checksum, and the numbers that must stay readable (order ids, prices, dates, tracking numbers, ...)."""

from __future__ import annotations

import pytest

from nlu.tokenize import tokenize
from safety import InputFilter
from safety.pii import PLACEHOLDERS, find_pii, luhn_valid, redact, redact_verbatim

# The values the audit found stored in clear, and the formats the fix must cover (EN + CN, national + international).
CARDS = [
    "4111.1111.1111.1111",
    "4111 1111-1111 1111",
    "4111-1111.1111 1111",
    "6222 0212 3456 7890 128",
    "6222.0212.3456.7890.128",
    "3782 822463 10005",
    "3782-822463-10005",
    "5500005555555559",
]
PHONES = [
    "415 555 0132",
    "4155550132",
    "13812345678",
    "138 1234 5678",
    "138.1234.5678",
    "+86 138 1234 5678",
    "+86-138-1234-5678",
    "(415) 555-0132",
    "415.555.0132",
    "415-555-0132",
    "+1 415 555 0132",
    "+1 (415) 555-0132",
    "1-800-555-0199",
    "020-12345678",
    "0755-1234567",
    "02012345678",
    "(020) 1234 5678",
    "020 1234 5678",
    "+86 20 1234 5678",
    "+44 20 7946 0958",
]
TEMPLATES = ["my number is {} thanks", "{}", "我的号码是{}，谢谢", "卡号：{}。", "请打{}找我"]


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize(("value", "kind"), [(c, "card") for c in CARDS] + [(p, "phone") for p in PHONES])
def test_finding_formats_are_redacted_exactly(value: str, kind: str, template: str) -> None:
    text = template.format(value)
    verdict = InputFilter().check(text)
    start = text.index(value)
    assert [(r.kind, r.start, r.end) for r in verdict.redactions] == [(kind, start, start + len(value))]
    assert value not in verdict.text and PLACEHOLDERS[kind] in verdict.text


@pytest.mark.parametrize(
    "number",
    [
        "4111 1111 1111 1112",  # one digit mistyped
        "6222021234567890127",  # the 19-digit number of issue 13, failing Luhn
        "6222 0212 3456 7890 127",
        "5500.0055.5555.5558",
        "371449635398432",  # 15 digits compact
    ],
)
def test_cards_are_redacted_whatever_their_checksum(number: str) -> None:
    assert not luhn_valid(number.replace(" ", "").replace(".", ""))
    assert redact(f"卡号{number}谢谢")[0] == "卡号[CARD]谢谢"


@pytest.mark.parametrize(
    "text",
    [
        # digits of a longer number are never a card or a phone
        "ref 94111111111111111111",
        "code 41155550132",
        "ip 10.415.555.0132",
        "part 415-555-0132-7",
        "USPS 9400 1000 0000 4111 1111 1111",
        "USPS 9261 2990 4155 5501 3200 12",
        "4111111111111111abc",
        "SF4111111111111111",
        # short or ambiguous compact numbers need more than their shape
        "运单号 4312345678901",  # 13 digits, no valid checksum: a tracking number
        "淘宝订单号 3345678901234567891",  # a labelled marketplace order number
        "tracking 4155550132",
        "快递单号：02012345678",
        # everyday numbers
        "订单10234还没到",
        "orders 10234 10235 10236 10237",
        "total $1,299.99, ¥12,999.00, RMB 4155550",
        "delivered 2024-05-12, 12/05/2024, 2024.05.12, 20240512",
        "between 9:30-17:45, at 14:30",
        "3 pcs, 12件, qty 2 x 1200",
        "app v2.10.3, iOS 17.4.1, build 2024.05.1234",
        "ip 192.168.100.200, 10.0.0.254",
        "ts 1715500000, 1715500000123",
        "ISBN 978-3-16-148410-0",
        "155 x 555 x 0132 cm",
        "0000 0000 0000 0000",
    ],
)
def test_numbers_that_are_not_pii_stay(text: str) -> None:
    assert find_pii(text) == [], [(s.kind, text[s.start : s.end]) for s in find_pii(text)]


def test_card_followed_by_expiry_or_a_second_card() -> None:
    assert redact("card 4111 1111 1111 1111 12/25")[0] == "card [CARD] 12/25"
    assert redact("4111 1111 1111 1112 2025")[0] == "[CARD] 2025"  # one 4-digit group after it: a year
    assert redact("4111 1111 1111 1111 5500 0055 5555 5559")[0] == "[CARD] [CARD]"
    assert redact("订单10234 4111 1111 1111 1111")[0] == "订单10234 [CARD]"


def test_a_labelled_compact_number_is_a_phone_only_without_the_label() -> None:
    assert redact("tracking no. 4155550132")[0] == "tracking no. 4155550132"
    assert redact("call 4155550132")[0] == "call [PHONE]"
    assert redact("运单号7312345678")[0] == "运单号7312345678"
    assert redact("电话7312345678")[0] == "电话[PHONE]"


def test_verbatim_redaction_keeps_the_text_as_written() -> None:
    raw = "Hi，\n call ４１５ ５５５ ０１３２  or jo@example.com！\n\nCard: 4111.1111.1111.1112"
    text, redactions = redact_verbatim(raw)
    assert text == "Hi，\n call [PHONE]  or [EMAIL]！\n\nCard: [CARD]"
    assert [r.kind for r in redactions] == ["phone", "email", "card"]
    assert [r.kind for r in redact(raw)[1]] == [r.kind for r in redactions]  # one detection, two renderings
    assert redact_verbatim(text) == (text, ())  # placeholders hold no PII


@pytest.mark.parametrize("placeholder", [*PLACEHOLDERS.values(), "[BANNED]"])
def test_a_placeholder_is_one_nlu_token(placeholder: str) -> None:
    """Issue 13: ``银行卡 [CARD`` was taken as a slot value because the tokenizer split the placeholder."""
    for text in (f"银行卡{placeholder}付款失败", f"my card {placeholder} failed", f"({placeholder})"):
        tokens = tokenize(text)
        assert placeholder in [t.text for t in tokens]
        assert not any(t.text in ("[", "]") or t.text == placeholder[1:-1] for t in tokens)
