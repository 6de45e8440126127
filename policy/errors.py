"""Exceptions of the policy package."""


class PolicyError(Exception):
    """Root of the policy package's errors."""


class MaskViolation(PolicyError):
    """A policy proposed an action outside the FSM's allowed set."""

    def __init__(self, action: str, allowed: tuple[str, ...]) -> None:
        super().__init__(f"action {action!r} is not in the allowed set {list(allowed)}")
        self.action = action
        self.allowed = allowed
