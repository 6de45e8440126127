"""A Rasa project's domain (one file or several) read into records, with Rasa 2.x's shapes migrated to 3.x's.

The domain is ``domain.yml`` and/or every domain file under ``domain/``, merged section by section (a name defined
differently in two files is an error naming both). Rasa 2.x projects are read as ``rasa data migrate`` would write
them: form slot mappings become slot mappings with an ``active_loop`` condition, and a slot named after an entity
is filled from it (2.x ``auto_fill``). Response keys and domain keys Kefu does not use are listed as unsupported.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dialogue.rasa.config import builtin_class
from dialogue.rasa.rasa_yaml import is_yaml, major_version, name_list, visible_files
from dialogue.rasa.records import (
    Form,
    Intent,
    MappingCondition,
    RasaProjectError,
    SessionConfig,
    Slot,
    SlotMapping,
    Unsupported,
)

DOMAIN_KEYS = frozenset({"version", "intents", "entities", "slots", "responses", "templates", "forms", "actions",
                          "session_config", "config", "e2e_actions"})
_SLOT_TYPES = {"text": "text", "bool": "bool", "categorical": "categorical", "float": "float", "list": "list",
               "any": "any", "unfeaturized": "any"}
_SLOT_CLASSES = {"TextSlot": "text", "BooleanSlot": "bool", "CategoricalSlot": "categorical", "FloatSlot": "float",
                 "ListSlot": "list", "AnySlot": "any", "UnfeaturizedSlot": "any"}
_MAPPING_TYPES = frozenset({"from_entity", "from_text", "from_intent", "from_trigger_intent", "custom"})
_UNSUPPORTED_VARIATION_KEYS = {
    "channel": "channel-specific variation: Kefu has one channel, its widget gets the variation without the channel",
    "image": "images are not sent: Kefu's widget shows the text (and buttons) only",
    "custom": "custom payloads are not sent: Kefu's widget shows the text (and buttons) only",
    "attachment": "attachments are not sent: Kefu's widget shows the text (and buttons) only",
    "elements": "channel elements (carousels) are not sent: Kefu's widget shows the text (and buttons) only",
    "quick_replies": "channel quick replies are not sent: write them as `buttons`",
}


@dataclass
class MergedDomain:
    """The domain's sections, each entry with the file it came from (to name both files of a conflict)."""

    version: str = ""
    intents: dict[str, tuple[Intent, str]] = field(default_factory=dict)
    entities: dict[str, tuple[Any, str]] = field(default_factory=dict)
    slots: dict[str, tuple[Any, str]] = field(default_factory=dict)
    responses: dict[str, tuple[Any, str]] = field(default_factory=dict)
    forms: dict[str, tuple[Any, str]] = field(default_factory=dict)
    actions: dict[str, tuple[Any, str]] = field(default_factory=dict)
    session_config: dict[str, tuple[Any, str]] = field(default_factory=dict)
    config: dict[str, tuple[Any, str]] = field(default_factory=dict)
    legacy_forms: bool = False  # a form written in a 2.x shape (`forms: [..]` or mappings under `forms:`)
    auto_fill_keys: bool = False  # a slot written with 2.x's `auto_fill`


_V = TypeVar("_V")


def _put(section: dict[str, tuple[_V, str]], what: str, name: str, value: _V, file: str) -> None:
    if name in section and section[name][0] != value:
        raise RasaProjectError(f"domain: {what} '{name}' is defined differently in {section[name][1]} and {file}")
    section.setdefault(name, (value, file))


