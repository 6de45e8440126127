"""Rasa lookup tables and regexes: reading them, matching them as token features, training and parsing with them."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from nlu_testutil import FIXTURES

from nlu.data import load_examples, read_rasa_nlu
from nlu.errors import DataError
from nlu.model import NLUConfig, Vocab, encode, featurise
from nlu.patterns import Matcher, Pattern, align, compile_regex, detokenize
from nlu.predict import NLUModel
from nlu.tokenize import tokenize
from nlu.train import TrainConfig, train

RASA = FIXTURES / "nlu_lookup_regex.yml"
SMALL = NLUConfig(word_dim=32, char_dim=16, char_filters=16, shape_dim=8, hidden=64)


def _tokens(text: str) -> list[str]:
    return [t.text for t in tokenize(text)]


def test_rasa_file_gives_patterns_synonyms_and_examples() -> None:
    synonyms: dict[str, str] = {}
    patterns: list[Pattern] = []
    examples = read_rasa_nlu(RASA, synonyms, patterns)
    assert [(p.kind, p.name, len(p.items)) for p in patterns] == [
        ("lookup", "city", 15), ("lookup", "courier", 8), ("regex", "order_id", 1), ("regex", "phone", 1),
        ("regex", "postcode", 1), ("regex", "email", 1)]
    assert synonyms["royalmail"] == "Royal Mail"
    assert len(examples) == 28 and {ex.intent for ex in examples} == {"track_parcel", "change_address",
                                                                       "contact_support"}
    assert read_rasa_nlu(RASA) == examples  # the blocks change nothing about the examples


def test_lookup_blocks_of_several_files_merge(tmp_path: Path) -> None:
    extra = tmp_path / "more.yml"
    extra.write_text("nlu:\n- lookup: city\n  examples: |\n    - Oslo\n    - London\n"
                     "- intent: greet\n  examples: |\n    - hi\n", encoding="utf-8")
    patterns: list[Pattern] = []
    load_examples([RASA, extra], None, patterns)
    city = next(p for p in patterns if p.name == "city")
    assert city.items[-1] == "Oslo" and city.items.count("London") == 1 and len(patterns) == 6


@pytest.mark.parametrize(("content", "line", "reason"), [
    ("nlu:\n- regex: bad\n  examples: |\n    - \\d+\n    - ([a-z\n", 5, "bad regex"),
    ("nlu:\n- lookup: city\n", 2, "needs a name"),
    ("nlu:\n- regex: ''\n  examples: |\n    - x\n", 2, "needs a name"),
])
def test_bad_pattern_blocks_name_the_line(tmp_path: Path, content: str, line: int, reason: str) -> None:
    p = tmp_path / "bad.yml"
    p.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=reason) as info:
        read_rasa_nlu(p, patterns_out=[])
    assert info.value.line == line


def test_lookups_match_token_sequences_case_insensitively() -> None:
    m = Matcher([Pattern("city", "lookup", ("New York", "York", "北京")), Pattern("x", "lookup", ("new",))])
    assert m.match(_tokens("fly to new YORK now")) == [0, 0, 0b11, 0b1, 0]
    assert m.match(_tokens("york, not newark")) == [1, 0, 0, 0]
    assert m.match(_tokens("改送到北京")) == [0, 0, 0, 1, 1]
    assert m.match([]) == []


def test_regexes_run_on_the_text_when_the_tokens_align() -> None:
    m = Matcher([Pattern("postcode", "regex", (r"\b[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}\b",)),
                 Pattern("phone", "regex", (r"\d{3}-\d{4}",))])
    text = "send it to SW1A 1AA or call 555-0134"
    toks = _tokens(text)  # the tokenizer splits SW1A into SW / 1 / A
    bits = m.match(toks, text)
    assert [t for t, b in zip(toks, bits) if b & 1] == ["SW", "1", "A", "1", "AA"]
    assert [t for t, b in zip(toks, bits) if b & 2] == ["555", "-", "0134"]
    # tokens only (or tokens that are not in the text): the rebuilt text still joins 555-0134
    assert m.match(toks) == m.match(toks, "unrelated text")
    assert [t for t, b in zip(toks, m.match(toks)) if b & 2] == ["555", "-", "0134"]


def test_detokenize_and_align() -> None:
    assert detokenize(["order", "10234", "?", "订", "单", "5", "-", "6"]) == (
        "order 10234?订单5-6", [(0, 5), (6, 11), (11, 12), (12, 13), (13, 14), (14, 15), (15, 16), (16, 17)])
    assert align(["a", "b"], "xa  b") == [(1, 2), (4, 5)]
    assert align(["b", "a"], "a b") is None


def test_features_reach_the_network_input() -> None:
    patterns: list[Pattern] = []
    examples = read_rasa_nlu(RASA, None, patterns)
    vocab = Vocab.build([ex.tokens for ex in examples], [ex.tags for ex in examples], [ex.intent for ex in examples],
                        patterns=patterns)
    text = "ship 48213 to Lisbon"
    f = featurise(vocab, _tokens(text), text)
    assert f["patterns"].tolist() == [[0.0] * 6, [0, 0, 1, 0, 0, 0], [0.0] * 6, [1, 0, 0, 0, 0, 0]]
    batch = encode(vocab, [_tokens(text), ["hi"]], [text, "hi"])
    assert batch["patterns"].shape == (2, 4, 6) and torch.equal(batch["patterns"][0], f["patterns"])
    assert float(batch["patterns"][1].sum()) == 0


@pytest.fixture(scope="module")
def pattern_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Without CJK bigrams: in six copies of 28 examples every bigram is frequent, and the model would rather
    memorise 北京 / 上海 by their bigrams than learn what the lookup feature means (real data has a long tail)."""
    patterns: list[Pattern] = []
    synonyms: dict[str, str] = {}
    examples = read_rasa_nlu(RASA, synonyms, patterns) * 6
    out = tmp_path_factory.mktemp("patterns") / "model"
    tc = TrainConfig(epochs=15, batch_size=8, lr=1e-2, patience=15, seed=0, progress=False)
    train(examples, out, examples[:28], replace(SMALL, bigram_dim=0), tc, [str(RASA)], synonyms, patterns)
    return out


