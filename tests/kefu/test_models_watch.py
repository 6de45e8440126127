"""The console's retrain, worker side (kefu.models_watch): a model is published into a new folder by one pointer
rename, a worker picks it up with one stat per poll, a model that does not load is never swapped in, and a swap in
the middle of a conversation (even in the middle of a turn) loses no turn. No real training: stub models."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from dialogue.store import Store
from dialogue.types import BOT_MESSAGE, NLU_PARSE, USER_MESSAGE
from kefu import models_watch as mw
from tests.channels.conftest import KeywordNLU, light_engine
from tests.conftest import SHOP


def model_folder(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / mw.WEIGHTS).write_bytes(b"weights")
    return folder


class Loaded:
    """What the stub loader returns: the folder's name (a real one returns an ``NLUModel``)."""

    def __init__(self, name: str) -> None:
        self.name = name


class Loader:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[str] = []
        self.fail = fail

    def __call__(self, folder: Path) -> Loaded:
        self.calls.append(folder.name)
        if self.fail:
            raise ValueError("corrupt model")
        return Loaded(folder.name)


class Engine:
    """Holds ``parts`` as ``DialogueEngine`` does: the watcher only replaces it."""

    def __init__(self) -> None:
        from dialogue.engine import BotParts

        self.parts: Any = BotParts(domain=None, flows=None, policy=None, nlu=Loaded("nlu"), actions=None,  # type: ignore[arg-type]
                              input_filter=None)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ publishing
def test_without_a_pointer_models_nlu_is_served(tmp_path: Path) -> None:
    assert mw.served_nlu(tmp_path) == tmp_path / "nlu"
    (tmp_path / mw.POINTER).write_text("nlu.next-20260101T000000Z\n")  # names a folder that is not there
    assert mw.served_nlu(tmp_path) == tmp_path / "nlu"
    (tmp_path / mw.POINTER).write_text("../../etc\n")  # never outside the models folder
    assert mw.served_nlu(tmp_path) == tmp_path / "nlu"


def test_publish_points_at_the_new_folder_and_keeps_the_two_newest(tmp_path: Path) -> None:
    folders = []
    for _ in range(3):
        folders.append(model_folder(mw.next_nlu_folder(tmp_path)))
        mw.publish_nlu(tmp_path, folders[-1])
        assert mw.served_nlu(tmp_path) == folders[-1]
    assert len({f.name for f in folders}) == 3  # a taken name gets a suffix
    assert not folders[0].exists() and folders[1].exists() and folders[2].exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left
    mw.unpublish_nlu(tmp_path)
    assert mw.served_nlu(tmp_path) == tmp_path / "nlu"


def test_an_incomplete_folder_is_never_published(tmp_path: Path) -> None:
    half = mw.next_nlu_folder(tmp_path)
    half.mkdir()
    with pytest.raises(ValueError):
        mw.publish_nlu(tmp_path, half)
    with pytest.raises(ValueError):
        mw.publish_nlu(tmp_path, model_folder(tmp_path / "elsewhere"))
    assert not (tmp_path / mw.POINTER).exists()


