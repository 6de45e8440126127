"""The published NLU model: a retrain from the console builds into a new folder and publishes it; every serving
worker notices and swaps it in between turns, with no restart.

Why a new folder and a pointer: a worker may look at the models while a training writes them, so a model is never
trained where one is served. ``kefu retrain-nlu`` trains into ``models/nlu.next-<timestamp>`` and, only once that
folder is complete, replaces ``models/nlu.current`` (one line: the folder's name) with ``os.replace``: a reader sees
the old pointer or the new one, never a half-written model. Without a pointer (or with one naming nothing usable),
``models/nlu`` (what ``kefu train`` builds) is served.

Why a swap of ``engine.parts``: a turn reads its bot parts once, at its start (``parts = self.parts`` in
``DialogueEngine._turn``), so replacing the whole :class:`~dialogue.engine.BotParts` in one assignment leaves a turn
in flight with the model it started with, and the next turn gets the new one. A model that fails to load is logged
and skipped; the old one keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import io
import json
import logging
import os
import re
import shutil
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Final, TextIO

log = logging.getLogger("kefu.models")

POINTER: Final = "nlu.current"
NEXT_PREFIX: Final = "nlu.next-"
SERVED: Final = "nlu"  # what `kefu train` builds: served while no pointer names a published folder
WEIGHTS: Final = "model.safetensors"
_NEXT_RE: Final = re.compile(r"nlu\.next-[0-9TZ]+(-\d+)?")


# --------------------------------------------------------------------------------------------- publishing
def served_nlu(models: Path) -> Path:
    """The NLU folder to serve: the one ``nlu.current`` names when it is a complete published folder, else
    ``models/nlu``."""
    try:
        name = (models / POINTER).read_text(encoding="utf-8").strip()
    except OSError:
        return models / SERVED
    folder = models / name
    if _NEXT_RE.fullmatch(name) and (folder / WEIGHTS).is_file():
        return folder
    return models / SERVED


def next_nlu_folder(models: Path, now: dt.datetime | None = None) -> Path:
    """A new, empty folder name for the next training (``nlu.next-20261206T182500Z``; a suffix when taken)."""
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    folder, n = models / f"{NEXT_PREFIX}{stamp}", 1
    while folder.exists():
        n += 1
        folder = models / f"{NEXT_PREFIX}{stamp}-{n}"
    return folder


def publish_nlu(models: Path, folder: Path, *, keep: int = 2) -> None:
    """Point ``nlu.current`` at the complete ``folder`` in one rename, then delete older published folders
    (the ``keep`` newest stay: a worker that read the previous pointer may still be loading it)."""
    if folder.parent.resolve() != models.resolve() or not _NEXT_RE.fullmatch(folder.name):
        raise ValueError("a published model must be an nlu.next-* folder of the models folder")
    if not (folder / WEIGHTS).is_file():
        raise ValueError(f"{folder.name} holds no {WEIGHTS}: not published")
    tmp = models / f".{POINTER}.{os.getpid()}"
    tmp.write_text(folder.name + "\n", encoding="utf-8")
    os.replace(tmp, models / POINTER)
    published = sorted((p for p in models.iterdir() if p.is_dir() and _NEXT_RE.fullmatch(p.name)),
                       key=lambda p: p.stat().st_mtime)
    for old in published[:-keep] if keep > 0 else published:
        if old.name != folder.name:
            shutil.rmtree(old, ignore_errors=True)


def unpublish_nlu(models: Path) -> None:
    """Serve ``models/nlu`` again (``kefu train`` rebuilt it: a newer model than any published one)."""
    with contextlib.suppress(FileNotFoundError):
        (models / POINTER).unlink()


# ----------------------------------------------------------------------------------------------- training
class _EpochCounter(io.TextIOBase):
    """Stands in for stdout during a training: counts the ``epoch N:`` lines the NLU trainer writes after each
    epoch (``tqdm.write``) and reports them, passing every line on to the real stdout."""

    _LINE: Final = re.compile(r"epoch \d+: ")

    def __init__(self, out: TextIO, on_epoch: Callable[[int], None]) -> None:
        self.out, self.on_epoch, self.done = out, on_epoch, 0

    def write(self, text: str) -> int:
        n = len(self._LINE.findall(text))
        if n:
            self.done += n
            self.on_epoch(self.done)
        return self.out.write(text)

    def flush(self) -> None:
        self.out.flush()


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    """Readers (the console of any worker) see the old file or the new one, never a partial one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


