"""Rasa stories, rules and end-to-end test stories as flat lists of steps.

A story file's ``checkpoint`` steps join stories into a graph and ``or`` steps give alternatives; :func:`load_stories`
expands both, so every :class:`Story` it returns is one straight conversation (a rule keeps its ``condition`` steps
apart). Inline entity annotations of test stories (``[medium](shirt_size)``, ``[NYC]{"entity": "city", "role": "to"}``)
are read into :class:`EntityValue` records and the plain text.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from dialogue.errors import DialogueError

_log = logging.getLogger(__name__)

MAX_STORIES = 1000  # default cap on the stories one load_stories call expands checkpoints and `or` steps into


class StoryError(DialogueError):
    """A story file cannot be read; the message names the file and the line."""


ANY_VALUE: Any = "__any__"  # a `slot_was_set` step naming a slot without a value: "the slot is set", whatever to


@dataclass(frozen=True)
class EntityValue:
    entity: str
    value: Any
    role: str | None = None
    group: str | None = None


@dataclass(frozen=True)
class UserStep:
    intent: str  # "" when a test step gives only the text (`user:` without `intent:`)
    text: str | None = None  # end-to-end text (test stories), annotations removed
    entities: tuple[EntityValue, ...] = ()


@dataclass(frozen=True)
class ActionStep:
    name: str  # an action, a response (utter_*), a form, or `action_listen`
    text: str | None = None  # an end-to-end `bot:` step: the text the bot says (name is then "")


@dataclass(frozen=True)
class LoopStep:
    name: str | None  # `active_loop: null` ends the loop


@dataclass(frozen=True)
class SlotStep:
    slots: tuple[tuple[str, Any], ...]  # (slot, value); value ANY_VALUE when only the name is written


Step = UserStep | ActionStep | LoopStep | SlotStep


@dataclass(frozen=True)
class Story:
    name: str
    kind: Literal["story", "rule", "test"]
    steps: tuple[Step, ...]
    source: str  # "file:line" of the story's name
    condition: tuple[Step, ...] = ()  # a rule's `condition:` (slot and loop steps)
    conversation_start: bool = False
    wait_for_user_input: bool = True


# ----------------------------------------------------------------------------------------------------------- parsing

# [text](entity) , [text](entity:value) , [text]{"entity": ..} , [text][{"entity": ..}, {"entity": ..}] (Rasa's forms)
_ANNOTATION_RE = re.compile(
    r"\[(?P<text>[^\]]+?)\]"
    r"(?:\((?P<entity>[^:)]+?)(?::(?P<value>[^)]+))?\)"
    r"|(?P<dict>\{[^}]+?\})"
    r"|\[(?P<list>\{.*?\})\])"
)
# `/intent`, `/intent{"entity": "value"}`, `/intent@0.9{...}`: Rasa's way to send an intent without NLU
_SHORTCUT_RE = re.compile(r"^/(?P<intent>[^{@\s]+)(?:@[0-9.]+)?(?P<entities>\{.*\})?\s*$", re.DOTALL)
_NULL_TAG = "tag:yaml.org,2002:null"


@dataclass(frozen=True)
class _Checkpoint:
    name: str


@dataclass(frozen=True)
class _Or:
    options: tuple[Step, ...]


_Element = Step | _Checkpoint | _Or


@dataclass(frozen=True)
class _Written:
    """One story or rule as written, before checkpoints and ``or`` steps are expanded."""

    name: str
    source: str
    elements: tuple[_Element, ...]
    condition: tuple[Step, ...] = ()
    conversation_start: bool = False
    wait_for_user_input: bool = True


def parse_annotations(text: str) -> tuple[str, tuple[EntityValue, ...]]:
    """Plain text and entities of a message with Rasa inline annotations.

    Reads ``[text](entity)``, ``[text](entity:value)``, ``[text]{"entity": "e", "role": "r", "group": "g",
    "value": "v"}`` and ``[text][{...}, {...}]`` (several entities on one span); the value defaults to the annotated
    text. Raises ``ValueError`` on a JSON annotation that does not parse or names no entity (callers add the place).
    """
    out: list[str] = []
    entities: list[EntityValue] = []
    pos = 0
    for m in _ANNOTATION_RE.finditer(text):
        surface = m.group("text")
        out.append(text[pos : m.start()])
        out.append(surface)
        pos = m.end()
        if m.group("entity") is not None:
            name = m.group("entity").strip()
            value = (m.group("value") or "").strip() or surface
            if not name:
                raise ValueError(f"entity annotation without an entity name: {m.group()!r}")
            entities.append(EntityValue(name, value))
            continue
        raw = m.group("dict") if m.group("dict") is not None else "[" + m.group("list") + "]"
        try:
            spec = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"bad JSON entity annotation {raw!r}: {exc.msg}") from None
        for item in spec if isinstance(spec, list) else [spec]:
            if not isinstance(item, dict) or not isinstance(item.get("entity"), str) or not item["entity"].strip():
                raise ValueError(f"JSON entity annotation needs an \"entity\" name: {raw!r}")
            role, group = item.get("role"), item.get("group")
            entities.append(EntityValue(item["entity"].strip(), item.get("value", surface),
                                        None if role is None else str(role), None if group is None else str(group)))
    out.append(text[pos:])
    return "".join(out), tuple(entities)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise StoryError(f"{path}: cannot read file: {exc}") from None


def _compose(path: Path) -> tuple[yaml.Node | None, yaml.SafeLoader]:
    """The file's YAML node tree (nodes keep their line numbers) and the loader that builds values from nodes."""
    loader = yaml.SafeLoader(_read_text(path))
    try:
        root = loader.get_single_node()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise StoryError(f"{path}:{line}: invalid YAML: {problem}") from None
    finally:
        loader.dispose()
    return root, loader