def test_retrain_trains_into_a_new_folder_reports_epochs_and_publishes(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    bot = tmp_path / "shop"
    shutil.copytree(SHOP, bot, ignore=shutil.ignore_patterns("models", "__pycache__", "*.db"))
    served = model_folder(bot / "models" / "nlu")
    seen: list[dict[str, Any]] = []
    progress = tmp_path / "progress.json"

    def fake_train(bot_config: Any, out_dir: Path) -> None:
        assert out_dir != served and out_dir.name.startswith(mw.NEXT_PREFIX)
        out_dir.mkdir(parents=True)
        for epoch in (1, 2):
            print(f"epoch {epoch}: loss 0.1  dev intent acc 0.9")
            seen.append(json.loads(progress.read_text()))
        (out_dir / mw.WEIGHTS).write_bytes(b"new")

    monkeypatch.setattr("kefu.app.train_nlu_model", fake_train)
    folder = mw.retrain_nlu(bot, progress)
    assert mw.served_nlu(bot / "models") == folder and (served / mw.WEIGHTS).read_bytes() == b"weights"
    assert [s["epoch"] for s in seen] == [1, 2] and seen[0]["model"] == folder.name
    final = json.loads(progress.read_text())
    assert final["epoch"] == final["epochs"] >= 2


def test_a_failed_retrain_leaves_nothing_published(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bot = tmp_path / "shop"
    shutil.copytree(SHOP, bot, ignore=shutil.ignore_patterns("models", "__pycache__", "*.db"))
    model_folder(bot / "models" / "nlu")

    def broken(bot_config: Any, out_dir: Path) -> None:
        model_folder(out_dir)
        raise RuntimeError("out of memory")

    monkeypatch.setattr("kefu.app.train_nlu_model", broken)
    with pytest.raises(RuntimeError):
        mw.retrain_nlu(bot, None)
    assert mw.served_nlu(bot / "models") == bot / "models" / "nlu"
    assert [p.name for p in (bot / "models").iterdir() if p.name.startswith(mw.NEXT_PREFIX)] == []


# --------------------------------------------------------------------------------------------- pick-up
async def test_the_watcher_swaps_a_published_model_once(tmp_path: Path) -> None:
    engine, loader = Engine(), Loader()
    watcher = mw.NLUWatcher(engine, tmp_path, loader, tmp_path / "nlu")
    assert not await watcher.check() and loader.calls == []  # nothing published: not even a load
    folder = model_folder(mw.next_nlu_folder(tmp_path))
    mw.publish_nlu(tmp_path, folder)
    before = engine.parts
    assert await watcher.check()
    assert engine.parts.nlu.name == folder.name and engine.parts is not before and before.nlu.name == "nlu"
    assert not await watcher.check() and loader.calls == [folder.name]  # the same pointer: no second load


async def test_a_model_that_does_not_load_is_not_swapped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    engine, loader = Engine(), Loader(fail=True)
    watcher = mw.NLUWatcher(engine, tmp_path, loader, tmp_path / "nlu")
    folder = model_folder(mw.next_nlu_folder(tmp_path))
    mw.publish_nlu(tmp_path, folder)
    with caplog.at_level(logging.WARNING, logger="kefu.models"):
        assert not await watcher.check()
    assert engine.parts.nlu.name == "nlu" and watcher.serving == tmp_path / "nlu"
    assert "does not load (ValueError)" in caplog.text
    (tmp_path / mw.POINTER).touch()  # the same folder again: not retried
    assert not await watcher.check() and loader.calls == [folder.name]


async def test_the_background_watch_picks_up_within_its_interval(tmp_path: Path) -> None:
    engine = Engine()
    async with mw.watching_nlu(mw.NLUWatcher(engine, tmp_path, Loader(), tmp_path / "nlu"), interval=0.02):
        folder = model_folder(mw.next_nlu_folder(tmp_path))
        mw.publish_nlu(tmp_path, folder)
        for _ in range(100):
            if engine.parts.nlu.name == folder.name:
                break
            await asyncio.sleep(0.02)
    assert engine.parts.nlu.name == folder.name


# --------------------------------------------------------------------------------------------- the engine
class TaggedNLU(KeywordNLU):
    """The console tests' keyword parser that records which texts it parsed; ``gate``: block inside a parse until
    set (a turn held mid-flight while the model is swapped)."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.texts: list[str] = []
        self.gate = gate
        self.entered = threading.Event()

    def parse(self, text: str) -> Any:
        self.texts.append(text)
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10)
        return super().parse(text)


async def test_a_swap_mid_conversation_loses_no_turn(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'swap.db'}")
    try:
        engine = light_engine(store)
        gate = threading.Event()
        old, new = TaggedNLU(gate), TaggedNLU()
        engine.parts.nlu = old
        watcher = mw.NLUWatcher(engine, tmp_path, Loader(), tmp_path / "nlu")
        gate.set()
        first = await engine.handle_message(None, uuid.uuid4().hex, "hello")
        gate.clear()
        old.entered.clear()
        cid = first.conversation_id
        in_flight = asyncio.create_task(engine.handle_message(cid, uuid.uuid4().hex, "where is my order 10234"))
        assert await asyncio.to_thread(old.entered.wait, 10)
        watcher.swap(new)  # while that turn is inside the old model's parse
        gate.set()
        second = await in_flight
        third = await engine.handle_message(cid, uuid.uuid4().hex, "thank you")
        assert "where is my order 10234" in old.texts and "where is my order 10234" not in new.texts
        assert new.texts == ["thank you"] and "thank you" not in old.texts
        assert second.conversation_id == third.conversation_id == cid
        events = await store.events(cid)
        kinds = [e.type for e in events]
        assert kinds.count(USER_MESSAGE) == 3 and kinds.count(NLU_PARSE) == 3
        assert kinds.count(BOT_MESSAGE) >= 3
    finally:
        await store.close()


async def test_swaps_between_concurrent_turns_fail_none(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'many.db'}")
    try:
        engine = light_engine(store)
        watcher = mw.NLUWatcher(engine, tmp_path, Loader(), tmp_path / "nlu")
        texts = ["hello", "where is my order 10234", "thank you"]

        async def customer() -> str:
            cid = None
            for text in texts:
                reply = await engine.handle_message(cid, uuid.uuid4().hex, text)
                cid = reply.conversation_id
                await asyncio.sleep(0)
            assert cid is not None
            return cid

        async def swapper() -> None:
            for _ in range(20):
                watcher.swap(TaggedNLU())
                await asyncio.sleep(0.001)

        results = await asyncio.gather(*(customer() for _ in range(6)), swapper())
        cids = [r for r in results if isinstance(r, str)]
        assert len(cids) == 6
        for cid in cids:
            kinds = [e.type for e in await store.events(cid)]
            assert kinds.count(USER_MESSAGE) == len(texts)
        assert watcher.swaps == 20
    finally:
        await store.close()


def test_the_cli_has_the_retrain_command() -> None:
    from typer.testing import CliRunner

    from kefu.cli import app

    result = CliRunner().invoke(app, ["retrain-nlu", "--help"])
    assert result.exit_code == 0 and "--progress" in result.stdout
