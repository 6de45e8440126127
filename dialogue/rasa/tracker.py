"""Rasa's tracker as its dialogue policies see it: slots, the active loop, the latest message and action, and the
states that rules and memoised stories are matched against.

A *state* is what Rasa featurises before each action is predicted: the latest user message (intent and entity names),
the previous action, the active loop and the slots that influence the conversation. Here a state is a flat mapping of
feature keys to values (``"intent"``, ``"prev"``, ``"loop"``, ``"slot:<name>"``, ``"entity:<name>"``), so that a rule's
partial state matches a tracker's state when its items are a subset of it. :attr:`Tracker.history` holds the state at
each action executed so far; :meth:`Tracker.state` is the one the next action is predicted from.

The tracker applies the events of Rasa's action server protocol (``slot``, ``active_loop``, ``followup``, ``restart``,
``reset_slots``, ``rewind``, ``undo``, ``bot``, ``session_started``...) as Rasa documents them; it is pure (no I/O),
so the same code runs a live turn, trains the memoised stories and replays test stories.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dialogue.rasa.project import RasaProject, Slot
from dialogue.rasa.stories import ANY_VALUE, ActionStep, EntityValue, LoopStep, SlotStep

LISTEN = "action_listen"
SESSION_START = "action_session_start"
RESTART = "action_restart"
DEFAULT_FALLBACK = "action_default_fallback"
DEACTIVATE_LOOP = "action_deactivate_loop"
TWO_STAGE_FALLBACK = "action_two_stage_fallback"
BACK = "action_back"
REQUESTED_SLOT = "requested_slot"
NLU_FALLBACK = "nlu_fallback"
SET = "set"  # the feature value of a text/list/any slot holding something

State = Mapping[str, Any]


def slot_feature(slot: Slot | None, value: Any) -> Any:
    """How Rasa's policies see a slot's value: whether a text slot is set, a bool's truth, a categorical's value."""
    if value is None:
        return None
    if value is ANY_VALUE or value == ANY_VALUE:
        return SET
    kind = slot.type if slot is not None else "text"
    if kind == "bool":
        if isinstance(value, str):
            return value.strip().lower() in ("true", "1", "yes", "y", "on")
        return bool(value)
    if kind == "categorical":
        text = str(value).lower()
        known = {str(v).lower() for v in slot.values} if slot is not None else set()
        return text if not known or text in known else "__other__"
    if kind == "list":
        return SET if value else None
    return SET


@dataclass
class Tracker:
    """One conversation's dialogue state (mutable; :meth:`copy` before trying something out)."""

    project_slots: Mapping[str, Slot]
    slots: dict[str, Any] = field(default_factory=dict)
    active_loop: str | None = None
    intent: str | None = None
    entities: tuple[EntityValue, ...] = ()
    text: str | None = None
    retrieval: str | None = None  # the full name of a retrieval intent (``faq/ask_hours``); ``intent`` is ``faq``
    prev_action: str | None = LISTEN
    history: list[dict[str, Any]] = field(default_factory=list)
    user_turns: int = 0
    followup: str | None = None
    rejected: bool = False  # the active loop could not use the latest message (Rasa's ActionExecutionRejection)
    events: list[dict[str, Any]] = field(default_factory=list)  # Rasa events, as the action server is sent them
    featurised_entities: Mapping[str, tuple[str, ...] | None] = field(default_factory=dict)  # intent -> use_entities
    before_user: dict[str, Any] | None = None  # slots and loop before the latest user message (this turn only)

    @classmethod
    def start(cls, project: RasaProject) -> Tracker:
        tracker = cls(project_slots=project.slots, featurised_entities={
            name: intent.featurised_entities(project.entities) for name, intent in project.intents.items()
        })
        tracker.slots = {name: copy.deepcopy(slot.initial_value) for name, slot in project.slots.items()}
        tracker.slots.setdefault(REQUESTED_SLOT, None)
        return tracker

    def copy(self) -> Tracker:
        return copy.deepcopy(self)

    # -- what the policies see ----------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"prev": self.prev_action, "loop": self.active_loop}
        if self.intent is not None:
            state["intent"] = self.intent
            allowed = self.featurised_entities.get(self.intent)
            for entity in self.entities:
                if allowed is None or entity.entity in allowed:  # Rasa features a role as city#departure
                    state[f"entity:{entity.entity}" + (f"#{entity.role}" if entity.role else "")] = True
        for name, value in self.slots.items():  # every slot: rules may name any; memoisation keeps the influential
            state[f"slot:{name}"] = value if name == REQUESTED_SLOT else slot_feature(self.project_slots.get(name), value)
        return state

    def states(self) -> list[dict[str, Any]]:
        """Every state so far and the current one: what the next action is predicted from."""
        return [*self.history, self.state()]

    # -- changing it ----------------------------------------------------------------------------------------
    def user(self, intent: str, entities: Iterable[EntityValue] = (), text: str | None = None) -> None:
        """A user message (Rasa's ``UserUttered``); a message that was not preceded by ``action_listen`` gets one."""
        if self.prev_action != LISTEN:
            self.act(LISTEN)
        self.before_user = {"slots": copy.deepcopy(self.slots), "loop": self.active_loop}
        self.intent, self.entities, self.text = intent.split("/", 1)[0], tuple(entities), text
        self.retrieval = intent if "/" in intent else None
        self.user_turns += 1
        self.rejected = False
        self.events.append({
            "event": "user", "text": text or f"/{intent}",
            "parse_data": {"intent": {"name": intent, "confidence": 1.0}, "text": text or f"/{intent}",
                           "entities": [_entity_dict(e) for e in self.entities]},
        })

    def act(self, action: str) -> None:
        """An action was executed (Rasa's ``ActionExecuted``): the state it was predicted from joins the history."""
        self.history.append(self.state())
        self.prev_action = action
        if action == self.active_loop:
            self.rejected = False  # as Rasa's tracker: the loop ran again, its rejection is over
        if self.followup == action:
            self.followup = None
        self.events.append({"event": "action", "name": action})

    def set_slot(self, name: str, value: Any) -> None:
        self.slots[name] = value
        self.events.append({"event": "slot", "name": name, "value": value})

    def set_loop(self, name: str | None) -> None:
        self.active_loop = name or None
        if name is None:
            self.slots[REQUESTED_SLOT] = None
        self.rejected = False
        self.events.append({"event": "active_loop", "name": name})

    def apply(self, event: Mapping[str, Any]) -> None:
        """Apply one event an action returned, as Rasa does (unknown kinds are ignored, as Rasa ignores them)."""
        kind = event.get("event")
        if kind == "slot":
            name = str(event.get("name"))
            self.set_slot(name, event.get("value"))
        elif kind in ("active_loop", "form"):  # `form` is Rasa 2.0's name for it
            self.set_loop(event.get("name"))
        elif kind == "followup":
            self.followup = str(event.get("name")) or None
        elif kind == "restart":
            self.restart()
        elif kind == "reset_slots":
            for name in list(self.slots):
                self.slots[name] = None
            self.events.append({"event": "reset_slots"})
        elif kind == "rewind":  # UserUtteranceReverted: forget the latest user message and what followed it
            self._revert_user()
        elif kind == "undo":  # ActionReverted: forget the latest action
            if self.history:
                last = self.history.pop()
                self.prev_action = last.get("prev")
        elif kind == "session_started":
            self.events.append({"event": "session_started"})
        elif kind == "bot":
            self.events.append({"event": "bot", "text": event.get("text"), "data": event.get("data") or {}})
        elif kind == "action_execution_rejected":
            self.rejected = True

    def follow(self, step: ActionStep | LoopStep | SlotStep) -> None:
        """Apply a story's bot-side step as it is written (training and replay follow the story, not a prediction)."""
        if isinstance(step, ActionStep):
            if step.name:
                self.act(step.name)
        elif isinstance(step, LoopStep):
            self.set_loop(step.name)
        else:
            for name, value in step.slots:
                self.slots[name] = SET if value is ANY_VALUE else value

    def restart(self) -> None:
        """``Restarted``: a new conversation (slots back to their initial values)."""
        fresh = Tracker(project_slots=self.project_slots, featurised_entities=self.featurised_entities)
        fresh.slots = {name: copy.deepcopy(slot.initial_value) for name, slot in self.project_slots.items()}
        fresh.slots.setdefault(REQUESTED_SLOT, None)
        self.__dict__.update(fresh.__dict__)
        self.events.append({"event": "restart"})

    def _revert_user(self) -> None:
        """Back to the state before the latest user message: its state and the actions after it leave the history,
        and, for a message of this turn, the slots and loop it changed (Rasa replays the events without it)."""
        if self.before_user is not None:
            self.slots = self.before_user["slots"]
            self.active_loop = self.before_user["loop"]
            self.before_user = None
        while self.history and self.history[-1].get("prev") != LISTEN:
            self.history.pop()
        if self.history:
            self.history.pop()  # the state action_listen was predicted from... and the user turn with it
        previous = self.history[-1] if self.history else None
        self.intent = previous.get("intent") if previous else None
        self.entities = ()
        self.prev_action = LISTEN
        self.user_turns = max(0, self.user_turns - 1)
        self.events.append({"event": "rewind"})


def _entity_dict(entity: EntityValue) -> dict[str, Any]:
    out: dict[str, Any] = {"entity": entity.entity, "value": entity.value}
    if entity.role:
        out["role"] = entity.role
    if entity.group:
        out["group"] = entity.group
    return out
