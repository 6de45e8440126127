"""What the channel servers drive (dependency injection: the composition root implements these on top of the dialogue
engine and its store; tests use small in-memory doubles or a real store).

* :class:`Backend`: the public chat server (:mod:`channels.server`). ``DialogueEngine`` implements it as is.
* :class:`ConsoleBackend`: the staff-only ops server (:mod:`channels.ops`). ``kefu.console.Console`` implements it:
  the store's and the engine's operations (:class:`ConsoleStore`, :class:`ConsoleEngine`) forwarded as they are,
  and what needs the bot (its intents, training files, flow) itself.
* :class:`AttachmentStore`: where the chat server keeps the files customers upload and reads the ones they download
  (``dialogue.store.Store`` implements it as is; the server finds it as its backend's ``store`` unless given one).
* :class:`AvatarStore`: where the chat server reads the staff pictures it serves (``GET /avatars/<sha256>``); found
  the same way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

from dialogue.canned import CannedReply, Rendered
from dialogue.handoff import AgentPresence
from dialogue.store.protocol import AttachmentStore, AvatarStore
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
from runtime.types import OnToken

if TYPE_CHECKING:
    from dialogue.staff_throttle import LoginAdmission

@runtime_checkable
class Backend(Protocol):
    """What :func:`channels.server.serve` needs from the bot.

    The server owns who may talk to a conversation (the resume secret, see :mod:`channels.protocol`): it reads
    the conversation with :meth:`get_conversation` to check a client's secret, and a conversation is created only
    by the first message of a session, with the id and secret hash the server issued (``create``).

    Exceptions raised by these methods are mapped to wire error codes by
    :func:`channels.protocol.error_code_for` (``StoreUnavailable`` -> ``store_unavailable``,
    ``ConversationNotFound`` -> ``not_found``, anything else -> ``internal``); their text never reaches clients.
    """

    async def handle_message(
        self,
        conversation_id: str | None,
        message_id: str,
        text: str,
        on_token: OnToken,
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


class ConsoleStore(AttachmentStore, AvatarStore, Protocol):
    """The console's reads and writes that the conversation store does as they are: same names, same signatures
    (``dialogue.store.Store`` has every one). The composition root hands these to the store unchanged
    (:data:`STORE_OPERATIONS`): no layer in between restates them.
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
    ) -> ConversationSummary:
        """Set the review flags and tags (a ``review`` event records who changed what)."""
        ...

    # -- the inbox and the hand-off desk ----------------------------------------------------------------------
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

    async def reopen(self, conversation_id: str, agent: str) -> ConversationSummary: ...

    async def add_note(self, conversation_id: str, agent: str, text: str) -> Event:
        """Record an internal note (a ``note`` event, redacted): staff only, never sent to the customer."""
        ...

    # -- canned replies -------------------------------------------------------------------------------------
    async def list_canned_replies(self, language: str | None = None) -> list[CannedReply]: ...

    async def add_canned_reply(
        self, language: str, title: str, text: str, created_by: str, *, languages: Sequence[str] = ()
    ) -> CannedReply:
        """Save a canned reply, checked against the bot's ``languages`` (``CannedReplyExists`` for a title taken
        in that language)."""
        ...

    async def update_canned_reply(
        self, reply_id: int, language: str, title: str, text: str, *, languages: Sequence[str] = ()
    ) -> CannedReply: ...

    async def delete_canned_reply(self, reply_id: int) -> bool: ...

    # -- attachments: AttachmentStore's (an agent's file: direction "agent", HandoffConflict unless they hold it) --

    # -- dashboard ------------------------------------------------------------------------------------------
    async def dashboard(self, days: int) -> DashboardStats: ...

    # -- accounts and sessions ------------------------------------------------------------------------------
    async def add_user(self, username: str, password_hash: str, role: str) -> User: ...

    async def get_user(self, username: str) -> User | None: ...

    async def list_users(self) -> list[User]: ...

    async def set_password(self, username: str, password_hash: str) -> Any: ...

    async def set_role(self, username: str, role: str) -> Any: ...

    async def disable_user(self, username: str, disabled: bool = True) -> Any: ...

    async def set_locale(self, username: str, locale: str | None) -> User:
        """Remember the console language the staff member chose (``None``: follow the browser)."""
        ...

    # -- the signed-in staff member's profile: what customers see of them (get_avatar: AvatarStore's) ------------
    async def set_display_name(self, username: str, display_name: str | None) -> User:
        """Set the name customers see (``None``: the username again)."""
        ...

    async def set_avatar(self, username: str, content_type: str, data: bytes) -> User:
        """Replace the picture customers see (bytes already checked by :mod:`channels.uploads`)."""
        ...

    async def clear_avatar(self, username: str) -> User: ...

    # -- presence (online / away / offline, and when the console was last seen) ------------------------------
    async def set_agent_status(self, username: str, status: str) -> AgentPresence:
        """Remember the status an agent chose in the header; only ``online`` is staffed and auto-assigned."""
        ...

    async def touch_presence(self, username: str, now: dt.datetime) -> bool:
        """The agent's console was seen at ``now`` (called at most every few seconds per worker)."""
        ...

    async def agent_presence(self, username: str) -> AgentPresence | None: ...

    async def team_presence(self) -> list[AgentPresence]:
        """Every enabled agent's and admin's presence (the assign menu says who is away or offline)."""
        ...

    async def create_session(self, token_hash: str, user_id: int, csrf_token: str, expires_at: dt.datetime) -> Any: ...

    async def get_session(self, token_hash: str, now: dt.datetime) -> tuple[Session, User] | None: ...

    async def touch_session(self, token_hash: str, expires_at: dt.datetime) -> Any: ...

    async def delete_session(self, token_hash: str) -> Any: ...

    async def purge_sessions(self, now: dt.datetime) -> Any: ...


