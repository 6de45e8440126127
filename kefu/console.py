"""Glue for the ops console: :class:`Console` implements :class:`channels.backend.ConsoleBackend` over a running
``DialogueEngine`` and its store, plus the bot's training files (where corrections go).

The channels package knows nothing of the dialogue engine; this composition-root module is where they meet.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dialogue import staff_throttle
from dialogue.canned import CannedReply, CannedReplyNotFound, Rendered, render
from dialogue.errors import ConversationNotFound
from dialogue.staff_throttle import LoginAdmission
from dialogue.types import ConversationFilter, ConversationPage, ConversationSummary, DashboardStats, Event
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
    events only). Corrections are written one at a time (a lock) in a worker thread."""

    def __init__(self, engine: Any, training_files: Mapping[str, Path] | None = None) -> None:
        self.engine = engine
        self.training_files = dict(training_files or {})
        self._write_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"Console(languages={sorted(self.training_files)})"

    @property
    def store(self) -> Any:
        return self.engine.store

    # -- conversations ------------------------------------------------------------------------------------
    async def list_conversations(
        self, filter: ConversationFilter, limit: int, cursor: str | None
    ) -> ConversationPage:
        page: ConversationPage = await self.store.list_conversations(filter, limit=limit, cursor=cursor)
        return page

    async def summary(self, conversation_id: str) -> ConversationSummary | None:
        summary: ConversationSummary | None = await self.store.summary(conversation_id)
        return summary

    async def events(self, conversation_id: str, after_seq: int = 0) -> list[Event]:
        return list(await self.store.events(conversation_id, after_seq=after_seq))

    async def review(
        self,
        conversation_id: str,
        *,
        by: str,
        flagged: bool | None = None,
        reviewed: bool | None = None,
        add_tags: Sequence[str] = (),
        remove_tags: Sequence[str] = (),
    ) -> ConversationSummary:
        summary: ConversationSummary = await self.store.review(
            conversation_id, by=by, flagged=flagged, reviewed=reviewed, add_tags=add_tags, remove_tags=remove_tags
        )
        return summary

    async def correct(
        self,
        conversation_id: str,
        *,
        by: str,
        seq: int,
        text: str,
        intent: str,
        entities: Sequence[dict[str, Any]],
        language: str,
    ) -> tuple[Event, dict[str, Any]]:
        """Append the example to the training file first (a refused example records nothing), then the event."""
        from dialogue.review import add_training_example

        training: dict[str, Any] = {"added": False, "file": None, "conflicts": []}
        path = self.training_files.get(language)
        if path is not None:
            async with self._write_lock:
                example = await asyncio.to_thread(add_training_example, path, text, intent, list(entities))
            training = {"added": bool(example.added), "file": path.name, "conflicts": list(example.conflicts)}
        event: Event = await self.engine.correct(
            conversation_id, by=by, seq=seq, text=text, intent=intent, entities=list(entities)
        )
        return event, training

    async def scenario(self, conversation_id: str, name: str) -> str:
        from dialogue.review import export_scenario

        summary = await self.summary(conversation_id)
        events = await self.events(conversation_id)
        return export_scenario(events, name, language=summary.language if summary else None)

    def intents(self) -> Sequence[str]:
        return tuple(self.engine.parts.domain.intents)

    def entities(self) -> Sequence[str]:
        return tuple(self.engine.parts.domain.entities)

    # -- handoff --------------------------------------------------------------------------------------------
    async def handoff_queue(
        self, limit: int, filter: ConversationFilter | None = None
    ) -> list[ConversationSummary]:
        return list(await self.store.handoff_queue(limit, filter))

    # -- the inbox: assignment and unread (straight to the store, which checks the accounts) -----------------
    async def claim(self, conversation_id: str, agent: str) -> ConversationSummary:
        summary: ConversationSummary = await self.store.claim(conversation_id, agent)
        return summary

    async def assign(self, conversation_id: str, assignee: str | None, by: str) -> ConversationSummary:
        summary: ConversationSummary = await self.store.assign(conversation_id, assignee, by)
        return summary

    async def mark_seen(self, conversation_id: str, username: str, seq: int) -> bool:
        return bool(await self.store.mark_seen(conversation_id, username, seq))

    async def take_over(self, conversation_id: str, agent: str) -> ConversationSummary:
        summary: ConversationSummary = await self.engine.take_over(conversation_id, agent)
        return summary

    async def agent_message(self, conversation_id: str, agent: str, text: str, message_id: str) -> Event:
        event: Event = await self.engine.agent_message(conversation_id, agent, text, message_id)
        return event

    async def hand_back(self, conversation_id: str, agent: str) -> ConversationSummary:
        summary: ConversationSummary = await self.engine.hand_back(conversation_id, agent)
        return summary

    # -- resolution (the workspace) ----------------------------------------------------------------------------
    async def resolve(self, conversation_id: str, agent: str) -> ConversationSummary:
        """Resolve; a hand-off it ends restarts the bot's flow at its initial state, as a hand-back does."""
        summary: ConversationSummary = await self.store.resolve(
            conversation_id, agent, self.engine.parts.flows.initial_state
        )
        return summary

    async def reopen(self, conversation_id: str, agent: str) -> ConversationSummary:
        summary: ConversationSummary = await self.store.reopen(conversation_id, agent)
        return summary

    # -- internal notes and canned replies (straight to the store, which redacts and checks) -----------------
    async def add_note(self, conversation_id: str, agent: str, text: str) -> Event:
        event: Event = await self.store.add_note(conversation_id, agent, text)
        return event

    def languages(self) -> Sequence[str]:
        """The bot's languages: those its training files are chosen for (:func:`nlu_files` keys them by
        ``bot.yml`` ``languages``), else every language Kefu speaks."""
        return tuple(self.training_files) or SUPPORTED_LANGUAGES

    async def canned_replies(self, language: str | None = None) -> list[CannedReply]:
        return list(await self.store.list_canned_replies(language))

    async def add_canned_reply(self, language: str, title: str, text: str, created_by: str) -> CannedReply:
        reply: CannedReply = await self.store.add_canned_reply(
            language, title, text, created_by, languages=self.languages()
        )
        return reply

    async def update_canned_reply(self, reply_id: int, language: str, title: str, text: str) -> CannedReply:
        reply: CannedReply = await self.store.update_canned_reply(
            reply_id, language, title, text, languages=self.languages()
        )
        return reply

    async def delete_canned_reply(self, reply_id: int) -> bool:
        return bool(await self.store.delete_canned_reply(reply_id))

    async def render_canned_reply(self, conversation_id: str, reply_id: int) -> tuple[CannedReply, Rendered]:
        """Fill the reply from the conversation's slots as they are now (the snapshot row: no event replay)."""
        reply: CannedReply | None = await self.store.get_canned_reply(reply_id)
        if reply is None:
            raise CannedReplyNotFound("no such canned reply", operation="render_canned_reply")
        conversation = await self.store.get(conversation_id)
        if conversation is None:
            raise ConversationNotFound(conversation_id, operation="render_canned_reply")
        return reply, render(reply.text, conversation.slots)

    # -- dashboard ------------------------------------------------------------------------------------------
    async def dashboard(self, days: int) -> DashboardStats:
        stats: DashboardStats = await self.store.dashboard(days)
        return stats

    # -- accounts (straight to the store) -------------------------------------------------------------------
    async def add_user(self, username: str, password_hash: str, role: str) -> Any:
        return await self.store.add_user(username, password_hash, role)

    async def get_user(self, username: str) -> Any:
        return await self.store.get_user(username)

    async def list_users(self) -> Any:
        return await self.store.list_users()

    async def set_password(self, username: str, password_hash: str) -> Any:
        return await self.store.set_password(username, password_hash)

    async def set_role(self, username: str, role: str) -> Any:
        return await self.store.set_role(username, role)

    async def disable_user(self, username: str, disabled: bool = True) -> Any:
        return await self.store.disable_user(username, disabled)

    async def set_locale(self, username: str, locale: str | None) -> Any:
        return await self.store.set_locale(username, locale)

    async def erase_customer(self, user: str) -> Any:
        from dialogue.retention import delete_user

        return await delete_user(self.store, user)

    async def create_session(self, token_hash: str, user_id: int, csrf_token: str, expires_at: dt.datetime) -> Any:
        return await self.store.create_session(token_hash, user_id, csrf_token, expires_at)

    async def get_session(self, token_hash: str, now: dt.datetime) -> Any:
        return await self.store.get_session(token_hash, now)

    async def touch_session(self, token_hash: str, expires_at: dt.datetime) -> Any:
        return await self.store.touch_session(token_hash, expires_at)

    async def delete_session(self, token_hash: str) -> Any:
        return await self.store.delete_session(token_hash)

    async def purge_sessions(self, now: dt.datetime) -> Any:
        return await self.store.purge_sessions(now)

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
