"""What the user simulator reads of a bot: the dialogue definition's shape and the compiled flows, as protocols
(``dialogue.definition`` and ``dialogue.flows`` objects fit them structurally; this package never imports them), and
:class:`SimBot`, everything the simulator knows of one bot. See :mod:`policy.simulator` for the simulation."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from policy.errors import PolicyError


class SimulatorError(PolicyError):
    """The bot lacks what the simulator needs (a definition with something a user can want)."""


# -- what the simulator reads of a bot (``dialogue.definition`` and ``dialogue.flows`` objects fit) ---------------


class FromTextLike(Protocol):
    @property
    def slot(self) -> str: ...

    def takes(self, last_action: str | None, intent: str, filled: bool, awaited: frozenset[str] = ...,
              confidence: float = ...) -> bool: ...

    @property
    def as_intent(self) -> str | None: ...


class SlotLike(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def ask(self) -> str: ...


class ConfirmLike(Protocol):
    @property
    def ask(self) -> str: ...

    @property
    def yes(self) -> Sequence[str]: ...

    @property
    def no(self) -> Sequence[str]: ...

    @property
    def cancelled(self) -> str | None: ...


class TaskLike(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def intents(self) -> Sequence[str]: ...

    @property
    def slots(self) -> Sequence[SlotLike]: ...

    @property
    def action(self) -> str: ...

    @property
    def confirm(self) -> ConfirmLike | None: ...

    @property
    def reset(self) -> Sequence[str]: ...


class SmallTalkLike(Protocol):
    @property
    def intent(self) -> str: ...

    @property
    def reply(self) -> str: ...

    @property
    def ends_task(self) -> bool: ...


class HandoffLike(Protocol):
    @property
    def action(self) -> str: ...

    @property
    def intents(self) -> Sequence[str]: ...


class KnowledgeLike(Protocol):
    @property
    def action(self) -> str: ...

    @property
    def intents(self) -> Sequence[str]: ...


class CancelLike(Protocol):
    @property
    def intents(self) -> Sequence[str]: ...

    @property
    def reply(self) -> str: ...


class DefinitionLike(Protocol):
    """The dialogue definition's shape (``dialogue.definition.DialogueDefinition``)."""

    @property
    def tasks(self) -> Sequence[TaskLike]: ...

    @property
    def fallback(self) -> str: ...

    @property
    def answer_intents(self) -> Sequence[str]: ...

    @property
    def small_talk(self) -> Sequence[SmallTalkLike]: ...

    @property
    def handoff(self) -> HandoffLike | None: ...

    @property
    def knowledge(self) -> KnowledgeLike | None: ...

    @property
    def cancel(self) -> CancelLike | None: ...


class FlowsLike(Protocol):
    """The compiled FSM (``dialogue.flows.Flows``): the mask, the transitions and the hand-written policy."""

    @property
    def initial_state(self) -> str: ...

    @property
    def states(self) -> tuple[str, ...]: ...

    @property
    def actions(self) -> tuple[str, ...]: ...

    @property
    def resets(self) -> Mapping[str, tuple[str, ...]]: ...

    @property
    def reopens(self) -> Mapping[str, tuple[tuple[str, str], ...]]: ...

    @property
    def default_policy(self) -> Callable[..., str]: ...

    def allowed(self, context: Any) -> list[str]: ...

    def advance(self, context: Any, action: str) -> str: ...

    def awaited(self, state: str, last_action: str | None) -> frozenset[str]: ...


def questions(definition: DefinitionLike) -> frozenset[str]:
    """What the bot may do on a guess (the runner-up reading, ``policy.base.Observation``): ask the customer something,
    a slot's question or a confirmation. Never a task's action, a hand-off, or anything else the flows allow: with the
    actions of tasks without a confirmation offered too (on values the message gave), the bank's learned policy ran
    one nobody asked for and failed its gate at noise 0."""
    asks = {s.ask for t in definition.tasks for s in t.slots}
    return frozenset(asks | {t.confirm.ask for t in definition.tasks if t.confirm})


@dataclass
class SimContext:
    """What the flows' conditions read (``dialogue.flows.FlowContext`` has the same fields; pass it as
    :attr:`SimBot.context` so the flows reuse their pooled machine)."""

    state: str
    intent: str
    slots: dict[str, Any] = field(default_factory=dict)
    filled: frozenset[str] = frozenset()

    def has(self, slot: str) -> bool:
        value = self.slots.get(slot)
        return value is not None and value != ""


ContextFactory = Callable[[str, str, dict[str, Any], frozenset[str]], Any]


@dataclass(frozen=True)
class SimBot:
    """Everything the simulator knows of one bot (built from its folder by ``kefu.policy_cli.sim_bot``)."""

    definition: DefinitionLike
    flows: FlowsLike
    intents: tuple[str, ...]  # the domain's intents (what the NLU can say)
    slots: tuple[str, ...]  # the domain's slots
    entities: tuple[str, ...]  # the slots an entity extractor fills (the domain's entities)
    values: Mapping[str, tuple[str, ...]]  # slot -> values a customer may give (annotations, lookups, bot data)
    from_text: tuple[FromTextLike, ...] = ()  # the domain's from_text mappings (the definition's included)
    languages: tuple[str, ...] = ("en",)
    confidence_threshold: float = 0.5
    ranking_size: int = 5  # intents in the NLU's ranking
    runner_up: bool = True  # offer the runner-up reading's actions (policy.base.Observation.runner_up_actions)
    context: ContextFactory = SimContext

    def check(self) -> None:
        d = self.definition
        if not d.tasks and not d.knowledge and not d.small_talk:
            raise SimulatorError("the dialogue definition has nothing a simulated user can want")
        unknown = sorted({i for t in d.tasks for i in t.intents} - set(self.intents))
        if unknown:
            raise SimulatorError(f"task intents {unknown} are not intents of the domain")
