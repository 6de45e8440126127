"""Slot mappings and forms, as Rasa documents them.

* :func:`extract_slots` is Rasa 3's ``action_extract_slots``: after every user message, each slot's mappings whose
  conditions hold (``active_loop``, ``requested_slot``) and whose intent filters pass (``intent``, ``not_intent``
  and the active form's ``ignored_intents``) give the slot a value (an entity, the text, an intent's value). Rasa
  2.x form mappings arrive here already converted (the loader gives them the condition ``active_loop: <form>``).
* :func:`next_slot` and :func:`ask_action` are the form's loop: the first required slot without a value, and the
  action that asks for it (``action_ask_<form>_<slot>``, ``action_ask_<slot>``, ``utter_ask_<form>_<slot>``,
  ``utter_ask_<slot>``, in Rasa's order).

Pure functions of a project and a tracker; running the validation and ask actions is :mod:`dialogue.rasa.turn`'s job.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dialogue.rasa.project import Form, MappingCondition, RasaProject, SlotMapping
from dialogue.rasa.tracker import REQUESTED_SLOT, Tracker


def condition_holds(condition: MappingCondition, tracker: Tracker, loop: str | None) -> bool:
    if condition.active_loop != loop:
        return False
    return condition.requested_slot is None or tracker.slots.get(REQUESTED_SLOT) == condition.requested_slot


def mapping_value(
    mapping: SlotMapping, tracker: Tracker, *, loop: str | None, trigger: bool = False,
    ignored_intents: Iterable[str] = (),
) -> Any:
    """The value ``mapping`` gives from the latest message, or ``None`` when it does not apply.

    ``ignored_intents`` are the active form's: Rasa adds them to every mapping's ``not_intent``
    (https://rasa.com/docs/rasa/forms#defining-a-form); an intent the mapping names explicitly still fills it.
    """
    if mapping.conditions and not any(condition_holds(c, tracker, loop) for c in mapping.conditions):
        return None
    intent = tracker.intent or ""
    if mapping.intent and intent not in mapping.intent:
        return None
    if intent in mapping.not_intent or (not mapping.intent and intent in ignored_intents):
        return None
    if mapping.type == "from_entity":
        values = [
            e.value for e in tracker.entities
            if e.entity == mapping.entity and e.role == mapping.role and e.group == mapping.group  # as rasa-sdk
        ]
        if not values:
            return None
        return values if len(values) > 1 else values[0]
    if mapping.type == "from_text":
        text = (tracker.text or "").strip()
        return text if text and not text.startswith("/") else None
    if mapping.type == "from_intent":
        return mapping.value if mapping.intent else None
    if mapping.type == "from_trigger_intent":
        return mapping.value if trigger else None
    return None  # custom: an action fills it


def extract_slots(
    project: RasaProject, tracker: Tracker, *, loop: str | None, only: Iterable[str] | None = None, trigger: bool = False
) -> dict[str, Any]:
    """The slot values the latest message gives, as if ``loop`` were the active loop (list slots keep every value)."""
    wanted = set(only) if only is not None else None
    form = project.forms.get(loop) if loop else None
    ignored = frozenset(form.ignored_intents) if form is not None else frozenset()
    out: dict[str, Any] = {}
    for name, slot in project.slots.items():
        if wanted is not None and name not in wanted:
            continue
        for mapping in slot.mappings:
            value = mapping_value(mapping, tracker, loop=loop, trigger=trigger, ignored_intents=ignored)
            if value is None:
                continue
            if slot.type != "list" and isinstance(value, list):
                value = value[0]
            elif slot.type == "list" and not isinstance(value, list):
                value = [value]
            out[name] = value
            break
    return out


def next_slot(form: Form, tracker: Tracker) -> str | None:
    return next((s for s in form.required_slots if tracker.slots.get(s) is None), None)


def ask_action(project: RasaProject, form: str, slot: str, custom_actions: Iterable[str]) -> str | None:
    """The action that asks for ``slot`` in ``form``, in Rasa's order of preference, or ``None`` when there is none."""
    custom = set(custom_actions)
    for name in (f"action_ask_{form}_{slot}", f"action_ask_{slot}"):
        if name in custom:
            return name
    for name in (f"utter_ask_{form}_{slot}", f"utter_ask_{slot}"):
        if name in project.responses:
            return name
    return None