def _expand_paths(paths: list[Path] | tuple[Path, ...]) -> list[Path]:
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*") if p.suffix in (".yml", ".yaml") and p.is_file()))
        elif path.suffix == ".md":
            raise StoryError(f"{path}:1: Markdown stories (Rasa 1.x) are not supported; convert them to YAML "
                             "with `rasa data convert core`")
        else:
            out.append(path)
    return out


class _FileReader:
    """Reads one file's ``stories:`` / ``rules:`` into :class:`_Written` records; every error names file:line."""

    def __init__(self, path: Path, kind: Literal["story", "rule", "test"]) -> None:
        self.path = path
        self.kind = kind
        self.title = "rule" if kind == "rule" else "story"
        self.loader: yaml.SafeLoader | None = None

    # -- helpers
    def _err(self, node: yaml.Node, why: str) -> StoryError:
        return StoryError(f"{self.path}:{node.start_mark.line + 1}: {why}")

    def _value(self, node: yaml.Node) -> Any:
        """The value YAML gives the node (``yes`` is ``True``, ``1`` is ``1``): slot and entity values stay typed."""
        assert self.loader is not None
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise self._err(node, f"invalid YAML value: {exc}") from None

    def _mapping(self, node: yaml.Node, what: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            raise self._err(node, f"{what} must be a mapping")
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode):
                raise self._err(k, f"{what} keys must be plain names")
            out[str(k.value)] = (k, v)
        return out

    def _name(self, node: yaml.Node, what: str, *, allow_null: bool = False) -> str | None:
        """A name (intent, action, slot, form...) as written: the raw scalar text, so ``yes`` stays ``"yes"``."""
        if isinstance(node, yaml.ScalarNode):
            if node.tag == _NULL_TAG and node.style is None:
                if allow_null:
                    return None
                raise self._err(node, f"{what} cannot be empty")
            name = str(node.value).strip()
            if name:
                return name
        raise self._err(node, f"{what} must be a non-empty name")

    def _text(self, node: yaml.Node, what: str) -> str:
        if isinstance(node, yaml.ScalarNode):
            return "" if node.tag == _NULL_TAG and node.style is None else str(node.value).strip()
        raise self._err(node, f"{what} must be text")

    def _items(self, node: yaml.Node, what: str) -> list[yaml.Node]:
        if isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG:
            return []
        if not isinstance(node, yaml.SequenceNode):
            raise self._err(node, f"{what} must be a list")
        return list(node.value)

    # -- file and items
    def read(self, key: str) -> list[_Written]:
        root, self.loader = _compose(self.path)
        if root is None:
            return []
        if not isinstance(root, yaml.MappingNode):
            raise self._err(root, "the top level must be a mapping (stories:, rules:, nlu: ...)")
        entry = self._mapping(root, "the top level").get(key)
        if entry is None:
            return []
        out: list[_Written] = []
        for item in self._items(entry[1], f"'{key}'"):
            written = self._item(item)
            if written is not None:
                out.append(written)
        return out

    def _item(self, node: yaml.Node) -> _Written | None:
        fields = self._mapping(node, f"each {self.title}")
        if self.title not in fields:
            other = "story" if self.title == "rule" else "rule"
            hint = f" (found '{other}:'; {other}s belong under '{other}s:')" if other in fields else ""
            raise self._err(node, f"a {self.title} needs a '{self.title}:' name{hint}")
        name_key, name_node = fields[self.title]
        name = self._name(name_node, f"the {self.title} name")
        assert name is not None
        source = f"{self.path}:{name_key.start_mark.line + 1}"
        steps_node = fields.get("steps", (None, None))[1]
        steps = self._items(steps_node, "'steps'") if steps_node is not None else []
        if not steps:
            # Rasa skips a story without steps with a warning; so do we (its name is an author's label, not user text)
            _log.warning("%s: %s %r has no steps; skipped", source, self.title, name)
            return None
        elements = tuple(e for e in (self._step(s) for s in steps) if e is not None)
        condition: tuple[Step, ...] = ()
        start, wait = False, True
        if self.kind == "rule":
            if "condition" in fields:
                parsed = (self._condition(s) for s in self._items(fields["condition"][1], "'condition'"))
                condition = tuple(c for c in parsed if c is not None)
            start = self._flag(fields, "conversation_start", False)
            wait = self._flag(fields, "wait_for_user_input", True)
        return _Written(name, source, elements, condition, start, wait)

    def _flag(self, fields: dict[str, tuple[yaml.Node, yaml.Node]], key: str, default: bool) -> bool:
        if key not in fields:
            return default
        value = self._value(fields[key][1])
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self._err(fields[key][1], f"'{key}' must be true or false")
        return value

    def _condition(self, node: yaml.Node) -> Step | None:
        element = self._step(node)
        if isinstance(element, _Checkpoint | _Or):
            raise self._err(node, "a rule condition holds only active_loop and slot_was_set steps")
        return element

    # -- steps
    def _step(self, node: yaml.Node) -> _Element | None:
        """One step; the key order is Rasa's (a ``checkpoint`` step may carry ``slot_was_set`` conditions)."""
        fields = self._mapping(node, "each step")
        if "intent" in fields or "user" in fields:
            return self._user(node, fields)
        if "or" in fields:
            return self._or(fields["or"][1])
        if "action" in fields:
            return ActionStep(self._name(fields["action"][1], "'action'") or "")
        if "bot" in fields:
            return ActionStep("", self._text(fields["bot"][1], "'bot'"))
        if "checkpoint" in fields:
            # checkpoint slot conditions (`slot_was_set` under a checkpoint) are not kept: Kefu joins on the name only
            return _Checkpoint(self._name(fields["checkpoint"][1], "'checkpoint'") or "")
        if "slot_was_set" in fields:
            return SlotStep(self._slots(fields["slot_was_set"][1]))
        if "active_loop" in fields:
            return LoopStep(self._name(fields["active_loop"][1], "'active_loop'", allow_null=True))
        if "metadata" in fields:
            return None
        keys = ", ".join(sorted(fields)) or "none"
        raise self._err(node, f"unknown step (keys: {keys}); a step needs one of intent, user, action, bot, "
                              "active_loop, slot_was_set, checkpoint, or")

    def _user(self, node: yaml.Node, fields: dict[str, tuple[yaml.Node, yaml.Node]]) -> UserStep:
        intent = ""
        if "intent" in fields:
            intent = self._text(fields["intent"][1], "'intent'").removeprefix("/")  # Rasa drops a leading `/`
        text: str | None = None
        entities: tuple[EntityValue, ...] = ()
        if "user" in fields:
            raw = self._text(fields["user"][1], "'user'")
            try:
                text, entities = parse_annotations(raw)
            except ValueError as exc:
                raise self._err(fields["user"][1], str(exc)) from None
            shortcut = _SHORTCUT_RE.match(text)
            if shortcut is not None:
                intent = intent or shortcut.group("intent")
                entities = self._shortcut_entities(fields["user"][1], shortcut.group("entities"))
        if not intent and not text:
            raise self._err(node, "a user step needs an 'intent' or a 'user' text")
        if "entities" in fields:
            entities = tuple(e for item in self._items(fields["entities"][1], "'entities'")
                             for e in self._entities(item))
        return UserStep(intent, text, entities)

    def _shortcut_entities(self, node: yaml.Node, raw: str | None) -> tuple[EntityValue, ...]:
        if not raw:
            return ()
        try:
            spec = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise self._err(node, f"bad entities in an intent message: {exc.msg}") from None
        if not isinstance(spec, dict):
            raise self._err(node, "entities of an intent message must be a JSON object")
        out: list[EntityValue] = []
        for name, value in spec.items():
            out.extend(EntityValue(str(name), v) for v in (value if isinstance(value, list) else [value]))
        return tuple(out)

    def _entities(self, node: yaml.Node) -> list[EntityValue]:
        """One item of an ``entities:`` list: ``name``, ``{name: value}`` (with optional ``role`` / ``group`` keys) or
        ``{entity: name, value: v, role: r, group: g}``; a name alone matches any value (:data:`ANY_VALUE`)."""
        if isinstance(node, yaml.ScalarNode):
            return [EntityValue(self._name(node, "an entity") or "", ANY_VALUE)]
        fields = self._mapping(node, "each entity")
        role = self._opt_str(fields, "role")
        group = self._opt_str(fields, "group")
        if "entity" in fields:
            value = self._value(fields["value"][1]) if "value" in fields else ANY_VALUE
            return [EntityValue(self._name(fields["entity"][1], "'entity'") or "", value, role, group)]
        pairs = [(k, v) for k, v in fields.items() if k not in ("role", "group")]
        if not pairs:
            raise self._err(node, "an entity item needs a name")
        return [EntityValue(k, self._value(v[1]), role, group) for k, v in pairs]

    def _opt_str(self, fields: dict[str, tuple[yaml.Node, yaml.Node]], key: str) -> str | None:
        return self._name(fields[key][1], f"'{key}'", allow_null=True) if key in fields else None

    def _slots(self, node: yaml.Node) -> tuple[tuple[str, Any], ...]:
        """``slot_was_set`` as (slot, value) pairs: list items ``{slot: value}`` or bare names (:data:`ANY_VALUE`);
        a mapping in place of the list is read the same way."""
        if isinstance(node, yaml.MappingNode):
            return tuple((str(k), self._value(v[1])) for k, v in self._mapping(node, "'slot_was_set'").items())
        pairs: list[tuple[str, Any]] = []
        for item in self._items(node, "'slot_was_set'"):
            if isinstance(item, yaml.MappingNode):
                pairs.extend((k, self._value(v[1])) for k, v in self._mapping(item, "a slot").items())
            elif isinstance(item, yaml.ScalarNode):
                pairs.append((self._name(item, "a slot name") or "", ANY_VALUE))
            else:
                raise self._err(item, "slot_was_set items must be `slot: value` or a slot name")
        if not pairs:
            raise self._err(node, "slot_was_set needs at least one slot")
        return tuple(pairs)

    def _or(self, node: yaml.Node) -> _Or:
        """An ``or`` step: its user steps and slots are the alternatives. As in Rasa, every slot of a
        ``slot_was_set`` item is an alternative of its own."""
        options: list[Step] = []
        for item in self._items(node, "'or'"):
            fields = self._mapping(item, "each 'or' item")
            if "intent" in fields or "user" in fields:
                options.append(self._user(item, fields))
            elif "slot_was_set" in fields:
                options.extend(SlotStep((pair,)) for pair in self._slots(fields["slot_was_set"][1]))
            else:
                raise self._err(item, "an 'or' item needs 'intent' (or 'user') or 'slot_was_set'")
        if not options:
            raise self._err(node, "'or' needs at least one alternative")
        return _Or(tuple(options))


