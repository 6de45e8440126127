"""Fault runs in short form (the long form is ``benchmarks/load.py``, see README "Scale").

* kill -9 of one of two workers sharing a port and a PostgreSQL database: customers reconnect to the other
  worker, resend, and nothing is lost, duplicated or reordered;
* PostgreSQL restarted under load (a private cluster, so nobody else is disturbed): only clean
  ``store_unavailable`` errors while it is down, turns succeed again within 5 s, Kefu is not restarted;
* a new NLU model published while customers talk (the console's retrain): both workers swap it in between turns,
  nothing is lost, duplicated or reordered and no error frame is sent;
* an action server that is slow or down: the turn answers with the fallback after the action timeout, and other
  conversations are served meanwhile;
* the harness's ``--py-spy``: a worker sampled from outside while it serves (the turn profile of README "Scale").

The first two run the harness (``--worker lite``: the real server, engine and store with a model-free stand-in of
the bot, so two workers start in seconds); the model swap runs it with two real ``kefu serve`` workers of a copy of
the demo bot (its models linked, so the demo bot's own folder is never published to); the last drives the demo bot.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from websockets.asyncio.client import connect

from channels.metrics import Metrics
from channels.server import Server, run_server
from dialogue.actions import RemoteActions
from dialogue.engine import DialogueEngine
from kefu.serving import ServingBackend
from tests.stores import probe_postgres

pytestmark = pytest.mark.asyncio(loop_scope="session")
ROOT = Path(__file__).resolve().parents[2]
LOAD = ROOT / "benchmarks" / "load.py"


async def _harness(*args: str, timeout: float = 55.0, worker: str = "lite") -> dict[str, Any]:
    url, error = await probe_postgres()
    if url is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{error} — PostgreSQL is required when CI=true")
        pytest.skip(str(error))
    admin = url.replace("postgresql+asyncpg://", "postgresql://").rsplit("/", 1)[0] + "/postgres"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(LOAD), "--worker", worker, "--workers", "2", "--json", "--pg-url", admin,
        "--time-limit", str(timeout - 15), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError("the load harness did not finish in time") from None
    assert out, err.decode(errors="replace")[-3000:]
    report: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return report


def _nothing_lost(report: dict[str, Any]) -> None:
    assert report["turns"] == report["turns_planned"], report
    for key in ("lost", "duplicated", "reordered", "mismatched", "conversation_changed", "wrong_sender"):
        assert report[key] == 0, (key, report)
    assert report["failed_conversations"] == 0, report


@pytest.mark.postgres
@pytest.mark.slow
async def test_kill_9_of_one_worker_loses_and_duplicates_nothing() -> None:
    t0 = time.monotonic()
    report = await _harness("--conversations", "30", "--turns", "6", "--think-time", "0.4", "--ramp", "1",
                            "--kill-worker-at", "2")
    _nothing_lost(report)
    assert report["workers_alive"] == 1 and report["kill"]["killed_worker_at_s"] >= 2
    assert report["reconnects"] > 0  # its customers did move to the surviving worker
    assert report["errors"] == 0, report["errors_by_code"]
    # the replies streamed: the first piece of each came before (or with) its final message
    first, whole = report["first_token_ms"], report["latency_ms"]
    assert first["n"] > 0 and first["p50"] <= whole["p50"], (first, whole)
    assert time.monotonic() - t0 < 60


@pytest.mark.postgres
@pytest.mark.slow
async def test_postgres_restart_gives_clean_errors_and_recovers_within_5_s() -> None:
    if not sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")) or (os.geteuid() == 0 and not shutil.which("runuser")):
        pytest.skip("needs PostgreSQL's server binaries (initdb, pg_ctl) for a private cluster")
    report = await _harness("--conversations", "30", "--turns", "8", "--think-time", "0.3", "--ramp", "1",
                            "--restart-postgres-at", "2")
    _nothing_lost(report)
    restart = report["postgres_restart"]
    assert set(report["errors_by_code"]) <= {"store_unavailable"}, report["errors_by_code"]  # clean errors only
    assert restart["first_turn_ok_after_ready_s"] is not None and restart["first_turn_ok_after_ready_s"] < 5
    assert restart["last_error_after_ready_s"] < 5
    assert report["workers_alive"] == 2  # Kefu was not restarted


# ------------------------------------------------------------------------------------------ action server
class FakeActionServer:
    """An HTTP server that answers ``/webhook`` after ``delay`` seconds (or never, with a large delay)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.requests = 0
        self.server: asyncio.Server | None = None
        self.handlers: set[asyncio.Task[Any]] = set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.requests += 1
        task = asyncio.current_task()
        if task is not None:
            self.handlers.add(task)
        try:
            await reader.readuntil(b"\r\n\r\n")
            await asyncio.sleep(self.delay)
            body = b'{"events": [], "responses": [{"response": "utter_order_not_found"}]}'
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/webhook"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for task in self.handlers:
            task.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)


