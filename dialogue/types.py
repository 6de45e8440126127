"""Dataclasses that cross the dialogue package's boundary: conversations, events, action results."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Event types written to the append-only event table.
USER_MESSAGE = "user_message"  # data: {"text" (redacted, punctuation as typed), "message_id", "normalized"?}
NLU_PARSE = "nlu_parse"  # data: Parse.to_dict()
SAFETY_INPUT = "safety_input"  # data: InputVerdict.to_dict()
SLOT_SET = "slot_set"  # data: {"slot", "value"}
ACTION = "action"  # data: {"name", "score", "allowed", "policy", "state_before", "state_after"}
BOT_MESSAGE = "bot_message"  # data: {"text", "message_id", "response", "source", "reply_to", "buttons"?}
SAFETY_OUTPUT = "safety_output"  # data: OutputVerdict.to_dict() (+ "replaced": bool)
HANDOFF = "handoff"  # data: {"reason"}: the bot queued the conversation for a human (intent | "low_confidence_loop")
HANDOFF_END = "handoff_end"  # data: {"reason": "offline" | "timeout" | "customer", "wanted"?}: a wait ended or never began
AGENT_MESSAGE = "agent_message"  # data: {"text", "agent", "message_id", "agent_name"?, "agent_avatar"?}
TAKEOVER = "takeover"  # data: {"agent"}
HANDBACK = "handback"  # data: {"agent"}
REVIEW = "review"  # data: {"by", "flagged"?, "reviewed"?, "tags_added"?, "tags_removed"?}
CORRECTION = "correction"  # data: {"by", "seq", "text", "intent", "entities": [{"entity", "value", "start", "end"}]}
RESOLVED = "resolved"  # data: {"agent"}: staff marked the conversation resolved (the widget then asks for a rating)
REOPENED = "reopened"  # data: {"agent": str | None, "reason": "agent" | "customer"}: resolved no more
RATING = "rating"  # data: {"score": 1..5, "comment": str | None (redacted)}: the customer rated a resolution
MAX_RATING_COMMENT = 1000  # characters of a rating's comment (after stripping): the chat protocol and the store agree
NOTE = "note"  # data: {"agent", "text" (redacted)}: an internal note by staff; never sent or shown to the customer
ATTACHMENT = "attachment"  # data: {"id", "filename", "content_type", "size", "direction", "agent"?, "agent_name"?,
#                              "agent_avatar"?}: never the bytes
EVENT_TYPES = (
    USER_MESSAGE, NLU_PARSE, SAFETY_INPUT, SLOT_SET, ACTION, BOT_MESSAGE, SAFETY_OUTPUT, HANDOFF, HANDOFF_END, AGENT_MESSAGE,
    TAKEOVER, HANDBACK, REVIEW, CORRECTION, RESOLVED, REOPENED, RATING, NOTE, ATTACHMENT,
)

# Names the store reads in events to keep its per-conversation counters (the engine writes them).
FALLBACK_ACTION = "utter_fallback"  # the reply of "I did not understand" and of a failed action
OUT_OF_SCOPE = "out_of_scope"  # the intent of messages the bot does not handle (and of blocked input)

# conversations.handoff_status: "" = the bot answers; "waiting" = queued for a human; "agent" = a human answers.
HANDOFF_NONE, HANDOFF_WAITING, HANDOFF_AGENT = "", "waiting", "agent"
HANDOFF_FILTERS = ("waiting", "agent", "any", "none")  # ConversationFilter.handoff values

# Staff roles, least privileged first (ordering is what the ops server's role checks compare).
ROLES = ("viewer", "agent", "admin")
# Languages of the ops console's own interface (channels/static/ops/i18n.js has one dictionary per code).
CONSOLE_LOCALES = ("en", "zh")

# A staff member's profile as customers see it (migration 0013): a display name, and a small picture whose bytes are
# kept in ``user_avatars`` and named by their sha256. An agent's message or file records both in its event data at
# the time it is sent (``agent_name``: the display name, absent when the username was shown; ``agent_avatar``: the
# digest, when there is a picture), so a resumed history shows what the customer saw then. The console checks a picture's bytes with
# the chat port's upload checks (``channels.uploads``); the store checks these limits again.
MAX_DISPLAY_NAME_CHARS = 64
AVATAR_TYPES = ("image/png", "image/jpeg", "image/webp")
MAX_AVATAR_BYTES = 256 * 1024
AVATAR_DIGEST_RE = re.compile(r"[0-9a-f]{64}")  # a picture's name: the sha256 of its bytes (GET /avatars/<it>)


@dataclass(frozen=True)
class Conversation:
    """The snapshot row of one conversation: enough to run the next turn without replaying events."""

    id: str
    state: str
    slots: dict[str, Any]
    language: str
    turn_count: int
    handed_off: bool
    version: int
    created_at: dt.datetime
    updated_at: dt.datetime
    sender: str | None = None
    last_action: str | None = None
    handoff_status: str = HANDOFF_NONE
    agent: str | None = None
    fallback_streak: int = 0  # consecutive misunderstood turns inside a task; 2 queue the conversation for a human
    handoff_at: dt.datetime | None = None  # when it was queued for (or taken by) a human
    secret_hash: str | None = None  # sha256 (hex) of the chat resume secret (migration 0005); None: not resumable

    def __repr__(self) -> str:
        return f"Conversation(id={self.id!r}, state={self.state!r}, turns={self.turn_count}, version={self.version})"


@dataclass(frozen=True)
class NewConversation:
    """What the chat channel knows of a conversation before its row exists: the row is created with exactly this
    by the first customer message (``DialogueEngine.handle_message(..., create=...)``), so a ``hello`` creates
    nothing and a message resent after a reconnect finds the row its first copy created."""

    id: str
    secret_hash: str  # sha256 (hex) of the resume secret the channel issued; the secret itself is never stored
    language: str | None = None
    sender: str | None = None

    def __repr__(self) -> str:
        return f"NewConversation(id={self.id!r}, language={self.language!r})"


@dataclass(frozen=True)
class NewEvent:
    """An event to append; ``seq`` is assigned by the store."""

    type: str
    data: dict[str, Any]
    message_id: str | None = None

    def __repr__(self) -> str:
        return f"NewEvent(type={self.type!r})"


@dataclass(frozen=True)
class Event:
    """A stored event, in conversation order (``seq`` starts at 1)."""

    conversation_id: str
    seq: int
    turn: int
    type: str
    data: dict[str, Any]
    timestamp: dt.datetime
    message_id: str | None = None

    def __repr__(self) -> str:
        return f"Event(seq={self.seq}, type={self.type!r})"


@dataclass(frozen=True)
class ConversationSummary:
    """A row of the console's conversation list (no customer text: the list is safe to log or cache).

    ``min_confidence`` is the lowest NLU confidence of any turn (``None`` before the first parse);
    ``fallbacks`` / ``safety_flags`` count turns answered with the fallback (or out of scope) / turns where a
    safety filter blocked, redacted or replaced something. ``handoff_status`` is ``""``, ``"waiting"`` or
    ``"agent"`` (then ``agent`` names who holds it); ``handoff_at`` is when it entered that status (the queue's
    order) and ``handoffs`` how many times the conversation was ever queued or taken over. ``resolved_at`` /
    ``resolved_by``: when and by whom staff resolved it (``None`` while open); ``rating``: the customer's 1-5
    score of the latest resolution (``None``: not rated; its comment is not here, it is customer text).

    The inbox (migration 0009): ``assignee`` is the colleague the conversation is assigned to (claimed or assigned;
    not the same as ``agent``, who holds it after a take-over), ``assigned_at`` since when; ``unread``: a customer
    message arrived after the last one the assignee saw. ``sender`` (the widget's ``data-user``) and ``preview``
    (the last message, redacted as stored, at most 200 characters; ``preview_by`` is ``customer``, ``bot`` or
    ``agent``) are customer data: they are left out of ``repr`` and must not be logged.
    """

    id: str
    language: str
    turn_count: int
    handed_off: bool
    state: str
    created_at: dt.datetime
    updated_at: dt.datetime
    last_intent: str | None = None
    reviewed: bool = False
    flagged: bool = False
    tags: tuple[str, ...] = ()
    min_confidence: float | None = None
    fallbacks: int = 0
    safety_flags: int = 0
    handoff_status: str = HANDOFF_NONE
    agent: str | None = None
    last_action: str | None = None
    handoff_at: dt.datetime | None = None
    handoffs: int = 0
    resolved_at: dt.datetime | None = None
    resolved_by: str | None = None
    rating: int | None = None
    assignee: str | None = None
    assigned_at: dt.datetime | None = None
    unread: bool = False
    sender: str | None = field(default=None, repr=False)
    preview: str = field(default="", repr=False)
    preview_by: str = ""


@dataclass(frozen=True)
class ConversationFilter:
    """What the console's list shows; every field left ``None`` does not filter.

    ``since``/``until`` bound the last activity (``updated_at``), ``created_since``/``created_until`` the start;
    lower bounds are inclusive, upper bounds exclusive. ``intent`` matches any turn's intent, not just the last.
    ``low_confidence`` compares ``min_confidence`` with the store call's ``low_confidence_below`` (0.5).
    ``handoff`` is ``"waiting"``, ``"agent"``, ``"any"`` (either) or ``"none"``. ``query`` is a case-insensitive
    substring of the (redacted) customer, bot and agent text.
    """

    since: dt.datetime | None = None
    until: dt.datetime | None = None
    created_since: dt.datetime | None = None
    created_until: dt.datetime | None = None
    language: str | None = None
    intent: str | None = None
    low_confidence: bool | None = None
    fallback: bool | None = None
    safety: bool | None = None
    handoff: str | None = None
    tag: str | None = None
    reviewed: bool | None = None
    flagged: bool | None = None
    query: str | None = None
    assignee: str | None = None  # assigned to this username (the inbox's "mine")
    assigned: bool | None = None  # False: nobody's yet (the inbox's "unassigned"); True: somebody's

    def __repr__(self) -> str:  # the search query may be customer text
        shown = {k: v for k, v in self.__dict__.items() if v is not None and k != "query"}
        if self.query is not None:
            shown["query"] = f"<{len(self.query)} chars>"
        return f"ConversationFilter({', '.join(f'{k}={v!r}' for k, v in shown.items())})"


@dataclass(frozen=True)
class ConversationPage:
    """One page of :meth:`dialogue.store.Store.list_conversations`; pass ``next_cursor`` back for the next one
    (``None``: this was the last page)."""

    items: list[ConversationSummary]
    next_cursor: str | None = None


@dataclass(frozen=True)
class DashboardStats:
    """The console dashboard over the conversations *created* in the last ``days`` days (UTC) that have at least
    one customer turn (a widget opened and left without a word is not a conversation).

    ``per_day`` lists every day of the window, oldest first, with zero days included. ``resolution_rate``: share of
    conversations never handed to a human whose last turn was not a fallback; ``handoff_rate``: share ever queued
    or taken over; ``fallback_rate``: share of customer *turns* answered with the fallback; ``safety_blocks``:
    turns whose message was blocked or whose reply was replaced; ``redactions``: turns with PII redacted (counted
    apart: a redaction is not a block); ``top_intents``: the 10 intents seen in most conversations. Rates are 0.0
    when there is nothing to divide.

    The team's figures (the workspace, migration 0008), over the same conversations: ``ratings`` rated
    resolutions, ``csat_mean`` their mean score and ``csat_satisfied`` the share scoring 4 or 5 (``None`` without
    ratings); ``first_response_median`` the median seconds from a conversation's first hand-off (queued or taken
    over) to the first agent message, over the conversations an agent wrote to; ``resolution_median`` the median
    seconds from creation to resolution, over the resolved ones (``None`` when there are none).
    """

    days: int
    since: dt.datetime
    until: dt.datetime
    conversations: int
    turns: int
    per_day: list[tuple[dt.date, int]]
    resolution_rate: float
    handoff_rate: float
    fallback_rate: float
    safety_blocks: int
    top_intents: list[tuple[str, int]]
    redactions: int = 0
    ratings: int = 0
    csat_mean: float | None = None
    csat_satisfied: float | None = None
    first_response_median: float | None = None
    resolution_median: float | None = None


@dataclass(frozen=True)
class User:
    """A staff account of the ops console. ``password_hash`` is the argon2 string (never shown in reprs)."""

    id: int
    username: str
    password_hash: str = field(repr=False)
    role: str
    disabled: bool
    created_at: dt.datetime
    locale: str | None = None  # the console language chosen (CONSOLE_LOCALES); None: follow the browser
    display_name: str | None = None  # the name customers see (migration 0013); None: the username
    avatar: str | None = None  # sha256 hex of the picture customers see (``user_avatars``); None: initials only

    @property
    def shown_name(self) -> str:
        """The name customers see: the display name, else the username."""
        return self.display_name or self.username


@dataclass(frozen=True)
class Session:
    """A login session: the row is keyed by the sha256 of the cookie token, so a database leak is no login."""

    token_hash: str = field(repr=False)
    user_id: int
    csrf_token: str = field(repr=False)
    created_at: dt.datetime
    expires_at: dt.datetime


@dataclass(frozen=True)
class TurnFacts:
    """What one turn counts as, decided once by the turn (:func:`dialogue.turn.turn_facts`) for whoever counts it: the
    console's columns (the store) and the server's metrics.

    ``intent`` and ``confidence`` are the NLU's, as stored in the turn's ``nlu_parse`` event (``None``: no parse).
    A *fallback* turn is one the bot answered (an action ran) with the fallback reply, or whose message was out of
    scope; a *safety* turn one where an input filter blocked, redacted or flagged something or the output classifier
    found the reply toxic (and replaced it: ``reply_replaced``). ``handoff``: the turn queued the conversation for a
    human; ``handoff_end``: a wait for one ended, or a hand-off could not begin (nobody to answer).
    """

    intent: str | None = None
    confidence: float | None = None
    fallback: bool = False
    safety: bool = False
    input_blocked: bool = False
    reply_replaced: bool = False
    redacted: bool = False
    handoff: bool = False
    handoff_end: bool = False

    @property
    def blocked(self) -> bool:
        """The message was blocked or the reply replaced (the console's "safety blocks")."""
        return self.input_blocked or self.reply_replaced


@dataclass(frozen=True)
class TurnUpdate:
    """Everything one turn changes, committed by the store in one transaction."""

    conversation_id: str
    expected_version: int
    state: str
    slots: dict[str, Any]
    language: str
    handed_off: bool
    events: tuple[NewEvent, ...]
    last_intent: str | None = None
    last_action: str | None = None
    fallback_streak: int | None = None  # None keeps the stored value
    facts: TurnFacts | None = None  # what the turn counts as (the engine's turns); None: derived from the events


@dataclass
class ActionResult:
    """What an action did: slot changes, the response(s) to verbalise, and whether to hand off.

    ``responses`` holds (response key, slot values for the reply) pairs, as rasa-sdk's
    ``dispatcher.utter_message(response=..., **kwargs)`` produces them; ``texts`` holds literal texts.
    """

    slot_updates: dict[str, Any] = field(default_factory=dict)
    responses: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    handoff: bool = False
    failed: bool = False
    error: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list, compare=False)  # the Rasa events as returned
    ordered: list[tuple[str, dict[str, str]] | str] = field(default_factory=list)  # responses and texts as said
    buttons: list[tuple[str, str]] = field(default_factory=list)  # (title, payload) offered with the reply

    def messages(self) -> list[tuple[str, dict[str, str]] | str]:
        """What to say, in order: ``ordered`` when an action interleaved responses and texts, else the responses
        and then the texts."""
        return self.ordered or [*self.responses, *self.texts]