# --------------------------------------------------------------------------------------------------------- expansion


@dataclass(frozen=True)
class _Segment:
    """A stretch of a written story between checkpoints: what it starts from, its steps, what it ends with."""

    story: int  # index into the written stories
    part: int  # 0 for the story's first stretch
    starts: tuple[str, ...]
    ends: tuple[str, ...]
    body: tuple[tuple[Step, ...], ...]  # per position, the alternatives (one for a plain step, several for `or`)

    @property
    def n_alternatives(self) -> int:
        return math.prod(len(options) for options in self.body)


def _segments(index: int, written: _Written) -> list[_Segment]:
    """Split a story at its checkpoints, as Rasa's story step builder does: checkpoints before any step are where it
    starts, checkpoints after steps where the stretch ends (and the next one starts)."""
    out: list[_Segment] = []
    starts: list[str] = []
    ends: list[str] = []
    body: list[tuple[Step, ...]] = []
    for element in written.elements:
        if isinstance(element, _Checkpoint):
            (ends if body else starts).append(element.name)
            continue
        if ends:
            out.append(_Segment(index, len(out), tuple(starts), tuple(ends), tuple(body)))
            starts, ends, body = ends, [], []
        body.append(element.options if isinstance(element, _Or) else (element,))
    if body:
        out.append(_Segment(index, len(out), tuple(starts), tuple(ends), tuple(body)))
    elif not out:
        _log.warning("%s: %r has only checkpoints; skipped", written.source, written.name)
    return out


