"""Turning reviewed conversations into training data and regression tests: pure functions over files and events.

* :func:`add_training_example` writes a reviewer's corrected reading of a customer message into the bot's Rasa
  ``nlu.yml``, so the next ``kefu train`` learns from it. The file is edited as text, not re-dumped from YAML:
  comments, ordering, quoting and the other blocks stay exactly as their authors wrote them, and the diff of a
  correction is one line. The result is re-read with :func:`nlu.data.read_rasa_nlu` before it replaces the file, so
  a correction can never leave the bot untrainable.
* :func:`export_scenario` turns a conversation's events into a scenario YAML (``scenarios/*.yml``, see
  :mod:`dialogue.scenarios`) that ``kefu scenarios run`` replays: a conversation a reviewer found interesting
  becomes a test that keeps it working.

Staff-written text is redacted like customer text: :func:`redact_example` (the input filter's PII detection,
:func:`safety.pii.redact_verbatim`) runs inside :func:`add_training_example` and before a correction is stored
(``DialogueEngine.correct``), so a card number or an e-mail typed into a correction reaches neither the store nor
a training file. Customer text was redacted before storage (the store never holds raw PII). Nothing here logs
text.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dialogue import types as ev
from dialogue.errors import ReviewError
from dialogue.types import Event
from nlu.data import Example, parse_annotated, read_rasa_nlu
from nlu.errors import DataError
from nlu.types import Entity
from safety.pii import redact_verbatim

__all__ = ["TrainingExample", "add_training_example", "annotate", "export_scenario", "redact_example"]

# Intent and entity names are written into YAML and Rasa annotations unquoted: keep them to plain identifiers
# (retrieval intents "faq/ask_x" included).
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]{0,63}$")
_YAML_FORBIDDEN = {"\ufeff", "\ufffe", "\uffff"}
_file_lock = threading.Lock()  # one correction at a time per process: read-modify-replace must not interleave


@dataclass(frozen=True)
class TrainingExample:
    """What :func:`add_training_example` did: ``added`` is ``False`` when the intent already had this exact
    example; ``line`` is the annotated example; ``conflicts`` names other intents that have the same text (the
    reviewer's correction contradicts them: someone should look)."""

    added: bool
    line: str
    conflicts: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"TrainingExample(added={self.added}, conflicts={self.conflicts})"


def _entity_tuple(entity: Mapping[str, Any] | Entity) -> tuple[str, str, int, int]:
    if isinstance(entity, Entity):
        return entity.entity, entity.value, entity.start, entity.end
    try:
        return str(entity["entity"]), str(entity["value"]), int(entity["start"]), int(entity["end"])
    except (KeyError, TypeError, ValueError):
        raise ReviewError("an entity needs 'entity', 'value', 'start' and 'end'") from None


def redact_example(text: str, entities: Sequence[Mapping[str, Any] | Entity] = ()) -> tuple[str, list[dict[str, Any]]]:
    """``text`` with its PII replaced by placeholders (as written otherwise) and ``entities`` moved to match.

    An entity that overlaps a redacted span is dropped: its value was (part of) personal data, and a placeholder
    must never be learnt as an entity value (``[CARD]`` as a slot). Entity values are redacted too (a value may
    differ from its span, as with synonyms). Redacting twice changes nothing.
    """
    spans = [_entity_tuple(e) for e in entities]
    redacted, redactions = redact_verbatim(text)
    out: list[dict[str, Any]] = []
    for name, value, start, end in spans:
        if any(start < r.end and r.start < end for r in redactions):
            continue
        shift = sum(len(r.placeholder) - (r.end - r.start) for r in redactions if r.end <= start)
        out.append({"entity": name, "value": redact_verbatim(value)[0], "start": start + shift, "end": end + shift})
    return redacted, out


def _clean(text: str, entities: Sequence[tuple[str, str, int, int]]) -> tuple[str, list[tuple[str, str, int, int]]]:
    """One YAML-safe line: control characters become spaces (offsets unchanged), the ends are trimmed (offsets
    shifted), exactly as the Rasa reader will see it."""
    chars = [
        " " if unicodedata.category(ch) in ("Cc", "Cs") or ch in _YAML_FORBIDDEN else ch for ch in text
    ]
    line = "".join(chars)
    lead = len(line) - len(line.lstrip())
    line = line.strip()
    if not line:
        raise ReviewError("the example text is empty")
    shifted = [(name, value, start - lead, end - lead) for name, value, start, end in entities]
    return line, shifted


def annotate(text: str, entities: Sequence[Mapping[str, Any] | Entity] = ()) -> str:
    """The Rasa example line for ``text`` with ``entities`` marked: ``[surface](entity)``, ``[surface](entity:value)``
    when the value differs, or the JSON form when the value has characters the short form cannot carry.

    Raises :class:`~dialogue.errors.ReviewError` when entities overlap, fall outside the text, have bad names, or
    when the text itself contains something the reader would take for an annotation (there is no escaping in
    Rasa's format): the line must read back as exactly this text and these entities.
    """
    line, spans = _clean(text, [_entity_tuple(e) for e in entities])
    spans.sort(key=lambda s: s[2])
    out: list[str] = []
    pos = 0
    for name, value, start, end in spans:
        if not _NAME_RE.fullmatch(name):
            raise ReviewError(f"invalid entity name {name!r}")
        if not 0 <= start < end <= len(line) or start < pos:
            raise ReviewError(f"entity {name!r} span {start}..{end} is outside the text or overlaps another")
        surface = line[start:end]
        if surface != surface.strip() or any(ch in surface for ch in "[]"):
            raise ReviewError(f"entity {name!r} must cover a span without brackets or edge spaces")
        if value == surface:
            mark = f"[{surface}]({name})"
        elif value.strip() == value and value and not any(ch in value for ch in "()"):
            mark = f"[{surface}]({name}:{value})"
        else:
            mark = f"[{surface}]" + json.dumps({"entity": name, "value": value}, ensure_ascii=False)
        out.append(line[pos:start])
        out.append(mark)
        pos = end
    out.append(line[pos:])
    annotated = "".join(out)
    try:
        plain, read = parse_annotated(annotated)
    except ValueError:
        raise ReviewError("the text cannot be written as a Rasa example (it looks like an annotation)") from None
    if plain != line or [(e.entity, e.value, e.start, e.end) for e in read] != spans:
        raise ReviewError("the text cannot be written as a Rasa example (it looks like an annotation)")
    return annotated


def _load(path: Path) -> list[Example]:
    try:
        return read_rasa_nlu(path)
    except DataError as exc:
        raise ReviewError(f"the training file does not load: {type(exc).__name__}", path=str(path)) from None


def _examples_insertion(lines: list[str], node: yaml.Node, path: Path, annotated: str) -> tuple[int, str]:
    """Where (line index) and what to insert to add one example to an intent's ``examples`` node."""
    if isinstance(node, yaml.ScalarNode) and node.style == "|":
        first = node.start_mark.line + 1
        last = node.end_mark.line if node.end_mark.column == 0 else node.end_mark.line + 1
        body = [i for i in range(first, min(last, len(lines))) if lines[i].strip()]
        if not body:
            raise ReviewError("an intent block has an empty 'examples'", path=str(path))
        indent = re.match(r"[ \t]*", lines[body[0]]).group()  # type: ignore[union-attr]
        return body[-1] + 1, f"{indent}- {annotated}"
    if isinstance(node, yaml.SequenceNode) and not node.flow_style and node.value:
        item = node.value[-1]
        dash = max(item.start_mark.column - 2, 0)
        return item.end_mark.line + (0 if item.end_mark.column == 0 else 1), (
            f"{' ' * dash}- {json.dumps(annotated, ensure_ascii=False)}"
        )
    raise ReviewError("the intent's 'examples' is neither a '|' block nor a list; add the example by hand",
                      path=str(path))


def _plan(text: str, path: Path, intent: str, annotated: str) -> tuple[int, list[str]]:
    """Line index and new lines that add ``annotated`` to ``intent`` in the file ``text``."""
    lines = text.splitlines()
    root = yaml.compose(text) if text.strip() else None
    nlu: yaml.SequenceNode | None = None
    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            if key.value == "nlu" and isinstance(value, yaml.SequenceNode):
                nlu = value
    if nlu is None or not nlu.value:
        if root is not None and not isinstance(root, yaml.MappingNode):
            raise ReviewError("the training file is not a mapping with an 'nlu' list", path=str(path))
        if nlu is not None:  # "nlu: []"
            raise ReviewError("the training file's 'nlu' is an empty flow list; add the example by hand",
                              path=str(path))
        head = [] if text.strip() else ['version: "3.1"']
        return len(lines), [*head, "nlu:", f"- intent: {intent}", "  examples: |", f"    - {annotated}"]
    for item in nlu.value:
        if not isinstance(item, yaml.MappingNode):
            continue
        block = {k.value: v for k, v in item.value}
        if "intent" in block and str(block["intent"].value).strip() == intent and "examples" in block:
            index, line = _examples_insertion(lines, block["examples"], path, annotated)
            return index, [line]
    # A new intent: a block after the last entry of the list, indented like the others.
    last = nlu.value[-1]
    dash = max(nlu.value[0].start_mark.column - 2, 0)
    end = last.end_mark.line if last.end_mark.column == 0 else last.end_mark.line + 1
    content = [i for i in range(last.start_mark.line, min(end, len(lines))) if lines[i].strip()]
    index = (content[-1] + 1) if content else end
    pad = " " * dash
    return index, ["", f"{pad}- intent: {intent}", f"{pad}  examples: |", f"{pad}    - {annotated}"]


def add_training_example(
    nlu_file: Path, text: str, intent: str, entities: Sequence[Mapping[str, Any] | Entity] = ()
) -> TrainingExample:
    """Add a corrected example to a Rasa ``nlu.yml``: into the intent's existing block (after its last example,
    same indentation), or as a new intent block at the end of the ``nlu`` list.

    Entities are ``{"entity", "value", "start", "end"}`` mappings (or :class:`nlu.types.Entity`) with character
    offsets into ``text``. The text is redacted first (:func:`redact_example`): a staff-typed card number, phone
    or e-mail becomes its placeholder, and an entity on it is dropped. The file keeps its comments, other blocks and line endings; the edited text is loaded
    with :func:`nlu.data.read_rasa_nlu` and must contain the new example before it atomically replaces the file.
    Blocking file I/O: call it in a worker thread from async code. Raises
    :class:`~dialogue.errors.ReviewError` (the file is then unchanged).
    """
    path = Path(nlu_file)
    if not _NAME_RE.fullmatch(intent or ""):
        raise ReviewError(f"invalid intent name {intent!r}")
    text, redacted_entities = redact_example(text, entities)
    annotated = annotate(text, redacted_entities)
    plain, wanted = parse_annotated(annotated)
    wanted_spans = [(e.entity, e.value, e.start, e.end) for e in wanted]
    with _file_lock:
        try:
            raw = path.read_bytes() if path.exists() else b""
            original = raw.decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ReviewError(f"cannot read the training file: {type(exc).__name__}", path=str(path)) from None
        before = _load(path) if original.strip() else []
        same = [e for e in before if e.text == plain]
        if any(e.intent == intent for e in same):
            return TrainingExample(False, annotated, tuple(sorted({e.intent for e in same} - {intent})))
        conflicts = tuple(sorted({e.intent for e in same}))
        newline = "\r\n" if "\r\n" in original else "\n"
        try:
            index, new_lines = _plan(original, path, intent, annotated)
        except yaml.YAMLError:
            raise ReviewError("the training file is not valid YAML", path=str(path)) from None
        lines = original.splitlines()
        lines[index:index] = new_lines
        updated = newline.join(lines) + newline
        _replace_checked(path, updated, len(before), plain, intent, wanted_spans)
    return TrainingExample(True, annotated, conflicts)


def _replace_checked(
    path: Path, updated: str, count: int, plain: str, intent: str, spans: list[tuple[str, str, int, int]]
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(updated)
        after = _load(tmp)
        # Synonyms may rewrite values on load, so compare the text, intent and spans, not the values.
        found = [e for e in after if e.text == plain and e.intent == intent]
        if len(after) != count + 1 or not any(
            [(x.entity, x.start, x.end) for x in e.entities] == [(s[0], s[2], s[3]) for s in spans] for e in found
        ):
            raise ReviewError("the edited training file does not read back as expected; left unchanged",
                              path=str(path))
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def export_scenario(events: Sequence[Event], name: str, *, language: str | None = None) -> str:
    """A scenario YAML replaying the customer's turns of a conversation, expecting what the bot did.

    Each customer turn expects the intent and action the bot had and the slots that turn set. Where a reviewer
    recorded a ``correction`` for the message, the corrected intent is expected instead, and the action and slots
    are left out (they were chosen for the wrong reading): the scenario then fails until the bot is retrained,
    which is the point. Replies are not pinned (generated wording may change); add ``reply:`` patterns by hand.
    The export stops where an agent took over: what followed was not the bot's doing.
    """
    ordered = sorted(events, key=lambda e: e.seq)
    # Corrections are recorded later than the message they correct (possibly after a take-over): latest wins.
    corrections = {int(e.data.get("seq", -1)): e.data for e in ordered if e.type == ev.CORRECTION}
    by_turn: dict[int, list[Event]] = {}
    for event in ordered:
        if event.type == ev.TAKEOVER:
            break
        by_turn.setdefault(event.turn, []).append(event)
    turns: list[dict[str, Any]] = []
    detected: str | None = None
    for turn in sorted(by_turn):
        batch = by_turn[turn]
        user = next((e for e in batch if e.type == ev.USER_MESSAGE), None)
        if user is None or not str(user.data.get("text", "")).strip():
            continue
        parse = next((e for e in batch if e.type == ev.NLU_PARSE), None)
        action = next((e for e in batch if e.type == ev.ACTION), None)
        if action is None:  # stored while an agent held the conversation: the bot did not answer
            continue
        entry: dict[str, Any] = {"user": str(user.data["text"])}
        correction = corrections.get(user.seq) or (corrections.get(parse.seq) if parse else None)
        if parse is not None:
            detected = detected or (str(parse.data["language"]) if parse.data.get("language") else None)
        if correction is not None:
            entry["intent"] = str(correction.get("intent"))
        else:
            if parse is not None and parse.data.get("intent"):
                entry["intent"] = str(parse.data["intent"])
            entry["action"] = str(action.data.get("name"))
            slots = {
                str(e.data["slot"]): e.data.get("value") for e in batch if e.type == ev.SLOT_SET and "slot" in e.data
            }
            if slots:
                entry["slots"] = {k: (v if v is None else str(v)) for k, v in slots.items()}
        turns.append(entry)
    if not turns:
        raise ReviewError("the conversation has no customer turns answered by the bot to export")
    document = {"name": name, "language": language or detected or "en", "turns": turns}
    body = yaml.safe_dump(document, allow_unicode=True, sort_keys=False, width=1_000_000, default_flow_style=False)
    return "# Exported from the ops console: the bot's intents and actions (corrections applied).\n" + body
