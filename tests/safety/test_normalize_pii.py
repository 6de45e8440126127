"""Normalisation, index maps and PII detection/redaction."""

from __future__ import annotations

import pytest

from safety.normalize import normalize
from safety.pii import find_pii, luhn_valid, redact


def test_nfkc_fullwidth_zero_width_and_whitespace() -> None:
    raw = "  Ｈｅｌｌｏ\u200b\u200d　ｗｏｒｌｄ\t\n！ \x07end\ufeff "
    norm = normalize(raw)
    assert norm.text == "Hello world ! end"
    assert len(norm.starts) == len(norm.ends) == len(norm.text)


def test_index_map_points_back_to_original_characters() -> None:
    raw = "a\u200bＢ  c"
    norm = normalize(raw)
    assert norm.text == "aB c"
    assert [raw[s:e] for s, e in zip(norm.starts, norm.ends, strict=True)] == ["a", "Ｂ", "  ", "c"]
    assert norm.original_span(1, 4) == (2, 6)
    assert norm.original_span(0, 0) == (0, 0)
    with pytest.raises(ValueError):
        norm.original_span(2, 9)


def test_combining_marks_compose_and_map_to_both_chars() -> None:
    raw = "cafe\u0301!"
    norm = normalize(raw)
    assert norm.text == "café!"
    assert norm.original_span(3, 4) == (3, 5)


def test_empty_and_repr_hides_text() -> None:
    assert normalize("").text == ""
    assert normalize("\u200b \u200b").text == ""
    assert "secret" not in repr(normalize("my secret"))


@pytest.mark.parametrize(
    ("digits", "valid"),
    [
        ("4111111111111111", True),
        ("4111111111111112", False),
        ("6222021234567890128", True),
        ("6222021234567890127", False),
        ("5500005555555559", True),
        ("abc", False),
    ],
)
def test_luhn(digits: str, valid: bool) -> None:
    assert luhn_valid(digits) is valid


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # bank cards: by shape, whatever the checksum; any mix of separators; digits glued to Chinese
        ("card 4111 1111 1111 1111 please", "card [CARD] please"),
        ("card 4111-1111-1111-1111.", "card [CARD]."),
        ("card 4111 1111 1111 1112 please", "card [CARD] please"),  # a mistyped card number is still one
        ("卡号6222021234567890128谢谢", "卡号[CARD]谢谢"),
        ("银联卡 6222 0212 3456 7890 128", "银联卡 [CARD]"),
        ("卡号6222021234567890127谢谢", "卡号[CARD]谢谢"),
        # Chinese mobiles
        ("我的手机13812345678，谢谢", "我的手机[PHONE],谢谢"),
        ("电话+86 138 1234 5678", "电话[PHONE]"),
        ("电话+86-138-1234-5678好的", "电话[PHONE]好的"),
        ("0086 13912345678", "[PHONE]"),
        ("(+86)13912345678", "[PHONE]"),
        ("12812345678", "12812345678"),  # 2nd digit must be 3-9
        ("138123456789", "138123456789"),  # 12 digits: not a mobile
        # international / other phones
        ("call +44 20 7946 0958 now", "call [PHONE] now"),
        ("call +1 (415) 555-0132", "call [PHONE]"),
        ("call (415) 555-0132", "call [PHONE]"),
        ("座机010-62345678", "座机[PHONE]"),
        # emails
        ("mail me: jane.doe+shop@example.co.uk!", "mail me: [EMAIL]!"),
        ("邮箱abc_1@qq.com谢谢", "邮箱[EMAIL]谢谢"),
        ("not an email: a@b", "not an email: a@b"),
        # things that must stay
        ("it's order 10234", "it's order 10234"),
        ("订单10234还没到", "订单10234还没到"),
        ("delivered 2024-05-12, 3 items, $19.99", "delivered 2024-05-12, 3 items, $19.99"),
    ],
)
def test_redact_cases(text: str, expected: str) -> None:
    redacted, redactions = redact(text)
    assert redacted == expected
    assert len(redactions) == expected.count("[")


def test_redaction_kinds_and_multiple() -> None:
    spans = find_pii("a@b.io 13812345678 4111111111111111")
    assert [s.kind for s in spans] == ["email", "phone", "card"]


def test_redaction_spans_map_back_after_fullwidth_and_zero_width() -> None:
    raw = "电话：１３８\u200b１２３４\u200c５６７８，邮箱ｊｏｅ＠ｅｘａｍｐｌｅ．ｃｏｍ 卡 ４１１１ １１１１ １１１１ １１１１"
    text, redactions = redact(raw)
    assert text == "电话:[PHONE],邮箱[EMAIL] 卡 [CARD]"
    got = {r.kind: raw[r.start : r.end] for r in redactions}
    assert got == {
        "phone": "１３８\u200b１２３４\u200c５６７８",
        "email": "ｊｏｅ＠ｅｘａｍｐｌｅ．ｃｏｍ",
        "card": "４１１１ １１１１ １１１１ １１１１",
    }
    assert [r.placeholder for r in redactions] == ["[PHONE]", "[EMAIL]", "[CARD]"]
