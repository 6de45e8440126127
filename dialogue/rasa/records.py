"""The typed records a Rasa project folder is read into (:func:`dialogue.rasa.project.load_project` builds them).

Rasa 2.x and 3.x differ in where slot mappings live (2.x: under ``forms:``; 3.x: under each slot's ``mappings:``); both
are read into :class:`SlotMapping` records on the slot, a 2.x form mapping getting the condition ``active_loop: <form>``.
Whatever Kefu does not support is an :class:`Unsupported` entry of :attr:`RasaProject.unsupported` (file, key, why),
never dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dialogue.errors import DialogueError


class RasaProjectError(DialogueError):
    """The folder is not a Rasa project, or one of its files cannot be read; the message names the file."""


@dataclass(frozen=True)
class Unsupported:
    """A key of the project that Kefu does not run (the import lists it and goes on with the rest)."""

    file: str  # relative to the project root
    key: str  # a dotted path: "pipeline[5].DucklingEntityExtractor", "responses.utter_x[0].channel"
    why: str


@dataclass(frozen=True)
class MappingCondition:
    active_loop: str | None  # None: the condition is "no form active" only when written as `active_loop: null`
    requested_slot: str | None = None


@dataclass(frozen=True)
class SlotMapping:
    """One of a slot's mappings (Rasa 3.x ``mappings:``; 2.x form mappings are converted to these)."""

    type: str  # from_entity | from_text | from_intent | from_trigger_intent | custom
    entity: str | None = None
    role: str | None = None
    group: str | None = None
    intent: tuple[str, ...] = ()  # empty: any intent
    not_intent: tuple[str, ...] = ()
    value: Any = None  # from_intent / from_trigger_intent
    action: str | None = None  # custom
    conditions: tuple[MappingCondition, ...] = ()  # empty: always; else any one of them must hold


@dataclass(frozen=True)
class Slot:
    name: str
    type: str  # text | bool | categorical | float | list | any
    influence_conversation: bool = True  # Rasa's default is True for every type but `any`
    initial_value: Any = None
    values: tuple[str, ...] = ()  # categorical
    min_value: float = 0.0
    max_value: float = 1.0
    mappings: tuple[SlotMapping, ...] = ()


@dataclass(frozen=True)
class Form:
    name: str
    required_slots: tuple[str, ...]
    ignored_intents: tuple[str, ...] = ()


@dataclass(frozen=True)
class Intent:
    name: str
    use_entities: tuple[str, ...] | None = None  # None: every entity (Rasa's default)
    ignore_entities: tuple[str, ...] = ()

    def featurised_entities(self, entities: tuple[str, ...]) -> tuple[str, ...]:
        """The entity names of a message with this intent that Rasa's policies see."""
        kept = entities if self.use_entities is None else tuple(e for e in entities if e in self.use_entities)
        return tuple(e for e in kept if e not in self.ignore_entities)


@dataclass(frozen=True)
class SessionConfig:
    session_expiration_time: float = 60.0  # minutes; 0: sessions never expire
    carry_over_slots_to_new_session: bool = True


@dataclass(frozen=True)
class RasaProject:
    root: Path
    version: str  # the domain's `version:` ("2.0", "3.1"), "" when absent
    language: str
    intents: dict[str, Intent]
    entities: tuple[str, ...]
    slots: dict[str, Slot]
    forms: dict[str, Form]
    responses: dict[str, tuple[dict[str, Any], ...]]  # each variation as written (text, buttons, condition, channel...)
    actions: tuple[str, ...]  # custom actions of the domain (`actions:`), without responses and forms
    session_config: SessionConfig = SessionConfig()
    nlu_files: tuple[Path, ...] = ()  # files under data/ holding an `nlu:` key
    story_files: tuple[Path, ...] = ()  # files under data/ holding `stories:`
    rule_files: tuple[Path, ...] = ()  # files under data/ holding `rules:`
    test_files: tuple[Path, ...] = ()  # tests/*.yml holding `stories:` (end-to-end test stories)
    fallback_threshold: float | None = None  # FallbackClassifier.threshold (None: no FallbackClassifier)
    ambiguity_threshold: float = 0.1
    core_fallback_threshold: float = 0.3  # RulePolicy
    core_fallback_action: str = "action_default_fallback"
    max_history: int | None = None  # the largest max_history of MemoizationPolicy / AugmentedMemoizationPolicy
    augmented_memoization: bool = False
    action_endpoint: str | None = None  # endpoints.yml action_endpoint.url
    actions_package: Path | None = None  # actions/ (a package) or actions.py, when present
    raw_config: dict[str, Any] = field(default_factory=dict)
    unsupported: tuple[Unsupported, ...] = ()

    @property
    def form_slots(self) -> set[str]:
        return {s for f in self.forms.values() for s in f.required_slots}

