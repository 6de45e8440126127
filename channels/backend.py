"""What the channel servers drive (dependency injection: the composition root implements these on top of the dialogue
engine and its store; tests use small in-memory doubles or a real store).

* :class:`Backend`: the public chat server (:mod:`channels.server`). ``DialogueEngine`` implements it as is.
* :class:`ConsoleBackend`: the staff-only ops server (:mod:`channels.ops`). ``kefu.app.Console`` implements it over
  the engine and its store.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from dialogue.canned import CannedReply, Rendered
from dialogue.types import (
    Conversation,
    ConversationFilter,
    ConversationPage,
    ConversationSummary,
    DashboardStats,
    Event,
    NewConversation,
    Session,
    TurnReply,
    User,
)

if TYPE_CHECKING:
    from dialogue.staff_throttle import LoginAdmission

TokenCallback = Callable[[str], Awaitable[None]]


@runtime_checkable
class Backend(Protocol):
    """What :func:`channels.server.serve` needs from the bot.

    The server owns who may talk to a conversation (the resume secret, see :mod:`channels.protocol`): it reads
    the conversation with :meth:`get_conversation` to check a client's secret, and a conversation is created only
    by the first message of a session, with the id and secret hash the server issued (``create``).

    Exceptions raised by these methods are mapped to wire error codes by
    :func:`channels.protocol.error_code_for` (by class name: ``StoreUnavailable`` -> ``store_unavailable``,
    ``ConversationNotFound`` -> ``not_found``, anything else -> ``internal``); their text never reaches clients.
    """

    async def handle_message(
        self,
        conversation_id: str | None,
        message_id: str,
        text: str,
        on_token: TokenCallback,
        *,
        create: NewConversation | None = None,
    ) -> TurnReply:
        """Run one turn. Call ``await on_token(delta)`` for each streamed fragment of the reply (optional; it
        applies back-pressure when the client reads slowly), then return the final reply. A ``message_id`` that
        was already processed must be answered from the store with ``replayed=True`` (deduplication). While a
        human agent holds the conversation the reply has ``text=""`` and ``handed_off=True``. When the
        conversation does not exist, create it exactly as ``create`` says (id, secret hash, language, sender),
        idempotently: two first messages racing for one id make one conversation."""
        ...

    async def get_conversation(self, conversation_id: str) -> Conversation | None:
        """The conversation's row (its ``secret_hash`` and ``sender`` decide who may resume it), or ``None``."""
        ...

    async def conversation_events(self, conversation_id: str) -> list[Event]:
        """All events of one conversation, in ``seq`` order."""
        ...

    async def events_after(self, conversation_id: str, seq: int) -> list[Event]:
        """Events with ``seq`` greater than ``seq``, in order: how agent messages reach the customer's socket."""
        ...

    async def handoff_statuses(self, conversation_ids: Sequence[str]) -> dict[str, str]:
        """``{conversation_id: handoff_status}`` for those of ``conversation_ids`` that are handed off
        (``'waiting'`` or ``'agent'``), or resolved and still to be rated (``'resolved'``); the others are left
        out. One query for many open sockets."""
        ...

    async def rate(self, conversation_id: str, score: int, comment: str | None) -> Any:
        """Store the customer's rating of the resolved conversation (score 1..5, optional comment). Raises
        ``NotResolved`` / ``AlreadyRated`` (wire codes ``not_resolved`` / ``already_rated``) or ``InvalidQuery``
        (``bad_frame``)."""
        ...