class ConsoleEngine(Protocol):
    """Staff steps on a live conversation that the dialogue engine does as they are (``DialogueEngine`` has every
    one, same names, same signatures): they change what the customer's widget shows or what the bot does next.
    The composition root hands these to the engine unchanged (:data:`ENGINE_OPERATIONS`).
    """

    async def take_over(self, conversation_id: str, agent: str) -> ConversationSummary: ...

    async def agent_message(self, conversation_id: str, agent: str, text: str, message_id: str) -> Event: ...

    async def hand_back(self, conversation_id: str, agent: str) -> ConversationSummary: ...

    async def correct(
        self,
        conversation_id: str,
        *,
        by: str,
        seq: int,
        text: str,
        intent: str,
        entities: Sequence[Mapping[str, Any]] = (),
    ) -> Event:
        """Record a reviewer's corrected parse of the customer message at ``seq`` (a ``correction`` event, its
        text redacted). The training data is :meth:`ConsoleBackend.add_training_example`'s."""
        ...


@runtime_checkable
class ConsoleBackend(ConsoleStore, ConsoleEngine, Protocol):
    """What :mod:`channels.ops` needs: the store's and the engine's console operations as they are (the two bases),
    and what needs the bot itself: its intents, entities and languages, its training files, its flow's start.

    Errors are mapped to HTTP statuses by exception class (``channels.ops.api.ERROR_STATUS``: the dialogue layer's
    errors); their text never reaches the browser.
    """

    # -- the bot ---------------------------------------------------------------------------------------------
    def intents(self) -> Sequence[str]:
        """The bot's intents (what a correction may choose)."""
        ...

    def entities(self) -> Sequence[str]:
        """The bot's entity names."""
        ...

    def languages(self) -> Sequence[str]:
        """The bot's languages (what a canned reply may be written in)."""
        ...

    async def add_training_example(
        self, language: str, text: str, intent: str, entities: Sequence[Mapping[str, Any]]
    ) -> dict[str, Any]:
        """Add a corrected example to the bot's training file for ``language`` (nothing when it has none) and
        say what happened, JSON-ready: ``{"added", "file", "conflicts"}``. Raises ``ReviewError`` (the file is then
        unchanged) when the example cannot be written; called before :meth:`correct`, so such a correction records
        nothing."""
        ...

    async def resolve(self, conversation_id: str, agent: str) -> ConversationSummary:
        """Resolve; a hand-off it ends restarts the bot's flow at its initial state (as a hand-back does)."""
        ...

    async def render_canned_reply(self, conversation_id: str, reply_id: int) -> tuple[CannedReply, Rendered]:
        """The canned reply filled from the conversation's current slots (:func:`dialogue.canned.render`)."""
        ...

    async def auto_assign(self, now: dt.datetime) -> list[tuple[str, str]]:
        """Give waiting, unassigned conversations to online agents, round-robin, in one transaction
        (``Store.auto_assign``) when the bot's config enables it (``bot.yml`` ``handoff.auto_assign``); else
        nothing. Returns ``[(conversation id, username)]``; the console's queue feed calls it (see
        :class:`channels.ops.desk.QueueFeed`)."""
        ...

    async def erase_customer(self, user: str) -> Any:
        """Delete every conversation whose sender is ``user``; returns a report with ``conversations`` and
        ``rows`` (per table)."""
        ...

    # Login throttling, shared by every worker through the database (dialogue.staff_throttle).
    async def begin_login_attempt(
        self, keys: Sequence[str], now: dt.datetime, max_attempts: int, window: float
    ) -> LoginAdmission: ...

    async def finish_login_attempt(
        self, admission: LoginAdmission, *, failed: bool, clear_keys: Sequence[str] = ()
    ) -> None: ...

    async def purge_login_attempts(self, before: dt.datetime) -> int: ...


def _operations(protocol: type) -> frozenset[str]:
    """The public methods a protocol declares, its protocol bases' included."""
    bases = [c for c in protocol.__mro__ if c not in (object, Protocol) and getattr(c, "_is_protocol", False)]
    return frozenset(name for c in bases for name, value in vars(c).items()
                     if callable(value) and not name.startswith("_"))


#: The names a console backend forwards to the store / the engine unchanged.
STORE_OPERATIONS: Final = _operations(ConsoleStore)
ENGINE_OPERATIONS: Final = _operations(ConsoleEngine)
