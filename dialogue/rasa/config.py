"""A Rasa project's ``config.yml`` and ``endpoints.yml``: what Kefu reproduces, replaces, or lists as unsupported.

From ``config.yml`` Kefu keeps the language, the fallback thresholds (``FallbackClassifier``, ``RulePolicy``, a 2.x
``FallbackPolicy``) and the memoisation settings; the components and policies its own NLU and dialogue policy stand
in for are read silently; the rest (Duckling, spaCy, custom components...) is listed with the reason. From
``endpoints.yml`` it keeps the action server's URL.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dialogue.rasa.rasa_yaml import read_yaml, relative
from dialogue.rasa.records import RasaProjectError, Unsupported

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
class ProjectConfig:
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


def builtin_class(name: str) -> str | None:
    """The class name of a Rasa component or policy named plainly or by its Rasa module path; None for custom ones."""
    if "." not in name:
        return name
    return name.rsplit(".", 1)[1] if name.startswith("rasa.") else None


def read_config(root: Path, unsupported: list[Unsupported]) -> ProjectConfig:
    """``config.yml``: language, the fallback thresholds and the memoisation settings; what Kefu replaces is silent.

    A missing file, or a missing or empty ``pipeline`` / ``policies``, is read as Rasa's suggested configuration
    (``rasa/shared/importers/default_config.yml``: its pipeline ends with ``FallbackClassifier`` 0.3 / 0.1, its
    policies are ``MemoizationPolicy`` without ``max_history``, ``TEDPolicy`` and ``RulePolicy``).
    """
    path = next((root / n for n in ("config.yml", "config.yaml") if (root / n).is_file()), None)
    if path is None:
        return ProjectConfig(raw={})
    file = relative(path, root)
    raw = read_yaml(path, root)
    if raw is None:
        return ProjectConfig(raw={})
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
            cls = builtin_class(name)
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
    return ProjectConfig(raw=raw, language=language, fallback_threshold=fallback, ambiguity_threshold=ambiguity,
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
        cls = builtin_class(name)
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


def read_endpoints(root: Path, unsupported: list[Unsupported]) -> str | None:
    """``endpoints.yml``: the action server's URL (``${VAR}`` expanded from the environment, as Rasa does)."""
    path = next((root / n for n in ("endpoints.yml", "endpoints.yaml") if (root / n).is_file()), None)
    if path is None:
        return None
    file = relative(path, root)
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