_Path = tuple[tuple[_Segment, int, tuple[Step, ...]], ...]  # (segment, 1-based alternative, its steps) per stretch


def _walk(segment: _Segment, prefix: _Path, used: frozenset[str],
          consumers: dict[str, list[_Segment]]) -> Iterator[_Path]:
    """Every path from ``segment`` through the checkpoint graph, each checkpoint at most once per path (cycles)."""
    for k, steps in enumerate(itertools.product(*segment.body), 1):
        path = (*prefix, (segment, k, steps))
        continued = False
        dead_end = False
        for checkpoint in segment.ends:
            following = consumers.get(checkpoint, [])
            if not following:
                dead_end = True  # Rasa keeps a story ending in a checkpoint nobody starts from
            elif checkpoint not in used:
                for nxt in following:
                    continued = True
                    yield from _walk(nxt, path, used | {checkpoint}, consumers)
        if dead_end or not continued:
            yield path


def _story(path: _Path, written: list[_Written], kind: Literal["story", "rule", "test"]) -> Story:
    name = ""
    previous: _Segment | None = None
    for segment, k, _ in path:
        continuing = previous is not None and segment.story == previous.story and segment.part == previous.part + 1
        if not continuing:
            name += (" > " if name else "") + written[segment.story].name
        if segment.n_alternatives > 1:
            name += f" (or {k})"
        previous = segment
    first, last = written[path[0][0].story], written[path[-1][0].story]
    steps = tuple(step for _, _, alternative in path for step in alternative)
    return Story(name, kind, steps, first.source, first.condition, first.conversation_start,
                 last.wait_for_user_input)


