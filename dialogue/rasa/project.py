"""A Rasa project folder read into typed records: config, endpoints, the domain (one file or several) and data files.

:func:`load_project` reads the folder; each part has its module: :mod:`dialogue.rasa.records` (the records, named
here too), :mod:`dialogue.rasa.rasa_yaml` (YAML as Rasa reads it), :mod:`dialogue.rasa.config` (``config.yml``,
``endpoints.yml``) and :mod:`dialogue.rasa.domain` (the domain, Rasa 2.x shapes migrated). This module classifies
the data files. Whatever Kefu does not support is listed in :attr:`RasaProject.unsupported` (file, key, why), never
dropped silently.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from dialogue.rasa.config import read_config, read_endpoints
from dialogue.rasa.domain import (
    DOMAIN_KEYS,
    MergedDomain,
    build_domain,
    domain_files,
    is_legacy,
    merge_domain_file,
    merge_responses,
)
from dialogue.rasa.rasa_yaml import is_yaml, read_yaml, relative, visible_files
from dialogue.rasa.records import (
    Form,
    Intent,
    MappingCondition,
    RasaProject,
    RasaProjectError,
    SessionConfig,
    Slot,
    SlotMapping,
    Unsupported,
)

__all__ = [
    "Form",
    "Intent",
    "MappingCondition",
    "RasaProject",
    "RasaProjectError",
    "SessionConfig",
    "Slot",
    "SlotMapping",
    "Unsupported",
    "load_project",
    "nlu_blocks",
    "read_yaml",
]

_MARKDOWN_NLU = re.compile(r"^\s*##\s*(intent|synonym|regex|lookup)\s*:", re.MULTILINE)


def _markdown(path: Path, root: Path, unsupported: list[Unsupported]) -> None:
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise RasaProjectError(f"{relative(path, root)}: cannot read the file: {exc.__class__.__name__}") from exc
    if not text.strip():
        return
    kind = "nlu" if _MARKDOWN_NLU.search(text) else "stories"
    unsupported.append(Unsupported(relative(path, root), kind, (
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
    merged = MergedDomain()
    for file_path in domain_files(root):
        file = relative(file_path, root)
        data = read_yaml(file_path, root)
        if data is None:
            continue
        if not isinstance(data, dict):
            raise RasaProjectError(f"{file}: the domain must be a mapping (intents, slots, responses...)")
        if file_path.parent != root and not DOMAIN_KEYS.intersection(data):
            continue  # Rasa reads only domain files from domain/; others there are not its domain
        merge_domain_file(merged, data, file, unsupported)

    kinds: dict[str, list[Path]] = {"nlu": [], "stories": [], "rules": []}
    data_versions: list[str] = []
    for file_path in visible_files(root / "data"):
        if is_yaml(file_path):
            data = read_yaml(file_path, root)
            if data is not None and not isinstance(data, dict):
                unsupported.append(Unsupported(relative(file_path, root), "", (
                    "not Rasa training data (not a mapping of nlu / stories / rules): not read")))
            found = _data_kinds(data)
            for kind in found & kinds.keys():
                kinds[kind].append(file_path)
            if found and data.get("version") is not None:
                data_versions.append(str(data["version"]))
            if "responses" in found:
                merge_responses(merged, data["responses"], relative(file_path, root))
        elif file_path.suffix.lower() == ".md":
            _markdown(file_path, root, unsupported)
        elif file_path.suffix.lower() == ".json":
            unsupported.append(Unsupported(relative(file_path, root), "rasa_nlu_data", (
                "Rasa NLU JSON training data is not read: convert it with `rasa data convert nlu -f yaml`")))
    test_files: list[Path] = []
    for file_path in visible_files(root / "tests"):
        if is_yaml(file_path):
            if "stories" in _data_kinds(read_yaml(file_path, root)):
                test_files.append(file_path)
        elif file_path.suffix.lower() == ".md":
            _markdown(file_path, root, unsupported)

    domain = build_domain(merged, is_legacy(merged, data_versions), unsupported)
    config = read_config(root, unsupported)
    action_endpoint = read_endpoints(root, unsupported)
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
