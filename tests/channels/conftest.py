"""Fixtures for the channel layer: a free port, an in-memory echo backend, a running server, a headless browser.

Async fixtures are function-scoped but run on the session event loop, like the suite's tests
(``asyncio_default_test_loop_scope = "session"``; the test modules also pin ``loop_scope="session"``).

Reusable elsewhere (e.g. a full-stack test with the real bot)::

    from tests.channels.conftest import CHROMIUM, free_port, launch_browser
    pytest_plugins = ...  # or: from tests.channels.conftest import browser  (re-export the fixture)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from channels.server import Server, ServerOptions, run_server
from dialogue.errors import ConversationNotFound
from dialogue.types import (
    ACTION,
    BOT_MESSAGE,
    NLU_PARSE,
    USER_MESSAGE,
    ConversationSummary,
    Event,
    TurnReply,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (for servers that must be restarted on the same port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------------------------------------ echo backend
class EchoBackend:
    """An honest in-memory :class:`channels.backend.Backend` for channel tests: replies with the upper-cased text,
    streamed word by word; deduplicates by message id (replays the stored reply); records events like the real
    store does. ``gate`` (an Event) holds turns until set; ``fail`` makes the next turns raise it."""

    def __init__(self, token_delay: float = 0.0) -> None:
        self.token_delay = token_delay
        self.conversations: dict[str, dict[str, Any]] = {}
        self.replies: dict[tuple[str, str], TurnReply] = {}
        self.gate: asyncio.Event | None = None
        self.fail: BaseException | None = None
        self.started: list[str] = []  # message ids, in the order turns started

    def _new(self, language: str | None) -> str:
        conversation_id = uuid.uuid4().hex
        now = dt.datetime.now(dt.UTC)
        self.conversations[conversation_id] = {
            "language": language or "en",
            "events": [],
            "created_at": now,
            "updated_at": now,
            "turns": 0,
        }
        return conversation_id

    def _event(self, conversation_id: str, type_: str, data: dict[str, Any], message_id: str | None) -> None:
        conv = self.conversations[conversation_id]
        events: list[Event] = conv["events"]
        events.append(
            Event(conversation_id, len(events) + 1, conv["turns"], type_, data, dt.datetime.now(dt.UTC), message_id)
        )
        conv["updated_at"] = dt.datetime.now(dt.UTC)

    async def open_conversation(self, conversation_id: str | None, language: str | None = None) -> str:
        if conversation_id is not None and conversation_id in self.conversations:
            return conversation_id
        return self._new(language)

    async def handle_message(
        self, conversation_id: str | None, message_id: str, text: str, on_token: Callable[[str], Awaitable[None]]
    ) -> TurnReply:
        if conversation_id is None or conversation_id not in self.conversations:
            conversation_id = self._new(None)
        done = self.replies.get((conversation_id, message_id))
        if done is not None:
            return dataclasses.replace(done, replayed=True)
        self.started.append(message_id)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        conv = self.conversations[conversation_id]
        conv["turns"] += 1
        self._event(conversation_id, USER_MESSAGE, {"text": text, "message_id": message_id}, message_id)
        self._event(conversation_id, NLU_PARSE, {"intent": "echo", "confidence": 1.0, "entities": []}, None)
        self._event(conversation_id, ACTION, {"name": "utter_echo", "allowed": ["utter_echo"]}, None)
        reply_text = text.upper()
        words = reply_text.split(" ")
        for i, word in enumerate(words):
            if self.token_delay:
                await asyncio.sleep(self.token_delay)
            await on_token(word if i == 0 else " " + word)
        bot_id = uuid.uuid4().hex
        reply = TurnReply(
            conversation_id=conversation_id,
            message_id=bot_id,
            reply_to=message_id,
            text=reply_text,
            intent="echo",
            confidence=1.0,
            action="utter_echo",
            quick_replies=("thanks",) if "HELP" in reply_text else (),
        )
        self._event(
            conversation_id, BOT_MESSAGE, {"text": reply_text, "message_id": bot_id, "reply_to": message_id}, bot_id
        )
        self.replies[(conversation_id, message_id)] = reply
        return reply

    async def list_conversations(self, limit: int, offset: int) -> list[ConversationSummary]:
        rows = sorted(self.conversations.items(), key=lambda kv: kv[1]["updated_at"], reverse=True)
        return [
            ConversationSummary(
                id=cid,
                language=c["language"],
                turn_count=c["turns"],
                handed_off=False,
                state="open",
                created_at=c["created_at"],
                updated_at=c["updated_at"],
                last_intent="echo" if c["turns"] else None,
            )
            for cid, c in rows[offset : offset + limit]
        ]

    async def conversation_events(self, conversation_id: str) -> list[Event]:
        conv = self.conversations.get(conversation_id)
        if conv is None:
            raise ConversationNotFound(conversation_id, operation="conversation_events")
        return list(conv["events"])


@pytest.fixture
def backend() -> EchoBackend:
    return EchoBackend()


@pytest_asyncio.fixture(loop_scope="session")
async def server(backend: EchoBackend) -> AsyncIterator[Server]:
    """A real server on an ephemeral port, driving :class:`EchoBackend` (small limits to make tests quick)."""
    async with run_server(backend, port=0, options=ServerOptions(max_pending=3, turn_timeout=5.0)) as srv:
        yield srv


# ---------------------------------------------------------------------------------------------------- browser
@contextlib.asynccontextmanager
async def launch_browser() -> AsyncIterator[Any]:
    """Debian's headless Chromium driven by Playwright's async API (skips when it is not installed)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:  # pragma: no cover - dev dependency
        pytest.skip("playwright (python) is not installed")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest_asyncio.fixture(loop_scope="session")
async def browser() -> AsyncIterator[Any]:
    """A headless Chromium ``playwright.async_api.Browser`` (one per test)."""
    async with launch_browser() as b:
        yield b
