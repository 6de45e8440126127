"""Metrics and data reading (no model needed), and the cheapness of ``import safety``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from safety.errors import SafetyDataError
from safety.evaluate import METRIC_KEYS, best_f1_threshold, compute_metrics, read_jsonl


def test_compute_metrics_keys_and_values() -> None:
    m = compute_metrics([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], threshold=0.5)
    assert tuple(m) == METRIC_KEYS
    assert m["roc_auc"] == pytest.approx(0.75)
    assert m["accuracy"] == pytest.approx(0.75) and m["f1"] == pytest.approx(2 / 3)
    assert m["n"] == 4 and m["threshold"] == 0.5
    perfect = compute_metrics([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.7])
    assert perfect["roc_auc"] == 1.0 and perfect["recall_at_1pct_fpr"] == 1.0
    assert compute_metrics([1, 1], [0.2, 0.9])["roc_auc"] is None
    assert best_f1_threshold([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.35)
    with pytest.raises(ValueError):
        compute_metrics([0, 1], [0.5])


def test_read_jsonl_errors(tmp_path: Path) -> None:
    p = tmp_path / "x.jsonl"
    p.write_text('{"text": "a", "label": 1}\n{"text": "b"}\n')
    with pytest.raises(SafetyDataError) as err:
        read_jsonl(p)
    assert err.value.line == 2
    with pytest.raises(SafetyDataError):
        read_jsonl(tmp_path / "missing.jsonl")
    p.write_text("".join(json.dumps({"text": str(i), "label": i % 2}) + "\n" for i in range(10)))
    texts, labels = read_jsonl(p, max_examples=4, seed=1)
    assert len(texts) == 4 == len(labels)


def test_import_safety_is_lazy() -> None:
    import subprocess
    import sys

    code = "import sys, safety; safety.InputFilter().check('hi'); print('torch' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "False"