def _entries(value: Any, what: str, file: str) -> list[tuple[str, Any]]:
    """A domain list of names or one-key mappings (``- greet`` / ``- greet: {use_entities: []}``) as pairs."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise RasaProjectError(f"{file}: {what}: expected a list")
    pairs: list[tuple[str, Any]] = []
    for i, entry in enumerate(value):
        if isinstance(entry, str):
            pairs.append((entry, None))
        elif isinstance(entry, dict) and len(entry) == 1:
            name, props = next(iter(entry.items()))
            pairs.append((str(name), props))
        else:
            raise RasaProjectError(f"{file}: {what}[{i}]: expected a name or a mapping of one name")
    return pairs


def _read_intent(name: str, props: Any, file: str, unsupported: list[Unsupported]) -> Intent:
    if props is None:
        return Intent(name)
    if not isinstance(props, dict):
        raise RasaProjectError(f"{file}: intents.{name}: expected a mapping (use_entities, ignore_entities)")
    use = props.get("use_entities", True)
    use_entities: tuple[str, ...] | None
    if use is True or use is None:
        use_entities = None
    elif use is False:
        use_entities = ()
    else:
        use_entities = name_list(use, f"{file}: intents.{name}.use_entities")
    ignore = name_list(props.get("ignore_entities"), f"{file}: intents.{name}.ignore_entities")
    if props.get("triggers"):
        unsupported.append(Unsupported(file, f"intents.{name}.triggers", (
            "MappingPolicy triggers (deprecated in Rasa 2) are not run: write a rule (intent -> action)")))
    return Intent(name, use_entities, ignore)


def merge_domain_file(merged: MergedDomain, data: dict[str, Any], file: str, unsupported: list[Unsupported]) -> None:
    """Add one domain file's sections; a name defined differently in two files raises naming both files."""
    for key in data:
        if key not in DOMAIN_KEYS:
            unsupported.append(Unsupported(file, str(key), "domain key unknown to Kefu: not read"))
    if data.get("version") is not None and not merged.version:
        merged.version = str(data["version"])
    for name, props in _entries(data.get("intents"), "intents", file):
        _put(merged.intents, "intent", name, _read_intent(name, props, file, unsupported), file)
    for name, props in _entries(data.get("entities"), "entities", file):
        _put(merged.entities, "entity", name, props or {}, file)
    for name, props in _entries(data.get("actions"), "actions", file):
        _put(merged.actions, "action", name, props or {}, file)
    slots, forms = data.get("slots"), data.get("forms")
    if isinstance(slots, dict):
        merged.auto_fill_keys |= any(isinstance(s, dict) and "auto_fill" in s for s in slots.values())
    if isinstance(forms, dict):
        merged.legacy_forms |= any(_is_legacy_form(f) for f in forms.values())
    for section, what, target in (("slots", "slot", merged.slots), ("forms", "form", merged.forms),
                                  ("session_config", "session_config key", merged.session_config),
                                  ("config", "config key", merged.config)):
        value = data.get(section)
        if value is None:
            continue
        if section == "forms" and isinstance(value, list):  # Rasa 1.x: form names, slots in the FormAction's code
            merged.legacy_forms = True
            value = {str(n): None for n in value}
        if not isinstance(value, dict):
            raise RasaProjectError(f"{file}: {section}: expected a mapping")
        for name, props in value.items():
            _put(target, what, str(name), props, file)
    for section in ("responses", "templates"):  # `templates`: the Rasa 1.x name of `responses`
        merge_responses(merged, data.get(section), file)
    e2e = data.get("e2e_actions")
    if e2e:
        unsupported.append(Unsupported(file, "e2e_actions", (
            "end-to-end bot texts (stories' `bot:` steps) are not predicted: Kefu's policy predicts actions")))


def _is_legacy_form(raw: Any) -> bool:
    """A form written in a Rasa 2.x shape: slot mappings under ``required_slots:`` or directly under the form."""
    if not isinstance(raw, dict):
        return False
    if "required_slots" in raw:
        return isinstance(raw["required_slots"], dict)
    return any(k != "ignored_intents" for k in raw)


def merge_responses(merged: MergedDomain, value: Any, file: str) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise RasaProjectError(f"{file}: responses: expected a mapping of response names")
    for name, variations in value.items():
        if not isinstance(variations, list):
            raise RasaProjectError(f"{file}: responses.{name}: expected a list of variations")
        written = []
        for i, variation in enumerate(variations):
            if isinstance(variation, str):  # a bare string is a text variation (Rasa 1.x accepted it)
                variation = {"text": variation}
            if not isinstance(variation, dict):
                raise RasaProjectError(f"{file}: responses.{name}[{i}]: expected a mapping (text, buttons...)")
            written.append(variation)
        _put(merged.responses, "response", str(name), written, file)


