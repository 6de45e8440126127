"""Fixtures for the channel layer: a free port, an in-memory echo backend, a running server, a headless browser,
and the ops console over a real store with a model-free bot (:func:`console_env`).

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
from dialogue.errors import AlreadyRated, ConversationNotFound, InvalidQuery, NotResolved
from dialogue.types import (
    ACTION,
    AGENT_MESSAGE,
    BOT_MESSAGE,
    HANDBACK,
    NLU_PARSE,
    RATING,
    REOPENED,
    RESOLVED,
    TAKEOVER,
    USER_MESSAGE,
    Conversation,
    Event,
    NewConversation,
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
    store does; creates a conversation on its first message as ``create`` says (id, secret hash, language,
    sender), like the engine. ``gate`` (an Event) holds turns until set; ``fail`` makes the next turns raise it.
    Resolution and rating follow the store's rules: :meth:`resolve` (a simulated agent) opens a resolution,
    :meth:`rate` is refused unless one is open and unrated, and a customer message reopens it."""

    def __init__(self, token_delay: float = 0.0) -> None:
        self.token_delay = token_delay
        self.conversations: dict[str, dict[str, Any]] = {}
        self.replies: dict[tuple[str, str], TurnReply] = {}
        self.gate: asyncio.Event | None = None
        self.fail: BaseException | None = None
        self.started: list[str] = []  # message ids, in the order turns started
        self.handoff: dict[str, str] = {}  # conversation id -> "agent" while a (simulated) agent holds it
        self.resolutions: dict[str, int | None] = {}  # id -> the resolution's score (None: unrated) while resolved

    def _new(self, create: NewConversation | None = None) -> str:
        conversation_id = create.id if create is not None else uuid.uuid4().hex
        now = dt.datetime.now(dt.UTC)
        self.conversations[conversation_id] = {
            "language": (create.language if create else None) or "en",
            "events": [],
            "created_at": now,
            "updated_at": now,
            "turns": 0,
            "secret_hash": create.secret_hash if create else None,
            "sender": create.sender if create else None,
        }
        return conversation_id

    async def get_conversation(self, conversation_id: str) -> Conversation | None:
        conv = self.conversations.get(conversation_id)
        if conv is None:
            return None
        return Conversation(
            conversation_id, "idle", {}, conv["language"], conv["turns"], conversation_id in self.handoff, 0,
            conv["created_at"], conv["updated_at"], sender=conv["sender"], secret_hash=conv["secret_hash"],
        )

    def _event(self, conversation_id: str, type_: str, data: dict[str, Any], message_id: str | None) -> None:
        conv = self.conversations[conversation_id]
        events: list[Event] = conv["events"]
        events.append(
            Event(conversation_id, len(events) + 1, conv["turns"], type_, data, dt.datetime.now(dt.UTC), message_id)
        )
        conv["updated_at"] = dt.datetime.now(dt.UTC)

    async def handle_message(
        self,
        conversation_id: str | None,
        message_id: str,
        text: str,
        on_token: Callable[[str], Awaitable[None]],
        *,
        create: NewConversation | None = None,
    ) -> TurnReply:
        if conversation_id is None or conversation_id not in self.conversations:
            conversation_id = self._new(create)
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
        if conversation_id in self.resolutions:  # the customer wrote again: reopened
            del self.resolutions[conversation_id]
            self._event(conversation_id, REOPENED, {"agent": None, "reason": "customer"}, None)
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

    # A simulated human agent (what the ops console does through the real engine).
    def take_over(self, conversation_id: str, agent: str = "amy") -> None:
        self.handoff[conversation_id] = "agent"
        self._event(conversation_id, TAKEOVER, {"agent": agent}, None)

    def agent_say(self, conversation_id: str, text: str, agent: str = "amy") -> str:
        message_id = "agent-" + uuid.uuid4().hex
        self._event(conversation_id, AGENT_MESSAGE, {"text": text, "agent": agent, "message_id": message_id}, message_id)
        return message_id

    def hand_back(self, conversation_id: str, agent: str = "amy") -> None:
        self.handoff.pop(conversation_id, None)
        self._event(conversation_id, HANDBACK, {"agent": agent}, None)

    def resolve(self, conversation_id: str, agent: str = "amy") -> None:
        """Staff resolve it (a hand-off ends with it, as in the store); resolving a resolved one changes nothing."""
        if conversation_id in self.resolutions:
            return
        if self.handoff.pop(conversation_id, None) is not None:
            self._event(conversation_id, HANDBACK, {"agent": agent}, None)
        self._event(conversation_id, RESOLVED, {"agent": agent}, None)
        self.resolutions[conversation_id] = None

    async def rate(self, conversation_id: str, score: int, comment: str | None) -> None:
        """The customer's rating, once per resolution: ``NotResolved`` unless :meth:`resolve` opened one (and no
        message reopened it since), ``AlreadyRated`` for a second one; the comment is redacted like the store's."""
        from safety.pii import redact_verbatim

        if conversation_id not in self.conversations:
            raise ConversationNotFound(conversation_id, operation="rate")
        if isinstance(score, bool) or not 1 <= score <= 5:
            raise InvalidQuery("a rating is an integer score 1..5", operation="rate", conversation_id=conversation_id)
        if conversation_id not in self.resolutions:
            raise NotResolved("the conversation is not resolved", operation="rate", conversation_id=conversation_id)
        if self.resolutions[conversation_id] is not None:
            raise AlreadyRated("this resolution is already rated", operation="rate", conversation_id=conversation_id)
        text = redact_verbatim(comment)[0] if comment else None
        self._event(conversation_id, RATING, {"score": score, "comment": text}, None)
        self.resolutions[conversation_id] = score

    async def events_after(self, conversation_id: str, seq: int) -> list[Event]:
        conv = self.conversations.get(conversation_id)
        return [e for e in conv["events"] if e.seq > seq] if conv else []

    async def handoff_statuses(self, conversation_ids: Any) -> dict[str, str]:
        unrated = [cid for cid in conversation_ids if cid in self.resolutions and self.resolutions[cid] is None]
        statuses = dict.fromkeys(unrated, "resolved")
        return statuses | {cid: self.handoff[cid] for cid in conversation_ids if cid in self.handoff}

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


