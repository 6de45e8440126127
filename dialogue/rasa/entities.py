"""Rasa's ``RegexEntityExtractor``: entities straight from a project's lookup tables and regexes.

Kefu's NLU reads ``lookup:`` and ``regex:`` blocks as token features (the tagger learns what a match means); a Rasa
project whose pipeline has a ``RegexEntityExtractor`` expects more: every match of a table or regex named like an
entity *is* that entity (a payee the lookup lists but no example shows). :class:`RegexEntities` does that, on top of
the NLU's entities (an entity the NLU found is kept as it is), with the extractor's options (``case_sensitive``,
``use_lookup_tables``, ``use_regexes``, ``use_word_boundaries``) as Rasa documents them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dialogue.rasa.project import RasaProject, nlu_blocks
from dialogue.rasa.stories import EntityValue
from nlu.data import split_label

EXTRACTOR = "RegexEntityExtractor"


@dataclass(frozen=True)
class RegexEntities:
    patterns: tuple[tuple[str, re.Pattern[str]], ...]  # (entity, compiled alternatives), in file order

    @classmethod
    def from_project(cls, project: RasaProject) -> RegexEntities:
        """The project's extractor (no patterns when its pipeline has no ``RegexEntityExtractor``)."""
        options = next((c for c in project.raw_config.get("pipeline") or () if isinstance(c, Mapping)
                        and c.get("name") == EXTRACTOR), None)
        if options is None:
            return cls(())
        flags = 0 if options.get("case_sensitive", False) else re.IGNORECASE
        bounded = options.get("use_word_boundaries", True)
        lookups, regexes = options.get("use_lookup_tables", True), options.get("use_regexes", True)
        entities = set(project.entities)
        patterns: list[tuple[str, re.Pattern[str]]] = []
        for block in (b for b in nlu_blocks(project) if isinstance(b, Mapping)):
            name = block.get("lookup") if lookups else None
            items = _items(block.get("examples"))
            if name in entities and items:
                alternatives = "|".join(re.escape(i) for i in sorted(items, key=len, reverse=True))
                patterns.append((str(name), re.compile(rf"\b(?:{alternatives})\b" if bounded else alternatives, flags)))
            name = block.get("regex") if regexes else None
            if name in entities and items:
                try:
                    patterns.append((str(name), re.compile("|".join(f"(?:{i})" for i in items), flags)))
                except re.error:
                    continue  # Kefu's NLU data reader reports it with its line
        return cls(tuple(patterns))

    def extract(self, text: str, found: Iterable[EntityValue] = ()) -> tuple[EntityValue, ...]:
        """The entities ``found`` by the NLU, plus each pattern's first match for an entity it did not find."""
        out = list(found)
        have = {e.entity for e in out}
        for entity, pattern in self.patterns:
            if entity in have:
                continue
            match = pattern.search(text)
            if match is not None and match.group(0).strip():
                out.append(EntityValue(entity, match.group(0)))
                have.add(entity)
        return tuple(out)


def entity_values(found: Iterable[tuple[str, Any]]) -> tuple[EntityValue, ...]:
    """The NLU's (label, value) pairs as entities: a label carries the role and group it was trained with
    (``city#departure``, :func:`nlu.data.split_label`)."""
    out = []
    for label, value in found:
        entity, role, group = split_label(label)
        out.append(EntityValue(entity, value, role, group))
    return tuple(out)


def _items(examples: Any) -> list[str]:
    if isinstance(examples, list):
        return [str(e).strip() for e in examples if str(e).strip()]
    if isinstance(examples, str):
        return [line.strip()[1:].strip() for line in examples.splitlines() if line.strip().startswith("-")]
    return []