@pytest_asyncio.fixture(loop_scope="session")
async def actions_target(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, str]]:
    """(kind, webhook URL): a slow action server, or a port nobody listens on."""
    if request.param == "slow":
        async with FakeActionServer(delay=30.0) as url:
            yield "slow", url
    else:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        yield "down", f"http://127.0.0.1:{port}/webhook"


async def _chat(ws: Any, message_id: str, text: str) -> tuple[dict[str, Any], float]:
    t0 = time.monotonic()
    await ws.send(json.dumps({"type": "message", "message_id": message_id, "text": text}))
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if frame["type"] in ("message", "error") and frame.get("reply_to") == message_id:
            return frame, time.monotonic() - t0


def _bot_copy(bot: Path, into: Path) -> Path:
    """A copy of ``bot``'s folder whose ``models/`` entries are links to the original's: a model published there
    (``models/nlu.next-*`` and the ``nlu.current`` pointer) never touches the original bot."""
    copy = into / bot.name
    shutil.copytree(bot, copy, ignore=shutil.ignore_patterns("models"))
    (copy / "models").mkdir()
    for entry in (bot / "models").iterdir():
        if not entry.name.startswith(("nlu.next-", "nlu.current", ".")):
            (copy / "models" / entry.name).symlink_to(entry.resolve())
    return copy


@pytest.mark.postgres
@pytest.mark.slow
async def test_nlu_model_swap_under_traffic_fails_no_turn(shop_bot: Path, tmp_path: Path) -> None:
    bot = _bot_copy(shop_bot, tmp_path)
    report = await _harness("--conversations", "16", "--turns", "10", "--think-time", "1.5", "--ramp", "1",
                            "--bot", str(bot), "--swap-nlu-at", "3", "--swap-source", "copy", "--admission-budget-ms",
                            "0", timeout=170.0, worker="kefu")
    _nothing_lost(report)
    assert report["errors"] == 0, report["errors_by_code"]
    swap = report["swap"]
    assert swap["workers_swapped"] == 2, swap  # both logged "NLU model ... swapped in"
    assert swap["turns_after_all_swapped"] > 0, swap  # customers were still talking after the swaps
    assert swap["errors_after_publish"] == 0, swap
    assert not (bot / "models" / "nlu.current").exists()  # the harness leaves the bot's models as it found them
    assert not list((bot / "models").glob("nlu.next-*"))


@pytest.mark.slow
@pytest.mark.parametrize("actions_target", ["slow", "down"], indirect=True)
async def test_action_server_slow_or_down_times_out_with_fallback_while_others_are_served(
    shop: Any, actions_target: tuple[str, str]
) -> None:
    kind, webhook = actions_target
    timeout_s = 1.5
    actions = RemoteActions(webhook, timeout_s=timeout_s)
    engine = DialogueEngine(dataclasses.replace(shop.engine.parts, actions=actions), shop.engine.store,
                            shop.engine.generator)
    try:
        async with run_server(ServingBackend(engine, Metrics()), port=0) as server:
            await _conversations(server, kind, timeout_s, engine)
    finally:
        await actions.aclose()