def _read_mapping(raw: Any, where: str, file: str, key: str, unsupported: list[Unsupported]) -> SlotMapping | None:
    """One slot mapping; None when Kefu does not run its type (then listed as unsupported)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        raise RasaProjectError(f"{where}: expected a mapping with a `type`")
    kind = raw["type"]
    if kind not in _MAPPING_TYPES:
        unsupported.append(Unsupported(file, f"{key}.type", f"slot mapping type '{kind}' is not run by Kefu"))
        return None
    conditions: list[MappingCondition] = []
    for j, condition in enumerate(raw.get("conditions") or ()):
        if not isinstance(condition, dict):
            raise RasaProjectError(f"{where}.conditions[{j}]: expected a mapping (active_loop, requested_slot)")
        loop, requested = condition.get("active_loop"), condition.get("requested_slot")
        conditions.append(MappingCondition(None if loop is None else str(loop),
                                           None if requested is None else str(requested)))
    mapping = SlotMapping(
        type=kind,
        entity=None if raw.get("entity") is None else str(raw["entity"]),
        role=None if raw.get("role") is None else str(raw["role"]),
        group=None if raw.get("group") is None else str(raw["group"]),
        intent=name_list(raw.get("intent"), f"{where}.intent"),
        not_intent=name_list(raw.get("not_intent"), f"{where}.not_intent"),
        value=raw.get("value"),
        action=None if raw.get("action") is None else str(raw["action"]),
        conditions=tuple(conditions),
    )
    if kind == "from_entity" and mapping.entity is None:
        raise RasaProjectError(f"{where}: a from_entity mapping needs an `entity`")
    return mapping


def _slot_type(name: str, raw: dict[str, Any], file: str, unsupported: list[Unsupported]) -> tuple[str, bool | None]:
    """The slot's type and, where the type decides it, whether it influences the conversation."""
    written = raw.get("type")
    if not isinstance(written, str):
        raise RasaProjectError(f"{file}: slots.{name}: no `type`")
    if written in _SLOT_TYPES:
        return _SLOT_TYPES[written], (False if written == "unfeaturized" else None)
    cls = builtin_class(written)
    if cls in _SLOT_CLASSES:
        return _SLOT_CLASSES[cls], (False if cls == "UnfeaturizedSlot" else None)
    if "." in written:
        unsupported.append(Unsupported(file, f"slots.{name}.type", (
            f"custom slot class '{written}': read as an `any` slot (it does not influence the conversation)")))
        return "any", False
    raise RasaProjectError(f"{file}: slots.{name}.type: unknown slot type '{written}'")


def _read_slot(name: str, raw: Any, file: str, unsupported: list[Unsupported]) -> Slot:
    if not isinstance(raw, dict):
        raise RasaProjectError(f"{file}: slots.{name}: expected a mapping (type, mappings...)")
    kind, influence = _slot_type(name, raw, file, unsupported)
    if influence is None:
        influence = bool(raw.get("influence_conversation", kind != "any"))
    mappings: list[SlotMapping] = []
    written = raw.get("mappings") or []
    if not isinstance(written, list):
        raise RasaProjectError(f"{file}: slots.{name}.mappings: expected a list")
    for i, entry in enumerate(written):
        key = f"slots.{name}.mappings[{i}]"
        mapping = _read_mapping(entry, f"{file}: {key}", file, key, unsupported)
        if mapping is not None:
            mappings.append(mapping)
    values = raw.get("values") or []
    if not isinstance(values, list):
        raise RasaProjectError(f"{file}: slots.{name}.values: expected a list")
    try:
        low, high = float(raw.get("min_value", 0.0)), float(raw.get("max_value", 1.0))
    except (TypeError, ValueError) as exc:
        raise RasaProjectError(f"{file}: slots.{name}: min_value / max_value must be numbers") from exc
    return Slot(name=name, type=kind, influence_conversation=influence, initial_value=raw.get("initial_value"),
                values=tuple(str(v) for v in values), min_value=low, max_value=high, mappings=tuple(mappings))


