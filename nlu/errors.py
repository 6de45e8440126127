"""Exceptions of the nlu package. Every error carries the context needed to act on it (file, line, reason)."""

from __future__ import annotations

from pathlib import Path


class NLUError(Exception):
    """Root of every error raised by the nlu package. ``context`` holds structured details."""

    def __init__(self, message: str, **context: object) -> None:
        super().__init__(message)
        self.context: dict[str, object] = context


class ModelLoadError(NLUError):
    """A model directory is missing, incomplete or corrupt. ``path`` names the offending file."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"cannot load NLU model file {path}: {reason}", path=str(path), reason=reason)
        self.path = Path(path)
        self.reason = reason


class DataError(NLUError):
    """A training/evaluation data file is unreadable or malformed at ``line`` (1-based; 0 = whole file)."""

    def __init__(self, path: str | Path, line: int, reason: str) -> None:
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"bad NLU data at {where}: {reason}", path=str(path), line=line, reason=reason)
        self.path = Path(path)
        self.line = line
        self.reason = reason


class TrainingError(NLUError):
    """Training cannot start or continue (e.g. no examples, a single intent)."""
