"""The handler a channel server drives (dependency injection: the composition root implements it on top of the
dialogue engine; tests use small in-memory doubles)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from dialogue.types import ConversationSummary, Event, TurnReply

TokenCallback = Callable[[str], Awaitable[None]]


@runtime_checkable
class Backend(Protocol):
    """What :func:`channels.server.serve` needs from the bot.

    Exceptions raised by these methods are mapped to wire error codes by
    :func:`channels.protocol.error_code_for` (by class name: ``StoreUnavailable`` -> ``store_unavailable``,
    ``ConversationNotFound`` -> ``not_found``, anything else -> ``internal``); their text never reaches clients.
    """

    async def handle_message(
        self, conversation_id: str | None, message_id: str, text: str, on_token: TokenCallback
    ) -> TurnReply:
        """Run one turn. Call ``await on_token(delta)`` for each streamed fragment of the reply (optional; it
        applies back-pressure when the client reads slowly), then return the final reply. A ``message_id`` that
        was already processed must be answered from the store with ``replayed=True`` (deduplication)."""
        ...

    async def open_conversation(self, conversation_id: str | None, language: str | None = None) -> str:
        """Return ``conversation_id`` when it exists, else the id of a new conversation."""
        ...

    async def list_conversations(self, limit: int, offset: int) -> list[ConversationSummary]:
        """Conversations for the console, most recently updated first."""
        ...

    async def conversation_events(self, conversation_id: str) -> list[Event]:
        """All events of one conversation, in ``seq`` order."""
        ...
