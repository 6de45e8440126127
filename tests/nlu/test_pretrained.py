"""Pretrained word-piece features (MiniLM input embeddings, referenced not copied) and the out-of-scope threshold."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from nlu_testutil import TINY, write_jsonl

from nlu.data import make_example
from nlu.errors import ModelLoadError
from nlu.evaluate import evaluate
from nlu.model import JointBiLSTMCRF, NLUConfig, Vocab, encode
from nlu.predict import NLUModel
from nlu.pretrained import BUNDLED, MAX_PIECES, load_table, resolve
from nlu.train import TrainConfig, fit_oos_threshold, train

WORDS = ["playing", "Spotify", "westbam", "clásicos", "unaffordable", "?", "10234", "歌", "霏", "don't"]


def test_wordpiece_matches_the_reference_tokenizer() -> None:
    from tokenizers import Tokenizer

    table = load_table(BUNDLED)
    ref = Tokenizer.from_file(str(resolve(BUNDLED) / "tokenizer.json"))
    ref.no_padding()
    ref.no_truncation()
    for word in WORDS:
        ids = ref.encode(word, add_special_tokens=False).ids
        assert table.pieces(word) == tuple(i for i in ids if i != table.unk_id)[:MAX_PIECES], word
    assert len(table.pieces("unaffordable")) > 1 and len(table.pieces("don't")) == 3 and table.pieces("霏") == ()
    assert table.dim == 384 and table.weight.shape[0] >= len(table.vocab)


def test_piece_bags_average_the_table_rows() -> None:
    tokens = [["unaffordable", "霏", "hi"], ["ok"]]
    vocab = Vocab.build(tokens, [["O"] * 3, ["O"]], ["a", "b"], pretrained=BUNDLED)
    cfg = NLUConfig(n_words=len(vocab.words), n_chars=len(vocab.chars), n_tags=1, n_intents=2, **TINY)
    net = JointBiLSTMCRF(cfg)
    assert vocab.pieces is not None
    batch = encode(vocab, tokens)  # one bag per distinct token, placed by batch["rows"]
    bags = torch.nn.functional.embedding_bag(batch["pieces"], net.pretrained, batch["piece_offsets"], mode="mean")
    bags = bags[batch["rows"]]
    table = vocab.pieces
    ids = list(table.pieces("unaffordable"))
    assert torch.allclose(bags[0, 0], table.weight[ids].mean(0), atol=1e-5)
    assert torch.equal(bags[0, 1], torch.zeros(384))  # unknown piece -> zero vector
    assert torch.allclose(bags[1, 0], table.weight[list(table.pieces("ok"))].mean(0))
    assert torch.equal(bags[1, 1:], torch.zeros(2, 384))  # padding slots


def test_weights_are_referenced_not_copied(tiny_model_dir: Path) -> None:
    from safetensors import safe_open

    meta = json.loads((tiny_model_dir / "config.json").read_text())
    assert meta["config"]["pretrained"] == BUNDLED and meta["config"]["pretrained_dim"] == 384
    with safe_open(str(tiny_model_dir / "model.safetensors"), "pt") as f:
        names = list(f.keys())
    assert names and not any("pretrained" in k for k in names)
    assert (tiny_model_dir / "model.safetensors").stat().st_size < 5_000_000  # the MiniLM table alone is 47 MB


def test_missing_pretrained_source_is_a_load_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    d = tmp_path / "m"
    shutil.copytree(tiny_model_dir, d)
    for name in ("config.json", "vocab.json"):
        obj = json.loads((d / name).read_text())
        (obj["config"] if name == "config.json" else obj)["pretrained"] = str(tmp_path / "no_such_dir")
        (d / name).write_text(json.dumps(obj))
    with pytest.raises(ModelLoadError, match="pretrained"):
        NLUModel.load(d)


def _plain_model(tmp_path: Path, intents: list[str]) -> NLUModel:
    examples = [make_example(f"example {i} {k}", intent) for k, intent in enumerate(intents) for i in range(2)]
    cfg = NLUConfig(word_dim=8, char_dim=4, char_filters=4, shape_dim=2, hidden=8, pretrained="")
    return train(examples, tmp_path / "plain", examples, cfg, TrainConfig(epochs=1, ensemble=1, prior=False, progress=False))


def test_checkpoint_without_pretrained_keys_still_loads(tmp_path: Path) -> None:
    model = _plain_model(tmp_path, ["greet", "bye"])
    d = tmp_path / "plain"
    meta = json.loads((d / "config.json").read_text())
    for key in ("pretrained", "pretrained_dim"):
        del meta["config"][key]
    del meta["oos_threshold"]
    (d / "config.json").write_text(json.dumps(meta))
    vocab = json.loads((d / "vocab.json").read_text())
    del vocab["pretrained"]
    (d / "vocab.json").write_text(json.dumps(vocab))
    again = NLUModel.load(d)
    assert again.net.pretrained is None and again.oos_threshold == 0.0
    assert again.parse("example 1").to_dict() == model.parse("example 1").to_dict()


def test_oos_threshold_decision_and_calibration(tmp_path: Path) -> None:
    model = _plain_model(tmp_path, ["a", "b", "oos"])
    a, b, oos = (model.vocab.intent_id[i] for i in ("a", "b", "oos"))
    probs = torch.zeros(6, 3)
    # confident in-scope, unsure in-scope, unsure true oos (argmax in-scope), confident oos
    rows = [(a, 0.9), (b, 0.8), (a, 0.55), (b, 0.4), (a, 0.35), (oos, 0.7)]
    for r, (i, p) in enumerate(rows):
        probs[r] = (1 - p) / 2
        probs[r, i] = p
    labels = torch.tensor([a, b, a, oos, oos, oos])
    assert model.decide(probs, 0.0).tolist() == [a, b, a, b, a, oos]
    assert model.decide(probs, 0.5).tolist() == [a, b, a, oos, oos, oos]
    report = fit_oos_threshold(model, probs, labels)
    assert model.oos_threshold == 0.55  # the largest threshold that keeps every in-scope example in scope
    assert report["dev_oos_recall"] == 1.0 and report["dev_in_scope_accuracy"] == 1.0
    assert report["dev_oos_recall_argmax"] == pytest.approx(1 / 3)
    fit_oos_threshold(model, probs, labels, tolerance=0.34)  # may now lose one of the three in-scope examples
    assert model.oos_threshold == 0.8
    no_oos = _plain_model(tmp_path, ["a", "b"])
    assert fit_oos_threshold(no_oos, probs[:, :2], torch.tensor([0, 1, 0, 1, 0, 1])) == {}
    assert no_oos.oos_threshold == 0.0


def test_threshold_applies_in_parse_evaluate_and_survives_save(tmp_path: Path) -> None:
    model = _plain_model(tmp_path, ["a", "b", "oos"])
    examples = [make_example("example 0 0", "a"), make_example("something else entirely", "oos")]
    model.oos_threshold = 0.999  # nothing is that confident after one epoch: everything becomes oos
    parses = model.parse_batch([ex.text for ex in examples])
    for p in parses:
        assert p.intent == "oos" and p.ranking[0] == (p.intent, p.confidence)
        assert len({name for name, _ in p.ranking}) == len(p.ranking)
    metrics = evaluate(model, examples)
    assert metrics["oos_recall"] == 1.0 and metrics["in_scope_accuracy"] == 0.0
    model.save(tmp_path / "saved")
    assert NLUModel.load(tmp_path / "saved").oos_threshold == 0.999


def test_calibrate_command_rewrites_threshold(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from nlu.cli import app

    _plain_model(tmp_path, ["a", "b", "oos"])
    dev = write_jsonl(tmp_path / "dev.jsonl", [{"text": "example 0 0", "intent": "a"},
                                               {"text": "nothing like it", "intent": "oos"}])
    result = CliRunner().invoke(app, ["calibrate", "--model", str(tmp_path / "plain"), "--dev", str(dev),
                                      "--oos-tolerance", "1.0"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["threshold"] == 0.99  # any in-scope loss is allowed: the largest grid value wins
    assert NLUModel.load(tmp_path / "plain").oos_threshold == 0.99
    no_oos = write_jsonl(tmp_path / "no_oos.jsonl", [{"text": "example 0 0", "intent": "a"}])
    assert CliRunner().invoke(app, ["calibrate", "--model", str(tmp_path / "plain"), "--dev", str(no_oos)]
                              ).exit_code == 1


@pytest.mark.parametrize("pretrained", [BUNDLED, ""])
def test_fast_encode_equals_featurise_then_collate(pretrained: str) -> None:
    """encode() keeps each distinct token once; placed by ``rows`` its features are collate()'s, slot by slot, and
    the network reads both batches the same, at inference (distinct tokens) and in training (nn.LSTM per slot)."""
    from dataclasses import replace

    from nlu.model import collate, featurise

    train_tokens = [["play", "Yesterday", "by", "the", "Beatles"], ["我", "要", "听", "歌"], ["order", "10234"]]
    vocab = Vocab.build(train_tokens, [["O"] * len(t) for t in train_tokens], ["a", "b", "c"], pretrained=pretrained)
    batch = [["play", "unaffordable", "songs", "!", "play"], [], ["<unk>", ""], ["x" * 40, "我", "霏", "play"],
             ["order", "55555"]]
    cfg = NLUConfig(n_words=len(vocab.words), n_chars=len(vocab.chars), n_tags=3, n_intents=3, word_dim=8,
                    char_dim=4, char_filters=6, shape_dim=4, hidden=10, layers=2, pretrained=pretrained)
    torch.manual_seed(0)
    net = JointBiLSTMCRF(replace(cfg, dropout=0.0, word_dropout=0.0))
    for _ in range(2):  # the second round reads encode()'s per-token cache
        fast, slow = encode(vocab, batch), collate([featurise(vocab, t) for t in batch])
        assert set(fast) == set(slow) | {"rows"} and ("pieces" in fast) == bool(pretrained)
        rows = fast["rows"]
        assert len(fast["words"]) == 1 + len({t for toks in batch for t in toks} | {"<unk>"})  # + the padding row
        for key in ("words", "shapes", "chars"):
            assert torch.equal(fast[key][rows], slow[key]), key
        assert torch.equal(fast["mask"], slow["mask"])
        net.eval()
        with torch.no_grad():
            fast_out, slow_out = net._encode_batch(fast), net._encode_batch(slow)
            net.train()  # no dropout in this config: the training path is the same function
            train_out = net._encode_batch(slow)
        m = slow["mask"]
        for a, b, c in zip(fast_out, slow_out, train_out):
            if a.dim() == 3:
                a, b, c = a[m], b[m], c[m]
            assert torch.allclose(a, b, atol=1e-5) and torch.allclose(a, c, atol=1e-5)


def test_char_cnn_matches_a_per_token_convolution() -> None:
    from nlu.model import CharCNN

    torch.manual_seed(0)
    cnn = CharCNN(n_chars=12, dim=6, filters=5, kernel=3).eval()
    chars = torch.randint(1, 12, (6, 5))
    chars[4] = 0  # a padding row
    chars[1, 3:] = 0  # a short token
    out = cnn(chars)
    weight = cnn.proj.weight.view(5, 6, 3)  # [filters, dim, kernel] as unfold lays the windows out
    for i in (0, 1, 5):
        n = int((chars[i] > 0).sum())
        ref = torch.nn.functional.conv1d(cnn.emb(chars[i : i + 1, :n]).transpose(1, 2), weight, cnn.proj.bias,
                                         padding=1)
        assert torch.allclose(out[i], ref[0].max(1).values.clamp_min(-1.0), atol=1e-5)
    assert torch.equal(out[4], torch.full((5,), -1.0))


def test_cjk_bigram_features() -> None:
    from nlu.model import cjk_bigrams, collate, featurise

    assert cjk_bigrams(["我", "要", "听", "tfboys", "的", "歌", "。"]) == [
        ("", "我要"), ("我要", "要听"), ("要听", ""), ("", ""), ("", "的歌"), ("的歌", ""), ("", "")]
    train_tokens = [["我", "要", "听", "故", "事"], ["我", "要", "听", "歌"], ["讲", "个", "故", "事"], ["play", "it"]]
    vocab = Vocab.build(train_tokens, [["O"] * len(t) for t in train_tokens], ["a", "b", "a", "b"])
    assert vocab.bigrams == ["<pad>", "<unk>", "我要", "故事", "要听"]  # seen twice; by count, then text
    ids = vocab.bigram_features(["我", "要", "讲", "故", "事", "ok"])
    assert ids == [(0, 2), (2, 1), (1, 1), (1, 3), (3, 0), (0, 0)]
    batch = [["我", "要", "听", "故", "事"], ["play"], ["故", "事"]]
    fast, slow = encode(vocab, batch), collate([featurise(vocab, t) for t in batch])
    assert torch.equal(fast["bigrams"], slow["bigrams"]) and fast["bigrams"].shape == (3, 5, 2)
    english = Vocab.build([["play", "it"]] * 3, [["O", "O"]] * 3, ["a", "b", "a"])
    assert english.bigrams == [] and "bigrams" not in encode(english, [["play"]])  # no Chinese: no feature


def test_bigram_model_saves_and_matches_its_training_path(tmp_path: Path) -> None:
    from dataclasses import replace

    texts = ["我要听故事", "讲个故事吧", "我要听周杰伦的歌", "播放一首歌", "我想听相声", "来段相声", "play a song"]
    intents = ["story", "story", "music", "music", "crosstalk", "crosstalk", "music"]
    examples = [make_example(t, i) for t, i in zip(texts, intents)] * 3
    model = train(examples, tmp_path / "m", examples[:7], NLUConfig(**TINY, pretrained=""),
                  TrainConfig(epochs=3, batch_size=4, ensemble=1, progress=False))
    assert model.config.n_bigrams == len(model.vocab.bigrams) > 2
    again = NLUModel.load(tmp_path / "m")
    assert again.vocab.bigrams == model.vocab.bigrams
    assert [p.to_dict() for p in again.parse_batch(texts)] == [p.to_dict() for p in model.parse_batch(texts)]
    net = JointBiLSTMCRF(replace(model.config, dropout=0.0, word_dropout=0.0))
    net.load_state_dict(model.net.state_dict())
    batch = encode(model.vocab, [ex.tokens for ex in examples[:7]])
    fast = net.eval()._encode_batch(batch)
    with torch.no_grad():
        slow = net.train()._encode_batch(batch)
    mask = batch["mask"]
    assert torch.allclose(fast[0][mask], slow[0][mask], atol=1e-5) and torch.allclose(fast[1], slow[1], atol=1e-5)
