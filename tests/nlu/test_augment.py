"""Training-time augmentation (nlu.augment): deterministic, entity spans aligned with text and BIO tags, in English
and Chinese; the operations do what they promise; training uses it on small data only."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from nlu_testutil import FIXTURES, TINY

from nlu.augment import Augmenter, augment, build, segments_of
from nlu.data import Example, bio_tags, make_example, parse_annotated, read_rasa_nlu
from nlu.tokenize import tokenize

EN = {
    "greet": ["hi", "hello", "hey", "hi there", "good morning"],
    "goodbye": ["bye", "see you", "cya", "bye bye"],
    "inform": ["[10234](order_id)", "order [16107](order_id)", "it arrived [damaged](reason)",
               "because it's [broken](reason)", "[wrong size](reason)", "I paid with [paypal](payment_method)"],
    "order_status": ["hi, where is my order?", "where is order [12873](order_id)?", "track order [15562](order_id)",
                     "hello, has my order shipped yet?"],
    "return_request": ["I want to return order [18830](order_id)", "I need to return something",
                       "return my shoes, they [don't fit](reason)", "hey, can I send this back?",
                       "I'd like to return [12591](order_id), [wrong size](reason)"],
}
ZH = {
    "greet": ["你好", "在吗", "您好", "亲，在吗"],
    "thanks": ["谢谢", "多谢", "谢啦"],
    "inform": ["[10234](order_id)", "订单号[15562](order_id)", "因为[尺码不对](reason)", "[质量有问题](reason)",
               "[不想要了](reason)", "用的[支付宝](payment_method)"],
    "order_status": ["你好，我的订单到哪了", "订单[12873](order_id)什么时候到", "怎么还没发货", "在吗，查一下物流"],
    "return_request": ["我要退货", "订单[16107](order_id)我要退货", "怎么退货", "你好，我想退个东西",
                       "订单[15562](order_id)想退货，[尺码不对](reason)"],
}


def _examples(data: dict[str, list[str]]) -> list[Example]:
    out = []
    for intent, lines in data.items():
        for line in lines:
            text, entities = parse_annotated(line)
            out.append(make_example(text, intent, entities))
    return out


@pytest.fixture(scope="module", params=["en", "zh"])
def lang_examples(request: pytest.FixtureRequest) -> tuple[str, list[Example]]:
    return request.param, _examples(EN if request.param == "en" else ZH)


def _assert_aligned(ex: Example) -> None:
    toks = tokenize(ex.text)
    assert ex.tokens == [t.text for t in toks]
    assert len(ex.tags) == len(ex.tokens)
    assert ex.tags == bio_tags([(t.start, t.end) for t in toks], [(e.start, e.end, e.entity) for e in ex.entities])
    for e in ex.entities:
        span = ex.text[e.start : e.end]
        assert span and span == span.strip(), (ex.text, e)
        # an entity never swallows or loses part of a neighbouring word: it starts and ends on token boundaries
        assert any(t.start == e.start for t in toks) and any(t.end == e.end for t in toks), (ex.text, e)


def test_deterministic_for_a_seed(lang_examples: tuple[str, list[Example]]) -> None:
    _, examples = lang_examples
    first = Augmenter(examples, seed=3).generate(60)
    again = Augmenter(examples, seed=3).generate(60)
    other = Augmenter(examples, seed=4).generate(60)
    assert [(e.text, e.tags, e.intent, e.entities) for e in first] == \
        [(e.text, e.tags, e.intent, e.entities) for e in again]
    assert [e.text for e in first] != [e.text for e in other]


def test_spans_stay_aligned_and_values_come_from_the_data(lang_examples: tuple[str, list[Example]]) -> None:
    lang, examples = lang_examples
    out = Augmenter(examples, seed=0).generate(200)
    assert len(out) >= 60  # tiny data, but many distinct variants
    values = {(e.entity, e.value) for ex in examples for e in ex.entities}
    sources = {ex.text for ex in examples}
    for ex in out:
        _assert_aligned(ex)
        assert ex.text not in sources and ex.intent in (EN if lang == "en" else ZH)
        for e in ex.entities:
            # a value of the same type from the data, or (numbers) other digits of the same length
            assert (e.entity, e.value) in values or (e.value.isdigit() and len(e.value) == 5), e
    assert len({ex.text for ex in out}) == len(out)  # no duplicates


def test_splice_puts_a_reason_next_to_an_order_id(lang_examples: tuple[str, list[Example]]) -> None:
    """A return request with an order id gets a reason clause (from the answer intent or its own intent) before or
    after it, keeping its intent: the case the tagger never saw in the data."""
    lang, examples = lang_examples
    aug = Augmenter(examples, seed=0)
    assert aug.answer_intent == "inform"
    source = next(ex for ex in examples if ex.intent == "return_request"
                  and [e.entity for e in ex.entities] == ["order_id"])
    segs = segments_of(source)
    assert segs is not None
    orders = set()
    for k in range(30):
        spliced = aug.splice(list(segs), "return_request", lang, random.Random(k))
        assert spliced is not None
        ex = build(spliced, "return_request")
        _assert_aligned(ex)
        labels = [e.entity for e in ex.entities]
        assert sorted(set(labels)) == ["order_id", "reason"]
        orders.add(tuple(labels))
        assert source.text.rstrip(" ,，.。!?？") in ex.text
    assert orders == {("order_id", "reason"), ("reason", "order_id")}  # both positions occur


def test_splice_only_adds_entity_types_the_intent_uses() -> None:
    examples = _examples(EN)
    aug = Augmenter(examples, seed=0)
    segs = segments_of(next(ex for ex in examples if ex.text == "where is order 12873?"))
    assert segs is not None
    for k in range(20):
        spliced = aug.splice(list(segs), "order_status", "en", random.Random(k))
        # order_status uses order_id only and already has one: no clause fits
        assert spliced is None


def test_greeting_prefix_keeps_the_task_intent() -> None:
    examples = _examples(EN)
    aug = Augmenter(examples, seed=0)
    assert aug.greeting_intent == "greet" and {"greet", "goodbye"} <= aug.social
    segs = segments_of(next(ex for ex in examples if ex.text == "track order 15562"))
    assert segs is not None
    heads = set()
    for k in range(40):
        ex = build(aug.prefix(list(segs), "order_status", "en", random.Random(k)), "order_status")
        _assert_aligned(ex)
        assert ex.text.endswith("track order 15562") and ex.entities[0].value == "15562"
        heads.add(ex.text[: -len("track order 15562")].strip(" ,"))
    assert heads & {"hi", "hello", "hey"} and not heads & {"bye", "see you", "cya"}


def test_chinese_noise_is_colloquial_and_leaves_entities_alone() -> None:
    examples = _examples(ZH)
    aug = Augmenter(examples, seed=0)
    source = make_example("订单10234什么时候到？", "order_status", parse_annotated("订单[10234](order_id)什么时候到？")[1])
    segs = segments_of(source)
    assert segs is not None
    texts = set()
    for k in range(60):
        ex = build(aug.noise(list(segs), "zh", random.Random(k)), "order_status")
        _assert_aligned(ex)
        assert [(e.entity, ex.text[e.start : e.end]) for e in ex.entities] == [("order_id", "10234")]
        texts.add(ex.text)
    assert any("啥时候" in t for t in texts)  # 什么 -> 啥
    assert any(not t.endswith("？") for t in texts)  # punctuation dropped
    assert any(t[-1] in "啊呀呢哈哦吧~亲" for t in texts)  # a particle added


def test_english_typo_never_touches_an_entity() -> None:
    examples = _examples(EN)
    aug = Augmenter(examples, seed=0)
    text, entities = parse_annotated("My [running shoes](product) arrived Damaged, order [19011](order_id).")
    segs = segments_of(make_example(text, "return_request", entities))
    assert segs is not None
    for k in range(60):
        ex = build(aug.noise(list(segs), "en", random.Random(k)), "return_request")
        _assert_aligned(ex)
        got = [(e.entity, ex.text[e.start : e.end].lower(), e.value) for e in ex.entities]
        assert got == [("product", "running shoes", "running shoes"), ("order_id", "19011", "19011")]


def test_examples_without_character_spans_are_left_alone() -> None:
    """Pre-tokenised JSONL data (tags but no entity offsets) cannot be rebuilt from segments: skipped, never
    guessed."""
    tagged = Example("play jazz", ["play", "jazz"], ["O", "B-genre"], "play_music")
    plain = make_example("what time is it", "ask_time")
    assert segments_of(tagged) is None
    assert segments_of(plain) == [("what time is it", None, None)]
    out = Augmenter([tagged, plain], seed=0).generate(10)
    assert all(ex.intent == "ask_time" for ex in out)
    assert augment([tagged], 1.0) == [] and augment([plain], 0.0) == []


@pytest.mark.parametrize("factor", [0.0, 1.0])
def test_training_augments_small_data_only_when_asked(tmp_path: Path, factor: float) -> None:
    from nlu.model import NLUConfig
    from nlu.train import TrainConfig, train

    examples = read_rasa_nlu(FIXTURES / "nlu.yml")
    train(examples, tmp_path, None, NLUConfig(**TINY, pretrained=""),
          TrainConfig(epochs=1, ensemble=1, augment=factor, progress=False))
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    n_orig = report["n_train"]  # the data's examples; the augmented ones are counted apart
    if factor == 0:
        assert report["n_augmented"] == 0 and report["n_calibration"] == report["n_dev"]
    else:  # about one variant per example; calibration also on augmented copies of dev
        assert n_orig // 2 <= report["n_augmented"] <= n_orig
        assert report["n_calibration"] > report["n_dev"]


def test_open_ended_entity_takes_other_statements_as_values() -> None:
    """A type with many multi-word values (a reason) is open-ended: a spliced reason clause sometimes becomes the
    words of another intent's statement, tagged whole; closed types (order ids) never do."""
    reasons = ["wrong size", "changed my mind", "arrived late", "too small", "too big", "poor quality",
               "not as described", "wrong colour", "broken screen", "doesn't fit", "wrong item", "stopped working"]
    data = {**EN, "inform": EN["inform"] + [f"[{r}](reason)" for r in reasons],
            "complaint": ["the courier was really rude to me", "your service is terrible today",
                          "nobody answered my emails for a week"]}
    examples = _examples(data)
    aug = Augmenter(examples, seed=0)
    assert aug.open_types == {"reason"}
    statements = set(aug.statements["en"])
    assert "the courier was really rude to me" in statements and "hi there" not in statements
    segs = segments_of(next(ex for ex in examples if ex.text == "I want to return order 18830"))
    assert segs is not None
    free = 0
    for k in range(60):
        spliced = aug.splice(list(segs), "return_request", "en", random.Random(k))
        assert spliced is not None
        ex = build(spliced, "return_request")
        _assert_aligned(ex)
        reason = next(e for e in ex.entities if e.entity == "reason")
        assert reason.value == ex.text[reason.start : reason.end]
        free += reason.value.lower() in {s.lower() for s in statements}
    assert 0 < free < 60
    # the guaranteed open-ended splice: a statement of another intent, after the request, tagged whole
    for k in range(20):
        spliced = aug.open_splice(list(segs), "return_request", "en", random.Random(k))
        assert spliced is not None
        ex = build(spliced, "return_request")
        _assert_aligned(ex)
        reason = ex.entities[-1]
        assert reason.entity == "reason" and reason.end == len(ex.text)
        assert reason.value.lower() in {s.lower() for s in statements}
    assert aug.open_splice(list(segs), "inform", "en", random.Random(0)) is None  # the answer intent never
