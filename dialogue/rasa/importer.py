"""``kefu import rasa``: a Kefu bot folder from a Rasa project.

The bot folder holds:

* ``bot.yml``: the project's language, its ``action_endpoint``, ``rasa: rasa`` (the dialogue below), template replies
  (Rasa's responses are templates), the ``FallbackClassifier`` threshold as the confidence threshold;
* ``domain.yml``: Kefu's domain (intents, entities, slots, every response variation that has a text);
* ``data/nlu.yml``: every ``nlu:`` block of the project (intents, synonyms, lookups, regexes, retrieval intents), as
  written; Kefu's joint BiLSTM-CRF learns from them;
* ``rasa/``: the project's own files that the dialogue runs from (config, endpoints, the domain, ``data/`` stories
  and rules, ``tests/``, the ``actions`` package its action server runs): the import is a copy, so the bot folder
  stands alone and a later import overwrites nothing of the project;
* ``import.json``: what was imported (counts) and what Kefu does not support (file, key, why).

Nothing is dropped silently: the project is read with :func:`dialogue.rasa.project.load_project` (which lists what it
cannot run) and its stories and rules with :func:`dialogue.rasa.stories.load_stories` (errors name file and line).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dialogue.rasa.project import RasaProject, Unsupported, load_project, nlu_blocks
from dialogue.rasa.stories import load_stories
from dialogue.rasa.turn import SAFE_REPLY, conditional_key

RASA_DIR = "rasa"
REPORT = "import.json"
DEFAULT_ENDPOINT = "http://localhost:5055/webhook"  # rasa run actions listens here unless endpoints.yml says otherwise
_COPIED_FILES = ("config.yml", "endpoints.yml", "domain.yml", "actions.py")
_COPIED_DIRS = ("data", "tests", "domain", "actions")
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".rasa", "models", "results", "*.tar.gz")


@dataclass
class ImportReport:
    project: str
    bot: str
    version: str
    language: str
    counts: dict[str, int] = field(default_factory=dict)
    unsupported: list[Unsupported] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "unsupported": [asdict(u) for u in self.unsupported]}


def import_project(
    source: Path, out: Path, *, name: str | None = None, action_endpoint: str | None = None
) -> ImportReport:
    """Write a Kefu bot folder for the Rasa project at ``source`` into ``out`` (created; existing files replaced).
    ``action_endpoint`` overrides the project's ``endpoints.yml`` (where its action server will listen)."""
    project = load_project(source)
    rules = load_stories(project.rule_files, "rule")
    stories = load_stories(project.story_files, "story")
    tests = load_stories(project.test_files, "test")
    unsupported = [*project.unsupported, *_not_run(project, source)]
    language = project.language if project.language in ("en", "zh") else "en"
    if language != project.language:
        unsupported.append(Unsupported("config.yml", "language", f"{project.language!r}: Kefu's NLU reads en and zh; "
                                                                 "trained as en"))
    out.mkdir(parents=True, exist_ok=True)
    _copy_project(source, out / RASA_DIR)
    (out / "data").mkdir(exist_ok=True)
    blocks = nlu_blocks(project)
    _write_yaml(out / "data" / "nlu.yml", {"version": "3.1", "nlu": blocks})
    _write_yaml(out / "domain.yml", kefu_domain(project))
    bot_name = name or source.resolve().name
    config: dict[str, Any] = {
        "name": bot_name,
        "languages": [language],
        "nlu_data": ["data/nlu.yml"],
        "domain": "domain.yml",
        "rasa": RASA_DIR,
        "scenarios": "scenarios",
        "actions": None,
        "action_endpoint": action_endpoint or project.action_endpoint or DEFAULT_ENDPOINT,
        "store": "sqlite+aiosqlite:///.kefu/bot.db",
        "generation": "template",
        "policy": "fsm",
        "confidence_threshold": project.fallback_threshold if project.fallback_threshold is not None else 0.0,
        # small data: every example counts (refit), and the sentence encoder's sense of meaning (English) helps most
        # and Rasa's out_of_scope is an intent like any other (its FallbackClassifier says nlu_fallback)
        "nlu_training": {"epochs": 40, "patience": 8, "refit": True, "sentence": language == "en",
                         "fit_oos": False},
    }
    (out / "bot.yml").write_text(
        "# Imported from a Rasa project by `kefu import rasa` (docs/rasa.md). The dialogue runs from rasa/:\n"
        "# its rules, forms and stories; custom actions run in the project's own rasa-sdk action server:\n"
        f"#   cd {out / RASA_DIR} && python -m rasa_sdk --actions actions\n"
        + yaml.safe_dump(config, sort_keys=False, allow_unicode=True),
        encoding="utf-8",
    )
    report = ImportReport(
        project=str(source.resolve()),
        bot=str(out.resolve()),
        version=project.version,
        language=project.language,
        counts={
            "intents": len(project.intents), "entities": len(project.entities), "slots": len(project.slots),
            "forms": len(project.forms), "responses": len(project.responses), "actions": len(project.actions),
            "nlu_blocks": len(blocks), "rules": len(rules), "stories": len(stories), "test_stories": len(tests),
        },
        unsupported=unsupported,
    )
    (out / REPORT).write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return report


