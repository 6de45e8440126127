"""A real Rasa project imported with `kefu import rasa`, trained, and served: its own rasa-sdk action server validates
its form over HTTP, customers talk to it through the WebSocket server and the widget (headless Chromium), and its
conversations show in the ops console like any other bot's."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import websockets
from playwright.async_api import expect

pytestmark = pytest.mark.asyncio(loop_scope="session")
PROJECT = "rasa-3.x-form-examples/05-validation"  # a form with from_text slots and a FormValidationAction


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def action_port() -> int:
    return _free_port()


@pytest.fixture(scope="session")
def rasa_bot(shared_data: Path, tmp_path_factory: pytest.TempPathFactory, action_port: int) -> Path:
    """The project imported into a fresh bot folder and trained (NLU and injection detector of its own)."""
    import shutil

    from dialogue.rasa.importer import import_project
    from kefu.app import train_bot

    root = tmp_path_factory.mktemp("rasa")
    source = root / "project"
    shutil.copytree(shared_data / "rasa_projects" / PROJECT, source)
    domain = source / "domain.yml"  # as its author might: buttons under the greeting (Rasa's `buttons:`)
    domain.write_text(domain.read_text(encoding="utf-8").replace(
        "  - text: Hey! How are you?\n",
        "  - text: Hey! How are you?\n    buttons:\n    - title: Great, thanks\n      payload: /mood_great\n", 1),
        encoding="utf-8")
    out = root / "names"
    import_project(source, out, action_endpoint=f"http://127.0.0.1:{action_port}/webhook")
    train_bot(out)
    return out


@pytest.fixture(scope="session")
def action_server(rasa_bot: Path, action_port: int) -> Iterator[str]:
    """The project's own actions, unchanged, in rasa-sdk's action server (`python -m rasa_sdk`)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "rasa_sdk", "--actions", "actions", "--port", str(action_port)],
        cwd=rasa_bot / "rasa", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{action_port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                err = process.stderr.read().decode(errors="replace")[-2000:] if process.stderr else ""
                pytest.fail(f"the rasa-sdk action server did not start: {err}")
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest_asyncio.fixture(loop_scope="session")
async def served(rasa_bot: Path, action_server: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Any]:
    from channels.server import run_server
    from kefu.app import running_bot

    db = tmp_path_factory.mktemp("rasa-store") / "names.db"
    async with running_bot(rasa_bot, store_url=f"sqlite+aiosqlite:///{db}") as running, \
            run_server(running.engine, host="127.0.0.1", port=0) as server:
        yield running, server


async def _say(ws: Any, conversation_id: str | None, text: str) -> dict[str, Any]:
    message_id = uuid.uuid4().hex
    await ws.send(json.dumps({"type": "message", "conversation_id": conversation_id, "message_id": message_id,
                              "text": text}))
    while True:
        frame = json.loads(await ws.recv())
        if frame["type"] == "error":
            raise AssertionError(f"error frame: {frame}")
        if frame["type"] == "message" and frame.get("reply_to") == message_id:
            return frame  # type: ignore[no-any-return]


async def test_the_imported_form_runs_over_websocket_with_its_action_server(served: Any) -> None:
    running, server = served
    async with websockets.connect(server.ws_url) as ws:
        greet = await _say(ws, None, "hello there!")
        cid = greet["conversation_id"]
        assert greet["text"] == "Hey! How are you?"
        assert greet["buttons"] == [{"title": "Great, thanks", "payload": "/mood_great"}]
        assert (await _say(ws, cid, "i want to give you my name"))["text"] == "What is your first name?"
        assert (await _say(ws, cid, "Vincent"))["text"] == "What is your last name?"
        # validate_name_form (the project's FormValidationAction, over HTTP) cleans the name before it is stored
        done = await _say(ws, cid, "Mc-Vincent 2")
    assert done["text"] == "Ok. Thanks!\nI will remember that your name is Vincent McVincent!"
    conversation = await running.engine.get_conversation(cid)
    assert conversation.state == "idle" and conversation.slots["last_name"] == "McVincent"
    actions = [e.data["name"] for e in await running.engine.conversation_events(cid) if e.type == "action"]
    assert actions == ["utter_greet", "name_form", "name_form", "name_form", "utter_submit", "utter_slots_values"]


async def test_the_validation_action_can_refuse_a_value(served: Any) -> None:
    _, server = served
    async with websockets.connect(server.ws_url) as ws:
        asked = await _say(ws, None, "you need to know my name")
        assert asked["text"] == "What is your first name?"
        again = await _say(ws, asked["conversation_id"], "!!!")
    assert again["text"] == "That must've been a typo.\nWhat is your first name?"


async def test_the_imported_conversation_shows_in_the_ops_console(served: Any, tmp_path: Path) -> None:
    from channels.auth import hash_password
    from channels.ops import run_ops_server
    from kefu.console import Console

    running, server = served
    async with websockets.connect(server.ws_url) as ws:
        cid = (await _say(ws, None, "are you a bot?"))["conversation_id"]
    username = f"viewer-{uuid.uuid4().hex[:8]}"
    await running.engine.store.add_user(username, hash_password("viewer-password-1"), "viewer")
    console = Console(running.engine, {"en": tmp_path / "nlu.yml"})
    async with run_ops_server(console, port=0) as ops, httpx.AsyncClient(base_url=ops.url, timeout=30) as http:
        login = await http.post("/api/login", json={"username": username, "password": "viewer-password-1"},
                                headers={"Origin": ops.url})
        assert login.status_code == 200
        listed = (await http.get("/api/conversations")).json()["items"]
        assert cid in [c["id"] for c in listed]
        events = (await http.get(f"/api/conversations/{cid}/events")).json()
    assert "I am a bot, powered by Rasa." in [e["data"].get("text") for e in events["events"]]


@pytest.mark.browser
async def test_the_widget_talks_to_the_imported_bot(served: Any, browser: Any) -> None:
    running, server = served
    context = await browser.new_context(locale="en-US")
    page = await context.new_page()
    await page.goto(server.url + "/")
    await page.click("#kefu-launcher")
    await page.fill("#kefu-input", "are you a bot?")
    await page.press("#kefu-input", "Enter")
    final = page.locator(".kefu-msg.kefu-bot.kefu-final")
    await expect(final.last).to_have_text("I am a bot, powered by Rasa.", timeout=30_000)
    await page.fill("#kefu-input", "hello there!")
    await page.press("#kefu-input", "Enter")
    await expect(final).to_have_count(2, timeout=30_000)
    button = page.locator(".kefu-quick-reply", has_text="Great, thanks")
    await expect(button).to_be_visible()
    await button.click()  # sends the payload /mood_great: the story's next step, whatever the NLU would say
    await expect(final).to_have_count(3, timeout=30_000)
    await expect(final.last).to_have_text("Great, carry on!")
    await expect(page.locator(".kefu-msg.kefu-user").last).to_have_text("Great, thanks")  # the title, not the payload
    cid = await page.evaluate("window.KefuWidget.conversationId()")
    stored = [e.data["text"] for e in await running.engine.conversation_events(cid) if e.type == "user_message"]
    assert stored[-1] == "/mood_great"  # what was clicked, as the console shows it
    await page.reload()  # the history shows the click as the customer saw it
    if await page.locator("#kefu-panel").is_hidden():
        await page.click("#kefu-launcher")
    await expect(page.locator(".kefu-msg.kefu-user").last).to_have_text("Great, thanks", timeout=10_000)
    await context.close()
