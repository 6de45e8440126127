"""Templates from domain.yml responses, delexicalisation and the strict slot check."""

from __future__ import annotations

import pytest

from runtime.errors import TemplateError
from runtime.nlg import check_slots
from runtime.templates import Templates, delexicalise, lexicalise, placeholders_of
from runtime.types import Act

DOMAIN = {
    "responses": {
        "utter_order_status": [
            {"text": "Order {order_id} is {status}. Expected delivery: {eta}.", "language": "en"},
            {"text": "Your order {order_id} is {status}; it should arrive {eta}.", "language": "en"},
            {"text": "订单{order_id}的状态：{status}，预计送达：{eta}。", "language": "zh"},
        ],
        "utter_greet": [{"text": "Hello!", "language": "en"}, "Hi there!"],
    }
}


def test_from_domain_groups_variants_by_language() -> None:
    t = Templates.from_domain(DOMAIN)
    assert t.keys() == ["utter_order_status", "utter_greet"]
    assert t.languages() == ["en", "zh"]
    assert [v.text for v in t.variants("utter_greet", "en")] == ["Hello!", "Hi there!"]  # bare string = default
    assert t.placeholders("utter_order_status", "zh") == ("order_id", "status", "eta")
    assert t.placeholders("utter_greet", "en") == ()
    assert "utter_greet" in t and "utter_nope" not in t


def test_render_is_deterministic_and_fills_slots() -> None:
    t = Templates.from_domain(DOMAIN)
    act = Act("utter_order_status", {"order_id": "10234", "status": "shipped", "eta": "Friday"}, "en")
    first = t.render(act)
    assert all(t.render(act) == first for _ in range(5))
    assert first in {
        "Order 10234 is shipped. Expected delivery: Friday.",
        "Your order 10234 is shipped; it should arrive Friday.",
    }
    seen = {t.render(Act("utter_order_status", {"order_id": str(n), "status": "s", "eta": "e"})) for n in range(40)}
    assert len({s.split()[0] for s in seen}) == 2  # both variants get used across acts
    zh = Act("utter_order_status", {"order_id": "10234", "status": "已发货", "eta": "周五"}, "zh")
    assert t.render(zh) == "订单10234的状态：已发货，预计送达：周五。"


def test_render_language_fallback_and_missing_slot() -> None:
    t = Templates.from_domain(DOMAIN)
    assert t.render(Act("utter_greet", {}, "zh")) in {"Hello!", "Hi there!"}  # no zh variant -> default language
    act = Act("utter_order_status", {"order_id": "1"}, "zh")
    assert t.render(act) == "订单1的状态：，预计送达：。"
    assert t.missing_slots(act) == ("status", "eta")
    assert t.expected_slots(Act("utter_order_status", {"order_id": "1", "product": "x"}, "en")) == ("order_id",)


@pytest.mark.parametrize(
    "domain",
    [{}, {"responses": {}}, {"responses": {"utter_x": []}}, {"responses": {"utter_x": [{"language": "en"}]}}],
)
def test_malformed_domain_raises(domain: dict) -> None:
    with pytest.raises(TemplateError):
        Templates.from_domain(domain)


def test_unknown_key_raises() -> None:
    with pytest.raises(TemplateError, match="utter_nope"):
        Templates.from_domain(DOMAIN).render(Act("utter_nope"))


def test_fixture_domain_has_design_keys(templates: Templates) -> None:
    for key in ("utter_order_status", "utter_return_denied", "utter_kb_answer", "utter_safe_reply"):
        assert {v.language for v in templates.variants(key, "en")} == {"en"}
        assert {v.language for v in templates.variants(key, "zh")} == {"zh"}
    assert templates.placeholders("utter_return_denied", "zh") == ("order_id", "days")


def test_delexicalise_and_lexicalise_round_trip() -> None:
    text = "Order {order_id} is {status}."
    assert placeholders_of("{a} {b} {a}") == ("a", "b")
    delex = delexicalise(text)
    assert delex == "Order [order_id] is [status]."
    assert lexicalise(delex, {"order_id": "10234", "status": "[late]"}) == "Order 10234 is [late]."
    assert lexicalise("[unknown] x", {}) == "[unknown] x"


@pytest.mark.parametrize(
    ("delex", "expected", "errors"),
    [
        ("Order [order_id] is [status].", ("order_id", "status"), ()),
        ("订单[order_id]的状态：[status]", ("status", "order_id"), ()),
        ("Hello!", (), ()),
        ("Order is [status].", ("order_id", "status"), ("missing:order_id",)),
        ("Order [order_id] [order_id] is [status].", ("order_id", "status"), ("repeated:order_id",)),
        ("Order [order_id] is [status] [eta].", ("order_id", "status"), ("invented:eta",)),
        ("Hi [order_id]", (), ("invented:order_id",)),
        ("Order {order_id} is [status].", ("order_id", "status"), ("missing:order_id", "raw:order_id")),
        ("", (), ("empty",)),
        ("  ", ("answer",), ("empty", "missing:answer")),
        ("[a][c][c]", ("a", "b", "c"), ("missing:b", "repeated:c")),
    ],
)
def test_check_slots(delex: str, expected: tuple[str, ...], errors: tuple[str, ...]) -> None:
    assert check_slots(delex, expected) == errors
