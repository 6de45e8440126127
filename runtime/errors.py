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


class APIError(GenerationError):
    """A request to the OpenAI-compatible server (:mod:`runtime.openai_api`) that is answered with an error:
    the HTTP ``status`` and OpenAI's error fields (``message``, ``type``, ``code``, ``param``).

    Defined here, under the package's root, so a caller that catches :class:`GenerationError` catches every
    runtime failure; the server turns it into its JSON answer (:meth:`body`)."""

    def __init__(self, status: int, message: str, type_: str, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param

    def body(self) -> dict[str, dict[str, str | None]]:
        """The OpenAI-style JSON error body."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
