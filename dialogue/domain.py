"""A bot's domain (``domain.yml``): intents, entities, slots and response templates."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dialogue.errors import DialogueError


class DomainError(DialogueError):
    """``domain.yml`` is missing or malformed; the message names the file and the problem."""


# The least NLU confidence at which a ``FromText.unsure`` intent changes the subject. Asked for a reason, a customer who
# answers "just dont use them" (read as a greeting at 0.72) or "鞋子开胶了😡" (a complaint, the shop's hand-off intent,
# at 0.71) is answering; "thanks, bye" or "let me talk to a person" said plainly are read with more confidence.
SUBJECT_CHANGE_TRUST = 0.8


@dataclass(frozen=True)
class FromText:
    """A slot filled with the customer's whole (redacted) message when it answers the bot's question for it.

    ``domain.yml``: ``reason: {type: text, from_text: {when_asked_by: utter_ask_reason, not_intent: [order_status],
    as_intent: inform}}``. Rasa's ``from_text`` mapping with a ``requested_slot`` condition, for bots without forms:
    the bot's previous action was ``when_asked_by`` (or the conversation still waits for the slot: the customer asked
    something in between, got the answer, and now answers the question), the message's intent is none of
    ``not_intent`` (a customer who changes the subject is not answering; an ``unsure`` one counts only when the NLU is
    at least :data:`SUBJECT_CHANGE_TRUST` sure of it), and no entity filled the slot. The flows and the policy then see the turn
    as ``as_intent`` (when given): the message answered the question, whatever the NLU filed it under ("dont need it
    anymore" reads like a goodbye, and is a reason for a return).
    """

    slot: str
    when_asked_by: str
    not_intent: frozenset[str] = frozenset()
    as_intent: str | None = None
    # the value may come unasked in the message that starts the slot's task ("return 10976, it broke"): for free
    # text such as a reason or a description, never for a typed value a clause could be mistaken for
    in_request: bool = False
    # of not_intent, those that change the subject only when the NLU is at least SUBJECT_CHANGE_TRUST sure of them
    # (small talk and hand-off: a misread answer lands there); another task's, cancel's or knowledge's always do, as
    # a customer who switches tasks would lose the switch to an answer otherwise
    unsure: frozenset[str] = frozenset()

    def takes(self, last_action: str | None, intent: str, filled: bool, awaited: frozenset[str] = frozenset(),
              confidence: float = 1.0, plain: bool = True) -> bool:
        """``awaited``: the slots the conversation's state waits for (:meth:`dialogue.flows.Flows.awaited`);
        ``confidence``: the NLU's for ``intent``; ``plain``: whether the message's words are nearer to ``intent``'s
        training examples than to the answers' (:func:`dialogue.turn.understand`). An ``unsure`` intent changes the
        subject only when the NLU is at least :data:`SUBJECT_CHANGE_TRUST` sure of it and it is said plainly."""
        asked = last_action == self.when_asked_by or self.slot in awaited
        changed = intent in self.not_intent and (intent not in self.unsure or
                                                 (confidence >= SUBJECT_CHANGE_TRUST and plain))
        return asked and not changed and not filled


@dataclass(frozen=True)
class Domain:
    intents: tuple[str, ...]
    entities: tuple[str, ...]
    slots: tuple[str, ...]
    responses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    from_text: tuple[FromText, ...] = ()

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
        intents = tuple(raw.get("intents") or ())
        return cls(
            intents=intents,
            entities=tuple(raw.get("entities") or ()),
            slots=tuple(slots),
            responses=responses,
            raw=raw,
            from_text=tuple(_from_text(path, name, spec, intents, responses) for name, spec in slots.items()
                            if isinstance(spec, dict) and spec.get("from_text") is not None),
        )

    def for_action_server(self) -> dict[str, Any]:
        """The domain as the rasa-sdk protocol sends it (``responses`` included)."""
        return dict(self.raw)


def _from_text(path: Path, slot: str, spec: dict[str, Any], intents: tuple[str, ...], responses: dict[str, Any]) -> FromText:
    raw = spec["from_text"]
    where = f"domain {path}, slots.{slot}.from_text"
    if not isinstance(raw, dict) or not isinstance(raw.get("when_asked_by"), str):
        raise DomainError(f"{where}: needs when_asked_by: <the response or action that asks for {slot}>")
    unknown = set(raw) - {"when_asked_by", "not_intent", "as_intent", "in_request"}
    if unknown:
        raise DomainError(f"{where}: unknown keys {sorted(unknown)} (when_asked_by, not_intent, as_intent, in_request)")
    if not isinstance(raw.get("in_request", False), bool):
        raise DomainError(f"{where}: in_request is true or false")
    not_intent = raw.get("not_intent") or []
    as_intent = raw.get("as_intent")
    for name in [*not_intent, *([as_intent] if as_intent else [])]:
        if name not in intents:
            raise DomainError(f"{where}: {name!r} is not an intent of the domain (intents: {', '.join(intents)})")
    if raw["when_asked_by"].startswith("utter_") and raw["when_asked_by"] not in responses:
        raise DomainError(f"{where}: no response {raw['when_asked_by']!r} in the domain")
    return FromText(slot, raw["when_asked_by"], frozenset(not_intent), as_intent, bool(raw.get("in_request", False)))
