"""Dialogue policies: choose one action among those the FSM allows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from policy.base import Decision, Observation, Policy, intent_for
from policy.errors import MaskViolation, PolicyError
from policy.fsm import FSMPolicy

if TYPE_CHECKING:
    from policy.learned import LearnedPolicy

__all__ = ["Decision", "FSMPolicy", "LearnedPolicy", "MaskViolation", "Observation", "Policy", "PolicyError",
           "intent_for"]


def __getattr__(name: str) -> Any:  # lazy: `import policy` must not import torch
    if name == "LearnedPolicy":
        from policy.learned import LearnedPolicy

        return LearnedPolicy
    raise AttributeError(f"module 'policy' has no attribute {name!r}")
