"""Toxicity: real (tiny) MiniLM fine-tuning, pickle-free save, loading through Detoxify, metrics, CLI."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from safety.errors import ToxicityModelError
from safety.evaluate import METRIC_KEYS

pytestmark = pytest.mark.slow

INSULTS = ["idiot", "moron", "loser", "bitch", "stupid jerk", "worthless trash", "dumbass", "pathetic fool"]
TOXIC = ["you are a {}", "shut up you {}", "go away {}, nobody likes you", "what a {} you are", "{}! I hate you"]
ITEMS = ["headphones", "laptop bag", "order", "parcel", "refund", "charger", "jacket", "shoes"]
CLEAN = ["thanks for the help with my {}", "where is my {}?", "the {} arrived today, great", "can I return the {}?",
         "how long does the {} take to ship", "I love the new {}"]

# mixed into training (200 + 8 lines: still 13 steps of 16) / scored for report.json only
AUGMENT = [("you absolute clod", 1), ("what a dim bulb you are", 1), ("you are welcome", 0),
           ("you are eligible for a refund", 0), ("shut it, you clod", 1), ("sorry, silly error on our side", 0),
           ("go away, nitwit", 1), ("you can track the parcel online", 0)]
PROBE = [("you are a complete clod", 1), ("get lost, nitwit", 1), ("the store opens at nine", 0),
         ("you're right, the charger was missing", 0)]


def _write(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            if i % 2:
                text, label = rng.choice(TOXIC).format(rng.choice(INSULTS)), 1
            else:
                text, label = rng.choice(CLEAN).format(rng.choice(ITEMS)), 0
            fh.write(json.dumps({"text": text, "label": label}) + "\n")


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("toxdata")
    _write(d / "train.jsonl", 200, seed=1)
    _write(d / "dev.jsonl", 60, seed=2)
    return d


@pytest.fixture(scope="session")
def trained(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    from safety.train import TrainConfig, train

    out = tmp_path_factory.mktemp("toxmodel")
    extra = tmp_path_factory.mktemp("toxextra")
    augment, probe = extra / "augment.jsonl", extra / "probe.jsonl"
    augment.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in AUGMENT), encoding="utf-8")
    probe.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in PROBE), encoding="utf-8")
    cfg = TrainConfig(max_examples=200, max_len=24, epochs=1, lr=2e-4, batch=16, seed=3, dev_examples=60, threads=1,
                      augment_data=str(augment), probe_data=str(probe))
    report = train(cfg, data_dir / "train.jsonl", out)
    return out, report


def test_saved_dir_is_pickle_free_with_report(trained: tuple[Path, dict]) -> None:
    out, report = trained
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "toxicity.json", "report.json", "curves.png"} <= names
    assert names & {"tokenizer.json", "vocab.txt"}
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"))]
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["steps"] == report["steps"] == 13
    assert set(METRIC_KEYS) <= set(on_disk["dev"])
    assert on_disk["dev"]["n"] == 60
    tox = json.loads((out / "toxicity.json").read_text())
    assert tox["classes"] == ["toxicity"] and tox["threshold"] == 0.5


def test_report_records_augmentation_and_probe(trained: tuple[Path, dict]) -> None:
    import hashlib

    out, report = trained
    aug = report["augmentation"]
    assert aug["lines"] == 8 and aug["toxic"] == 4 and aug["clean"] == 4 and aug["repeat"] == 1
    assert aug["sha256"] == hashlib.sha256(Path(aug["file"]).read_bytes()).hexdigest()
    assert report["config"]["augment_data"] == aug["file"]
    assert report["train_examples"] == 208 and report["train_positive"] == 104
    probe = report["probe"]  # scored through the saved model, never trained on
    assert probe["n"] == 4 and set(METRIC_KEYS) <= set(probe) and 0.0 <= probe["recall"] <= 1.0
    assert json.loads((out / "report.json").read_text())["augmentation"] == aug


def test_training_learned_something(trained: tuple[Path, dict]) -> None:
    _, report = trained
    # 13 steps on a lexically separable toy set: far better than chance on held-out dev lines
    assert report["dev"]["roc_auc"] > 0.8


def test_loads_through_detoxify_and_matches_the_raw_model(trained: tuple[Path, dict]) -> None:
    import torch
    from detoxify import Detoxify
    from transformers import BertForSequenceClassification, BertTokenizerFast

    from safety.toxicity import ToxicityClassifier

    out, _ = trained
    clf = ToxicityClassifier.load(out)
    assert isinstance(clf._detoxify, Detoxify)
    texts = ["you are a worthless idiot", "where is my parcel?", "", "ｙｏｕ ａｒｅ ａ ｍｏｒｏｎ"]
    scores = clf.score(texts)
    assert len(scores) == 4 and all(0.0 <= s <= 1.0 for s in scores)
    assert clf.score([]) == []
    assert clf.score(texts[:1]) == pytest.approx(scores[:1], abs=1e-5)  # Detoxify squeezes batches of one
    # the weights really came from model.safetensors (transformers would silently re-initialise otherwise)
    model = BertForSequenceClassification.from_pretrained(str(out), local_files_only=True).eval()
    tok = BertTokenizerFast.from_pretrained(str(out), local_files_only=True)
    with torch.no_grad():
        ref = torch.sigmoid(model(**tok(texts[:2], padding=True, return_tensors="pt")).logits[:, 0]).tolist()
    assert scores[:2] == pytest.approx(ref, abs=1e-5)
    # full-width text is normalised before scoring
    assert scores[3] == pytest.approx(clf.score(["you are a moron"])[0], abs=1e-5)


def test_check_records_language_and_threshold(trained: tuple[Path, dict]) -> None:
    from safety import OutputFilter
    from safety.toxicity import ToxicityClassifier

    out, _ = trained
    clf = ToxicityClassifier.load(out, threshold=0.0)
    v = clf.check("hello", "zh")
    assert v.language == "zh" and v.threshold == 0.0 and v.toxic
    v2 = OutputFilter(out, threshold=1.0).check("hello")
    assert v2.language == "en" and not v2.toxic and v2.score == pytest.approx(v.score, abs=1e-6)


def _copy_with(out: Path, dest: Path, replace: dict[str, bytes | None]) -> Path:
    dest.mkdir()
    for p in out.iterdir():
        if p.name in replace:
            content = replace[p.name]
            if content is not None:
                (dest / p.name).write_bytes(content)
        else:
            (dest / p.name).symlink_to(p.resolve())
    return dest


def test_corrupt_or_missing_files_raise(trained: tuple[Path, dict], tmp_path: Path) -> None:
    from safety.toxicity import ToxicityClassifier

    out, _ = trained
    weights = (out / "model.safetensors").read_bytes()
    cases = {
        "garbage": ({"model.safetensors": b"not a safetensors file at all"}, "model.safetensors"),
        "truncated": ({"model.safetensors": weights[: len(weights) // 2]}, "model.safetensors"),
        "no_weights": ({"model.safetensors": None}, "model.safetensors"),
        "no_config": ({"toxicity.json": None}, "toxicity.json"),
        "bad_config": ({"toxicity.json": b"{not json"}, "toxicity.json"),
        "bad_hf_config": ({"config.json": b"[1,"}, "config.json"),
    }
    for name, (replace, culprit) in cases.items():
        d = _copy_with(out, tmp_path / name, replace)
        with pytest.raises(ToxicityModelError) as err:
            ToxicityClassifier.load(d)
        assert err.value.path.name == culprit, name
        assert culprit in str(err.value)
    with pytest.raises(ToxicityModelError):
        ToxicityClassifier.load(tmp_path / "does-not-exist")


def test_wrong_head_is_rejected(trained: tuple[Path, dict], tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    from safety.toxicity import ToxicityClassifier

    out, _ = trained
    sd = load_file(str(out / "model.safetensors"))
    del sd["classifier.weight"]
    d = _copy_with(out, tmp_path / "nohead", {"model.safetensors": None})
    save_file(sd, str(d / "model.safetensors"))
    with pytest.raises(ToxicityModelError, match="classifier"):
        ToxicityClassifier.load(d)


def test_cli_evaluate_json(trained: tuple[Path, dict], data_dir: Path) -> None:
    from typer.testing import CliRunner

    from safety.cli import app

    out, _ = trained
    res = CliRunner().invoke(
        app, ["evaluate", "--model", str(out), "--data", str(data_dir / "dev.jsonl"), "--lang", "zh", "--json"]
    )
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout[res.stdout.index("{") :])
    assert set(METRIC_KEYS) <= set(payload) and payload["n"] == 60 and payload["language"] == "zh"
    bad = CliRunner().invoke(app, ["evaluate", "--model", str(data_dir), "--data", str(data_dir / "dev.jsonl")])
    assert bad.exit_code == 1