# ---------------------------------------------------------------------------------------------- ops console
SHOP = Path(__file__).resolve().parents[2] / "examples" / "shop"
PASSWORDS = {"viewer": "viewer-password-1", "agent": "agent-password-1", "admin": "admin-password-1"}
_HASHES: dict[str, str] = {}


def password_hashes() -> dict[str, str]:
    """argon2 hashes of :data:`PASSWORDS`, computed once per test session (each costs tens of ms)."""
    if not _HASHES:
        from channels.auth import hash_password

        _HASHES.update({role: hash_password(pw) for role, pw in PASSWORDS.items()})
    return _HASHES


class KeywordNLU:
    """A model-free parser for console tests: a few keywords decide the intent, 5-digit numbers are order ids.
    Anything else is out of scope with a low confidence (two of those in a row queue the conversation)."""

    RULES = (
        ("complain", "complaint"),
        ("return", "return_request"),
        ("order", "order_status"),
        ("hello", "greet"),
        ("thank", "thanks"),
    )

    def parse(self, text: str) -> Any:
        import re

        from nlu.types import Entity, Parse

        lowered = text.lower()
        intent, confidence = "out_of_scope", 0.31
        for keyword, name in self.RULES:
            if keyword in lowered:
                intent, confidence = name, 0.93
                break
        entities = tuple(Entity("order_id", m.group(), m.start(), m.end()) for m in re.finditer(r"\b\d{5}\b", text))
        if entities and intent == "out_of_scope":
            intent, confidence = "inform", 0.88
        return Parse(text=text, intent=intent, confidence=confidence, entities=entities,
                     ranking=((intent, confidence), ("greet", round(1 - confidence, 4))), language="en")


class StubActions:
    """Custom actions without the shop's database or knowledge base."""

    async def run(self, action_name: str, call_payload: dict[str, Any]) -> Any:
        from dialogue.types import ActionResult

        if action_name == "action_handoff":
            return ActionResult(responses=[("utter_handoff", {})], handoff=True)
        if action_name == "action_order_status":
            return ActionResult(responses=[("utter_order_status", {"status": "shipped", "eta": "tomorrow"})])
        return ActionResult(responses=[("utter_fallback", {})])


def light_engine(store: Any) -> Any:
    """A real ``DialogueEngine`` on the demo shop's domain and flows, with model-free NLU, actions and templates."""
    from dialogue.engine import BotParts, DialogueEngine
    from policy import FSMPolicy
    from runtime.nlg import NLG
    from runtime.templates import Templates
    from safety.filters import InputFilter
    from tests.conftest import shop_dialogue

    domain, flows = shop_dialogue()
    parts = BotParts(
        domain=domain, flows=flows, policy=FSMPolicy(flows.default_policy), nlu=KeywordNLU(), actions=StubActions(),
        input_filter=InputFilter(), confidence_threshold=0.5,
    )
    return DialogueEngine(parts, store, NLG(Templates.from_domain(domain.raw), None, mode="template"))


@dataclasses.dataclass
class ConsoleEnv:
    """A real store (SQLite file), the light engine on it, the console backend, and one account per role
    (username = role, password in :data:`PASSWORDS`). Corrections go to copies of the shop's nlu files."""

    store: Any
    engine: Any
    console: Any
    nlu_files: dict[str, Path]

    async def chat(self, *texts: str, conversation_id: str | None = None) -> str:
        """Run customer turns through the engine; returns the conversation id."""
        for text in texts:
            reply = await self.engine.handle_message(conversation_id, uuid.uuid4().hex, text)
            conversation_id = reply.conversation_id
        assert conversation_id is not None
        return conversation_id


@pytest_asyncio.fixture(loop_scope="session")
async def console_env(tmp_path: Path) -> AsyncIterator[ConsoleEnv]:
    import shutil

    from dialogue.store import Store
    from kefu.console import Console

    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'console.db'}")
    try:
        engine = light_engine(store)
        files = {"en": tmp_path / "nlu.yml", "zh": tmp_path / "nlu_zh.yml"}
        shutil.copy(SHOP / "data" / "nlu.yml", files["en"])
        shutil.copy(SHOP / "data" / "nlu_zh.yml", files["zh"])
        for role, password_hash in password_hashes().items():
            await store.add_user(role, password_hash, role)
        yield ConsoleEnv(store, engine, Console(engine, files), files)
    finally:
        await store.close()


@pytest_asyncio.fixture(loop_scope="session")
async def servers(console_env: ConsoleEnv) -> AsyncIterator[tuple[Server, Any]]:
    """The chat server and the staff console on ``console_env``'s engine, sharing one typing board (as ``kefu
    serve`` does): what the browser tests of the widget and the console run against."""
    from channels.ops import run_ops_server
    from channels.presence import TypingBoard

    board = TypingBoard()
    async with run_server(console_env.engine, port=0, options=ServerOptions(push_interval=0.2), typing=board) as chat, \
            run_ops_server(console_env.console, port=0, typing=board) as ops:
        yield chat, ops
