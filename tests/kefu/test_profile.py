"""``benchmarks/flame.py``: a worker's py-spy stacks read as the CPU it spent, per Kefu module (README "Scale")."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def flame() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kefu_bench_flame", ROOT / "benchmarks" / "flame.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


LOOP = "_run_module_as_main (<frozen runpy>:198);serve (kefu/cli.py:90);BaseEventLoop._run_once (asyncio/base_events.py:1922)"
POOL = "Thread._bootstrap (threading.py:1002);_worker (concurrent/futures/thread.py:83)"
STACKS = f"""{POOL};_WorkItem.run (concurrent/futures/thread.py:58);NLUModel.parse (nlu/predict.py:200);bilstm_inference (nlu/model.py:300) 40
{POOL} 70
{LOOP};DialogueEngine._finish (dialogue/engine.py:439);TurnLog.commit_turn (dialogue/store/turns.py:188);execute (sqlalchemy/engine/base.py:1400) 25
{LOOP};Server._send (channels/server.py:500);Connection.send (websockets/asyncio/connection.py:400) 10
{LOOP};EpollSelector.select (selectors.py:451) 30
{LOOP};Handle._run (asyncio/events.py:80) 5

"""


@pytest.fixture
def stacks(tmp_path: Path) -> Path:
    path = tmp_path / "stacks.txt"
    path.write_text(STACKS, encoding="utf-8")
    return path


def test_waits_are_not_work(flame: ModuleType, stacks: Path) -> None:
    read = flame.read_stacks(stacks)
    assert sum(read.values()) == 180
    work = flame.busy(read)
    assert sum(work.values()) == 80  # the pool thread waiting for work and the loop in epoll are dropped
    assert all(":" not in frame.rsplit("(", 1)[1] for stack in work for frame in stack)  # no line numbers


@pytest.mark.parametrize(
    ("group", "expected"),
    [
        (
            "module",
            [
                ("nlu/model.py", 40),
                ("dialogue/store/turns.py", 25),
                ("channels/server.py", 10),
                ("outside Kefu: asyncio", 5),
            ],
        ),
        ("package", [("nlu", 40), ("dialogue/store", 25), ("channels", 10), ("outside Kefu: asyncio", 5)]),
    ],
)
def test_samples_go_to_the_innermost_kefu_frame(
    flame: ModuleType, stacks: Path, group: str, expected: list[tuple[str, int]]
) -> None:
    # the library below a Kefu frame is that frame's cost; the command line that started the worker owns nothing
    assert flame.by_owner(flame.busy(flame.read_stacks(stacks)), group) == expected


def test_the_icicle_chart_and_the_table(
    flame: ModuleType, stacks: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "profile.png"
    assert flame.main([str(stacks), "--by", "package", "--png", str(png), "--json"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = __import__("json").loads(capsys.readouterr().out)
    assert report["samples"] == 180 and report["busy_samples"] == 80
    assert report["by_package"][0] == {"owner": "nlu", "samples": 40, "share": 0.5}


def test_a_profile_of_waits_only_is_refused(
    flame: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "idle.txt"
    path.write_text(STACKS.splitlines()[1] + "\n", encoding="utf-8")
    assert flame.busy(flame.read_stacks(path)) == Counter()
    assert flame.main([str(path), "--png", str(tmp_path / "x.png")]) == 1
    assert "no busy samples" in capsys.readouterr().err and not (tmp_path / "x.png").exists()
