"""Exceptions raised by the runtime package (one root: :class:`GenerationError`)."""

from __future__ import annotations


class GenerationError(Exception):
    """Root of every error the runtime package raises."""


class QueueFull(GenerationError):
    """The engine's bounded request queue is full; the caller should retry later or fall back."""

    def __init__(self, max_queue: int) -> None:
        super().__init__(f"generation queue is full ({max_queue} waiting requests)")
        self.max_queue = max_queue


class ModelLoadError(GenerationError):
    """A model folder could not be loaded."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot load model from {path!r}: {reason}")
        self.path = path
        self.reason = reason


class TemplateError(GenerationError):
    """The domain's ``responses:`` section is malformed or a response key is unknown."""


class EngineClosed(GenerationError):
    """The engine was closed while a request was pending or running."""


class RemoteError(GenerationError):
    """An OpenAI-compatible generation server could not be reached or answered with an error.

    ``status`` is the HTTP status when there was one (429 and 503 mean the server is busy)."""

    def __init__(self, url: str, reason: str, status: int | None = None) -> None:
        super().__init__(f"generation server {url!r} failed" + (f" (HTTP {status})" if status else "") + f": {reason}")
        self.url = url
        self.reason = reason
        self.status = status

    @property
    def busy(self) -> bool:
        return self.status in (429, 503)