@runtime_checkable
class ConsoleBackend(Protocol):
    """What :mod:`channels.ops` needs: conversations for review, the handoff desk, the dashboard, staff accounts.

    Errors are mapped to HTTP statuses by class name (see ``channels.ops.ERROR_STATUS``); their text never reaches
    the browser.
    """

    # -- conversations ------------------------------------------------------------------------------------
    async def list_conversations(
        self, filter: ConversationFilter, limit: int, cursor: str | None
    ) -> ConversationPage: ...

    async def summary(self, conversation_id: str) -> ConversationSummary | None: ...

    async def events(self, conversation_id: str, after_seq: int = 0) -> list[Event]: ...

    async def review(
        self,
        conversation_id: str,
        *,
        by: str,
        flagged: bool | None = None,
        reviewed: bool | None = None,
        add_tags: Sequence[str] = (),
        remove_tags: Sequence[str] = (),
    ) -> ConversationSummary: ...

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
        """Add the corrected example to the bot's training data and record a CORRECTION event; returns the event
        and what happened to the training data (JSON-ready: ``{"added", "file", "conflicts"}``)."""
        ...

    async def scenario(self, conversation_id: str, name: str) -> str:
        """The conversation as a scenario YAML that ``kefu scenarios run`` replays."""
        ...

    def intents(self) -> Sequence[str]:
        """The bot's intents (what a correction may choose)."""
        ...

    def entities(self) -> Sequence[str]:
        """The bot's entity names."""
        ...

    # -- handoff --------------------------------------------------------------------------------------------
    async def handoff_queue(
        self, limit: int, filter: ConversationFilter | None = None
    ) -> list[ConversationSummary]: ...

    async def claim(self, conversation_id: str, agent: str) -> ConversationSummary:
        """Assign an unassigned conversation to ``agent`` (``HandoffConflict`` when a colleague has it)."""
        ...

    async def assign(self, conversation_id: str, assignee: str | None, by: str) -> ConversationSummary:
        """Assign to an agent/admin account (``InvalidQuery`` for any other name; ``None`` unassigns)."""
        ...

    async def mark_seen(self, conversation_id: str, username: str, seq: int) -> bool:
        """The assignee has seen the conversation up to ``seq`` (clears its unread marker)."""
        ...

    async def take_over(self, conversation_id: str, agent: str) -> ConversationSummary: ...

    async def agent_message(self, conversation_id: str, agent: str, text: str, message_id: str) -> Event: ...

    async def hand_back(self, conversation_id: str, agent: str) -> ConversationSummary: ...

    # -- resolution -----------------------------------------------------------------------------------------
    async def resolve(self, conversation_id: str, agent: str) -> ConversationSummary: ...

    async def reopen(self, conversation_id: str, agent: str) -> ConversationSummary: ...

    # -- internal notes and canned replies ------------------------------------------------------------------
    async def add_note(self, conversation_id: str, agent: str, text: str) -> Event:
        """Record an internal note (a ``note`` event, redacted): staff only, never sent to the customer."""
        ...

    def languages(self) -> Sequence[str]:
        """The bot's languages (what a canned reply may be written in)."""
        ...

    async def canned_replies(self, language: str | None = None) -> list[CannedReply]: ...

    async def add_canned_reply(self, language: str, title: str, text: str, created_by: str) -> CannedReply: ...

    async def update_canned_reply(self, reply_id: int, language: str, title: str, text: str) -> CannedReply: ...

    async def delete_canned_reply(self, reply_id: int) -> bool: ...

    async def render_canned_reply(self, conversation_id: str, reply_id: int) -> tuple[CannedReply, Rendered]:
        """The canned reply filled from the conversation's current slots (:func:`dialogue.canned.render`)."""
        ...

    # -- dashboard ------------------------------------------------------------------------------------------
    async def dashboard(self, days: int) -> DashboardStats: ...

    # -- accounts -------------------------------------------------------------------------------------------
    async def add_user(self, username: str, password_hash: str, role: str) -> User: ...

    async def get_user(self, username: str) -> User | None: ...

    async def list_users(self) -> list[User]: ...

    async def set_password(self, username: str, password_hash: str) -> Any: ...

    async def set_role(self, username: str, role: str) -> Any: ...

    async def disable_user(self, username: str, disabled: bool = True) -> Any: ...

    async def set_locale(self, username: str, locale: str | None) -> Any:
        """Remember the console language the staff member chose (``None``: follow the browser)."""
        ...

    async def erase_customer(self, user: str) -> Any:
        """Delete every conversation whose sender is ``user``; returns a report with ``conversations`` and
        ``rows`` (per table)."""
        ...

    async def create_session(self, token_hash: str, user_id: int, csrf_token: str, expires_at: dt.datetime) -> Any: ...

    async def get_session(self, token_hash: str, now: dt.datetime) -> tuple[Session, User] | None: ...

    async def touch_session(self, token_hash: str, expires_at: dt.datetime) -> Any: ...

    async def delete_session(self, token_hash: str) -> None: ...

    async def purge_sessions(self, now: dt.datetime) -> Any: ...

    # Login throttling, shared by every worker through the database (dialogue.staff_throttle).
    async def begin_login_attempt(
        self, keys: Sequence[str], now: dt.datetime, max_attempts: int, window: float
    ) -> LoginAdmission: ...

    async def finish_login_attempt(
        self, admission: LoginAdmission, *, failed: bool, clear_keys: Sequence[str] = ()
    ) -> None: ...

    async def purge_login_attempts(self, before: dt.datetime) -> int: ...
