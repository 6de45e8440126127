"""``ConversationStore``: the interface of the conversation store, as its callers see it.

The dialogue engine, the ops console, the chat server, retention and the login throttle type the store they are
given as this protocol rather than as the concrete :class:`dialogue.store.Store`: it says in one place what they
may call (every public method, grouped by concern as the implementation is), and a test double or a proxy that
has these methods type-checks without inheriting from the SQLAlchemy implementation. The methods' full contracts
(what they raise, what they redact, what moves ``version``) are documented on :class:`dialogue.store.Store`'s
modules; each line here names its behaviour in brief. Creating a store (:meth:`Store.open`) is not part of it: a
caller receives an open store.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from dialogue.canned import CannedReply
from dialogue.handoff import PRESENCE_TIMEOUT, AgentPresence
from dialogue.types import (
    Conversation,
    ConversationFilter,
    ConversationPage,
    ConversationSummary,
    DashboardStats,
    Event,
    NewEvent,
    Session,
    TurnUpdate,
    User,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from dialogue.store.attachments import Attachment

__all__ = ["AttachmentStore", "AvatarStore", "ConversationStore"]


@runtime_checkable
class AttachmentStore(Protocol):
    """The store's attachment operations, a part of :class:`ConversationStore` on its own: the chat server stores a
    customer's checked upload (``channels.uploads``) and reads a file back for a download (its ``Backend``, which the
    dialogue engine implements, has no files: no turn, no NLU, no reply), and the console an agent's."""

    async def add_attachment(
        self,
        conversation_id: str,
        *,
        direction: str,
        filename: str,
        content_type: str,
        data: bytes,
        uploader: str | None = None,
        message_id: str | None = None,
    ) -> tuple[Attachment, Event]:
        """Store a file and its ``attachment`` event (``ConversationNotFound`` before the conversation exists;
        the same ``message_id`` again returns the stored one)."""
        ...

    async def get_attachment(
        self, attachment_id: str, conversation_id: str | None = None
    ) -> tuple[Attachment, bytes] | None:
        """A stored file and its bytes, or ``None``."""
        ...


@runtime_checkable
class AvatarStore(Protocol):
    """The one profile read the public chat port needs: a staff member's picture by its digest (``GET
    /avatars/<sha256>``), kept apart from :class:`ConversationStore` so the chat server can take any object that has
    it (as it takes an :class:`AttachmentStore`)."""

    async def get_avatar(self, sha256: str) -> tuple[str, bytes] | None:
        """``(content_type, bytes)`` of a current picture, or ``None`` (unknown, replaced, removed, malformed)."""
        ...