def _legacy_condition(mapping: SlotMapping, form: str, slot: str) -> MappingCondition:
    """The condition a Rasa 2.x form mapping gets in Rasa 3.x terms, as ``rasa data migrate`` writes it.

    In 2.x a form fills a slot from an entity (``from_entity``) whatever slot it asked for, and from the trigger
    intent when it is activated; ``from_text`` / ``from_intent`` fill only the slot it asked for.
    """
    if mapping.type in ("from_entity", "from_trigger_intent"):
        return MappingCondition(active_loop=form)
    return MappingCondition(active_loop=form, requested_slot=slot)


def _read_form(name: str, raw: Any, file: str, unsupported: list[Unsupported],
               legacy_mappings: dict[str, list[tuple[SlotMapping, MappingCondition]]]) -> Form:
    """A form in any of its shapes (1.x name only, 2.0, 2.x, 3.x); 2.x mappings go to ``legacy_mappings``."""
    if raw is None:
        return Form(name, ())
    if not isinstance(raw, dict):
        raise RasaProjectError(f"{file}: forms.{name}: expected a mapping (required_slots, ignored_intents)")
    ignored = name_list(raw.get("ignored_intents"), f"{file}: forms.{name}.ignored_intents")
    if "required_slots" in raw:
        slots_raw = raw["required_slots"] or []
        prefix = f"forms.{name}.required_slots"
    else:  # Rasa 2.0: the slots and their mappings directly under the form
        slots_raw = {k: v for k, v in raw.items() if k != "ignored_intents"}
        prefix = f"forms.{name}"
    if isinstance(slots_raw, list):  # Rasa 3.x: names; the mappings are the slots'
        return Form(name, name_list(slots_raw, f"{file}: {prefix}"), ignored)
    if not isinstance(slots_raw, dict):
        raise RasaProjectError(f"{file}: {prefix}: expected a list of slots (3.x) or slot mappings (2.x)")
    for slot, mappings in slots_raw.items():
        slot = str(slot)
        if mappings is None:
            mappings = []
        if not isinstance(mappings, list):
            raise RasaProjectError(f"{file}: {prefix}.{slot}: expected a list of slot mappings")
        for i, entry in enumerate(mappings):
            key = f"{prefix}.{slot}[{i}]"
            mapping = _read_mapping(entry, f"{file}: {key}", file, key, unsupported)
            if mapping is not None:
                legacy_mappings.setdefault(slot, []).append((mapping, _legacy_condition(mapping, name, slot)))
    return Form(name, tuple(str(s) for s in slots_raw), ignored)


def _add_legacy(mappings: list[SlotMapping], new: SlotMapping, condition: MappingCondition) -> None:
    """Add a converted 2.x form mapping; the same mapping in another form gets that form's condition added."""
    for i, existing in enumerate(mappings):
        if existing.conditions and dataclasses.replace(existing, conditions=()) == new:
            if condition not in existing.conditions:
                mappings[i] = dataclasses.replace(existing, conditions=(*existing.conditions, condition))
            return
    mappings.append(dataclasses.replace(new, conditions=(condition,)))


@dataclass(frozen=True)
class DomainRecords:
    version: str
    intents: dict[str, Intent]
    entities: tuple[str, ...]
    slots: dict[str, Slot]
    forms: dict[str, Form]
    responses: dict[str, tuple[dict[str, Any], ...]]
    actions: tuple[str, ...]
    session_config: SessionConfig


def domain_files(root: Path) -> list[Path]:
    files = [root / n for n in ("domain.yml", "domain.yaml") if (root / n).is_file()]
    files += [p for p in visible_files(root / "domain") if is_yaml(p)]
    if not files:
        raise RasaProjectError(f"{root}: not a Rasa project: no domain.yml or domain/")
    return files