@dataclass(frozen=True)
class TurnReply:
    """What a channel sends back for one user message (the final ``message`` frame)."""

    conversation_id: str
    message_id: str
    reply_to: str
    text: str
    intent: str | None = None
    confidence: float | None = None
    action: str | None = None
    handed_off: bool = False
    flags: tuple[str, ...] = ()
    quick_replies: tuple[str, ...] = ()
    replayed: bool = False
    buttons: tuple[tuple[str, str], ...] = ()  # (title, payload): the widget shows the title and sends the payload
    # What the server measures, not what the customer is sent (left out of equality): the bot's reply's stage
    # timings in milliseconds (safety_in, nlu, policy, action, generation, safety_out; empty when the bot did not
    # answer), and what the turn counted as (None for a replayed reply: nothing ran this time).
    stages: Mapping[str, float] = field(default_factory=dict, compare=False, repr=False)
    facts: TurnFacts | None = field(default=None, compare=False, repr=False)

    def __repr__(self) -> str:
        return f"TurnReply(conversation_id={self.conversation_id!r}, action={self.action!r}, chars={len(self.text)})"


def clean_display_name(value: object) -> str | None:
    """A display name as stored: ``value`` trimmed, ``None`` when absent or blank (no display name: customers see the
    username). Raises :class:`ValueError` (its text names the rule, never the value) for a non-string, more than
    :data:`MAX_DISPLAY_NAME_CHARS` characters, or a control, format (bidi overrides, zero-width), surrogate,
    private-use or line/paragraph-separator character: the widget shows the name as text next to the agent's
    messages, where a hidden direction change or a line break would misrepresent who wrote them."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("a display name must be a string or null")  # noqa: TRY004 - one error type for callers
    name = value.strip()
    if len(name) > MAX_DISPLAY_NAME_CHARS:
        raise ValueError(f"a display name has at most {MAX_DISPLAY_NAME_CHARS} characters")
    if any(unicodedata.category(char) in _HIDDEN_CATEGORIES for char in name):
        raise ValueError("a display name cannot hold control, format or separator characters")
    return name or None


_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})


def stored_buttons(data: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """The ``(title, payload)`` buttons of a stored ``bot_message`` event's data (``"buttons": [{"title",
    "payload"}]``, written by the engine's turn), for whoever replays or shows it."""
    buttons = data.get("buttons")
    if not isinstance(buttons, list):
        return ()
    return tuple((str(b.get("title", "")), str(b.get("payload", ""))) for b in buttons if isinstance(b, dict))
