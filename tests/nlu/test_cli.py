from __future__ import annotations

import json
from pathlib import Path

import pytest
from nlu_testutil import FIXTURES, write_jsonl
from typer.testing import CliRunner

from nlu.cli import app
from nlu.data import read_jsonl

runner = CliRunner()
REQUIRED = {"n", "intent_accuracy", "slot_f1", "sentence_accuracy", "utterances_per_second"}


def test_evaluate_json(tiny_model_dir: Path, snips_subset: dict[str, Path]) -> None:
    result = runner.invoke(app, ["evaluate", "--model", str(tiny_model_dir), "--data", str(snips_subset["heldout"]),
                                 "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert REQUIRED <= set(metrics) and metrics["n"] == 150
    assert "oos_recall" not in metrics


def test_evaluate_reports_oos_metrics(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "oos.jsonl", [
        {"text": "play some jazz", "intent": "PlayMusic"},
        {"text": "what is my credit score", "intent": "oos"},
        {"text": "book a table for two", "intent": "BookRestaurant"},
    ])
    result = runner.invoke(app, ["evaluate", "--model", str(tiny_model_dir), "--data", str(data), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["oos_recall"] == 0.0  # the model has no oos intent
    assert 0.0 <= metrics["in_scope_accuracy"] <= 1.0 and metrics["n"] == 3


def test_evaluate_bad_model_dir_is_a_clean_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["evaluate", "--model", str(tmp_path), "--data", str(FIXTURES / "nlu.yml")])
    assert result.exit_code == 1
    assert "config.json" in result.output


def test_train_command_writes_model(tmp_path: Path) -> None:
    out = tmp_path / "model"
    result = runner.invoke(app, ["train", "--data", str(FIXTURES / "nlu.yml"), "--out", str(out), "--epochs", "2",
                                 "--hidden", "32", "--seed", "3"])
    assert result.exit_code == 0, result.output
    for name in ("config.json", "vocab.json", "model.safetensors", "report.json", "curves.png"):
        assert (out / name).is_file()
    summary = json.loads(result.stdout[result.stdout.index("{"):])
    assert summary["epochs_run"] == 2 and summary["n_train"] + summary["n_dev"] == 22
    vocab = json.loads((out / "vocab.json").read_text(encoding="utf-8"))
    assert vocab["synonyms"]["visa card"] == "credit card"  # from the synonym block, not seen in any example


def test_evaluate_report_dir(tiny_model_dir: Path, snips_subset: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = runner.invoke(app, ["evaluate", "--model", str(tiny_model_dir), "--data", str(snips_subset["heldout"]),
                                 "--report-dir", str(out), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    per_intent = json.loads((out / "intent_report.json").read_text())
    gold = [e.intent for e in read_jsonl(snips_subset["heldout"])]
    for intent in set(gold):
        assert per_intent[intent]["support"] == gold.count(intent)
    assert per_intent["macro avg"]["f1"] == pytest.approx(metrics["intent_macro_f1"], abs=1e-9)
    errors = json.loads((out / "intent_errors.json").read_text())
    assert len(errors) == round((1 - metrics["intent_accuracy"]) * metrics["n"])
    assert all(e["intent"] != e["predicted"] for e in errors)
    assert (out / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    slot = json.loads((out / "slot_report.json").read_text())
    assert slot["micro avg"]["f1-score"] == pytest.approx(metrics["slot_f1"], abs=1e-9)
    assert "precision" in (out / "slot_report.txt").read_text()


def test_evaluate_cross_validation(tmp_path: Path) -> None:
    result = runner.invoke(app, ["evaluate", "--data", str(FIXTURES / "nlu.yml"), "--folds", "2", "--epochs", "1",
                                 "--pretrained", "none", "--json", "--report-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    cv = json.loads(result.stdout)
    assert cv["folds"] == 2 and [f["n"] for f in cv["per_fold"]] == [11, 11]
    assert cv["mean"]["intent_accuracy"] == pytest.approx(sum(f["intent_accuracy"] for f in cv["per_fold"]) / 2)
    assert (tmp_path / "cross_validation.json").is_file()
    both = runner.invoke(app, ["evaluate", "--data", str(FIXTURES / "nlu.yml")])
    assert both.exit_code == 2


def test_train_ensemble_options_and_evaluate(tmp_path: Path) -> None:
    out = tmp_path / "model"
    result = runner.invoke(app, ["train", "--data", str(FIXTURES / "nlu.yml"), "--out", str(out), "--epochs", "1",
                                 "--hidden", "16", "--ensemble", "2", "--schedule", "constant", "--lr", "0.005",
                                 "--label-smoothing", "0.1", "--pretrained", "none"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{"):])
    assert summary["train_cpu_seconds"] >= 0
    report = json.loads((out / "report.json").read_text())
    assert len(report["members"]) == 2 and report["train_config"]["label_smoothing"] == 0.1
    assert report["train_config"]["schedule"] == "constant" and report["train_config"]["lr"] == 0.005
    assert json.loads((out / "config.json").read_text())["members"] == 2
    result = runner.invoke(app, ["evaluate", "--model", str(out), "--data", str(FIXTURES / "nlu.yml"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n"] == 22
    bad = runner.invoke(app, ["train", "--data", str(FIXTURES / "nlu.yml"), "--out", str(out), "--schedule", "x"])
    assert bad.exit_code == 1 and "schedule" in bad.output


def test_train_command_reads_lookup_and_regex_blocks(tmp_path: Path) -> None:
    out = tmp_path / "model"
    result = runner.invoke(app, ["train", "--data", str(FIXTURES / "nlu_lookup_regex.yml"), "--out", str(out),
                                 "--epochs", "1", "--hidden", "16", "--pretrained", "none"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["patterns"] == ["lookup:city", "lookup:courier", "regex:order_id", "regex:phone", "regex:postcode",
                                  "regex:email"]


def test_cross_validation_reports_each_language(tmp_path: Path) -> None:
    zh = tmp_path / "nlu_zh.yml"
    zh.write_text('version: "3.1"\nnlu:\n- intent: greet\n  examples: |\n    - 你好\n    - 在吗\n    - 早上好\n'
                  '    - 哈喽\n- intent: order_status\n  examples: |\n    - 我的订单到哪了\n    - 查一下物流\n'
                  '    - 订单[10234](order_id)发货了吗\n    - 包裹什么时候到\n', encoding="utf-8")
    result = runner.invoke(app, ["evaluate", "--data", str(FIXTURES / "nlu.yml"), "--data", str(zh), "--folds", "2",
                                 "--epochs", "1", "--pretrained", "none", "--json"])
    assert result.exit_code == 0, result.output
    cv = json.loads(result.stdout)
    by_language = cv["by_language"]
    assert sorted(by_language) == ["en", "zh"] and by_language["zh"]["n"] >= 8  # the fixture has Chinese too
    assert sum(row["n"] for row in by_language.values()) == cv["n"]
    pooled = sum(f["intent_accuracy"] * f["n"] for f in cv["per_fold"]) / cv["n"]  # the same predictions, split
    assert sum(row["intent_accuracy"] * row["n"] for row in by_language.values()) / cv["n"] == pytest.approx(pooled)
    shown = runner.invoke(app, ["evaluate", "--data", str(FIXTURES / "nlu.yml"), "--data", str(zh), "--folds", "2",
                                "--epochs", "1", "--pretrained", "none"])
    assert "intent_accuracy zh" in shown.output
