"""The conversation store: snapshot rows plus an append-only event log, on any SQLAlchemy async URL.

* ``conversations`` holds one snapshot row per conversation (state, slots, turn count, handoff flag, version),
  so running a turn never replays history.
* ``events`` is append-only: each row has a per-conversation ``seq`` (1, 2, 3... gap-free), the ``turn`` it
  belongs to, a type from :mod:`dialogue.types`, JSON ``data`` and an optional client/bot ``message_id``.
  ``UNIQUE(conversation_id, type, message_id)`` makes a client message id processable once.

The console reads conversations by facts that otherwise live in the event log, so the snapshot row also carries
denormalised columns (lowest NLU confidence, fallback and safety turn counts, the redacted text for search, the
hand-off status, review flags and tags) and ``conversation_intents`` every intent seen. Every write path keeps them
in the same transaction as the events it appends, so the list can never disagree with the log. Staff ``users``
and their login ``sessions`` live here too: the ops console authenticates against the same database the bot
writes. Nothing here logs customer text: only ids, counts and event types.

Callers type the store as :class:`ConversationStore` (the protocol); :class:`Store` is its implementation,
assembled from one class per concern, each in its own module:

* :mod:`~dialogue.store.schema`: the tables (the Alembic migrations in ``dialogue/migrations`` own the schema).
* :mod:`~dialogue.store.database`: engine set-up, migrations, transactions and the mapping of driver errors.
* :mod:`~dialogue.store.turns`: creating conversations, committing turns, appending and reading events.
* :mod:`~dialogue.store.console`: the console's list, filters, counts, hand-off queue and dashboard.
* :mod:`~dialogue.store.review` and :mod:`~dialogue.store.handoff`: staff review, take-over and hand-back.
* :mod:`~dialogue.store.workspace`: inbox assignment, resolution and rating, notes, canned replies.
* :mod:`~dialogue.store.staff`: staff accounts, their profiles (display name, picture) and sessions.
* :mod:`~dialogue.store.attachments`: the files customers and agents send (bytes apart from the event log).
* :mod:`~dialogue.store.rules`, :mod:`~dialogue.store.facts`, :mod:`~dialogue.store.rows`: the domain rules, what
  a batch of events tells the console, and row conversions (pure functions).

Usage::

    store = await Store.open("sqlite+aiosqlite:///.kefu/shop.db")
    conv = await store.create_conversation("en")
    events = await store.commit_turn(TurnUpdate(conv.id, conv.version, "idle", {}, "en", False, (...)))
    await store.close()
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dialogue.store.attachments import ATTACHMENT, Attachment, Attachments
from dialogue.store.console import ConsoleQueries, decode_cursor, encode_cursor
from dialogue.store.database import MIGRATIONS_DIR
from dialogue.store.facts import SEARCH_CAP
from dialogue.store.handoff import Handoff
from dialogue.store.protocol import AttachmentStore, AvatarStore, ConversationStore
from dialogue.store.review import Review
from dialogue.store.rules import (
    ASSIGNABLE_ROLES,
    MAX_NOTE_CHARS,
    MAX_TAG_LENGTH,
    MAX_TAGS,
    PREVIEW_CHARS,
    RESOLVED_STATUS,
)
from dialogue.store.schema import (
    attachments,
    canned_replies,
    conversation_intents,
    conversations,
    events,
    sessions,
    user_avatars,
    users,
)
from dialogue.store.staff import StaffAccounts
from dialogue.store.workspace import Workspace

__all__ = [
    "ASSIGNABLE_ROLES",
    "ATTACHMENT",
    "MAX_NOTE_CHARS",
    "MAX_TAGS",
    "MAX_TAG_LENGTH",
    "MIGRATIONS_DIR",
    "PREVIEW_CHARS",
    "RESOLVED_STATUS",
    "SEARCH_CAP",
    "Attachment",
    "AttachmentStore",
    "AvatarStore",
    "ConversationStore",
    "Store",
    "attachments",
    "canned_replies",
    "conversation_intents",
    "conversations",
    "decode_cursor",
    "encode_cursor",
    "events",
    "sessions",
    "user_avatars",
    "users",
]


class Store(Review, Handoff, Workspace, ConsoleQueries, StaffAccounts, Attachments):
    """Async conversation store. Create with :meth:`open`; all methods are coroutines; returns dataclasses only.

    The methods come from one base class per concern (see the package docstring); they share one engine and one
    set of write primitives (:class:`~dialogue.store.turns.TurnLog`), so the class adds nothing of its own.
    """


if TYPE_CHECKING:

    def _implements_the_protocol(store: Store) -> ConversationStore:
        return store  # mypy checks here that Store has every method of ConversationStore, with its signature
