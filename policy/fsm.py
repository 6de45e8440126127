"""The FSM's hand-written default policy: the bot's own rule, constrained by the mask."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from policy.base import Decision, Observation, check_allowed, top_reading
from policy.errors import MaskViolation

Rule = Callable[[Observation, Sequence[str]], str]


@dataclass
class FSMPolicy:
    """Applies the bot's rule (``default_policy`` in its flows module) and enforces the mask.

    A rule that proposes a forbidden action is a bug in the bot: it raises ``MaskViolation`` rather
    than silently doing something else, so scenario tests catch it.
    """

    rule: Rule
    name: str = "fsm"

    def choose(self, observation: Observation, allowed: Sequence[str]) -> Decision:
        mask = check_allowed(top_reading(observation, allowed))  # the rule reads the top intent only
        action = self.rule(observation, mask)
        if action not in mask:
            raise MaskViolation(action, mask)
        return Decision(action=action, score=1.0, allowed=tuple(allowed), policy=self.name)
