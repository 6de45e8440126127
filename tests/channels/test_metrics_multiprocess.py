"""Several worker processes, one metrics view: prometheus-client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``).

Real subprocesses, because the mode is chosen once per process when ``prometheus_client`` is imported: this test
process stays in the ordinary per-process mode, which the last test checks is unchanged."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from channels.metrics import Metrics, multiprocess_directory, render_multiprocess

ROOT = Path(__file__).resolve().parents[2]

#: A worker: records ``turns`` turns, holds ``connections`` connections open, and prints its /metrics text.
WORKER = textwrap.dedent("""
    import sys
    from channels.metrics import Metrics

    turns, connections = int(sys.argv[1]), int(sys.argv[2])
    metrics = Metrics()
    metrics.admission_budget.set(float(sys.argv[3]))
    metrics.queue_delay.set_function(lambda: float(sys.argv[4]))
    for _ in range(turns):
        metrics.turn_done("ok", 0.02)
    metrics.turn_done("error")
    for _ in range(connections):
        metrics.connections.inc()
    body, _ = metrics.render()
    sys.stdout.write(body.decode())
""")


def _worker(directory: Path | None, *args: object, keep_open: bool = False) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k.upper() != "PROMETHEUS_MULTIPROC_DIR"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if directory is not None:
        env["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    code = WORKER + ("sys.stdout.flush()\nsys.stdin.read()\n" if keep_open else "")
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)], cwd=ROOT, env=env, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def _run(directory: Path | None, *args: object) -> str:
    proc = _worker(directory, *args)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    return out


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _value(text: str, name: str, **labels: str) -> float:
    return _samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def test_two_workers_are_scraped_as_one(tmp_path: Path) -> None:
    first = _run(tmp_path, 3, 2, 0.5, 0.1)
    second = _run(tmp_path, 4, 5, 0.5, 0.3)
    # each worker's own /metrics already aggregates everything written so far
    assert _value(first, "kefu_turns_total", outcome="ok") == 3
    assert _value(second, "kefu_turns_total", outcome="ok") == 7
    assert _value(second, "kefu_turns_total", outcome="error") == 2

    text = render_multiprocess(tmp_path)[0].decode()
    assert _value(text, "kefu_turns_total", outcome="ok") == 7
    assert _value(text, "kefu_turns_total", outcome="error") == 2
    assert _value(text, "kefu_turn_latency_seconds_count", stage="total") == 7
    assert _value(text, "kefu_turn_latency_seconds_bucket", stage="total", le="0.025") == 7
    # both workers have exited: their live gauges (connections, queue delay) no longer count
    assert _value(text, "kefu_open_connections") == 0
    assert _value(text, "kefu_queue_delay_seconds") == 0


def test_live_gauges_sum_and_max_over_running_workers(tmp_path: Path) -> None:
    running = [_worker(tmp_path, 1, 2, 0.5, 0.1, keep_open=True), _worker(tmp_path, 1, 5, 0.5, 0.3, keep_open=True)]
    try:
        for proc in running:
            assert proc.stdout is not None
            assert proc.stdout.readline()  # its metrics are written
        text = _run(tmp_path, 1, 0, 0.5, 0.2)
        assert _value(text, "kefu_open_connections") == 7  # livesum
        assert _value(text, "kefu_queue_delay_seconds") == 0.3  # livemax
        assert _value(text, "kefu_admission_budget_seconds") == 0.5
        assert _value(text, "kefu_turns_total", outcome="ok") == 3
    finally:
        for proc in running:
            proc.kill()  # no exit hook: as if kill -9
            proc.communicate(timeout=30)
    # the next worker to start drops the killed workers' live gauges
    text = _run(tmp_path, 0, 1, 0.5, 0.0)
    assert _value(text, "kefu_open_connections") == 1
    assert _value(text, "kefu_turns_total", outcome="ok") == 3  # counters keep what they counted


def test_without_a_directory_each_process_has_its_own_registry(tmp_path: Path) -> None:
    assert multiprocess_directory() is None
    child = _run(None, 3, 2, 0.5, 0.1)
    assert _value(child, "kefu_turns_total", outcome="ok") == 3
    assert _value(child, "kefu_open_connections") == 2
    assert _value(child, "kefu_queue_delay_seconds") == 0.1  # the function, read at scrape time
    assert list(tmp_path.iterdir()) == []

    here, other = Metrics(), Metrics()
    here.turn_done("ok", 0.01)
    assert here.multiprocess_dir is None
    assert here.value("kefu_turns_total", {"outcome": "ok"}) == 1
    assert other.value("kefu_turns_total", {"outcome": "ok"}) == 0  # the child's turns are not seen either
    assert _value(here.render()[0].decode(), "kefu_turns_total", outcome="ok") == 1


def test_a_directory_set_after_import_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """prometheus_client was imported in per-process mode: files would never be written, so say so."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    with pytest.raises(RuntimeError, match="set after prometheus_client was imported"):
        Metrics()
