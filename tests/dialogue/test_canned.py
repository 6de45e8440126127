"""Canned replies, the pure part (:mod:`dialogue.canned`): filling ``{slot}`` names and the validation rules."""

from __future__ import annotations

from typing import Any

import pytest

from dialogue.canned import CannedReplyInvalid, Rendered, check_reply, render, slot_names


def test_named_slots_are_filled_from_the_conversation() -> None:
    rendered = render("Order {order_id} ships {eta}. Thanks, {name}!", {"order_id": "10234", "eta": "tomorrow",
                                                                         "name": "Li"})
    assert rendered == Rendered("Order 10234 ships tomorrow. Thanks, Li!", ("order_id", "eta", "name"), ())


@pytest.mark.parametrize("value", [None, "", "   ", [], {"nested": 1}])
def test_unknown_or_empty_slots_stay_visible_and_are_reported(value: Any) -> None:
    slots = {"order_id": "10234", "email": value}
    rendered = render("Order {order_id}: we mail {email} and {missing}; again {email}.", slots)
    assert rendered.text == "Order 10234: we mail {email} and {missing}; again {email}."
    assert rendered.filled == ("order_id",)
    assert rendered.missing == ("email", "missing")  # each once, in order of appearance


def test_values_are_inserted_literally_and_never_expanded_again() -> None:
    rendered = render("{a} / {b}", {"a": "{b}", "b": "B"})
    assert rendered.text == "{b} / B" and rendered.missing == ()


def test_other_values_and_non_slot_braces() -> None:
    slots = {"count": 3, "paid": True, "items": ["shoes", "", "socks"], "zh": "订单"}
    rendered = render("{count} {paid} {items} {zh} {} {1x} {not a slot} {{count}}", slots)
    assert rendered.text == "3 yes shoes, socks 订单 {} {1x} {not a slot} {3}"
    assert rendered.missing == ()


def test_slot_names() -> None:
    assert slot_names("Hi {name}, order {order_id} for {name}") == ("name", "order_id")
    assert slot_names("no slots {here too}") == ()


def test_check_reply_trims_and_accepts_the_bot_languages() -> None:
    assert check_reply("zh", "  发货  ", " 订单 {order_id} 已发货\n谢谢 ", ("en", "zh")) == (
        "zh", "发货", "订单 {order_id} 已发货\n谢谢")
    assert check_reply("en", "t" * 64, "x" * 2000, ("en",))[1] == "t" * 64


@pytest.mark.parametrize(
    ("language", "title", "text", "field"),
    [
        ("fr", "Hi", "Hello", "'language'"),
        (None, "Hi", "Hello", "'language'"),
        ("en", "", "Hello", "'title'"),
        ("en", "   ", "Hello", "'title'"),
        ("en", "t" * 65, "Hello", "'title'"),
        ("en", "two\nlines", "Hello", "'title'"),
        ("en", 5, "Hello", "'title'"),
        ("en", "Hi", "", "'text'"),
        ("en", "Hi", "x" * 2001, "'text'"),
        ("en", "Hi", "bell\x07", "'text'"),
        ("en", "Hi", ["Hello"], "'text'"),
    ],
)
def test_check_reply_refuses_with_the_rule_not_the_value(language: Any, title: Any, text: Any, field: str) -> None:
    with pytest.raises(CannedReplyInvalid) as info:
        check_reply(language, title, text, ("en", "zh"))
    assert info.value.reason.startswith(field)
    assert "xxxx" not in info.value.reason and "bell" not in info.value.reason
