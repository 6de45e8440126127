"""The admin's retrain on the console (channels.ops.training): admin only, one training at a time across workers
(409), its progress read from the trainer's progress file, how it ended recorded for every worker. The trainer is a
stub command (a few lines of Python that wait for a file, report epochs and exit): no real training."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from channels import auth
from channels.ops import ROUTES, OpsOptions, OpsServer, run_ops_server
from channels.ops.training import STATE_FILE
from tests.channels.conftest import ConsoleEnv
from tests.channels.test_ops import Staff, as_role, clock, error, ops  # noqa: F401 - fixtures

TRAINING = "/api/training"

# argv: [-c, --progress, FILE]. Waits for "go" beside the progress file, reports 2 of 4 epochs, exits with "go"'s code.
FAKE_TRAINER = """
import json, pathlib, sys, time
progress = pathlib.Path(sys.argv[sys.argv.index("--progress") + 1])
progress.write_text(json.dumps({"epoch": 2, "epochs": 4, "model": "nlu.next-20260101T000000Z"}))
go = progress.parent / "go"
while not go.exists():
    time.sleep(0.02)
sys.exit(int(go.read_text() or 0))
"""


def trainer_options(folder: Path) -> OpsOptions:
    return OpsOptions(login_limit=auth.RateLimit(max_failures=50, window=300), trainer=(sys.executable, "-c", FAKE_TRAINER),
                      training_dir=folder)


@pytest_asyncio.fixture(loop_scope="session")
async def trained(console_env: ConsoleEnv, tmp_path: Path) -> AsyncIterator[OpsServer]:
    async with run_ops_server(console_env.console, port=0, options=trainer_options(tmp_path / "models")) as server:
        yield server


async def state_until(staff: Staff, wanted: str) -> dict[str, Any]:
    for _ in range(500):
        res = await staff.get(TRAINING)
        assert res.status_code == 200
        if res.json()["state"] == wanted:
            return dict(res.json())
        await asyncio.sleep(0.02)
    raise AssertionError(f"never {wanted}: {res.json()}")


def test_the_training_routes_are_the_admins() -> None:
    table = {(m, p): r for m, p, r, _ in ROUTES}
    assert table[("GET", TRAINING)] == table[("POST", TRAINING)] == auth.ADMIN


@pytest.mark.parametrize("role", ["viewer", "agent"])
async def test_non_admins_are_refused(trained: OpsServer, role: str, tmp_path: Path) -> None:
    staff = await as_role(trained, role)
    for res in (await staff.get(TRAINING), await staff.post(TRAINING, {})):
        assert res.status_code == 403 and error(res) == "forbidden"
    assert not (tmp_path / "models" / STATE_FILE).exists()  # nothing started
    await staff.aclose()


async def test_one_training_at_a_time_with_progress_then_the_result(trained: OpsServer, console_env: ConsoleEnv,
                                                                      tmp_path: Path) -> None:
    admin = await as_role(trained, "admin")
    assert (await admin.get(TRAINING)).json() == {"available": True, "state": "idle", "progress": None}
    res = await admin.post(TRAINING, {})
    assert res.status_code == 202 and res.json()["state"] == "running" and res.json()["started_by"] == "admin"
    second = await admin.post(TRAINING, {})
    assert second.status_code == 409 and error(second) == "conflict"
    # Another worker (its own console on the same models folder) sees the run and refuses a second one too.
    async with run_ops_server(console_env.console, port=0, options=trainer_options(tmp_path / "models")) as other:
        colleague = await as_role(other, "admin")
        for _ in range(500):
            running = (await colleague.get(TRAINING)).json()
            if "epoch" in running:
                break
            await asyncio.sleep(0.02)
        assert running["state"] == "running" and (running["epoch"], running["epochs"], running["progress"]) == (2, 4, 0.5)
        assert (await colleague.post(TRAINING, {})).status_code == 409
        await colleague.aclose()
    (tmp_path / "models" / "go").write_text("0")
    done = await state_until(admin, "succeeded")
    assert done["model"] == "nlu.next-20260101T000000Z" and done["progress"] == 1.0 and done["finished_at"]
    (tmp_path / "models" / "go").unlink()
    again = await admin.post(TRAINING, {})  # the lock is free again
    assert again.status_code == 202
    (tmp_path / "models" / "go").write_text("3")
    failed = await state_until(admin, "failed")
    assert failed["error"] == "exit status 3"
    await admin.aclose()


async def test_a_run_whose_worker_died_is_reported_failed(trained: OpsServer, tmp_path: Path) -> None:
    (tmp_path / "models").mkdir(exist_ok=True)
    (tmp_path / "models" / STATE_FILE).write_text(json.dumps({"state": "running", "started_by": "admin"}))
    admin = await as_role(trained, "admin")
    state = (await admin.get(TRAINING)).json()
    assert state["state"] == "failed" and state["error"] == "interrupted"
    await admin.aclose()


async def test_without_a_trainer_nothing_is_offered(ops: OpsServer) -> None:  # noqa: F811
    admin = await as_role(ops, "admin")
    assert (await admin.get(TRAINING)).json() == {"available": False, "state": "idle"}
    res = await admin.post(TRAINING, {})
    assert res.status_code == 404 and error(res) == "not_found"
    await admin.aclose()


async def test_closing_the_console_stops_its_training(console_env: ConsoleEnv, tmp_path: Path) -> None:
    async with run_ops_server(console_env.console, port=0, options=trainer_options(tmp_path / "models")) as server:
        admin = await as_role(server, "admin")
        assert (await admin.post(TRAINING, {})).status_code == 202
        await admin.aclose()
    state = json.loads((tmp_path / "models" / STATE_FILE).read_text())
    assert state["state"] == "failed" and state["error"] == "interrupted"
