from __future__ import annotations

import json
from pathlib import Path

from nlu_testutil import FIXTURES, write_jsonl
from typer.testing import CliRunner

from nlu.cli import app

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
