"""Glue for the ops console: :class:`Console` implements :class:`channels.backend.ConsoleBackend` over a running
``DialogueEngine`` and its store, plus the bot's training files (where corrections go).

The channels package knows nothing of the dialogue engine; this composition-root module is where they meet. Most of
the console's operations are the store's or the engine's as they are (``channels.backend.ConsoleStore`` and
``ConsoleEngine``): those are forwarded by name, not restated here. What is left is what needs the bot itself.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from channels.backend import ENGINE_OPERATIONS, STORE_OPERATIONS
from dialogue import staff_throttle
from dialogue.canned import CannedReply, CannedReplyNotFound, Rendered, render
from dialogue.errors import ConversationNotFound
from dialogue.staff_throttle import LoginAdmission
from dialogue.store import ConversationStore
from dialogue.types import ConversationSummary
from kefu.config import Bot

SUPPORTED_LANGUAGES = ("en", "zh")  # bot.yml's languages may name these (kefu.config)


def nlu_files(bot: Bot) -> dict[str, Path]:
    """The training file a correction goes to, per language: the ``nlu_data`` file whose name ends in ``_<lang>``
    (``data/nlu_zh.yml``), else the first one (``data/nlu.yml``)."""
    files = [bot.path(p) for p in bot.config.nlu_data]
    chosen: dict[str, Path] = {}
    for language in bot.config.languages:
        match = [f for f in files if f.stem.endswith(f"_{language}")]
        plain = [f for f in files if not any(f.stem.endswith(f"_{lang}") for lang in bot.config.languages)]
        chosen[language] = (match or plain or files)[0]
    return chosen


class Console:
    """The ops server's backend (see the module docstring). ``training_files`` maps a conversation language to
    the Rasa ``nlu.yml`` that corrections of that language are appended to (``None``: corrections are recorded as
    events only). Corrections are written one at a time (a lock) in a worker thread. ``auto_assign``: route queued
    conversations to online agents round-robin (``bot.yml`` ``handoff.auto_assign``; off unless asked, so a console
    made for a test or a script never assigns on its own)."""

    def __init__(
        self, engine: Any, training_files: Mapping[str, Path] | None = None, *, auto_assign: bool = False
    ) -> None:
        self.engine = engine
        self.training_files = dict(training_files or {})
        self.auto_assign_enabled = auto_assign  # bot.yml handoff.auto_assign (kefu.config.HandoffSettings)
        self._write_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"Console(languages={sorted(self.training_files)})"

    def __getattr__(self, name: str) -> Any:
        """The store's and the engine's console operations, as they are (looked up on each call: a serving
        process may wrap the engine's store after this console was made)."""
        if name in STORE_OPERATIONS:
            return getattr(self.engine.store, name)
        if name in ENGINE_OPERATIONS:
            return getattr(self.engine, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def store(self) -> ConversationStore:
        return self.engine.store

    # -- the bot --------------------------------------------------------------------------------------------
    def intents(self) -> Sequence[str]:
        return tuple(self.engine.parts.domain.intents)

    def entities(self) -> Sequence[str]:
        return tuple(self.engine.parts.domain.entities)

    def languages(self) -> Sequence[str]:
        """The bot's languages: those its training files are chosen for (:func:`nlu_files` keys them by
        ``bot.yml`` ``languages``), else every language Kefu speaks."""
        return tuple(self.training_files) or SUPPORTED_LANGUAGES

    async def add_training_example(
        self, language: str, text: str, intent: str, entities: Sequence[Mapping[str, Any]]
    ) -> dict[str, Any]:
        """Append the example to the language's training file (:func:`dialogue.review.add_training_example`, in a
        worker thread, one at a time); a refused example raises ``ReviewError`` and leaves the file unchanged."""
        from dialogue.review import add_training_example

        path = self.training_files.get(language)
        if path is None:
            return {"added": False, "file": None, "conflicts": []}
        async with self._write_lock:
            example = await asyncio.to_thread(add_training_example, path, text, intent, list(entities))
        return {"added": bool(example.added), "file": path.name, "conflicts": list(example.conflicts)}

    async def resolve(self, conversation_id: str, agent: str) -> ConversationSummary:
        """Resolve; a hand-off it ends restarts the bot's flow at its initial state, as a hand-back does."""
        summary: ConversationSummary = await self.store.resolve(
            conversation_id, agent, self.engine.parts.flows.initial_state
        )
        return summary

    async def auto_assign(self, now: dt.datetime) -> list[tuple[str, str]]:
        """Route the queue round-robin (``Store.auto_assign``) when the bot's config asks for it; else nothing."""
        if not self.auto_assign_enabled:
            return []
        assigned: list[tuple[str, str]] = await self.store.auto_assign(now)
        return assigned

    async def render_canned_reply(self, conversation_id: str, reply_id: int) -> tuple[CannedReply, Rendered]:
        """Fill the reply from the conversation's slots as they are now (the snapshot row: no event replay)."""
        reply: CannedReply | None = await self.store.get_canned_reply(reply_id)
        if reply is None:
            raise CannedReplyNotFound("no such canned reply", operation="render_canned_reply")
        conversation = await self.store.get(conversation_id)
        if conversation is None:
            raise ConversationNotFound(conversation_id, operation="render_canned_reply")
        return reply, render(reply.text, conversation.slots)

    async def erase_customer(self, user: str) -> Any:
        from dialogue.retention import delete_user

        return await delete_user(self.store, user)

    # -- login throttling (in the store: every worker process shares it) ------------------------------------
    async def begin_login_attempt(
        self, keys: Sequence[str], now: dt.datetime, max_attempts: int, window: float
    ) -> LoginAdmission:
        return await staff_throttle.begin_attempt(self.store, keys, now, max_attempts=max_attempts, window=window)

    async def finish_login_attempt(
        self, admission: LoginAdmission, *, failed: bool, clear_keys: Sequence[str] = ()
    ) -> None:
        await staff_throttle.finish_attempt(self.store, admission, failed=failed, clear_keys=clear_keys)

    async def purge_login_attempts(self, before: dt.datetime) -> int:
        return await staff_throttle.purge(self.store, before)