def _expand(written: list[_Written], kind: Literal["story", "rule", "test"], max_stories: int) -> list[Story]:
    """Stories from the written ones: the checkpoint graph walked from every start, ``or`` steps multiplied out.

    A stretch starting with a checkpoint is reachable only through it, unless no stretch ends with that checkpoint
    (then it is a start of its own, as a lone story would be). Paths are drawn round-robin from the starts until the
    cap, so the cap cuts the biggest expansions first.
    """
    segments = [s for i, w in enumerate(written) for s in _segments(i, w)]
    consumers: dict[str, list[_Segment]] = {}
    for s in segments:
        for c in s.starts:
            consumers.setdefault(c, []).append(s)
    produced = {c for s in segments for c in s.ends}
    starts = [s for s in segments if not any(c in produced for c in s.starts)]
    walks = [_walk(s, (), frozenset(), consumers) for s in starts]
    found: list[list[_Path]] = [[] for _ in starts]
    active = list(range(len(starts)))
    total = 0
    first_round = True
    while active and (first_round or total < max_stories):
        for i in list(active):
            if not first_round and total >= max_stories:
                break
            path = next(walks[i], None)
            if path is None:
                active.remove(i)
                continue
            found[i].append(path)
            total += 1
        first_round = False
    cut = [written[starts[i].story].name for i in active if next(walks[i], None) is not None]
    if cut:
        _log.warning("story expansion capped at %d stories; cut short: %s", max_stories, ", ".join(map(repr, cut)))
    return [_story(p, written, kind) for paths in found for p in paths]