class ConversationStore(AttachmentStore, AvatarStore, Protocol):
    """Everything a caller may do with an open conversation store (see :mod:`dialogue.store`)."""

    # ------------------------------------------------------------------ the database (dialogue.store.database)

    @property
    def url(self) -> str:
        """The database URL with the password masked."""
        ...

    @property
    def dialect(self) -> str:
        """``"sqlite"``, ``"postgresql"``..."""
        ...

    async def schema_version(self) -> str | None:
        """The Alembic revision the database is at, ``None`` if never migrated."""
        ...

    async def close(self) -> None:
        """Close every pooled connection; the store cannot be used afterwards."""
        ...

    async def ping(self) -> None:
        """``SELECT 1``; :class:`~dialogue.errors.StoreUnavailable` when the database is down."""
        ...

    def transaction(
        self, operation: str, *, write: bool = True, conversation_id: str | None = None
    ) -> AbstractAsyncContextManager[AsyncConnection]:
        """One connection and transaction, for SQL the store has no method for (retention, login throttle)."""
        ...

    # ------------------------------------------------------------------ the turn log (dialogue.store.turns)

    async def create_conversation(
        self,
        language: str,
        sender: str | None = None,
        conversation_id: str | None = None,
        *,
        state: str = "start",
        slots: dict[str, Any] | None = None,
        secret_hash: str | None = None,
    ) -> Conversation:
        """Insert a new conversation (version 0, no turns); :class:`~dialogue.errors.ConversationExists`."""
        ...

    async def get(self, conversation_id: str) -> Conversation | None:
        """The snapshot of one conversation, or ``None``."""
        ...

    async def get_for_message(self, conversation_id: str, message_id: str) -> tuple[Conversation | None, bool]:
        """A turn's one read: the snapshot and whether ``message_id`` is already stored."""
        ...

    async def delete_conversation(self, conversation_id: str) -> bool:
        """Delete a conversation and its events."""
        ...

    async def commit_turn(self, update: TurnUpdate) -> list[Event]:
        """A turn's one write: append its events and rewrite the snapshot, atomically, if the version matches."""
        ...

    async def append_events(self, conversation_id: str, new_events: Sequence[NewEvent]) -> list[Event]:
        """Append events outside a user turn (they join the current turn)."""
        ...

    async def events(self, conversation_id: str, after_seq: int = 0) -> list[Event]:
        """The conversation's events with ``seq > after_seq``, in order."""
        ...

    async def find_events_by_message_id(self, conversation_id: str, message_id: str) -> list[Event]:
        """All events of the turn holding ``message_id`` (answering a retried message)."""
        ...

    # ------------------------------------------------------------------ console reads (dialogue.store.console)

    async def list_conversations(
        self,
        filter: ConversationFilter | None = None,
        limit: int = 50,
        cursor: str | None = None,
        *,
        offset: int = 0,
        low_confidence_below: float = 0.5,
    ) -> ConversationPage:
        """One page of conversation summaries, newest activity first, paged by an opaque cursor."""
        ...

    async def count_conversations(
        self, filter: ConversationFilter | None = None, *, low_confidence_below: float = 0.5
    ) -> int:
        """How many conversations match ``filter``."""
        ...

    async def summary(self, conversation_id: str) -> ConversationSummary | None:
        """The console row of one conversation, or ``None``."""
        ...

    async def conversation_intents(self, conversation_id: str) -> list[str]:
        """Every intent seen in the conversation, sorted."""
        ...

    async def handoff_statuses(self, conversation_ids: Sequence[str]) -> dict[str, str]:
        """The hand-off status (or ``"resolved"``) of those conversations that have one."""
        ...

    async def handoff_queue(
        self, limit: int = 100, filter: ConversationFilter | None = None
    ) -> list[ConversationSummary]:
        """Conversations that need or have a human, waiting ones first."""
        ...

    async def dashboard(self, days: int = 30, now: dt.datetime | None = None) -> DashboardStats:
        """Aggregates over the conversations of the last ``days`` days."""
        ...

    # ------------------------------------------------------------------ review (dialogue.store.review)

    async def review(
        self,
        conversation_id: str,
        *,
        by: str,
        flagged: bool | None = None,
        reviewed: bool | None = None,
        add_tags: Iterable[str] = (),
        remove_tags: Iterable[str] = (),
    ) -> ConversationSummary:
        """Set the review flags and tags (a ``review`` event records the change)."""
        ...

    async def add_correction(
        self,
        conversation_id: str,
        *,
        by: str,
        seq: int,
        text: str,
        intent: str,
        entities: Sequence[Mapping[str, Any]] = (),
    ) -> Event:
        """Record a reviewer's corrected reading of the customer message at ``seq``."""
        ...

    # ------------------------------------------------------------------ hand-off (dialogue.store.handoff)

    async def take_over(self, conversation_id: str, agent: str) -> ConversationSummary:
        """An agent takes the conversation; the bot stops answering."""
        ...

    async def hand_back(self, conversation_id: str, agent: str, initial_state: str) -> ConversationSummary:
        """Give the conversation back to the bot, restarting its flow at ``initial_state``."""
        ...

    async def append_agent_message(self, conversation_id: str, agent: str, text: str, message_id: str) -> Event:
        """Store a message of the agent who holds the conversation."""
        ...

    # ------------------------------------------------------------------ the workspace (dialogue.store.workspace)

    async def claim(self, conversation_id: str, agent: str) -> ConversationSummary:
        """``agent`` takes an unassigned conversation for themselves."""
        ...

    async def assign(self, conversation_id: str, assignee: str | None, by: str) -> ConversationSummary:
        """Assign the conversation to ``assignee`` (``None``: unassign)."""
        ...

    async def mark_seen(self, conversation_id: str, username: str, seq: int) -> bool:
        """The assignee has seen the conversation up to ``seq``."""
        ...

    async def auto_assign(
        self, now: dt.datetime, *, seen_within: dt.timedelta = PRESENCE_TIMEOUT, limit: int = 50
    ) -> list[tuple[str, str]]:
        """Give waiting, unrouted conversations to online agents, round-robin, in one transaction."""
        ...

    async def resolve(
        self, conversation_id: str, agent: str, initial_state: str | None = None
    ) -> ConversationSummary:
        """Mark the conversation resolved (ending any hand-off and assignment)."""
        ...

    async def reopen(self, conversation_id: str, agent: str) -> ConversationSummary:
        """Reopen a resolved conversation."""
        ...

    async def rate(self, conversation_id: str, score: int, comment: str | None = None) -> ConversationSummary:
        """Store the customer's rating of the current resolution (once per resolution)."""
        ...

    async def add_note(self, conversation_id: str, agent: str, text: str) -> Event:
        """Record an internal note for colleagues, never sent to the customer."""
        ...

    async def list_canned_replies(self, language: str | None = None) -> list[CannedReply]:
        """The team's canned replies (of one ``language``, or all)."""
        ...

    async def get_canned_reply(self, reply_id: int) -> CannedReply | None:
        """One canned reply, or ``None``."""
        ...

    async def add_canned_reply(
        self, language: str, title: str, text: str, created_by: str, *, languages: Sequence[str] = ()
    ) -> CannedReply:
        """Save a canned reply."""
        ...

    async def update_canned_reply(
        self, reply_id: int, language: str, title: str, text: str, *, languages: Sequence[str] = ()
    ) -> CannedReply:
        """Replace a canned reply's language, title and text."""
        ...

    async def delete_canned_reply(self, reply_id: int) -> bool:
        """Delete a canned reply."""
        ...

    # ------------------------------------------------------------------ attachments (dialogue.store.attachments)
    # add_attachment and get_attachment: AttachmentStore's

    async def list_attachments(self, conversation_id: str) -> list[Attachment]:
        """The conversation's attachments, without their bytes."""
        ...

    # ------------------------------------------------------------------ staff accounts (dialogue.store.staff)

    async def add_user(self, username: str, password_hash: str, role: str) -> User:
        """Create a staff account."""
        ...

    async def get_user(self, username: str) -> User | None:
        """A staff account by name, or ``None``."""
        ...

    async def get_user_by_id(self, user_id: int) -> User | None:
        """A staff account by id, or ``None``."""
        ...

    async def list_users(self) -> list[User]:
        """Every staff account, by name."""
        ...

    async def set_password(self, username: str, password_hash: str) -> User:
        """Replace the password hash and end the user's sessions."""
        ...

    async def set_role(self, username: str, role: str) -> User:
        """Change the role."""
        ...

    async def disable_user(self, username: str, disabled: bool = True) -> User:
        """Disable (or re-enable) an account; disabling ends its sessions."""
        ...

    async def set_locale(self, username: str, locale: str | None) -> User:
        """Remember (or forget) the console language the user chose."""
        ...

    async def set_display_name(self, username: str, display_name: str | None) -> User:
        """Set (or, with ``None`` or blank, clear) the name customers see."""
        ...

    async def set_avatar(self, username: str, content_type: str, data: bytes) -> User:
        """Replace the account's picture (PNG, JPEG or WebP, at most 256 KiB; checked bytes)."""
        ...

    async def clear_avatar(self, username: str) -> User:
        """Remove the account's picture."""
        ...

    # get_avatar: AvatarStore's

    async def create_session(
        self, token_hash: str, user_id: int, csrf_token: str, expires_at: dt.datetime
    ) -> Session:
        """Store a login session keyed by the sha256 of its cookie token."""
        ...

    async def get_session(self, token_hash: str, now: dt.datetime) -> tuple[Session, User] | None:
        """The live session and its enabled user, or ``None``."""
        ...

    async def touch_session(self, token_hash: str, expires_at: dt.datetime) -> bool:
        """Move a session's expiry."""
        ...

    async def delete_session(self, token_hash: str) -> bool:
        """End a session."""
        ...

    async def count_agents_online(self, now: dt.datetime, seen_within: dt.timedelta = PRESENCE_TIMEOUT) -> int:
        """Enabled agents and admins signed in, status ``online``, console seen within ``seen_within``."""
        ...

    async def set_agent_status(self, username: str, status: str) -> AgentPresence:
        """Remember the status (online / away / offline) an agent chose."""
        ...

    async def touch_presence(self, username: str, now: dt.datetime) -> bool:
        """The agent's console was seen at ``now``."""
        ...

    async def agent_presence(self, username: str) -> AgentPresence | None:
        """One account's presence, or ``None``."""
        ...

    async def team_presence(self) -> list[AgentPresence]:
        """The presence of every enabled agent and admin."""
        ...

    async def purge_sessions(self, now: dt.datetime) -> int:
        """Delete the expired sessions; returns how many."""
        ...