def test_model_with_patterns_saves_them_and_finds_lookup_only_values(pattern_model: Path, tmp_path: Path) -> None:
    vocab = json.loads((pattern_model / "vocab.json").read_text(encoding="utf-8"))
    assert [p["name"] for p in vocab["patterns"]] == ["city", "courier", "order_id", "phone", "postcode", "email"]
    assert json.loads((pattern_model / "config.json").read_text())["config"]["n_patterns"] == 6
    model = NLUModel.load(pattern_model)
    # 广州 and Kuala Lumpur occur in the lookup table only, never in an example
    for text, value in [("改送到广州", "广州"), ("please deliver to Kuala Lumpur instead", "Kuala Lumpur")]:
        p = model.parse(text)
        assert p.intent == "change_address"
        assert [(e.entity, e.value) for e in p.entities] == [("city", value)], text
    p = model.parse("call me on 555-0188")
    assert p.intent == "contact_support" and [(e.entity, e.value) for e in p.entities] == [("phone", "555-0188")]
    model.save(tmp_path / "copy")
    again = NLUModel.load(tmp_path / "copy")
    texts = ["track order 99812 with TNT", "改送到深圳", "email me at a.b@example.org"]
    assert [p.to_dict() for p in model.parse_batch(texts)] == [p.to_dict() for p in again.parse_batch(texts)]


def test_pattern_model_with_damaged_patterns_is_a_load_error(pattern_model: Path, tmp_path: Path) -> None:
    import shutil

    from nlu.errors import ModelLoadError

    d = tmp_path / "m"
    shutil.copytree(pattern_model, d)
    vocab = json.loads((d / "vocab.json").read_text(encoding="utf-8"))
    vocab["patterns"][2]["items"] = ["(unclosed"]
    (d / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    with pytest.raises(ModelLoadError, match="vocab.json"):
        NLUModel.load(d)
    vocab["patterns"] = vocab["patterns"][:2]
    (d / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    with pytest.raises(ModelLoadError, match="sizes"):
        NLUModel.load(d)


def test_inference_path_with_patterns_matches_the_training_path() -> None:
    from nlu.model import JointBiLSTMCRF

    patterns: list[Pattern] = []
    examples = read_rasa_nlu(RASA, None, patterns)
    vocab = Vocab.build([ex.tokens for ex in examples], [ex.tags for ex in examples], [ex.intent for ex in examples],
                        patterns=patterns)
    cfg = replace(SMALL, n_words=len(vocab.words), n_chars=len(vocab.chars), n_tags=len(vocab.tags), n_intents=3,
                  n_patterns=len(patterns), pretrained="", dropout=0.0, word_dropout=0.0)
    torch.manual_seed(0)
    net = JointBiLSTMCRF(cfg)
    texts = [ex.text for ex in examples]
    tokens = [ex.tokens for ex in examples]
    net.eval()
    with torch.no_grad():
        fast = net._encode_batch(encode(vocab, tokens, texts))
        net.train()
        slow = net._encode_batch(encode(vocab, tokens, texts))
    mask = encode(vocab, tokens)["mask"]
    assert torch.allclose(fast[0][mask], slow[0][mask], atol=1e-5) and torch.allclose(fast[1], slow[1], atol=1e-5)


def test_a_regex_item_with_leading_global_flags_keeps_them_to_itself() -> None:
    """Rasa data often writes ``(?i)...``; Python refuses global flags inside an alternation, so they are scoped."""
    pattern = compile_regex(["(?i)t-\\d{4}", "abc"])
    assert pattern.search("ticket T-1234") and pattern.search("t-1234")
    assert pattern.search("abc") and not pattern.search("ABC")
