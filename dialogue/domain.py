"""A bot's domain (``domain.yml``): intents, entities, slots and response templates."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dialogue.errors import DialogueError


class DomainError(DialogueError):
    """``domain.yml`` is missing or malformed; the message names the file and the problem."""


@dataclass(frozen=True)
class Domain:
    intents: tuple[str, ...]
    entities: tuple[str, ...]
    slots: tuple[str, ...]
    responses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Domain:
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise DomainError(f"cannot read domain {path}: {exc}") from exc
        if not isinstance(raw, dict):
            raise DomainError(f"domain {path} is not a mapping")
        slots = raw.get("slots") or {}
        responses = raw.get("responses") or {}
        if not isinstance(slots, dict) or not isinstance(responses, dict):
            raise DomainError(f"domain {path}: 'slots' and 'responses' must be mappings")
        return cls(
            intents=tuple(raw.get("intents") or ()),
            entities=tuple(raw.get("entities") or ()),
            slots=tuple(slots),
            responses=responses,
            raw=raw,
        )

    def for_action_server(self) -> dict[str, Any]:
        """The domain as the rasa-sdk protocol sends it (``responses`` included)."""
        return dict(self.raw)
