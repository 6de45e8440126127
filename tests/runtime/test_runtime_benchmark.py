"""``benchmarks/runtime.py`` in its quick form: the report the README's runtime figures come from."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_quick_run_reports_both_greedy_matches(dtype: str) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "runtime.py"), "--json", "--requests", "4", "--new-tokens", "6",
         "--model-size", "tiny", "--skip", "embedded", "--threads", "1", "--dtype", dtype],
        capture_output=True, text=True, timeout=300, check=True, cwd=ROOT,
    )
    report = json.loads(out.stdout)
    assert report["model"]["dtype"] == dtype
    assert set(report["tokens_per_s"]) == {"runtime", "generate_batched", "generate_sequential"}
    assert 0.0 <= report["greedy_match_batched_generate"] <= 1.0
    if dtype == "float32":  # the runtime's greedy text is model.generate's, request by request
        assert report["greedy_match"] == 1.0
