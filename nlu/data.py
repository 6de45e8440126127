"""Training data: the ``Example`` record and readers for Rasa ``nlu.yml`` (intents, synonyms, lookup tables, regexes)
and JSONL files."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from nlu.errors import DataError
from nlu.patterns import Pattern
from nlu.tokenize import simplified, tokenize
from nlu.types import Entity


@dataclass
class Example:
    """One annotated utterance: tokens with one BIO tag each, and its intent.

    ``entities`` (optional) are the annotated spans with character offsets and their *normalised* values
    (after Rasa ``value`` overrides and synonyms); training uses them to learn the synonym map.
    """

    text: str
    tokens: list[str]
    tags: list[str]
    intent: str
    entities: list[Entity] = field(default_factory=list)

    def __repr__(self) -> str:  # never put customer text in reprs
        return f"Example(intent={self.intent!r}, n_tokens={len(self.tokens)}, n_entities={len(self.entities)})"


# [value](entity) , [value](entity:normalised) , [value]{"entity": "e", "value": "v", ...}
_ANNOTATION_RE = re.compile(r"\[(?P<text>[^\[\]]+)\](?:\((?P<short>[^()]+)\)|(?P<json>\{[^{}]*\}))")


def bio_tags(tokens: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int, str]]) -> list[str]:
    """BIO tags for tokens given as (start, end) offsets and entity spans (start, end, label)."""
    tags = ["O"] * len(tokens)
    for s, e, label in spans:
        inside = [i for i, (ts, te) in enumerate(tokens) if ts < e and te > s]
        for k, i in enumerate(inside):
            tags[i] = ("B-" if k == 0 else "I-") + label
    return tags


ROLE_MARK, GROUP_MARK = "#", "@"  # an entity label with a role or group: "city#departure", "topping@1"


def split_label(label: str) -> tuple[str, str | None, str | None]:
    """An entity label's entity, role and group (see :data:`ROLE_MARK`)."""
    rest, _, group = label.partition(GROUP_MARK)
    entity, _, role = rest.partition(ROLE_MARK)
    return entity, role or None, group or None


def parse_annotated(line: str, synonyms: dict[str, str] | None = None) -> tuple[str, list[Entity]]:
    """Strip Rasa entity annotations from one example line; returns plain text and entities.

    Raises ``ValueError`` on a malformed JSON annotation or a missing entity name.
    """
    out: list[str] = []
    entities: list[Entity] = []
    pos = 0
    length = 0
    for m in _ANNOTATION_RE.finditer(line):
        out.append(line[pos : m.start()])
        length += m.start() - pos
        surface = m.group("text")
        if m.group("short") is not None:
            name, _, value = m.group("short").partition(":")
            name, value = name.strip(), value.strip() or surface
        else:
            try:
                spec = json.loads(m.group("json"))
            except json.JSONDecodeError as exc:
                raise ValueError(f"bad JSON entity annotation {m.group('json')!r}: {exc.msg}") from None
            if not isinstance(spec, dict):
                raise ValueError("JSON entity annotation must be an object")
            name, value = str(spec.get("entity", "")).strip(), str(spec.get("value", surface))
            if name:  # Rasa's roles and groups are part of the label the tagger learns: city#departure, size@2
                name += "".join(f"{mark}{str(spec[key]).strip()}" for key, mark in (("role", ROLE_MARK), ("group", GROUP_MARK))
                                if spec.get(key) not in (None, ""))
        if not name:
            raise ValueError(f"entity annotation without entity name: {m.group()!r}")
        if synonyms:
            value = synonyms.get(value.lower(), value)
        entities.append(Entity(name, value, length, length + len(surface)))
        out.append(surface)
        length += len(surface)
        pos = m.end()
    out.append(line[pos:])
    return "".join(out), entities


