"""Flows: a bot's python-statemachine FSM, seen as the source of the allowed-action mask.

A bot's flows are a ``StateMachine`` subclass whose *events are action names*. The events enabled in
the current state (with their conditions evaluated against the tracker) are exactly the actions the
policy may choose from; sending the chosen action moves the machine to its next state. The state is
persisted as a plain string in the conversation row, so a turn never replays history.

Building a python-statemachine instance is the expensive part (it resolves every callback and condition by name:
~1.5 ms, twice per turn), so :class:`Flows` builds one per thread and reuses it: each call points the machine's
model at the caller's state, intent and slots, and the machine reads them from there exactly as a freshly built
one would (the state is read from the model on every access). A machine whose call raised is thrown away, so a
half-run transition never leaks into the next call.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

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
    filled: frozenset[str] = frozenset()  # the slots this very message gave (a new value, not one from earlier)

    def has(self, slot: str) -> bool:
        value = self.slots.get(slot)
        return value is not None and value != ""


Rule = Callable[..., str]
_T = TypeVar("_T")


@dataclass
class _Pooled:
    """A machine built once and the model it reads (a :class:`FlowContext` re-pointed at each call's context)."""

    machine: StateMachine
    model: FlowContext
    busy: bool = False


@dataclass(frozen=True)
class Flows:
    """A loaded flows module: the machine class and the bot's hand-written default policy rule.

    Safe to share between threads and coroutines: the reused machine is per thread, and a nested call (a condition
    asking the flows again) gets a machine of its own.
    """

    machine: type[StateMachine]
    default_policy: Rule
    resets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # action -> slots cleared after it ran
    reopens: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)  # action -> (slot, waiting state)
    definition: object | None = None  # the dialogue definition this was compiled from (dialogue.definition)
    _pool: threading.local = field(default_factory=threading.local, init=False, repr=False, compare=False)

    @property
    def initial_state(self) -> str:
        return str(self.machine.initial_state.id)  # type: ignore[attr-defined]

    @cached_property
    def states(self) -> tuple[str, ...]:
        return tuple(s.id for s in self.machine.states)  # type: ignore[attr-defined]

    @property
    def actions(self) -> tuple[str, ...]:
        return tuple(sorted(e.id for e in self.machine.events))  # type: ignore[attr-defined]

    def awaited(self, state: str, last_action: str | None) -> frozenset[str]:
        """The slots a task waits for in ``state`` (its slots' waiting states, from :attr:`reopens`) while the bot's
        last word was an aside: an answer may come a turn after the question, once a question of the customer's own
        was answered. Right after the task's own action, a wait means a value was refused or reset, and the next
        message is a new request or value, not the answer to an earlier question: nothing is awaited then."""
        if last_action in self.reopens:
            return frozenset()
        return self.waiting(state)

    def waiting(self, state: str) -> frozenset[str]:
        """The slots a task waits for in ``state``, whatever the bot said last: after the task's own action refused a
        value, a message the tagger read that very slot's value in is its correction ("that plan isn't available"
        "then Fibre 1000"), however unsure the intent classifier was."""
        return frozenset(slot for pairs in self.reopens.values() for slot, waiting in pairs if waiting == state)

    def allowed(self, context: FlowContext) -> list[str]:
        """The actions enabled in ``context.state`` given the intent and slots (conditions checked)."""
        return self._with_machine(context, lambda machine: sorted(e.id for e in machine.enabled_events()))

    def advance(self, context: FlowContext, action: str) -> str:
        """Take ``action``'s transition and return the new state (``context.state`` is updated too)."""

        def send(machine: StateMachine) -> None:
            try:
                machine.send(action)
            except TransitionNotAllowed as exc:
                raise FlowError(f"action {action!r} is not allowed in state {context.state!r}") from exc

        self._with_machine(context, send)
        return context.state

    def _with_machine(self, context: FlowContext, use: Callable[[StateMachine], _T]) -> _T:
        """Run ``use`` on a machine in ``context``'s state whose conditions read ``context``; writes back to it."""
        if context.state not in self.states:
            raise FlowError(f"stored state {context.state!r} is not a state of {self.machine.__name__}")
        if type(context) is not FlowContext:  # a subclass may carry more than the pooled model copies: build one
            return use(self.machine(context))
        cached: _Pooled | None = getattr(self._pool, "pooled", None)
        if cached is None or cached.busy:  # first call in this thread, or a nested one: build a machine
            model = FlowContext(context.state, context.intent, context.slots, context.filled)
            pooled = _Pooled(self.machine(model), model)
            if cached is None:
                self._pool.pooled = pooled
        else:
            pooled = cached
        model = pooled.model
        model.state, model.intent, model.slots, model.filled = context.state, context.intent, context.slots, context.filled
        pooled.machine.history_values.clear()  # a fresh machine remembers no history states
        pooled.busy = True
        try:
            result = use(pooled.machine)
        except BaseException:
            if getattr(self._pool, "pooled", None) is pooled:
                self._pool.pooled = None  # the machine may be mid-transition: build a new one next time
            raise
        finally:
            pooled.busy = False
            context.state, context.intent, context.slots = model.state, model.intent, model.slots
        return result


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
