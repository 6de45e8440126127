from __future__ import annotations

from pathlib import Path

import pytest
from nlu_testutil import FIXTURES, write_jsonl

from nlu.data import Example, bio_tags, load_examples, parse_annotated, read_jsonl, read_rasa_nlu
from nlu.errors import DataError
from nlu.types import Entity


@pytest.fixture(scope="module")
def rasa() -> list[Example]:
    return read_rasa_nlu(FIXTURES / "nlu.yml")


def _find(examples: list[Example], text: str) -> Example:
    return next(ex for ex in examples if ex.text == text)


def test_rasa_intents_and_counts(rasa: list[Example]) -> None:
    counts: dict[str, int] = {}
    for ex in rasa:
        counts[ex.intent] = counts.get(ex.intent, 0) + 1
    assert counts == {"greet": 6, "order_status": 6, "return_request": 5, "payment_problem": 5}
    for ex in rasa:
        assert len(ex.tokens) == len(ex.tags) > 0
        assert "[" not in ex.text and "](" not in ex.text


def test_rasa_short_annotation(rasa: list[Example]) -> None:
    ex = _find(rasa, "where is my order 10234?")
    assert ex.entities == [Entity("order_id", "10234", 18, 23)]
    assert ex.tokens == ["where", "is", "my", "order", "10234", "?"]
    assert ex.tags == ["O", "O", "O", "O", "B-order_id", "O"]


def test_rasa_json_annotation_with_value(rasa: list[Example]) -> None:
    ex = _find(rasa, "return the headphones, wrong size")
    assert ex.entities[0] == Entity("product", "wireless headphones", 11, 21)
    assert ex.entities[1] == Entity("reason", "wrong size", 23, 33)
    assert ex.tags == ["O", "O", "B-product", "O", "B-reason", "I-reason"]
    ex = _find(rasa, "track my laptop bag please")
    assert ex.entities == [Entity("product", "laptop bag", 9, 19)]


def test_rasa_synonym_map_is_returned() -> None:
    synonyms: dict[str, str] = {}
    load_examples([FIXTURES / "nlu.yml"], synonyms)
    assert synonyms == {"cc": "credit card", "visa card": "credit card", "paypal": "PayPal", "微信": "微信支付"}


def test_rasa_synonyms_apply_to_values(rasa: list[Example]) -> None:
    assert _find(rasa, "I paid with cc but it failed").entities[0].value == "credit card"
    assert _find(rasa, "paypal payment didn't go through").entities[0].value == "PayPal"
    zh = _find(rasa, "用微信付不了钱")
    assert zh.entities == [Entity("payment_method", "微信支付", 1, 3)]
    assert zh.tags == ["O", "B-payment_method", "I-payment_method", "O", "O", "O", "O"]


def test_rasa_chinese_character_tags(rasa: list[Example]) -> None:
    ex = _find(rasa, "订单44120质量有问题，想退")
    assert ex.tokens[:3] == ["订", "单", "44120"]
    assert ex.tags[:8] == ["O", "O", "B-order_id", "B-reason", "I-reason", "I-reason", "I-reason", "I-reason"]


@pytest.mark.parametrize(
    ("line", "text", "entities"),
    [
        ("no entities here", "no entities here", []),
        ("[a b](x) c", "a b c", [Entity("x", "a b", 0, 3)]),
        ("pay by [visa card](payment_method:credit card)", "pay by visa card",
         [Entity("payment_method", "credit card", 7, 16)]),
        # a role or group is part of the label the tagger learns (nlu.data.split_label takes it apart again)
        ('[蓝牙耳机]{"entity": "product", "role": "item"}坏了', "蓝牙耳机坏了", [Entity("product#item", "蓝牙耳机", 0, 4)]),
        ('[two]{"entity": "size", "group": "1"} pizzas', "two pizzas", [Entity("size@1", "two", 0, 3)]),
        ('from [Berlin]{"entity": "city", "role": "from", "group": "2"}', "from Berlin", [Entity("city#from@2", "Berlin", 5, 11)]),
    ],
)
def test_parse_annotated(line: str, text: str, entities: list[Entity]) -> None:
    assert parse_annotated(line) == (text, entities)


