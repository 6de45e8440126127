from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from nlu_testutil import FIXTURES, TINY

from nlu.data import read_jsonl, read_rasa_nlu
from nlu.errors import ModelLoadError
from nlu.evaluate import evaluate
from nlu.model import NLUConfig
from nlu.predict import NLUModel
from nlu.train import TrainConfig, train
from nlu.types import Parse

EXPECTED_FILES = ["config.json", "vocab.json", "model.safetensors", "report.json", "curves.png"]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> NLUModel:
    return NLUModel.load(tiny_model_dir)


def test_checkpoint_files(tiny_model_dir: Path) -> None:
    for name in EXPECTED_FILES:
        assert (tiny_model_dir / name).stat().st_size > 0, name
    meta = json.loads((tiny_model_dir / "config.json").read_text())
    assert meta["version"] == 1 and meta["config"]["hidden"] == TINY["hidden"]
    assert 0.05 <= meta["temperature"] <= 20
    report = json.loads((tiny_model_dir / "report.json").read_text())
    assert report["epochs_run"] >= 1 and report["history"][0]["epoch"] == 1
    assert report["dev_source"].startswith("held-out")


def test_learns_better_than_chance(tiny: NLUModel, snips_subset: dict[str, Path]) -> None:
    heldout = read_jsonl(snips_subset["heldout"])
    metrics = evaluate(tiny, heldout)
    assert metrics["n"] == len(heldout)
    assert metrics["intent_accuracy"] > 0.6  # chance is 1/7
    assert metrics["slot_f1"] > 0.3
    assert metrics["utterances_per_second"] > 0


def test_parse_structure(tiny: NLUModel) -> None:
    text = "Play the song  Yesterday by the Beatles on Spotify"
    p = tiny.parse(text)
    assert isinstance(p, Parse) and p.text == text and p.language == "en"
    assert len(p.ranking) == 5 and p.ranking[0] == (p.intent, p.confidence)
    probs = [q for _, q in p.ranking]
    assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
    for e in p.entities:
        assert text[e.start : e.end].lower() == e.value.lower()
    assert "Beatles" not in repr(p)


def test_parse_batch_matches_single_and_handles_odd_input(tiny: NLUModel) -> None:
    texts = ["book a table for 4 in paris", "", "天气怎么样", "rate this book 5 stars " * 20, "what is the weather"]
    batch = tiny.parse_batch(texts)
    assert [p.text for p in batch] == texts
    for text, p in zip(texts, batch):
        single = tiny.parse(text)
        assert single.intent == p.intent and single.entities == p.entities
        assert single.confidence == pytest.approx(p.confidence, abs=1e-5)
    assert batch[1].entities == () and batch[2].language == "zh"


def test_save_load_roundtrip_identical(tiny: NLUModel, tmp_path: Path, snips_subset: dict[str, Path]) -> None:
    tiny.save(tmp_path / "copy")
    again = NLUModel.load(tmp_path / "copy")
    texts = [ex.text for ex in read_jsonl(snips_subset["heldout"])[:40]]
    assert [p.to_dict() for p in tiny.parse_batch(texts)] == [p.to_dict() for p in again.parse_batch(texts)]
    assert again.temperature == tiny.temperature


def test_training_is_deterministic(tmp_path: Path) -> None:
    examples = read_rasa_nlu(FIXTURES / "nlu.yml")
    tc = TrainConfig(epochs=2, batch_size=8, seed=7, progress=False)
    cfg = NLUConfig(word_dim=16, char_dim=8, char_filters=8, shape_dim=4, hidden=16)
    a = train(examples, tmp_path / "a", None, cfg, tc)
    b = train(examples, tmp_path / "b", None, cfg, tc)
    for (name, x), (_, y) in zip(a.net.state_dict().items(), b.net.state_dict().items()):
        assert torch.equal(x, y), name


def test_bilingual_rasa_model_learns_synonyms(tmp_path: Path) -> None:
    """The bot's setting: one model over English and Chinese Rasa data; synonyms map entity values."""
    examples = read_rasa_nlu(FIXTURES / "nlu.yml") * 8
    model = train(examples, tmp_path / "bot", examples[:22],
                  NLUConfig(word_dim=32, char_dim=16, char_filters=16, shape_dim=8, hidden=64),
                  TrainConfig(epochs=12, batch_size=8, lr=1e-2, patience=12, seed=0, progress=False))
    assert model.vocab.synonyms["cc"] == "credit card" and model.vocab.synonyms["微信"] == "微信支付"
    assert evaluate(model, examples[:22])["intent_accuracy"] >= 0.9
    p = model.parse("用微信付不了钱")
    assert p.language == "zh" and p.intent == "payment_problem"
    assert [(e.entity, e.value, e.start, e.end) for e in p.entities] == [("payment_method", "微信支付", 1, 3)]


