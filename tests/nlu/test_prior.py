"""The n-gram sentence prior (nlu.prior): learns from few examples, deterministic, tolerant of typos, saved and
loaded with the model, and chosen on dev by training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from nlu_testutil import FIXTURES, TINY

from nlu.data import make_example, read_rasa_nlu
from nlu.prior import NgramPrior, chinese_features, features
from nlu.wordvec import WORDVEC_DIM, WordVectorEncoder, shared_word_vectors

TRAIN = {
    "order_status": ["where is my order", "track my order", "has my order shipped", "order status please",
                     "我的订单到哪了", "查一下订单", "帮我查下物流"],
    "return_request": ["i want to return this", "how do i return an item", "i want a refund", "return my order",
                       "我要退货", "怎么退货", "申请退款"],
}


def _fit(seed: int = 0, vectors: WordVectorEncoder | None = None) -> tuple[NgramPrior, list[str]]:
    intents = sorted(TRAIN)
    tokens, labels = [], []
    for k, intent in enumerate(intents):
        for text in TRAIN[intent]:
            tokens.append(make_example(text, intent).tokens)
            labels.append(k)
    return NgramPrior.fit(tokens, labels, len(intents), seed, dim=1 << 12, vectors=vectors), intents


def test_features_are_stable_hashes_of_words_and_word_pieces() -> None:
    a = features(["Where", "is", "my", "order"], 1 << 16)
    assert a == features(["where", "is", "my", "order"], 1 << 16)  # case-folded, deterministic (CRC32)
    typo = set(features(["ordr"], 1 << 16))
    assert typo & set(features(["order"], 1 << 16))  # "<or", "ord" shared: a typo keeps part of its word
    assert all(0 <= i < 1 << 16 for i in a)


def test_prior_classifies_unseen_wordings_in_both_languages() -> None:
    prior, intents = _fit()
    probe = {"where's my parcel, track it": "order_status", "can i return it": "return_request",
             "订单到哪了啊": "order_status", "我想退货": "return_request"}
    logits = prior.logits([make_example(t, "").tokens for t in probe])
    assert [intents[i] for i in logits.argmax(-1).tolist()] == list(probe.values())


def test_chinese_word_vectors_read_what_no_ngram_says() -> None:
    """Two Chinese wordings that share no word with their intent's examples: the n-grams alone file both under the
    other intent; with the word vectors' sentence vector (钱 near 退款, 送来 near 物流) both are read right."""
    probe = {"东西不要了能把钱还我吗": "return_request", "货什么时候能送来": "order_status"}
    tokens = [make_example(t, "").tokens for t in probe]
    without, intents = _fit()
    with_vectors, _ = _fit(vectors=shared_word_vectors())
    assert with_vectors.words is not None and with_vectors.words.shape == (WORDVEC_DIM, len(intents))
    assert [intents[i] for i in with_vectors.logits(tokens).argmax(-1).tolist()] == list(probe.values())
    assert all(intents[i] != gold for i, gold in zip(without.logits(tokens).argmax(-1).tolist(), probe.values()))
    english = [make_example("where is my order", "").tokens]
    assert not chinese_features(english, shared_word_vectors()).any()  # no Chinese, no word-vector input


def test_prior_is_deterministic() -> None:
    a, _ = _fit(seed=0)
    b, _ = _fit(seed=0)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)


def test_training_saves_the_prior_and_serving_uses_it(tmp_path: Path) -> None:
    from nlu.model import NLUConfig
    from nlu.predict import PRIOR_FILE, NLUModel
    from nlu.train import PRIOR_WEIGHTS, TrainConfig, train

    examples = read_rasa_nlu(FIXTURES / "nlu.yml")
    model = train(examples, tmp_path, None, NLUConfig(**TINY, pretrained=""),
                  TrainConfig(epochs=2, ensemble=1, progress=False))
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert [row["weight"] for row in report["prior"]["candidates"]] == list(PRIOR_WEIGHTS)
    loaded = NLUModel.load(tmp_path)
    assert loaded.prior_weight == model.prior_weight == report["prior"]["weight"]
    assert (tmp_path / PRIOR_FILE).is_file() == bool(model.prior_weight)
    texts = ["where is my order 10234?", "i want to return it"]
    assert [p.to_dict() for p in loaded.parse_batch(texts)] == [p.to_dict() for p in model.parse_batch(texts)]
    if loaded.prior is not None:  # the prior moves the probabilities
        without = NLUModel(loaded.net, loaded.vocab, loaded.temperature)
        assert [p.confidence for p in without.parse_batch(texts)] != [p.confidence for p in loaded.parse_batch(texts)]


def test_the_word_vector_weights_are_saved_and_loaded(tmp_path: Path) -> None:
    from nlu.model import NLUConfig
    from nlu.predict import NLUModel
    from nlu.train import TrainConfig, train

    model = train(read_rasa_nlu(FIXTURES / "nlu.yml"), tmp_path, None, NLUConfig(**TINY, pretrained=""),
                  TrainConfig(epochs=1, ensemble=1, prior=False, progress=False))
    n = len(model.vocab.intents)
    words = torch.randn(WORDVEC_DIM, n, generator=torch.Generator().manual_seed(0))
    model.prior = NgramPrior(torch.zeros(1 << 12, n), torch.zeros(n), words=words, vectors=shared_word_vectors())
    model.prior_weight = 1.0
    model.save(tmp_path)
    loaded = NLUModel.load(tmp_path)
    assert loaded.prior is not None and loaded.prior.words is not None and torch.equal(loaded.prior.words, words)
    assert loaded.prior.vectors is shared_word_vectors()
    texts = ["我想退货，东西不要了", "where is my order"]
    assert [p.to_dict() for p in loaded.parse_batch(texts)] == [p.to_dict() for p in model.parse_batch(texts)]


def test_a_missing_prior_file_is_a_load_error(tmp_path: Path) -> None:
    from nlu.errors import ModelLoadError
    from nlu.model import NLUConfig
    from nlu.predict import PRIOR_FILE, NLUModel
    from nlu.train import TrainConfig, train

    model = train(read_rasa_nlu(FIXTURES / "nlu.yml"), tmp_path, None, NLUConfig(**TINY, pretrained=""),
                  TrainConfig(epochs=1, ensemble=1, prior=False, progress=False))
    prior, _ = _fit()
    model.prior = NgramPrior(torch.zeros(prior.dim, len(model.vocab.intents)), torch.zeros(len(model.vocab.intents)))
    model.prior_weight = 1.0
    model.save(tmp_path)
    assert NLUModel.load(tmp_path).prior_weight == 1.0
    (tmp_path / PRIOR_FILE).unlink()
    with pytest.raises(ModelLoadError, match="prior"):
        NLUModel.load(tmp_path)


def test_warm_reads_the_word_vectors_before_the_first_parse(tmp_path: Path) -> None:
    from nlu.model import NLUConfig
    from nlu.train import TrainConfig, train

    model = train(read_rasa_nlu(FIXTURES / "nlu.yml"), tmp_path, None, NLUConfig(**TINY, pretrained=""),
                  TrainConfig(epochs=1, ensemble=1, prior=False, progress=False))
    n = len(model.vocab.intents)
    vectors = WordVectorEncoder()
    model.prior = NgramPrior(torch.zeros(1 << 12, n), torch.zeros(n), words=torch.zeros(WORDVEC_DIM, n), vectors=vectors)
    model.prior_weight = 1.0
    assert not vectors.loaded
    model.warm()
    assert vectors.loaded