def build_domain(merged: MergedDomain, legacy: bool, unsupported: list[Unsupported]) -> DomainRecords:
    """The merged sections read into records, 2.x form mappings and auto-fill turned into slot mappings."""
    slots = {name: _read_slot(name, raw, file, unsupported) for name, (raw, file) in merged.slots.items()}
    legacy_mappings: dict[str, list[tuple[SlotMapping, MappingCondition]]] = {}
    forms: dict[str, Form] = {}
    for name, (raw, file) in merged.forms.items():
        form = forms[name] = _read_form(name, raw, file, unsupported, legacy_mappings)
        if raw is None and merged.legacy_forms:
            unsupported.append(Unsupported(file, f"forms.{name}", (
                "Rasa 1.x form: its required slots live in the FormAction's code; Kefu sees none")))
        for slot in form.required_slots:
            if slot not in slots:
                unsupported.append(Unsupported(file, f"forms.{name}.required_slots.{slot}", (
                    "the slot is not declared under `slots:`: read as an `any` slot")))
                slots[slot] = Slot(slot, "any", influence_conversation=False)
    for slot, pairs in legacy_mappings.items():
        mappings = list(slots[slot].mappings)
        for mapping, condition in pairs:
            _add_legacy(mappings, mapping, condition)
        slots[slot] = dataclasses.replace(slots[slot], mappings=tuple(mappings))

    entities = tuple(merged.entities)
    store_entities = merged.config.get("store_entities_as_slots", (True, ""))[0] is not False
    if legacy and store_entities:  # Rasa 2.x auto_fill: a slot named after an entity takes the entity's value
        for name, (raw, _) in merged.slots.items():
            if name in merged.entities and isinstance(raw, dict) and raw.get("auto_fill", True) is not False:
                auto = SlotMapping("from_entity", entity=name)
                if auto not in slots[name].mappings:
                    slots[name] = dataclasses.replace(slots[name], mappings=(*slots[name].mappings, auto))

    responses: dict[str, tuple[dict[str, Any], ...]] = {}
    for name, (variations, file) in merged.responses.items():
        responses[name] = tuple(variations)
        for i, variation in enumerate(variations):
            for key in variation:
                if key in _UNSUPPORTED_VARIATION_KEYS:
                    unsupported.append(Unsupported(file, f"responses.{name}[{i}].{key}",
                                                   _UNSUPPORTED_VARIATION_KEYS[key]))
            metadata = variation.get("metadata")
            if isinstance(metadata, dict) and metadata.get("rephrase"):
                unsupported.append(Unsupported(file, f"responses.{name}[{i}].metadata.rephrase",
                                               "responses are not rephrased by an LLM: the text is sent as written"))

    actions = tuple(a for a in merged.actions if a not in responses and a not in forms)
    session = {k: v for k, (v, _) in merged.session_config.items()}
    session_config = SessionConfig(
        session_expiration_time=float(session.get("session_expiration_time", 60.0) or 0.0),
        carry_over_slots_to_new_session=bool(session.get("carry_over_slots_to_new_session", True)),
    )
    return DomainRecords(version=merged.version, intents={n: i for n, (i, _) in merged.intents.items()}, entities=entities,
                   slots=slots, forms=forms, responses=responses, actions=actions, session_config=session_config)


def is_legacy(merged: MergedDomain, data_versions: list[str]) -> bool:
    """Whether the project is Rasa 2.x (slots auto-filled from entities of their name), not 3.x.

    The domain's ``version:`` says it; without one, a data file's; without any, 2.x-only keys (``auto_fill``, form
    mappings under ``forms:``) do; else 3.x, Rasa's reading of a file without a version.
    """
    for version in (merged.version, *data_versions):
        number = major_version(version)
        if number is not None:
            return number < 3
    return merged.legacy_forms or merged.auto_fill_keys
