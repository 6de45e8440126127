"""The sentence head (nlu.sentence): unseen wordings by meaning, deterministic, saved and loaded with the model, and
the refit that trains small bots on their held-out examples too (nlu.train)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from nlu_testutil import FIXTURES, TINY

from nlu.data import make_example, read_rasa_nlu
from nlu.encoder import shared_encoder
from nlu.sentence import SentenceHead

TRAIN = {
    "mood_great": ["perfect", "great", "amazing", "wonderful", "I am feeling very good", "so good"],
    "mood_unhappy": ["I am sad", "my day was horrible", "unhappy", "not good", "very sad", "I am disappointed"],
    "greet": ["hi", "hello", "good morning", "hey there", "hello there", "hi, anyone?"],
}


def _fit(seed: int = 0) -> tuple[SentenceHead, list[str]]:
    intents = sorted(TRAIN)
    texts = [t for intent in intents for t in TRAIN[intent]]
    labels = torch.tensor([intents.index(i) for i in intents for _ in TRAIN[i]])
    return SentenceHead.fit(shared_encoder().encode(texts), labels, len(intents), seed), intents


def test_the_head_reads_unseen_words_by_meaning() -> None:
    head, intents = _fit()
    unseen = ["terrible", "I feel awful", "fantastic", "good evening"]
    predicted = [intents[i] for i in head.logits(shared_encoder().encode(unseen)).argmax(-1).tolist()]
    assert predicted == ["mood_unhappy", "mood_unhappy", "mood_great", "greet"]


def test_the_head_is_deterministic_and_normalised() -> None:
    a, _ = _fit(0)
    b, _ = _fit(0)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    logits = a.logits(shared_encoder().encode(["hello"]))
    assert torch.allclose(logits.exp().sum(-1), torch.ones(1))


@pytest.mark.parametrize("refit", [False, True])
def test_training_saves_the_head_and_serving_uses_it(tmp_path: Path, refit: bool) -> None:
    from nlu.model import NLUConfig
    from nlu.predict import SENTENCE_FILE, NLUModel
    from nlu.train import TrainConfig, train

    examples = [make_example(t, i) for i, texts in TRAIN.items() for t in texts] * 2
    model = train(examples, tmp_path, None, NLUConfig(**TINY, pretrained=""),
                  TrainConfig(epochs=2, ensemble=1, progress=False, sentence=True, sentence_weight=2.0, refit=refit))
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert report["sentence"]["weight"] == 2.0 and (tmp_path / SENTENCE_FILE).is_file()
    assert bool(report["refit"]) == refit
    loaded = NLUModel.load(tmp_path)
    assert loaded.sentence_weight == 2.0
    texts = ["terrible", "hello there"]
    assert [p.to_dict() for p in loaded.parse_batch(texts)] == [p.to_dict() for p in model.parse_batch(texts)]
    without = NLUModel(loaded.net, loaded.vocab, loaded.temperature, prior=loaded.prior, prior_weight=loaded.prior_weight)
    assert [p.confidence for p in without.parse_batch(texts)] != [p.confidence for p in loaded.parse_batch(texts)]


def test_a_missing_or_mismatched_head_is_a_load_error(tmp_path: Path) -> None:
    from nlu.errors import ModelLoadError
    from nlu.model import NLUConfig
    from nlu.predict import SENTENCE_FILE, NLUModel
    from nlu.train import TrainConfig, train

    model = train(read_rasa_nlu(FIXTURES / "nlu.yml"), tmp_path, None, NLUConfig(**TINY, pretrained=""),
                  TrainConfig(epochs=1, ensemble=1, prior=False, progress=False))
    n = len(model.vocab.intents)
    model.sentence, model.sentence_weight = SentenceHead(torch.zeros(384, n), torch.zeros(n)), 1.0
    model.save(tmp_path)
    assert NLUModel.load(tmp_path).sentence_weight == 1.0
    model.sentence = SentenceHead(torch.zeros(384, n + 1), torch.zeros(n + 1))
    model.save(tmp_path)
    with pytest.raises(ModelLoadError, match="sentence head"):
        NLUModel.load(tmp_path)
    (tmp_path / SENTENCE_FILE).unlink()
    with pytest.raises(ModelLoadError, match="sentence head"):
        NLUModel.load(tmp_path)
