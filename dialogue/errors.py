"""Exceptions of the dialogue package: one root (:class:`DialogueError`), context on every error.

Messages and reprs carry identifiers (conversation ids, message ids, versions, URLs without passwords), never
customer text.
"""

from __future__ import annotations


class DialogueError(Exception):
    """Root of every error raised by the ``dialogue`` package."""


class StoreError(DialogueError):
    """A conversation-store operation failed.

    ``operation`` names the store method (``"commit_turn"``...), ``conversation_id`` the conversation it touched.
    """

    def __init__(self, message: str, *, operation: str | None = None, conversation_id: str | None = None) -> None:
        self.operation = operation
        self.conversation_id = conversation_id
        context = ", ".join(
            f"{key}={value!r}"
            for key, value in (("operation", operation), ("conversation_id", conversation_id))
            if value is not None
        )
        super().__init__(f"{message} ({context})" if context else message)


class ConversationNotFound(StoreError):
    """No conversation has this id."""

    def __init__(self, conversation_id: str, *, operation: str | None = None) -> None:
        super().__init__("conversation not found", operation=operation, conversation_id=conversation_id)


class ConversationExists(StoreError):
    """``create_conversation`` was given an id that is already taken."""

    def __init__(self, conversation_id: str) -> None:
        super().__init__(
            "conversation already exists", operation="create_conversation", conversation_id=conversation_id
        )


class ConcurrentUpdate(StoreError):
    """Optimistic-concurrency failure: the conversation moved on since the caller read it (reload and retry)."""

    def __init__(self, conversation_id: str, expected: int, actual: int) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"conversation was updated concurrently: expected version {expected}, found {actual}",
            operation="commit_turn",
            conversation_id=conversation_id,
        )


class DuplicateMessage(StoreError):
    """An event with this (type, message_id) already exists in the conversation: the message was processed.

    Raised when the ``UNIQUE(conversation_id, type, message_id)`` constraint rejects a write; callers answer a
    retried client message from :meth:`dialogue.store.Store.find_events_by_message_id` instead.
    """

    def __init__(self, conversation_id: str, message_id: str | None, *, operation: str | None = None) -> None:
        self.message_id = message_id
        super().__init__(
            f"message id {message_id!r} was already processed", operation=operation, conversation_id=conversation_id
        )


class TurnContention(DialogueError):
    """A turn lost the optimistic-concurrency race on every one of the engine's attempts (other turns of the same
    conversation, e.g. in another worker process, kept committing first).

    Nothing was stored for this message, so it is safe to send it again (the engine answers an already-committed
    message id from the store): ``kefu.serving`` retries with back-off. ``attempts`` is how many times it ran.
    """

    def __init__(self, conversation_id: str, attempts: int) -> None:
        self.conversation_id = conversation_id
        self.attempts = attempts
        super().__init__(f"turn for conversation {conversation_id!r} lost the race {attempts} times")


class StoreUnavailable(StoreError):
    """The database cannot be reached or opened (server down, wrong host/port, unwritable SQLite path...).

    ``url`` is the database URL with its password masked; ``cause`` the underlying exception.
    """

    def __init__(self, url: str, cause: BaseException | None = None, *, operation: str | None = None) -> None:
        self.url = url
        self.cause = cause
        detail = f": {type(cause).__name__}: {cause}" if cause is not None else ""
        super().__init__(f"database unavailable at {url}{detail}", operation=operation)


class InvalidQuery(StoreError):
    """A listing was asked with a malformed cursor, an unknown filter value or an out-of-range limit (a client
    error: the ops server answers 400)."""


class HandoffConflict(StoreError):
    """A hand-off operation does not fit who holds the conversation.

    ``holder`` is the agent holding it (``None`` when nobody does), ``status`` its ``handoff_status``. Raised when
    another agent holds a conversation being taken over or handed back, and when an agent writes to a conversation
    they do not hold.
    """

    def __init__(
        self, conversation_id: str, holder: str | None, status: str, *, operation: str | None = None
    ) -> None:
        self.holder = holder
        self.status = status
        what = f"held by agent {holder!r}" if holder else f"not taken over (status {status or 'bot'!r})"
        super().__init__(f"conversation is {what}", operation=operation, conversation_id=conversation_id)


class NotResolved(StoreError):
    """A customer rating for a conversation that staff have not resolved (or that was reopened since)."""


class AlreadyRated(StoreError):
    """A second rating of the same resolution: the first one stands (see :meth:`dialogue.store.Store.rate`)."""


class UserExists(StoreError):
    """``add_user`` was given a username that is taken."""

    def __init__(self, username: str) -> None:
        self.username = username
        super().__init__(f"user {username!r} already exists", operation="add_user")


class UserNotFound(StoreError):
    """No staff account has this username (or id)."""

    def __init__(self, username: str, *, operation: str | None = None) -> None:
        self.username = username
        super().__init__(f"user {username!r} not found", operation=operation)


class ReviewError(DialogueError):
    """A correction or scenario export cannot be done: unknown event, text that cannot be annotated safely,
    or a training file that would no longer load. ``path`` is the file involved, when there is one."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        self.path = path
        super().__init__(f"{message} (path={path!r})" if path else message)


class KnowledgeError(DialogueError):
    """The knowledge base file is missing or malformed, or its encoder/cache cannot be loaded.

    ``path`` is the file involved; ``entry_id`` the offending entry, when there is one.
    """

    def __init__(self, message: str, *, path: str | None = None, entry_id: str | None = None) -> None:
        self.path = path
        self.entry_id = entry_id
        context = ", ".join(
            f"{key}={value!r}" for key, value in (("path", path), ("entry_id", entry_id)) if value is not None
        )
        super().__init__(f"{message} ({context})" if context else message)
