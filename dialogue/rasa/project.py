"""A Rasa project folder read into typed records: config, endpoints, the domain (one file or several) and data files.

Rasa 2.x and 3.x differ in where slot mappings live (2.x: under ``forms:``; 3.x: under each slot's ``mappings:``); both
are read into :class:`SlotMapping` records on the slot, a 2.x form mapping getting the condition ``active_loop: <form>``.
Whatever Kefu does not support is listed in :attr:`RasaProject.unsupported` (file, key, why), never dropped silently.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml

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


# --------------------------------------------------------------------------------------------------------- YAML reading

_BOOL_TAG = "tag:yaml.org,2002:bool"
_MERGE_TAG = "tag:yaml.org,2002:merge"


@functools.cache
def _yaml_loader() -> type[yaml.SafeLoader]:
    """A safe loader that reads YAML as Rasa does (ruamel, YAML 1.2), built on first use.

    Two differences from PyYAML's YAML 1.1 matter for Rasa files: ``yes``/``no``/``on``/``off`` are strings in 1.2
    (a 2.x ``from_intent`` mapping's ``value: yes`` sets the slot to the string "yes", not to ``True``), and a key
    written twice in one mapping is an error (ruamel refuses it; PyYAML would silently keep the last one).
    """
    base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class Loader(base):  # type: ignore[valid-type,misc]
        yaml_implicit_resolvers: ClassVar[dict[Any, list[tuple[str, Any]]]] = {
            first: [resolver for resolver in resolvers if resolver[0] != _BOOL_TAG]
            for first, resolvers in base.yaml_implicit_resolvers.items()
        }

        def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
            if isinstance(node, yaml.MappingNode):
                seen: set[tuple[str, str]] = set()
                for key_node, _ in node.value:
                    if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE_TAG:
                        key = (key_node.tag, key_node.value)
                        if key in seen:
                            raise yaml.constructor.ConstructorError(
                                None, None, f"duplicate key {key_node.value!r}", key_node.start_mark
                            )
                        seen.add(key)
            mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
            return mapping

    Loader.add_implicit_resolver(_BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
    return Loader


def read_yaml(path: Path, root: Path | None = None) -> Any:
    """The content of a YAML file read as Rasa reads it (YAML 1.2 booleans, duplicate keys refused); None when empty.

    Raises :class:`RasaProjectError` naming the file (relative to ``root`` when given) and the line of the error.
    """
    name = _relative(path, root) if root is not None else str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise RasaProjectError(f"{name}: cannot read the file: {exc.__class__.__name__}") from exc
    try:
        return yaml.load(text, Loader=_yaml_loader())  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark is not None else name
        raise RasaProjectError(f"{where}: malformed YAML: {exc.problem or exc.context}") from exc
    except yaml.YAMLError as exc:
        raise RasaProjectError(f"{name}: malformed YAML: {exc.__class__.__name__}") from exc


def _relative(path: Path, root: Path | None) -> str:
    if root is None:
        return str(path)
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _yaml_files(folder: Path) -> list[Path]:
    """Every file under ``folder`` (recursively, sorted), hidden files and folders left out as Rasa does."""
    if not folder.is_dir():
        return []
    files = (p for p in folder.rglob("*") if p.is_file())
    return sorted(p for p in files if not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _is_yaml(path: Path) -> bool:
    return path.suffix.lower() in (".yml", ".yaml")


def _names(value: Any, where: str) -> tuple[str, ...]:
    """A name or a list of names (``intent: greet`` / ``intent: [greet, hello]``) as a tuple."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise RasaProjectError(f"{where}: expected a name or a list of names")


def _major(version: str) -> int | None:
    match = re.match(r"\s*(\d+)", version)
    return int(match.group(1)) if match else None


# --------------------------------------------------------------------------------------------------------- config.yml

# NLU components Kefu's own NLU stands in for (tokenising, featurising, intent classification, trained entity
# extraction, synonyms, regexes and lookup tables): reading them needs no entry.
_REPLACED_COMPONENTS = frozenset({
    "WhitespaceTokenizer", "JiebaTokenizer", "SpacyTokenizer", "MitieTokenizer", "ConveRTTokenizer",
    "LanguageModelTokenizer", "HFTransformersNLP", "RegexFeaturizer", "LexicalSyntacticFeaturizer",
    "CountVectorsFeaturizer", "LanguageModelFeaturizer", "ConveRTFeaturizer", "SpacyFeaturizer", "MitieFeaturizer",
    "DIETClassifier", "EmbeddingIntentClassifier", "ResponseSelector", "KeywordIntentClassifier",
    "SklearnIntentClassifier", "MitieIntentClassifier", "LogisticRegressionClassifier", "FallbackClassifier",
    "EntitySynonymMapper", "RegexEntityExtractor", "CRFEntityExtractor", "MitieEntityExtractor",
})
_DUCKLING = ("no Duckling server: numbers, dates, amounts, emails... are not extracted as entities; use a regex or "
             "lookup table or annotate them in the NLU data")
_UNSUPPORTED_COMPONENTS = {
    "DucklingEntityExtractor": _DUCKLING,
    "DucklingHTTPExtractor": _DUCKLING,
    "SpacyNLP": "no spaCy language model is loaded: Kefu's own NLU replaces the spaCy-based components",
    "SpacyEntityExtractor": ("spaCy's pretrained entities (PERSON, ORG, GPE...) are not extracted; annotate them in "
                             "the NLU data"),
    "MitieNLP": "no MITIE language model is loaded: Kefu's own NLU replaces the MITIE-based components",
}
# Machine-learning policies Kefu's dialogue policy stands in for.
_REPLACED_POLICIES = frozenset({"TEDPolicy", "UnexpecTEDIntentPolicy", "KerasPolicy", "SklearnPolicy",
                                "EmbeddingPolicy"})
_MEMOIZATION = frozenset({"MemoizationPolicy", "AugmentedMemoizationPolicy"})
_UNSUPPORTED_POLICIES = {
    "MappingPolicy": "deprecated in Rasa 2 and not run: write a rule (intent -> action) for each intent trigger",
    "FormPolicy": "Rasa 1.x FormPolicy is not run: forms are run as Rasa 2/3 run them (RulePolicy)",
    "TwoStageFallbackPolicy": ("deprecated in Rasa 2 and not run: write a rule running action_two_stage_fallback "
                               "on nlu_fallback"),
}
_DEFAULT_NLU_FALLBACK = 0.3  # rasa/core/constants.py DEFAULT_NLU_FALLBACK_THRESHOLD
_DEFAULT_AMBIGUITY = 0.1  # DEFAULT_NLU_FALLBACK_AMBIGUITY_THRESHOLD
_DEFAULT_CORE_FALLBACK = 0.3  # DEFAULT_CORE_FALLBACK_THRESHOLD
_DEFAULT_FALLBACK_ACTION = "action_default_fallback"
_LANGUAGES = ("en", "zh")


@dataclass(frozen=True)
class _Config:
    raw: dict[str, Any]
    language: str = "en"
    fallback_threshold: float | None = _DEFAULT_NLU_FALLBACK  # Rasa's suggested pipeline ends with FallbackClassifier
    ambiguity_threshold: float = _DEFAULT_AMBIGUITY
    core_fallback_threshold: float = _DEFAULT_CORE_FALLBACK
    core_fallback_action: str = _DEFAULT_FALLBACK_ACTION
    max_history: int | None = None  # the suggested policies' MemoizationPolicy: no max_history (whole history)
    augmented_memoization: bool = False


def _component_name(entry: Any, where: str) -> str:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise RasaProjectError(f"{where}: expected a mapping with a `name`")
    name: str = entry["name"]
    return name


def _builtin(name: str) -> str | None:
    """The class name of a Rasa component or policy named plainly or by its Rasa module path; None for custom ones."""
    if "." not in name:
        return name
    return name.rsplit(".", 1)[1] if name.startswith("rasa.") else None


def _read_config(root: Path, unsupported: list[Unsupported]) -> _Config:
    """``config.yml``: language, the fallback thresholds and the memoisation settings; what Kefu replaces is silent.

    A missing file, or a missing or empty ``pipeline`` / ``policies``, is read as Rasa's suggested configuration
    (``rasa/shared/importers/default_config.yml``: its pipeline ends with ``FallbackClassifier`` 0.3 / 0.1, its
    policies are ``MemoizationPolicy`` without ``max_history``, ``TEDPolicy`` and ``RulePolicy``).
    """
    path = next((root / n for n in ("config.yml", "config.yaml") if (root / n).is_file()), None)
    if path is None:
        return _Config(raw={})
    file = _relative(path, root)
    raw = read_yaml(path, root)
    if raw is None:
        return _Config(raw={})
    if not isinstance(raw, dict):
        raise RasaProjectError(f"{file}: expected a mapping (language, pipeline, policies)")
    language = str(raw.get("language") or "en")
    if language not in _LANGUAGES:
        unsupported.append(Unsupported(file, "language", f"'{language}': Kefu's NLU is trained for en and zh only"))

    fallback: float | None = _DEFAULT_NLU_FALLBACK
    ambiguity = _DEFAULT_AMBIGUITY
    pipeline = raw.get("pipeline")
    if isinstance(pipeline, str):
        fallback = None
        unsupported.append(Unsupported(file, "pipeline", f"Rasa 1.x pipeline template '{pipeline}': Kefu's own NLU "
                                                         "is used, with no FallbackClassifier"))
    elif pipeline:
        if not isinstance(pipeline, list):
            raise RasaProjectError(f"{file}: pipeline: expected a list of components")
        fallback = None
        for i, entry in enumerate(pipeline):
            name = _component_name(entry, f"{file}: pipeline[{i}]")
            cls = _builtin(name)
            key = f"pipeline[{i}].{name}"
            if cls == "FallbackClassifier":
                fallback = float(entry.get("threshold", _DEFAULT_NLU_FALLBACK))
                ambiguity = float(entry.get("ambiguity_threshold", _DEFAULT_AMBIGUITY))
            elif cls is None:
                unsupported.append(Unsupported(file, key, "custom NLU component: Kefu does not run it"))
            elif cls in _UNSUPPORTED_COMPONENTS:
                unsupported.append(Unsupported(file, key, _UNSUPPORTED_COMPONENTS[cls]))
            elif cls not in _REPLACED_COMPONENTS:
                unsupported.append(Unsupported(file, key, "NLU component unknown to Kefu: not run"))

    settings: dict[str, Any] = {}
    policies = raw.get("policies")
    if policies:
        if not isinstance(policies, list):
            raise RasaProjectError(f"{file}: policies: expected a list of policies")
        settings = _read_policies(policies, file, unsupported)
    legacy_fallback = settings.pop("legacy_nlu_fallback", None)
    if legacy_fallback is not None and fallback is None:  # a 2.x FallbackPolicy and no FallbackClassifier
        fallback, ambiguity = legacy_fallback
    return _Config(raw=raw, language=language, fallback_threshold=fallback, ambiguity_threshold=ambiguity,
                   **settings)


def _read_policies(policies: list[Any], file: str, unsupported: list[Unsupported]) -> dict[str, Any]:
    """The policy settings Kefu's policy reproduces: RulePolicy's core fallback and the memoisation history.

    ``max_history`` is the largest of the memoisation policies' (``None``, Rasa's default, is the whole history and
    so the largest); with no memoisation policy it stays ``None``.
    """
    settings: dict[str, Any] = {"max_history": None, "augmented_memoization": False}
    histories: list[int | None] = []
    for i, entry in enumerate(policies):
        name = _component_name(entry, f"{file}: policies[{i}]")
        cls = _builtin(name)
        key = f"policies[{i}].{name}"
        if cls == "RulePolicy":
            settings["core_fallback_threshold"] = float(entry.get("core_fallback_threshold", _DEFAULT_CORE_FALLBACK))
            settings["core_fallback_action"] = str(entry.get("core_fallback_action_name", _DEFAULT_FALLBACK_ACTION))
            if entry.get("enable_fallback_prediction") is False:
                settings["core_fallback_threshold"] = 0.0
        elif cls in _MEMOIZATION:
            history = entry.get("max_history")
            histories.append(int(history) if history is not None else None)
            if cls == "AugmentedMemoizationPolicy":
                settings["augmented_memoization"] = True
        elif cls == "FallbackPolicy":
            settings["core_fallback_threshold"] = float(entry.get("core_threshold", _DEFAULT_CORE_FALLBACK))
            settings["core_fallback_action"] = str(entry.get("fallback_action_name", _DEFAULT_FALLBACK_ACTION))
            settings["legacy_nlu_fallback"] = (float(entry.get("nlu_threshold", _DEFAULT_NLU_FALLBACK)),
                                               float(entry.get("ambiguity_threshold", _DEFAULT_AMBIGUITY)))
            unsupported.append(Unsupported(file, key, (
                "deprecated FallbackPolicy: its thresholds are read as FallbackClassifier's and RulePolicy's; a low "
                "NLU confidence gives the intent nlu_fallback (write a rule for it) instead of running the action")))
        elif cls is None:
            unsupported.append(Unsupported(file, key, "custom policy: Kefu does not run it"))
        elif cls in _UNSUPPORTED_POLICIES:
            unsupported.append(Unsupported(file, key, _UNSUPPORTED_POLICIES[cls]))
        elif cls not in _REPLACED_POLICIES:
            unsupported.append(Unsupported(file, key, "policy unknown to Kefu: not run"))
    if histories:
        settings["max_history"] = None if None in histories else max(h for h in histories if h is not None)
    return settings


# ------------------------------------------------------------------------------------------------------ endpoints.yml

_UNSUPPORTED_ENDPOINTS = {
    "tracker_store": "Kefu stores conversations in its own SQL database",
    "lock_store": "Kefu orders the turns of a conversation itself: no lock store is used",
    "event_broker": "events are not streamed to a broker: they stay in Kefu's conversation store",
    "nlg": "responses come from the domain: no external NLG server is called",
    "models": "models are not pulled from a server: Kefu trains its own",
}
_ENV_VAR = re.compile(r"\$\{([^}]+)\}")


def _read_endpoints(root: Path, unsupported: list[Unsupported]) -> str | None:
    """``endpoints.yml``: the action server's URL (``${VAR}`` expanded from the environment, as Rasa does)."""
    path = next((root / n for n in ("endpoints.yml", "endpoints.yaml") if (root / n).is_file()), None)
    if path is None:
        return None
    file = _relative(path, root)
    raw = read_yaml(path, root)
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise RasaProjectError(f"{file}: expected a mapping of endpoints")
    url: str | None = None
    for key, value in raw.items():
        if value is None:
            continue
        if key == "action_endpoint":
            if not isinstance(value, dict):
                raise RasaProjectError(f"{file}: action_endpoint: expected a mapping with a `url`")
            if value.get("url"):
                url = _ENV_VAR.sub(lambda m: os.environ.get(m.group(1), m.group(0)), str(value["url"]))
            for extra in value:
                if extra not in ("url", "token", "token_name", "cafile"):
                    unsupported.append(Unsupported(file, f"action_endpoint.{extra}", "not used by Kefu"))
        else:
            unsupported.append(Unsupported(file, str(key), _UNSUPPORTED_ENDPOINTS.get(str(key), "endpoint unknown "
                                                                                                  "to Kefu: not used")))
    return url


# ------------------------------------------------------------------------------------------------------------ domain

_DOMAIN_KEYS = frozenset({"version", "intents", "entities", "slots", "responses", "templates", "forms", "actions",
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
class _Merged:
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
        use_entities = _names(use, f"{file}: intents.{name}.use_entities")
    ignore = _names(props.get("ignore_entities"), f"{file}: intents.{name}.ignore_entities")
    if props.get("triggers"):
        unsupported.append(Unsupported(file, f"intents.{name}.triggers", (
            "MappingPolicy triggers (deprecated in Rasa 2) are not run: write a rule (intent -> action)")))
    return Intent(name, use_entities, ignore)


def _merge_domain_file(merged: _Merged, data: dict[str, Any], file: str, unsupported: list[Unsupported]) -> None:
    """Add one domain file's sections; a name defined differently in two files raises naming both files."""
    for key in data:
        if key not in _DOMAIN_KEYS:
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
        _merge_responses(merged, data.get(section), file)
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


def _merge_responses(merged: _Merged, value: Any, file: str) -> None:
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
        intent=_names(raw.get("intent"), f"{where}.intent"),
        not_intent=_names(raw.get("not_intent"), f"{where}.not_intent"),
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
    cls = _builtin(written)
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
    ignored = _names(raw.get("ignored_intents"), f"{file}: forms.{name}.ignored_intents")
    if "required_slots" in raw:
        slots_raw = raw["required_slots"] or []
        prefix = f"forms.{name}.required_slots"
    else:  # Rasa 2.0: the slots and their mappings directly under the form
        slots_raw = {k: v for k, v in raw.items() if k != "ignored_intents"}
        prefix = f"forms.{name}"
    if isinstance(slots_raw, list):  # Rasa 3.x: names; the mappings are the slots'
        return Form(name, _names(slots_raw, f"{file}: {prefix}"), ignored)
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
class _Domain:
    version: str
    intents: dict[str, Intent]
    entities: tuple[str, ...]
    slots: dict[str, Slot]
    forms: dict[str, Form]
    responses: dict[str, tuple[dict[str, Any], ...]]
    actions: tuple[str, ...]
    session_config: SessionConfig


def _domain_files(root: Path) -> list[Path]:
    files = [root / n for n in ("domain.yml", "domain.yaml") if (root / n).is_file()]
    files += [p for p in _yaml_files(root / "domain") if _is_yaml(p)]
    if not files:
        raise RasaProjectError(f"{root}: not a Rasa project: no domain.yml or domain/")
    return files


def _build_domain(merged: _Merged, legacy: bool, unsupported: list[Unsupported]) -> _Domain:
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
    return _Domain(version=merged.version, intents={n: i for n, (i, _) in merged.intents.items()}, entities=entities,
                   slots=slots, forms=forms, responses=responses, actions=actions, session_config=session_config)


def _is_legacy(merged: _Merged, data_versions: list[str]) -> bool:
    """Whether the project is Rasa 2.x (slots auto-filled from entities of their name), not 3.x.

    The domain's ``version:`` says it; without one, a data file's; without any, 2.x-only keys (``auto_fill``, form
    mappings under ``forms:``) do; else 3.x, Rasa's reading of a file without a version.
    """
    for version in (merged.version, *data_versions):
        major = _major(version)
        if major is not None:
            return major < 3
    return merged.legacy_forms or merged.auto_fill_keys


# ---------------------------------------------------------------------------------------------------------- the folder

_MARKDOWN_NLU = re.compile(r"^\s*##\s*(intent|synonym|regex|lookup)\s*:", re.MULTILINE)


def _markdown(path: Path, root: Path, unsupported: list[Unsupported]) -> None:
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise RasaProjectError(f"{_relative(path, root)}: cannot read the file: {exc.__class__.__name__}") from exc
    if not text.strip():
        return
    kind = "nlu" if _MARKDOWN_NLU.search(text) else "stories"
    unsupported.append(Unsupported(_relative(path, root), kind, (
        f"Rasa 1.x/2.x Markdown training data ({kind}) is not read: convert it with `rasa data convert`")))


def _data_kinds(data: Any) -> set[str]:
    """Which training-data keys a file holds (a file may hold several); none for an empty or non-mapping file."""
    if not isinstance(data, dict):
        return set()
    return {k for k in ("nlu", "stories", "rules", "responses") if data.get(k)}


def nlu_blocks(project: RasaProject) -> list[Any]:
    """Every block of the project's ``nlu:`` sections, in file order (intents, synonyms, lookups, regexes)."""
    blocks: list[Any] = []
    for path in project.nlu_files:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        blocks.extend(data.get("nlu") or [])
    return blocks


def load_project(path: str | Path) -> RasaProject:
    """Read a Rasa project folder. Raises :class:`RasaProjectError` naming the file when it cannot be read.

    The domain is ``domain.yml`` and/or every YAML file under ``domain/`` (merged; a name defined differently in two
    files is an error naming both). Data files are the YAML files under ``data/`` (classified by their top-level
    keys; their ``responses:``, e.g. retrieval-intent answers, join the domain's) and the ``tests/`` files holding
    ``stories:``.
    """
    root = Path(path).resolve()
    if not root.is_dir():
        raise RasaProjectError(f"{root}: not a Rasa project: not a folder")
    unsupported: list[Unsupported] = []
    merged = _Merged()
    for file_path in _domain_files(root):
        file = _relative(file_path, root)
        data = read_yaml(file_path, root)
        if data is None:
            continue
        if not isinstance(data, dict):
            raise RasaProjectError(f"{file}: the domain must be a mapping (intents, slots, responses...)")
        if file_path.parent != root and not _DOMAIN_KEYS.intersection(data):
            continue  # Rasa reads only domain files from domain/; others there are not its domain
        _merge_domain_file(merged, data, file, unsupported)

    kinds: dict[str, list[Path]] = {"nlu": [], "stories": [], "rules": []}
    data_versions: list[str] = []
    for file_path in _yaml_files(root / "data"):
        if _is_yaml(file_path):
            data = read_yaml(file_path, root)
            if data is not None and not isinstance(data, dict):
                unsupported.append(Unsupported(_relative(file_path, root), "", (
                    "not Rasa training data (not a mapping of nlu / stories / rules): not read")))
            found = _data_kinds(data)
            for kind in found & kinds.keys():
                kinds[kind].append(file_path)
            if found and data.get("version") is not None:
                data_versions.append(str(data["version"]))
            if "responses" in found:
                _merge_responses(merged, data["responses"], _relative(file_path, root))
        elif file_path.suffix.lower() == ".md":
            _markdown(file_path, root, unsupported)
        elif file_path.suffix.lower() == ".json":
            unsupported.append(Unsupported(_relative(file_path, root), "rasa_nlu_data", (
                "Rasa NLU JSON training data is not read: convert it with `rasa data convert nlu -f yaml`")))
    test_files: list[Path] = []
    for file_path in _yaml_files(root / "tests"):
        if _is_yaml(file_path):
            if "stories" in _data_kinds(read_yaml(file_path, root)):
                test_files.append(file_path)
        elif file_path.suffix.lower() == ".md":
            _markdown(file_path, root, unsupported)

    domain = _build_domain(merged, _is_legacy(merged, data_versions), unsupported)
    config = _read_config(root, unsupported)
    action_endpoint = _read_endpoints(root, unsupported)
    actions_dir = root / "actions"
    if actions_dir.is_dir() and any(actions_dir.glob("*.py")):
        actions_package: Path | None = actions_dir
    elif (root / "actions.py").is_file():
        actions_package = root / "actions.py"
    else:
        actions_package = None
    return RasaProject(
        root=root, version=domain.version, language=config.language, intents=domain.intents,
        entities=domain.entities, slots=domain.slots, forms=domain.forms, responses=domain.responses,
        actions=domain.actions, session_config=domain.session_config, nlu_files=tuple(kinds["nlu"]),
        story_files=tuple(kinds["stories"]), rule_files=tuple(kinds["rules"]), test_files=tuple(test_files),
        fallback_threshold=config.fallback_threshold, ambiguity_threshold=config.ambiguity_threshold,
        core_fallback_threshold=config.core_fallback_threshold, core_fallback_action=config.core_fallback_action,
        max_history=config.max_history, augmented_memoization=config.augmented_memoization,
        action_endpoint=action_endpoint, actions_package=actions_package, raw_config=config.raw,
        unsupported=tuple(unsupported),
    )