def _not_run(project: RasaProject, source: Path) -> list[Unsupported]:
    """What the project relies on that Kefu reads but does not run, listed so nobody is surprised."""
    out: list[Unsupported] = []
    if (source / "credentials.yml").is_file():
        out.append(Unsupported("credentials.yml", "*", "Kefu serves its own channels (the widget and WebSocket "
                                                       "server, docs/rasa.md); these are not started"))
    if project.session_config.session_expiration_time > 0:
        out.append(Unsupported("domain.yml", "session_config.session_expiration_time",
                               "sessions do not expire by time: a conversation goes on where it was"))
    for i, policy in enumerate(project.raw_config.get("policies") or ()):
        name = policy.get("name") if isinstance(policy, Mapping) else None
        if name in ("TEDPolicy", "UnexpecTEDIntentPolicy"):
            out.append(Unsupported("config.yml", f"policies[{i}].{name}", "not trained: the stories are memoised and "
                                   "looked up with back-off (docs/rasa.md); an unseen path gets the core fallback"))
    return out


def _copy_project(source: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for name in _COPIED_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, target / name)
    for name in _COPIED_DIRS:
        if (source / name).is_dir():
            shutil.copytree(source / name, target / name, ignore=_IGNORED)



def kefu_domain(project: RasaProject) -> dict[str, Any]:
    """Kefu's ``domain.yml`` for the project (what the loader lists as unsupported in a response is left out).

    A response's variations without a ``condition`` stay under its name; each conditional variation gets a name of
    its own (:func:`dialogue.rasa.turn.conditional_key`) that the bot says instead when its condition holds. Variations
    for another ``channel`` are left out unless the response has no other.
    """
    responses: dict[str, list[dict[str, Any]]] = {}
    for key, variations in project.responses.items():
        plain = [v for v in variations if not v.get("channel")] or list(variations)
        texts: list[dict[str, Any]] = []
        for index, variation in enumerate(variations):
            if variation not in plain or variation.get("text") is None:
                continue
            shown = {"text": _shown(variation)}
            if variation.get("condition"):
                responses[conditional_key(key, index)] = [shown]
            else:
                texts.append(shown)
        responses[key] = texts or [{"text": ""}]
    responses.setdefault(SAFE_REPLY, [  # what Kefu says instead of a reply its output classifier holds back
        {"text": "Sorry, I can't help with that. Is there anything else I can do for you?", "language": "en"},
        {"text": "抱歉，这个问题我暂时无法回答，还有其他可以帮您的吗？", "language": "zh"}])
    slots = {name: {"type": "text" if slot.type not in ("bool", "float", "list") else slot.type}
             for name, slot in project.slots.items()}
    return {"intents": sorted(project.intents), "entities": list(project.entities), "slots": slots,
            "responses": responses}


def _shown(variation: Mapping[str, Any]) -> str:
    """A variation's text (its buttons go with the reply: the widget shows them under it)."""
    return str(variation["text"])


def _write_yaml(path: Path, data: Any) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