def load_stories(
    paths: list[Path] | tuple[Path, ...],
    kind: Literal["story", "rule", "test"],
    *,
    max_stories: int = MAX_STORIES,
) -> list[Story]:
    """Every story (``stories:``) or rule (``rules:``) of the files, checkpoints and ``or`` expanded.

    ``kind`` picks the key: ``"story"`` and ``"test"`` (end-to-end test files) read ``stories:``, ``"rule"`` reads
    ``rules:``; a file without that key gives nothing, since Rasa lets one data file mix ``nlu``, ``stories`` and
    ``rules``. A folder in ``paths`` stands for its ``*.yml`` / ``*.yaml`` files (sorted, recursively), as Rasa's
    ``--data`` does. Checkpoints join stories across all the files, as in Rasa's story graph.

    Expansion is capped at ``max_stories`` stories for the whole call (every written story still gives at least one),
    shared out fairly between the written stories so one exploding graph cannot starve the rest; what the cap cuts
    is logged as a warning by story name. Raises :class:`StoryError` (``file:line: why``) on unreadable or malformed
    files.
    """
    if kind not in ("story", "rule", "test"):
        raise ValueError(f"kind must be 'story', 'rule' or 'test', not {kind!r}")
    key = "rules" if kind == "rule" else "stories"
    written: list[_Written] = []
    for path in _expand_paths(paths):
        written.extend(_FileReader(path, kind).read(key))
    return _expand(written, kind, max_stories)


def story_kinds(path: Path) -> set[str]:
    """Which of the top-level keys ``nlu``, ``stories`` and ``rules`` a YAML file holds.

    Rasa classifies data files by their keys rather than their names (one file may hold several); a key counts when
    it is present, even with an empty value. A file whose top level is not a mapping holds none. Raises
    :class:`StoryError` when the file cannot be read or is not valid YAML.
    """
    root, _ = _compose(Path(path))
    if not isinstance(root, yaml.MappingNode):
        return set()
    keys = {k.value for k, _ in root.value if isinstance(k, yaml.ScalarNode)}
    return keys & {"nlu", "stories", "rules"}
