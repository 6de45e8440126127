"""Flows: a bot's python-statemachine FSM, seen as the source of the allowed-action mask.

A bot's flows are a ``StateMachine`` subclass whose *events are action names*. The events enabled in
the current state (with their conditions evaluated against the tracker) are exactly the actions the
policy may choose from; sending the chosen action moves the machine to its next state. The state is
persisted as a plain string in the conversation row, so a turn rebuilds the machine in microseconds
instead of replaying history.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from statemachine import StateMachine
from statemachine.exceptions import TransitionNotAllowed

from dialogue.errors import DialogueError


class FlowError(DialogueError):
    """The bot's flows are missing, malformed, or were asked for a transition they do not allow."""


@dataclass
class FlowContext:
    """The model the FSM reads its conditions from and writes its state to."""

    state: str
    intent: str
    slots: dict[str, Any] = field(default_factory=dict)

    def has(self, slot: str) -> bool:
        value = self.slots.get(slot)
        return value is not None and value != ""


Rule = Callable[..., str]


@dataclass(frozen=True)
class Flows:
    """A loaded flows module: the machine class and the bot's hand-written default policy rule."""

    machine: type[StateMachine]
    default_policy: Rule

    @property
    def initial_state(self) -> str:
        return str(self.machine.initial_state.id)  # type: ignore[attr-defined]

    @property
    def states(self) -> tuple[str, ...]:
        return tuple(s.id for s in self.machine.states)  # type: ignore[attr-defined]

    @property
    def actions(self) -> tuple[str, ...]:
        return tuple(sorted(e.id for e in self.machine.events))  # type: ignore[attr-defined]

    def allowed(self, context: FlowContext) -> list[str]:
        """The actions enabled in ``context.state`` given the intent and slots (conditions checked)."""
        machine = self._machine(context)
        return sorted(e.id for e in machine.enabled_events())

    def advance(self, context: FlowContext, action: str) -> str:
        """Take ``action``'s transition and return the new state (``context.state`` is updated too)."""
        machine = self._machine(context)
        try:
            machine.send(action)
        except TransitionNotAllowed as exc:
            raise FlowError(f"action {action!r} is not allowed in state {context.state!r}") from exc
        return context.state

    def _machine(self, context: FlowContext) -> StateMachine:
        if context.state not in self.states:
            raise FlowError(f"stored state {context.state!r} is not a state of {self.machine.__name__}")
        return self.machine(context)


def load_flows(path: Path, class_name: str = "Flows") -> Flows:
    """Import a bot's flows module from a file and return its machine and ``default_policy``."""
    if not path.is_file():
        raise FlowError(f"flows module not found: {path}")
    module_name = f"kefu_bot_flows_{abs(hash(path.resolve()))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise FlowError(f"cannot import flows module {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # a broken bot file must name itself
        raise FlowError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    machine = getattr(module, class_name, None)
    rule = getattr(module, "default_policy", None)
    if not (isinstance(machine, type) and issubclass(machine, StateMachine)):
        raise FlowError(f"{path} has no StateMachine subclass named {class_name!r}")
    if not callable(rule):
        raise FlowError(f"{path} has no default_policy(observation, allowed) function")
    return Flows(machine=machine, default_policy=rule)


def first_allowed(preferences: Sequence[str], allowed: Sequence[str]) -> str:
    """The first preferred action that the mask allows (the last preference is the fallback)."""
    for action in preferences:
        if action in allowed:
            return action
    return preferences[-1]
