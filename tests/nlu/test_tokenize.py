from __future__ import annotations

import itertools

import pytest

from nlu.tokenize import clear_language, detect_language, simplified, tokenize


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Where is my order #10234?", ["Where", "is", "my", "order", "#", "10234", "?"]),
        ("I don't want it, thanks.", ["I", "don't", "want", "it", ",", "thanks", "."]),
        ("it costs 1,299.00 dollars", ["it", "costs", "1,299.00", "dollars"]),
        ("order10234", ["order", "10234"]),
        ("我的订单10234到哪了？", ["我", "的", "订", "单", "10234", "到", "哪", "了", "？"]),
        ("我想用PayPal付款", ["我", "想", "用", "PayPal", "付", "款"]),
        ("退货 because 尺码不对!", ["退", "货", "because", "尺", "码", "不", "对", "!"]),
        ("  café   crème  ", ["café", "crème"]),
        ("", []),
    ],
)
def test_tokens_and_offsets(text: str, expected: list[str]) -> None:
    toks = tokenize(text)
    assert [t.text for t in toks] == expected
    for t in toks:
        assert text[t.start : t.end] == t.text
    assert all(a.end <= b.start for a, b in itertools.pairwise(toks))


def test_offsets_skip_whitespace() -> None:
    toks = tokenize("hi  你好 there")
    assert [(t.start, t.end) for t in toks] == [(0, 2), (4, 5), (5, 6), (7, 12)]


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("where is my order 10234", "en"),
        ("我的订单10234到哪了", "zh"),
        ("我想用PayPal付款", "zh"),
        ("can I pay with 支付宝 instead of a credit card", "en"),
        ("12345", "en"),
        ("", "en"),
    ],
)
def test_detect_language(text: str, language: str) -> None:
    assert detect_language(text) == language


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("where is my order", "en"),
        ("ok thanks", "en"),
        ("我的订单到哪了", "zh"),
        ("好", "zh"),
        ("我的order 10234 怎么还没到", "zh"),
        ("ok 好的", "zh"),
        # Says nothing about the language: a conversation keeps its own.
        ("14388", None),
        ("😂😂", None),
        ("+86 13812345678", None),
        ("[PHONE]", None),
        ("[EMAIL] [CARD]", None),
        ("hi", None),
        ("？？", None),
        ("iPhone 15", None),
    ],
)
def test_clear_language(text: str, language: str | None) -> None:
    assert clear_language(text) == language


@pytest.mark.parametrize(("text", "expected"), [
    ("關稅是誰付呢", "关税是谁付呢"),
    ("我的筆電是14吋的，放你們的電腦包會不會太鬆?", "我的笔电是14吋的，放你们的电脑包会不会太松?"),
    ("頭髮乾燥", "头发干燥"),  # a phrase table: 乾 -> 干 here
    ("乾隆", "乾隆"),  # and not in a name
    ("请问运费多少", "请问运费多少"),  # simplified stays
    ("refund 13047 #ok 😂", "refund 13047 #ok 😂"),  # nothing else changes
    ("", ""),
])
def test_traditional_chinese_is_read_as_simplified(text: str, expected: str) -> None:
    out = simplified(text)
    assert out == expected
    assert len(out) == len(text)  # offsets into it are offsets into the customer's text
    assert [(t.start, t.end) for t in tokenize(out)] == [(t.start, t.end) for t in tokenize(text)]
    assert simplified(out) == out
