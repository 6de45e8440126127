"""The admin's retrain: ``POST /api/training`` starts the bot's NLU training (corrections included) in a background
process, ``GET /api/training`` says how far it is and how the last one ended.

Why a subprocess: a training takes minutes of CPU and must not stall the worker's event loop or share its memory;
the command is the server's option (:attr:`~channels.ops.options.OpsOptions.trainer`, ``kefu retrain-nlu --bot
DIR`` when served by ``kefu serve``; a stub in tests), run with ``--progress FILE`` appended. The trainer publishes
the new model itself, and every worker swaps it in (``kefu.models_watch``): this module only starts, follows and
records a run.

Why files in :attr:`~channels.ops.options.OpsOptions.training_dir`: several workers answer the console, and any
of them may be asked. One training at a time is an exclusive ``flock`` on ``nlu.training.lock``, held by the worker
that started it for as long as its process runs (a second start, from any worker: 409); the state
(``nlu.training.json``) and the trainer's progress (``nlu.progress.json``) are files every worker reads. A state
that says "running" while nobody holds the lock is a run whose worker died: reported as failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path
from typing import IO, Any, Final

from aiohttp import web

from channels.backend import ConsoleBackend
from channels.ops.api import ApiError, json_response
from channels.ops.handlers import USER, Clock, Handlers, logger
from channels.ops.options import OpsOptions

LOCK_FILE: Final = "nlu.training.lock"
STATE_FILE: Final = "nlu.training.json"
PROGRESS_FILE: Final = "nlu.progress.json"
LOG_FILE: Final = "nlu.training.log"  # the trainer's output (epoch lines, warnings): no customer text


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


def _try_lock(path: Path) -> IO[str] | None:
    """The open lock file, locked; None when another run holds it."""
    import fcntl

    handle = path.open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


class Training(Handlers):
    """``GET`` / ``POST /api/training`` (admin; see the module docstring)."""

    def __init__(self, backend: ConsoleBackend, options: OpsOptions, now: Clock) -> None:
        super().__init__(backend, options, now)
        self._task: asyncio.Task[None] | None = None

    @property
    def available(self) -> bool:
        return bool(self.options.trainer) and self.options.training_dir is not None

    def _path(self, name: str) -> Path:
        assert self.options.training_dir is not None
        return self.options.training_dir / name

    def state(self) -> dict[str, Any]:
        """The last run's state merged with the running one's progress (``progress``: 0..1, None when unknown)."""
        if not self.available:
            return {"available": False, "state": "idle"}
        state = {"state": "idle", **_read_json(self._path(STATE_FILE))}
        if state["state"] == "running" and (self._task is None or self._task.done()):
            lock = _try_lock(self._path(LOCK_FILE))
            if lock is not None:  # nobody runs it: the worker that started it is gone
                lock.close()
                state.update(state="failed", error="interrupted")
        progress = _read_json(self._path(PROGRESS_FILE)) if state["state"] == "running" else {}
        epoch, epochs = progress.get("epoch"), progress.get("epochs")
        if isinstance(epoch, int) and isinstance(epochs, int) and epochs > 0:
            state.update(epoch=epoch, epochs=epochs, progress=min(epoch / epochs, 1.0))
        elif state["state"] == "succeeded":
            state["progress"] = 1.0
        else:
            state.setdefault("progress", None)
        return {"available": True, **state}

    async def _h_training(self, request: web.Request) -> web.StreamResponse:
        return json_response(await asyncio.to_thread(self.state))

    async def _h_start_training(self, request: web.Request) -> web.StreamResponse:
        await self._json_body(request)  # JSON only, like every POST; nothing in it is read
        if not self.available:
            raise ApiError("not_found", "retraining is not set up for this console")
        assert self.options.training_dir is not None
        self.options.training_dir.mkdir(parents=True, exist_ok=True)
        lock = _try_lock(self._path(LOCK_FILE))
        if lock is None or (self._task is not None and not self._task.done()):
            if lock is not None:
                lock.close()
            raise ApiError("conflict", "a training is already running")
        user = request[USER].username
        started = self._now().isoformat()
        with contextlib.suppress(FileNotFoundError):
            self._path(PROGRESS_FILE).unlink()
        _write_json(self._path(STATE_FILE), {"state": "running", "started_at": started, "started_by": user})
        self._task = asyncio.create_task(self._run(lock, started, user))
        logger.info("NLU training started by %s", user)
        return json_response(await asyncio.to_thread(self.state), status=202)

    async def _run(self, lock: IO[str], started: str, user: str) -> None:
        """Run the trainer to its end, record how it ended, release the lock."""
        command = [*(self.options.trainer or ()), "--progress", str(self._path(PROGRESS_FILE))]
        result: dict[str, Any] = {"started_at": started, "started_by": user}
        try:
            with self._path(LOG_FILE).open("wb") as out:
                process = await asyncio.create_subprocess_exec(*command, stdin=asyncio.subprocess.DEVNULL,
                                                               stdout=out, stderr=asyncio.subprocess.STDOUT)
                try:
                    code = await process.wait()
                except asyncio.CancelledError:  # the console shuts down: the training goes with it
                    process.kill()
                    await process.wait()
                    raise
            progress = _read_json(self._path(PROGRESS_FILE))
            if code == 0:
                result.update(state="succeeded", model=progress.get("model"))
            else:
                result.update(state="failed", error=f"exit status {code}")
        except asyncio.CancelledError:
            result.update(state="failed", error="interrupted")
            raise
        except OSError as exc:  # the command cannot start
            result.update(state="failed", error=type(exc).__name__)
        finally:
            result["finished_at"] = self._now().isoformat()
            with contextlib.suppress(OSError):
                _write_json(self._path(STATE_FILE), result)
            lock.close()
            logger.info("NLU training %s", result["state"])

    async def aclose(self) -> None:
        """Stop a training this worker started (the server is closing)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