async def _conversations(server: Server, kind: str, timeout_s: float, engine: DialogueEngine) -> None:
    async with connect(server.ws_url) as waiting, connect(server.ws_url) as other:
        order = asyncio.create_task(_chat(waiting, uuid.uuid4().hex, "where is my order 10234?"))
        await asyncio.sleep(0.05)
        # Meanwhile another customer is served without waiting for the action server.
        quick = []
        for text in ("hello", "thanks a lot", "你好"):
            frame, seconds = await _chat(other, uuid.uuid4().hex, text)
            assert frame["type"] == "message" and frame["text"], frame
            quick.append(seconds)
        assert not order.done() or kind == "down"
        reply, seconds = await order
    assert reply["type"] == "message" and reply["action"] == "action_order_status", reply
    assert "10234" not in reply["text"]  # no status was invented: the fallback answered
    if kind == "slow":
        assert timeout_s - 0.1 <= seconds < timeout_s + 5
    else:
        assert seconds < timeout_s + 5
    assert max(quick) < timeout_s + 2, quick
    events = await engine.conversation_events(reply["conversation_id"])
    action = next(e for e in events if e.type == "action" and e.data.get("name") == "action_order_status")
    assert action.data["failed"] is True and action.data["error"] == ("timeout" if kind == "slow" else "unavailable")
    bot = next(e for e in reversed(events) if e.type == "bot_message")
    assert bot.data["text"] == reply["text"] and reply["text"]


@pytest.mark.postgres
@pytest.mark.slow
async def test_py_spy_samples_a_worker_serving_turns(tmp_path: Path) -> None:
    if shutil.which("py-spy") is None and not Path(sys.executable).with_name("py-spy").exists():
        pytest.skip("py-spy is not installed (it is in the dev extra: pip install -e '.[dev]')")
    stacks = tmp_path / "stacks.txt"
    # 200 turns: a few hundred busy samples at py-spy's 100 per second, so the turn's frames are surely among them
    report = await _harness("--conversations", "40", "--turns", "5", "--think-time", "0.2", "--ramp", "1",
                            "--py-spy", str(stacks))
    _nothing_lost(report)
    error = report["py_spy"]["error"]
    if error and ("ptrace" in error.lower() or "permission" in error.lower()):
        pytest.skip(f"py-spy may not attach to another process here: {error}")
    assert error is None and report["py_spy"]["path"] == str(stacks), report["py_spy"]
    lines = [line.rsplit(" ", 1) for line in stacks.read_text().splitlines() if line.strip()]
    samples = {stack: int(count) for stack, count in lines}
    # the worker was sampled while it ran turns: the engine's own frames, under the chat server's
    turn = sum(n for stack, n in samples.items() if "handle_message (dialogue/engine.py" in stack)
    assert turn > 0 and sum(samples.values()) > turn, (turn, len(samples))
    flame = await asyncio.create_subprocess_exec(sys.executable, str(ROOT / "benchmarks" / "flame.py"), str(stacks),
                                                 "--json", stdout=subprocess.PIPE, cwd=ROOT)
    out, _ = await asyncio.wait_for(flame.communicate(), 60)
    owners = {row["owner"] for row in json.loads(out)["by_module"]}
    assert {"dialogue/engine.py", "channels/server.py"} & owners, owners  # busy samples found Kefu's own modules


async def test_harness_help_runs() -> None:
    proc = await asyncio.create_subprocess_exec(sys.executable, str(LOAD), "--help", stdout=subprocess.PIPE, cwd=ROOT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0 and b"--kill-worker-at" in out and b"--long-conversation" in out
