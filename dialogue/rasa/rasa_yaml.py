"""Reading a Rasa project's YAML files as Rasa reads them, walking its folders as Rasa does, and the small readers of
values written in them (a name or a list of names, a version's major number).

Rasa reads YAML with ruamel (YAML 1.2); :func:`read_yaml` reproduces the two differences from PyYAML that change a
project's meaning. Errors name the file relative to the project root and the line.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any, ClassVar

import yaml

from dialogue.rasa.records import RasaProjectError

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
    name = relative(path, root) if root is not None else str(path)
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


def relative(path: Path, root: Path | None) -> str:
    if root is None:
        return str(path)
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def visible_files(folder: Path) -> list[Path]:
    """Every file under ``folder`` (recursively, sorted), hidden files and folders left out as Rasa does."""
    if not folder.is_dir():
        return []
    files = (p for p in folder.rglob("*") if p.is_file())
    return sorted(p for p in files if not any(part.startswith(".") for part in p.relative_to(folder).parts))


def is_yaml(path: Path) -> bool:
    return path.suffix.lower() in (".yml", ".yaml")


def name_list(value: Any, where: str) -> tuple[str, ...]:
    """A name or a list of names (``intent: greet`` / ``intent: [greet, hello]``) as a tuple."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise RasaProjectError(f"{where}: expected a name or a list of names")


def major_version(version: str) -> int | None:
    match = re.match(r"\s*(\d+)", version)
    return int(match.group(1)) if match else None