@pytest.mark.parametrize(("content", "line"), [
    ("nlu:\n- intent: greet\n  examples: |\n    - hi\n    - [x]{\"entity\": oops}\n", 5),
    ("nlu:\n- intent: greet\n  examples: |\n    - hi\n    no dash here\n", 5),
    ("nlu: [unclosed\n", 2),
])
def test_rasa_errors_name_the_line(tmp_path: Path, content: str, line: int) -> None:
    p = tmp_path / "bad.yml"
    p.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_rasa_nlu(p)
    assert info.value.line == line and info.value.path == p


def test_read_jsonl_with_and_without_tags(tmp_path: Path) -> None:
    p = write_jsonl(tmp_path / "d.jsonl", [
        {"text": "play jazz", "tokens": ["play", "jazz"], "tags": ["O", "B-genre"], "intent": "PlayMusic"},
        {"text": "where is order 10234?", "intent": "order_status"},
        {"text": "我要退货", "intent": "return_request"},
    ])
    a, b, c = read_jsonl(p)
    assert a.tags == ["O", "B-genre"]
    assert b.tokens == ["where", "is", "order", "10234", "?"] and b.tags == ["O"] * 5
    assert c.tokens == ["我", "要", "退", "货"]


@pytest.mark.parametrize(("row", "reason"), [
    ({"text": "x"}, "intent"),
    ({"text": "a b", "tokens": ["a", "b"], "tags": ["O"], "intent": "i"}, "as long as"),
    ({"text": "a", "tokens": ["a"], "tags": ["S-x"], "intent": "i"}, "BIO"),
])
def test_read_jsonl_errors(tmp_path: Path, row: dict[str, object], reason: str) -> None:
    p = write_jsonl(tmp_path / "d.jsonl", [{"text": "ok", "intent": "i"}, row])
    with pytest.raises(DataError, match=reason) as info:
        read_jsonl(p)
    assert info.value.line == 2


def test_load_examples_dispatch(tmp_path: Path) -> None:
    j = write_jsonl(tmp_path / "d.jsonl", [{"text": "hello", "intent": "greet"}])
    examples = load_examples([FIXTURES / "nlu.yml", j])
    assert len(examples) == 23 and examples[-1].intent == "greet"
    with pytest.raises(DataError, match="unknown data format"):
        load_examples([tmp_path / "x.csv"]) if (tmp_path / "x.csv").write_text("a") else None
    with pytest.raises(DataError, match="not found"):
        load_examples(tmp_path / "missing.yml")


def test_bio_tags_partial_overlap() -> None:
    assert bio_tags([(0, 3), (4, 9), (10, 12)], [(4, 12, "x")]) == ["O", "B-x", "I-x"]


def test_stratified_folds_partition_every_intent() -> None:
    from nlu.data import make_example
    from nlu.evaluate import stratified_folds

    examples = [make_example(f"x {i}", intent) for intent, n in (("a", 9), ("b", 4), ("c", 1)) for i in range(n)]
    folds = stratified_folds(examples, 3, seed=1)
    assert sorted(i for f in folds for i in f) == list(range(len(examples)))
    for f in folds:
        assert sum(examples[i].intent == "a" for i in f) == 3
        assert sum(examples[i].intent == "b" for i in f) in (1, 2)
    assert folds == stratified_folds(examples, 3, seed=1) and folds != stratified_folds(examples, 3, seed=2)


@pytest.mark.parametrize(("label", "parts"), [
    ("city", ("city", None, None)), ("city#from", ("city", "from", None)), ("size@1", ("size", None, "1")),
    ("city#from@2", ("city", "from", "2")),
])
def test_split_label(label: str, parts: tuple[str, str | None, str | None]) -> None:
    from nlu.data import split_label

    assert split_label(label) == parts
