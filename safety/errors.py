"""Exceptions of the safety package. Every error carries the context needed to act on it (file, reason)."""

from __future__ import annotations

from pathlib import Path


class SafetyError(Exception):
    """Root of every error raised by the safety package. ``context`` holds structured details."""

    def __init__(self, message: str, **context: object) -> None:
        super().__init__(message)
        self.context: dict[str, object] = context


class ToxicityModelError(SafetyError):
    """A toxicity model directory is missing, incomplete or corrupt. ``path`` names the offending file."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"cannot load toxicity model file {path}: {reason}", path=str(path), reason=reason)
        self.path = Path(path)
        self.reason = reason


class InjectionModelError(SafetyError):
    """A prompt-injection detector directory is missing, incomplete or corrupt. ``path`` names the offending file."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"cannot load injection model file {path}: {reason}", path=str(path), reason=reason)
        self.path = Path(path)
        self.reason = reason


class SafetyDataError(SafetyError):
    """A training/evaluation data file is unreadable or malformed at ``line`` (1-based; 0 = whole file)."""

    def __init__(self, path: str | Path, line: int, reason: str) -> None:
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"bad safety data at {where}: {reason}", path=str(path), line=line, reason=reason)
        self.path = Path(path)
        self.line = line
        self.reason = reason


class InputTooLongError(SafetyError):
    """A user message is longer than the input filter accepts (lengths in characters)."""

    def __init__(self, length: int, max_chars: int) -> None:
        super().__init__(
            f"input of {length} characters exceeds the limit of {max_chars}", length=length, max_chars=max_chars
        )
        self.length = length
        self.max_chars = max_chars
