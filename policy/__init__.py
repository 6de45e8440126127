"""Dialogue policies: choose one action among those the FSM allows."""

from policy.base import Decision, Observation, Policy
from policy.errors import MaskViolation, PolicyError
from policy.fsm import FSMPolicy

__all__ = ["Decision", "FSMPolicy", "MaskViolation", "Observation", "Policy", "PolicyError"]