def make_example(text: str, intent: str, entities: Sequence[Entity] = ()) -> Example:
    """Tokenize ``text`` with :func:`nlu.tokenize.tokenize` (traditional Chinese read as simplified, as the model
    reads its input) and tag it from character-offset entities."""
    toks = tokenize(simplified(text))
    tags = bio_tags([(t.start, t.end) for t in toks], [(e.start, e.end, e.entity) for e in entities])
    return Example(text, [t.text for t in toks], tags, intent, list(entities))


def _block_items(node: yaml.Node, path: Path) -> list[tuple[int, str]]:
    """The ``- item`` lines of an ``examples: |`` block scalar (or a YAML list), with 1-based file line numbers."""
    if isinstance(node, yaml.SequenceNode):
        return [(n.start_mark.line + 1, str(n.value)) for n in node.value if isinstance(n, yaml.ScalarNode)]
    if not isinstance(node, yaml.ScalarNode):
        raise DataError(path, node.start_mark.line + 1, "'examples' must be a block string of '- ' lines")
    first = node.start_mark.line + (2 if node.style in ("|", ">") else 1)
    items = []
    for k, raw in enumerate(str(node.value).splitlines()):
        s = raw.strip()
        if not s:
            continue
        if not s.startswith("- "):
            raise DataError(path, first + k, "example lines must start with '- '")
        items.append((first + k, s[2:].strip()))
    return items


def read_rasa_nlu(path: str | Path, synonyms_out: dict[str, str] | None = None,
                  patterns_out: list[Pattern] | None = None) -> list[Example]:
    """Read a Rasa (3.x) ``nlu.yml``: ``intent:`` blocks with annotated examples, ``synonym:``, ``lookup:`` and
    ``regex:`` blocks.

    Synonyms (from ``synonym:`` blocks) are applied to entity values, and added to ``synonyms_out`` (lower-cased
    variant -> canonical value) when given, so a model can map them at parse time too. ``lookup:`` and ``regex:``
    blocks are appended to ``patterns_out`` when given (a block whose kind and name are already there adds its
    items to it); a regex that does not compile is an error at its line. Retrieval intents (``faq/ask_x``) keep
    their full name.
    """
    path = Path(path)
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, 0, f"cannot read file: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise DataError(path, mark.line + 1 if mark else 0, f"invalid YAML: {exc}") from None
    if root is None:
        return []
    if not isinstance(root, yaml.MappingNode):
        raise DataError(path, 1, "top level must be a mapping with an 'nlu:' key")
    blocks: list[dict[str, yaml.Node]] = []
    for key, value in root.value:
        if key.value != "nlu":
            continue
        if not isinstance(value, yaml.SequenceNode):
            raise DataError(path, value.start_mark.line + 1, "'nlu' must be a list")
        for item in value.value:
            if not isinstance(item, yaml.MappingNode):
                raise DataError(path, item.start_mark.line + 1, "each 'nlu' entry must be a mapping")
            blocks.append({k.value: v for k, v in item.value})
    # synonyms first: they apply to every example in the file wherever the block is
    synonyms: dict[str, str] = {}
    for block in blocks:
        if "synonym" in block:
            canonical = str(block["synonym"].value)
            for _, variant in _block_items(block.get("examples", yaml.ScalarNode("tag:yaml.org,2002:str", "")), path):
                synonyms[variant.lower()] = canonical
    if synonyms_out is not None:
        synonyms_out.update(synonyms)
    for block in blocks:
        kind = next((k for k in ("lookup", "regex") if k in block), None)
        if kind is None:
            continue
        name = str(block[kind].value).strip()
        if not name or "examples" not in block:
            raise DataError(path, block[kind].start_mark.line + 1, f"{kind} block needs a name and 'examples'")
        items = []
        for line_no, item in _block_items(block["examples"], path):
            if kind == "regex":
                try:
                    re.compile(item)
                except re.error as exc:
                    raise DataError(path, line_no, f"bad regex {item!r}: {exc}") from None
            items.append(item)
        if patterns_out is not None:
            _add_pattern(patterns_out, Pattern(name, kind, tuple(items)))
    examples: list[Example] = []
    for block in blocks:
        if "intent" not in block:
            continue
        intent = str(block["intent"].value).strip()
        if not intent or "examples" not in block:
            raise DataError(path, block["intent"].start_mark.line + 1, "intent block needs a name and 'examples'")
        for line_no, line in _block_items(block["examples"], path):
            try:
                text, entities = parse_annotated(line, synonyms)
            except ValueError as exc:
                raise DataError(path, line_no, str(exc)) from None
            if not text.strip():
                raise DataError(path, line_no, "empty example")
            examples.append(make_example(text, intent, entities))
    return examples


