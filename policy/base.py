"""The policy contract: an observation of the tracked state, the FSM's mask, and one chosen action.

The FSM says what is *allowed*; a policy says what is *best*. Keeping the two apart is what lets a
learned policy (trained against a user simulator) replace the hand-written default without ever
being able to take an action the flows forbid.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from policy.errors import PolicyError


@dataclass(frozen=True)
class Observation:
    """What a policy may look at: the tracked state after this turn's NLU and slot updates.

    ``filled_slots`` names the slots that hold a value (the values themselves are customer data and
    are not needed to choose an action). ``low_confidence`` is the NLU confidence compared with the
    bot's threshold; ``flags`` carries the input filters' verdicts (e.g. ``"prompt_injection"``).
    """

    state: str
    intent: str
    confidence: float
    filled_slots: frozenset[str] = frozenset()
    ranking: tuple[tuple[str, float], ...] = ()
    turn: int = 0
    last_action: str | None = None
    low_confidence: bool = False
    flags: tuple[str, ...] = ()
    language: str = "en"
    # The runner-up reading: actions the flows allow only if the message means the ranking's second intent
    # (``runner_up``). They are in the mask a policy gets; the hand-written rules read the top intent and never take
    # them (see :func:`top_reading`), a learned policy may, and then the turn is the runner-up's.
    runner_up: str | None = None
    runner_up_actions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    """The chosen action with its score (a probability or value; 1.0 for a rule) and the mask it obeyed."""

    action: str
    score: float
    allowed: tuple[str, ...]
    policy: str

    def to_dict(self) -> dict[str, object]:
        return {"name": self.action, "score": round(self.score, 4), "allowed": list(self.allowed), "policy": self.policy}


class Policy(Protocol):
    """Anything that picks one action from the allowed set."""

    name: str

    def choose(self, observation: Observation, allowed: Sequence[str]) -> Decision: ...


def top_reading(observation: Observation, allowed: Sequence[str]) -> tuple[str, ...]:
    """The mask of the top intent alone: ``allowed`` without the runner-up reading's actions."""
    if not observation.runner_up_actions:
        return tuple(allowed)
    extra = set(observation.runner_up_actions)
    return tuple(a for a in allowed if a not in extra)


def runner_up_questions(ranking: Sequence[tuple[str, float]], intent: str, allowed: Sequence[str],
                        asks: Collection[str], allowed_for: Callable[[str], Sequence[str]]
                        ) -> tuple[str | None, tuple[str, ...]]:
    """The runner-up reading of a message whose top intent is ``intent`` (mask ``allowed``): the ranking's second
    intent and the actions among ``asks`` that the flows allow only for it (``allowed_for(second)``), or
    ``(None, ())``. The engine (``dialogue.turn``) and the simulator both build it here, so they offer alike."""
    if len(ranking) < 2 or ranking[1][0] == intent:
        return None, ()
    second = ranking[1][0]
    extra = tuple(a for a in allowed_for(second) if a in asks and a not in allowed)
    return (second, extra) if extra else (None, ())


def intent_for(observation: Observation, action: str) -> str:
    """The intent the turn is read as once ``action`` is chosen: the runner-up's for one of its own actions."""
    if observation.runner_up is not None and action in observation.runner_up_actions:
        return observation.runner_up
    return observation.intent


def check_allowed(allowed: Sequence[str]) -> tuple[str, ...]:
    """Validate a mask: a turn with no allowed action is a bug in the bot's flows, not a user error."""
    if not allowed:
        raise PolicyError("the flows allow no action in this state; every state needs at least one")
    return tuple(allowed)
