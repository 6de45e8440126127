"""Dataclasses that cross the dialogue package's boundary: conversations, events, action results."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

# Event types written to the append-only event table.
USER_MESSAGE = "user_message"  # data: {"text" (redacted), "message_id"}
NLU_PARSE = "nlu_parse"  # data: Parse.to_dict()
SAFETY_INPUT = "safety_input"  # data: InputVerdict.to_dict()
SLOT_SET = "slot_set"  # data: {"slot", "value"}
ACTION = "action"  # data: {"name", "score", "allowed", "policy", "state_before", "state_after"}
BOT_MESSAGE = "bot_message"  # data: {"text", "message_id", "response", "source", "reply_to"}
SAFETY_OUTPUT = "safety_output"  # data: OutputVerdict.to_dict() (+ "replaced": bool)
HANDOFF = "handoff"  # data: {"reason"}
AGENT_MESSAGE = "agent_message"  # data: {"text", "agent"}
EVENT_TYPES = (USER_MESSAGE, NLU_PARSE, SAFETY_INPUT, SLOT_SET, ACTION, BOT_MESSAGE, SAFETY_OUTPUT, HANDOFF, AGENT_MESSAGE)


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

    def __repr__(self) -> str:
        return f"Conversation(id={self.id!r}, state={self.state!r}, turns={self.turn_count}, version={self.version})"


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
    """A row of the console's conversation list."""

    id: str
    language: str
    turn_count: int
    handed_off: bool
    state: str
    created_at: dt.datetime
    updated_at: dt.datetime
    last_intent: str | None = None


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

    def __repr__(self) -> str:
        return f"TurnReply(conversation_id={self.conversation_id!r}, action={self.action!r}, chars={len(self.text)})"