def _add_pattern(patterns: list[Pattern], new: Pattern) -> None:
    """Append ``new``, or merge its items into the pattern of the same kind and name (several files may extend one
    lookup table)."""
    for i, p in enumerate(patterns):
        if (p.kind, p.name) == (new.kind, new.name):
            patterns[i] = Pattern(p.name, p.kind, p.items + tuple(x for x in new.items if x not in p.items))
            return
    patterns.append(new)


def read_jsonl(path: str | Path) -> list[Example]:
    """Read JSONL lines ``{"text", "intent", ["tokens", "tags"]}``; without tokens/tags, tokenize and tag all ``O``.

    The NLU's one JSONL reader (safety has its own, :mod:`safety.jsonl`: the two packages may not import each other).
    Lines are the file's own (``\\n``), not ``str.splitlines()``'s, which would also split inside a string at U+2028."""
    path = Path(path)
    examples: list[Example] = []
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, 0, f"cannot read file: {exc}") from None
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(path, no, f"invalid JSON: {exc.msg}") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str) or not isinstance(obj.get("intent"), str):
            raise DataError(path, no, "each line needs string fields 'text' and 'intent'")
        tokens, tags = obj.get("tokens"), obj.get("tags")
        if tokens is None:
            toks = [t.text for t in tokenize(simplified(obj["text"]))]
            examples.append(Example(obj["text"], toks, ["O"] * len(toks), obj["intent"]))
            continue
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise DataError(path, no, "'tokens' must be a list of strings")
        if tags is None:
            tags = ["O"] * len(tokens)
        if not isinstance(tags, list) or len(tags) != len(tokens):
            raise DataError(path, no, f"'tags' must be a list as long as 'tokens' ({len(tokens)})")
        bad = [t for t in tags if not (t == "O" or (isinstance(t, str) and t[:2] in ("B-", "I-") and len(t) > 2))]
        if bad:
            raise DataError(path, no, f"tags must be BIO ('O', 'B-x', 'I-x'), got {bad[0]!r}")
        examples.append(Example(obj["text"], list(tokens), list(tags), obj["intent"]))
    return examples


def load_examples(paths: str | Path | Iterable[str | Path], synonyms_out: dict[str, str] | None = None,
                  patterns_out: list[Pattern] | None = None) -> list[Example]:
    """Read and concatenate data files, dispatching on suffix: ``.yml``/``.yaml`` (Rasa) or ``.jsonl``/``.json``.

    Rasa ``synonym:`` blocks are collected into ``synonyms_out`` and ``lookup:`` / ``regex:`` blocks into
    ``patterns_out`` when given (see :func:`read_rasa_nlu`)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    examples: list[Example] = []
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise DataError(p, 0, "file not found")
        suffix = p.suffix.lower()
        if suffix in (".yml", ".yaml"):
            examples.extend(read_rasa_nlu(p, synonyms_out, patterns_out))
        elif suffix in (".jsonl", ".json"):
            examples.extend(read_jsonl(p))
        else:
            raise DataError(p, 0, f"unknown data format {suffix!r} (expected .yml, .yaml or .jsonl)")
    return examples