@pytest.mark.parametrize("name", ["config.json", "vocab.json", "model.safetensors"])
@pytest.mark.parametrize("damage", ["missing", "corrupt", "truncated"])
def test_damaged_model_files_raise(tiny_model_dir: Path, tmp_path: Path, name: str, damage: str) -> None:
    d = tmp_path / "m"
    shutil.copytree(tiny_model_dir, d)
    target = d / name
    if damage == "missing":
        target.unlink()
    elif damage == "corrupt":
        target.write_bytes(b"\x00\xffnot a model")
    else:
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    with pytest.raises(ModelLoadError) as info:
        NLUModel.load(d)
    assert info.value.path == target
    assert name in str(info.value)


def test_missing_directory_and_wrong_version(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        NLUModel.load(tmp_path / "nope")
    d = tmp_path / "m"
    shutil.copytree(tiny_model_dir, d)
    meta = json.loads((d / "config.json").read_text())
    meta["version"] = 99
    (d / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ModelLoadError, match="version"):
        NLUModel.load(d)


def test_load_is_fast(tiny_model_dir: Path) -> None:
    import time

    NLUModel.load(tiny_model_dir)  # warm imports
    t = time.perf_counter()
    NLUModel.load(tiny_model_dir)
    assert time.perf_counter() - t < 0.5


def test_import_nlu_does_not_import_torch() -> None:
    code = "import sys, nlu; assert 'torch' not in sys.modules; nlu.Parse; nlu.NLUError; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    code = "import nlu; print(nlu.NLUModel.__name__, nlu.tokenize('hi there')[1].start)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert out.stdout.split() == ["NLUModel", "3"], out.stderr


def test_tiny_data_without_dev_trains_all_epochs(tmp_path: Path) -> None:
    from nlu.data import make_example

    examples = [make_example("hello there", "greet"), make_example("where is order 12345", "order_status")]
    model = train(examples, tmp_path / "m", None, NLUConfig(word_dim=8, char_dim=4, char_filters=4, shape_dim=2,
                                                            hidden=8), TrainConfig(epochs=3, progress=False))
    report = json.loads((tmp_path / "m" / "report.json").read_text())
    assert report["n_dev"] == 0 and report["epochs_run"] == 3 and report["best_epoch"] == 3
    assert model.parse("hello").intent in {"greet", "order_status"}


def test_training_rejects_single_intent(tmp_path: Path) -> None:
    from nlu.data import make_example
    from nlu.errors import TrainingError

    with pytest.raises(TrainingError):
        train([make_example("hi", "greet")] * 3, tmp_path / "m")


def test_ensemble_trains_saves_and_loads(tmp_path: Path) -> None:
    from nlu.model import Ensemble, encode

    examples = read_rasa_nlu(FIXTURES / "nlu.yml")
    cfg = NLUConfig(word_dim=16, char_dim=8, char_filters=8, shape_dim=4, hidden=16)
    model = train(examples, tmp_path / "e", None, cfg, TrainConfig(epochs=2, batch_size=8, seed=3, ensemble=2,
                                                                  progress=False))
    assert model.members == 2 and isinstance(model.net, Ensemble)
    assert json.loads((tmp_path / "e" / "config.json").read_text())["members"] == 2
    report = json.loads((tmp_path / "e" / "report.json").read_text())
    assert [m["seed"] for m in report["members"]] == [3, 4]
    # member 1 is exactly the single model of the same seed; member 2 differs
    single = train(examples, tmp_path / "s", None, cfg, TrainConfig(epochs=2, batch_size=8, seed=3, ensemble=1,
                                                                   progress=False))
    first, second = model.net.nets
    for (name, x), (_, y) in zip(first.state_dict().items(), single.net.state_dict().items()):
        assert torch.equal(x, y), name
    assert not torch.equal(first.word_emb.weight, second.word_emb.weight)
    # intent logits are the members' mean
    batch = encode(model.vocab, [ex.tokens for ex in examples[:5]])
    logits, paths = model.net.predict(batch)
    assert torch.allclose(logits, (first.predict(batch)[0] + second.predict(batch)[0]) / 2, atol=1e-6)
    assert [len(p) for p in paths] == [len(ex.tokens) for ex in examples[:5]]
    again = NLUModel.load(tmp_path / "e")
    assert again.members == 2 and again.temperature == model.temperature
    texts = [ex.text for ex in examples]
    assert [p.to_dict() for p in model.parse_batch(texts)] == [p.to_dict() for p in again.parse_batch(texts)]
    single_dir = json.loads((tmp_path / "s" / "config.json").read_text())
    assert "members" not in single_dir  # a single model's files are unchanged by the ensemble support


def test_learning_rate_schedule() -> None:
    from nlu.train import lr_factor

    tc = TrainConfig(warmup=0.1)
    factors = [lr_factor(step, 100, tc) for step in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == 1.0 and max(factors) == 1.0
    assert factors[50] == pytest.approx(50 / 90) and 0 < factors[-1] < 0.02
    assert all(a >= b for a, b in itertools.pairwise(factors[9:]))
    assert lr_factor(7, 100, TrainConfig(schedule="constant")) == 1.0


def test_bad_train_settings_are_training_errors(tmp_path: Path) -> None:
    from nlu.errors import TrainingError

    examples = read_rasa_nlu(FIXTURES / "nlu.yml")
    with pytest.raises(TrainingError, match="schedule"):
        train(examples, tmp_path / "m", None, None, TrainConfig(schedule="cosine", progress=False))
    with pytest.raises(TrainingError, match="ensemble"):
        train(examples, tmp_path / "m", None, None, TrainConfig(ensemble=0, progress=False))


def test_inference_weights_follow_weight_changes() -> None:
    """The inference path caches its re-laid-out LSTM weights; any in-place change (an optimizer step, loading a
    checkpoint) must invalidate them."""
    from dataclasses import replace

    from nlu.model import JointBiLSTMCRF, Vocab, encode

    examples = read_rasa_nlu(FIXTURES / "nlu.yml")
    vocab = Vocab.build([ex.tokens for ex in examples], [ex.tags for ex in examples], [ex.intent for ex in examples])
    cfg = NLUConfig(n_words=len(vocab.words), n_chars=len(vocab.chars), n_tags=len(vocab.tags), n_intents=4,
                    word_dim=8, char_dim=4, char_filters=4, shape_dim=4, hidden=8, pretrained="")
    torch.manual_seed(0)
    net = JointBiLSTMCRF(replace(cfg, dropout=0.0, word_dropout=0.0)).eval()
    batch = encode(vocab, [ex.tokens for ex in examples])
    before = net.predict(batch)[0]
    with torch.no_grad():
        net.lstm.weight_hh_l0_reverse.add_(0.5)
    after = net.predict(batch)[0]
    net.train()
    with torch.no_grad():
        reference = net._encode_batch(batch)[1]
    assert not torch.allclose(before, after) and torch.allclose(after, reference, atol=1e-5)
    # a fused Adam step changes weights without bumping their versions: switching to training must drop the cache
    opt = torch.optim.Adam(net.parameters(), lr=0.1, fused=True)
    net.eval()
    net.predict(batch)  # fills the cache
    net.train()
    net._encode_batch(batch)[1].sum().backward()
    opt.step()
    with torch.no_grad():
        reference = net._encode_batch(batch)[1]
    net.eval()
    assert torch.allclose(net.predict(batch)[0], reference, atol=1e-5)


def test_auto_epochs_and_batch_size() -> None:
    from nlu.train import auto_batch_size, auto_epochs

    assert [auto_epochs(n) for n in (500, 1040, 5000, 7995, 13084, 100_000)] == [40, 40, 30, 20, 20, 20]
    assert [auto_batch_size(n) for n in (1040, 7995, 13084)] == [16, 32, 64]


def test_ensemble_members_trained_in_worker_processes_are_the_same(tmp_path: Path) -> None:
    examples = read_rasa_nlu(FIXTURES / "nlu.yml")
    cfg = NLUConfig(word_dim=16, char_dim=8, char_filters=8, shape_dim=4, hidden=16)
    runs = [train(examples, tmp_path / f"w{workers}", None, cfg,
                  TrainConfig(epochs=2, batch_size=8, seed=5, ensemble=2, workers=workers, progress=False))
            for workers in (1, 2)]
    # the same computation; not bit-for-bit across processes: BLAS results depend on memory alignment, and a process
    # that has run the rest of the test suite lays memory out differently from a fresh worker
    for (name, x), (_, y) in zip(runs[0].net.state_dict().items(), runs[1].net.state_dict().items()):
        assert torch.allclose(x.float(), y.float(), atol=1e-3), (name, float((x.float() - y.float()).abs().max()))
    report = json.loads((tmp_path / "w2" / "report.json").read_text())
    assert [m["seed"] for m in report["members"]] == [5, 6]


def test_traditional_chinese_is_read_as_the_simplified_data(shop_bot: Path) -> None:
    """The shop's data is simplified; a customer writing traditional characters gets the same reading, and the
    entity keeps the characters the customer typed (its offsets are the customer's text's)."""
    from nlu.data import make_example
    from nlu.predict import NLUModel
    from nlu.types import Entity

    model = NLUModel.load(shop_bot / "models" / "nlu")
    traditional, plain = model.parse_batch(["我的訂單13047到哪了", "我的订单13047到哪了"])
    assert (traditional.intent, traditional.confidence) == pytest.approx((plain.intent, plain.confidence))
    assert [(e.entity, e.value, e.start, e.end) for e in traditional.entities] == \
        [(e.entity, e.value, e.start, e.end) for e in plain.entities]
    example = make_example("退貨原因：尺碼不對", "inform", [Entity("reason", "尺碼不對", 5, 9)])
    assert example.text == "退貨原因：尺碼不對" and example.tokens[:2] == ["退", "货"]
    assert example.tags[5:] == ["B-reason", "I-reason", "I-reason", "I-reason"]
