"""Issue 13: redaction placeholders were read as slot values (``银行卡 [CARD`` as the payment method) because the
NLU tokenizer split ``[CARD]`` into ``[``, ``CARD``, ``]``. The demo bot's trained NLU, on redacted messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from nlu.predict import NLUModel
from safety import InputFilter

MESSAGES = [
    ("我的银行卡 6222 0212 3456 7890 128 付款失败了", [("payment_method", "银行卡")]),
    ("用银行卡6222021234567890128付款被扣了两次", [("payment_method", "银行卡")]),
    ("我用信用卡 5500 0055 5555 5559 付的，订单10234", [("payment_method", "信用卡"), ("order_id", "10234")]),
    ("手机13812345678，订单16420到哪了", [("order_id", "16420")]),
    ("call me on 415 555 0132 about order 10234", [("order_id", "10234")]),
    ("my email is jo@example.com, order 12591", [("order_id", "12591")]),
]


@pytest.fixture(scope="module")
def nlu(shop_bot: Path) -> NLUModel:
    return NLUModel.load(shop_bot / "models" / "nlu")


@pytest.mark.parametrize(("message", "entities"), MESSAGES)
def test_placeholders_are_never_part_of_an_entity(nlu: NLUModel, message: str, entities: list[tuple[str, str]]) -> None:
    verdict = InputFilter().check(message)
    assert "pii" in verdict.flags
    parse = nlu.parse(verdict.text)
    found = [(e.entity, e.value) for e in parse.entities]
    assert set(entities) <= set(found), found  # the real slot values are still found (the model may find more)
    for e in parse.entities:
        span = verdict.text[e.start : e.end]
        assert "[" not in span and "]" not in span and not any(k in e.value for k in ("CARD", "PHONE", "EMAIL")), e
