"""English toxicity training data: the bundled augmentation set and the evaluation-only probe set.

The probe set (hand-written replies a bad bot might send, with clean look-alikes) must stay out of training;
the augmentation set is mixed into the English recipe by default and recorded in the checkpoint's report.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from kefu.config import shared_models
from safety.evaluate import read_jsonl
from safety.jsonl import read_rows
from safety.train import AUGMENT_EN, PROBE_EN, TrainConfig, _key

ROOT = Path(__file__).resolve().parents[2]
TOXICITY_EN = shared_models() / "toxicity" / "en"


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower()))


def _rows(path: Path) -> list[dict]:
    return [row for _, row in read_rows(path)]


def test_probe_set_is_well_formed_and_balanced() -> None:
    rows = _rows(PROBE_EN)
    assert all(set(r) == {"text", "label"} and isinstance(r["text"], str) and r["text"].strip() for r in rows)
    assert all(r["label"] in (0, 1) for r in rows)
    texts, labels = read_jsonl(PROBE_EN)  # the loader the evaluator uses accepts it
    assert len({_key(t) for t in texts}) == len(texts), "duplicate probe lines"
    assert sum(labels) >= 40 and len(labels) - sum(labels) >= 40


def test_augmentation_is_well_formed_and_not_a_you_are_shortcut() -> None:
    texts, labels = read_jsonl(AUGMENT_EN)
    assert len({_key(t) for t in texts}) == len(texts), "duplicate augmentation lines"
    toxic = [t for t, lab in zip(texts, labels, strict=True) if lab == 1]
    clean = [t for t, lab in zip(texts, labels, strict=True) if lab == 0]
    assert len(toxic) >= 200 and len(clean) > len(toxic)
    # second person is not a toxicity cue: plenty of clean lines address "you" too
    you_clean = [t for t in clean if {"you", "you're", "your"} & _words(t)]
    assert len(you_clean) >= len(clean) // 3
    # and neither are the insult words themselves: clean lines call our own mistakes stupid/silly/dumb
    assert sum(1 for t in clean if {"stupid", "dumb", "silly", "killer"} & _words(t)) >= 30


def test_probe_set_is_disjoint_from_augmentation() -> None:
    probe, _ = read_jsonl(PROBE_EN)
    aug, _ = read_jsonl(AUGMENT_EN)
    aug_keys = {_key(t) for t in aug}
    assert not {_key(t) for t in probe} & aug_keys
    for p in probe:
        pk, pw = _key(p), _words(p)
        for a in aug:
            ak, aw = _key(a), _words(a)
            assert pk not in ak and ak not in pk, (p, a)
            assert len(pw & aw) / len(pw | aw) < 0.7, f"near-duplicate: {p!r} ~ {a!r}"


def test_committed_augmentation_is_what_the_script_generates() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_augment_en", AUGMENT_EN.with_name("make_augment_en.py"))
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.generate() == _rows(AUGMENT_EN)


def test_english_recipe_enables_augmentation_and_zh_does_not() -> None:
    en = TrainConfig.for_language("en")
    assert en.augment_data == str(AUGMENT_EN) and Path(en.augment_data).is_file()
    assert en.probe_data == str(PROBE_EN) and en.augment_repeat >= 1
    zh = TrainConfig.for_language("zh")
    assert zh.augment_data is None and zh.probe_data is None
    assert TrainConfig.for_language("en", augment_data=None).augment_data is None


def test_training_refuses_a_probe_that_leaks_into_training(tmp_path: Path) -> None:
    from safety.errors import SafetyError
    from safety.train import train

    rows = [{"text": "you are a worthless clod", "label": 1}, {"text": "your parcel is on its way", "label": 0}] * 4
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    probe = tmp_path / "probe.jsonl"
    probe.write_text(json.dumps({"text": "You are a  WORTHLESS clod", "label": 1}) + "\n", encoding="utf-8")
    cfg = TrainConfig(max_examples=8, probe_data=str(probe), threads=1)
    with pytest.raises(SafetyError, match="probe"):  # raised before any model is loaded
        train(cfg, data, tmp_path / "out", dev=data)


def _shop_en_report() -> dict:
    report = TOXICITY_EN / "report.json"
    if not (TOXICITY_EN / "model.safetensors").is_file() or not report.is_file():
        pytest.skip("the shop's English toxicity model is not built (make models)")
    payload = json.loads(report.read_text(encoding="utf-8"))
    if not payload.get("augmentation"):
        pytest.skip("the shop's English toxicity model predates the augmentation (delete it and retrain)")
    return payload


def test_shop_model_records_its_training_data() -> None:
    report = _shop_en_report()
    aug = report["augmentation"]
    assert aug["sha256"] and aug["lines"] > 0 and aug["toxic"] > 0 and aug["clean"] > 0
    assert report["config"]["augment_data"] == aug["file"]
    assert report["probe"] and report["probe"]["n"] > 0


@pytest.mark.slow
def test_shop_model_flags_direct_insults_and_passes_polite_refusals() -> None:
    from safety.toxicity import ToxicityClassifier

    _shop_en_report()
    clf = ToxicityClassifier.load(TOXICITY_EN)
    insults = [
        "you are an idiot",
        "You useless moron.",
        "What a stupid customer you are.",
        "Shut up, you pathetic loser.",
    ]
    polite = [
        "I'm sorry, but I can't refund an order after 30 days.",
        "Unfortunately that item is out of stock; I can notify you when it's back.",
        "You're welcome, have a great day!",
        "I apologise for the delay with your parcel.",
    ]
    trained_on = {_key(t) for t in read_jsonl(AUGMENT_EN)[0]}
    assert not {_key(t) for t in insults + polite} & trained_on  # not a memorisation check
    scores = clf.score(insults + polite)
    assert all(s >= 0.5 for s in scores[: len(insults)]), scores
    assert all(s < 0.5 for s in scores[len(insults) :]), scores