def retrain_nlu(bot_dir: Path, progress: Path | None = None) -> Path:
    """Train the bot's NLU (its training files, corrections included) into a new folder, then publish it; returns
    the folder. ``progress``: a JSON file rewritten after every epoch with ``{"epoch", "epochs", "model"}``
    (``epochs``: the most the schedule may run, every ensemble member together; early stopping may end sooner)."""
    from kefu.app import bot_dir_env, offline, train_nlu_model
    from kefu.config import Bot
    from nlu.data import load_examples
    from nlu.train import TrainConfig, auto_epochs

    offline()
    bot = Bot.load(bot_dir)
    folder = next_nlu_folder(bot.models)
    tc = TrainConfig(**bot.config.nlu_training)  # type: ignore[arg-type]
    n = len(load_examples(bot.nlu_files, {}, []))
    augmented = n * (1 + tc.augment) if tc.augment > 0 and n <= tc.augment_max else n
    total = max(1, (tc.epochs or auto_epochs(round(augmented * (1 - tc.dev_fraction)))) * max(tc.ensemble, 1))

    def report(done: int) -> None:
        if progress is not None:
            write_json_atomically(progress, {"epoch": min(done, total), "epochs": total, "model": folder.name})

    report(0)
    counter = _EpochCounter(sys.stdout, report)
    try:
        with bot_dir_env(bot.root), contextlib.redirect_stdout(counter):  # type: ignore[type-var]
            train_nlu_model(bot, folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # never left for a later pointer to name
        raise
    publish_nlu(bot.models, folder)
    report(total)
    return folder


# ------------------------------------------------------------------------------------------------ swapping
class NLUWatcher:
    """Swaps a newly published NLU model into one worker's engine (see the module docstring). ``loader``: the
    model's ``load`` (``NLUModel.load``; a stub in tests). ``serving``: the folder the engine was started with."""

    def __init__(self, engine: Any, models: Path, loader: Callable[[Path], Any], serving: Path) -> None:
        self.engine = engine
        self.models = models
        self.loader = loader
        self.serving = serving
        self._pointer_seen = self._pointer_stamp()
        self._refused: Path | None = None  # a folder that failed to load: not retried on every poll
        self.swaps = 0

    def __repr__(self) -> str:
        return f"NLUWatcher(serving={self.serving.name!r}, swaps={self.swaps})"

    def _pointer_stamp(self) -> tuple[int, int] | None:
        try:
            st = (self.models / POINTER).stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_ino

    async def check(self) -> bool:
        """One cheap look (a ``stat``); when the pointer changed and names another folder, load it in a thread and
        swap it in. True when a swap happened."""
        stamp = self._pointer_stamp()
        if stamp == self._pointer_seen:
            return False
        self._pointer_seen = stamp
        folder = served_nlu(self.models)
        if folder == self.serving or folder == self._refused:
            return False
        try:
            model = await asyncio.to_thread(self.loader, folder)
        except Exception as exc:  # noqa: BLE001 - any failure keeps the old model serving
            self._refused = folder
            log.warning("the NLU model %s does not load (%s): the previous one keeps serving", folder.name,
                        type(exc).__name__)
            return False
        self.swap(model)
        self.serving = folder
        log.info("NLU model %s swapped in", folder.name)
        return True

    def swap(self, model: Any) -> None:
        """Replace the engine's parts with a copy holding ``model``: one assignment, between two turns."""
        self.engine.parts = dataclasses.replace(self.engine.parts, nlu=model)
        self.swaps += 1
        from kefu.app import settle_heap

        settle_heap()  # the new model's objects out of the collector's full passes, as at start-up

    async def run(self, interval: float = 3.0) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.check()
            except OSError as exc:  # a models folder on a flaky disk: try again next time
                log.warning("cannot read the published NLU model (%s)", type(exc).__name__)


@contextlib.asynccontextmanager
async def watching_nlu(watcher: NLUWatcher, interval: float = 3.0) -> AsyncIterator[NLUWatcher]:
    """Run ``watcher`` in the background for the duration."""
    task = asyncio.create_task(watcher.run(interval))
    try:
        yield watcher
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
