"""Reading ``dialogue.yml`` and checking it against the bot's domain and actions, every problem with its line.

:func:`load_definition` reads the file, checks each section (names against the domain and the actions module, keys
against the known ones, the whole for conflicts and unreachable states) and refuses it with one
``file:line: where: what, and the fix`` line per mistake, so an author fixes the file in one pass. What it builds is
:mod:`dialogue.definition.compiler`'s :class:`~dialogue.definition.compiler.DialogueDefinition`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from dialogue.definition.compiler import (
    HANDOFF_STATE,
    IDLE,
    Cancel,
    Confirm,
    DefinitionError,
    DialogueDefinition,
    Handoff,
    Knowledge,
    Rule,
    SlotSpec,
    SmallTalk,
    Task,
)
from dialogue.domain import Domain, FromText

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TOP_KEYS = {"answer_intents", "tasks", "cancel", "handoff", "small_talk", "knowledge", "fallback", "rules"}
_TASK_KEYS = {"intents", "slots", "starts_on", "action", "confirm", "reset", "description"}
_SLOT_KEYS = {"name", "ask", "state", "from_text"}
_CONFIRM_KEYS = {"ask", "yes", "no", "cancelled"}
_RULE_WHEN = {"intent", "state", "low_confidence"}
_YAML11_BOOLS = {True: "yes", False: "no"}  # YAML 1.1 reads a bare `yes:` / `no:` key as a boolean


class _Lines:
    """Line numbers of the YAML nodes, by their path (``("tasks", "transfer", "slots", 1, "ask")``)."""

    def __init__(self, text: str) -> None:
        self.lines: dict[tuple[Any, ...], int] = {}
        try:
            root = yaml.compose(text)
        except yaml.YAMLError:
            root = None
        if root is not None:
            self._walk(root, ())

    def _walk(self, node: yaml.Node, path: tuple[Any, ...]) -> None:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                child = (*path, key.value)
                self.lines[child] = key.start_mark.line + 1
                self._walk(value, child)
                self.lines[child] = key.start_mark.line + 1  # the key's line names the entry
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._walk(item, (*path, i))

    def line(self, path: tuple[Any, ...]) -> int:
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path, 1)


def _where(path: tuple[Any, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top)"


class _Checker:
    """Collects every problem with its line, so an author fixes the file in one pass."""

    def __init__(self, path: Path, text: str, domain: Domain, actions: Collection[str] | None) -> None:
        self.path, self.domain, self.actions = path, domain, actions
        self.lines = _Lines(text)
        self.problems: list[str] = []

    def fail(self, at: tuple[Any, ...], message: str) -> None:
        self.problems.append(f"{self.path}:{self.lines.line(at)}: {_where(at)}: {message}")

    @staticmethod
    def _hint(name: str, known: Iterable[str]) -> str:
        close = difflib.get_close_matches(name, list(known), n=1)
        return f" (did you mean {close[0]!r}?)" if close else ""

    def intent(self, at: tuple[Any, ...], name: Any) -> str:
        if not isinstance(name, str) or name not in self.domain.intents:
            self.fail(at, f"{name!r} is not an intent of domain.yml{self._hint(str(name), self.domain.intents)}"
                      " (add it to the domain's intents and the NLU data, or fix the name)")
        return str(name)

    def intents(self, at: tuple[Any, ...], raw: Any, *, required: bool = False) -> tuple[str, ...]:
        if raw is None:
            if required:
                self.fail(at, "needs a list of intents")
            return ()
        items = raw if isinstance(raw, list) else [raw]
        return tuple(self.intent((*at, i) if isinstance(raw, list) else at, x) for i, x in enumerate(items))

    def slot(self, at: tuple[Any, ...], name: Any) -> str:
        if not isinstance(name, str) or name not in self.domain.slots:
            self.fail(at, f"{name!r} is not a slot of domain.yml{self._hint(str(name), self.domain.slots)}"
                      " (declare it under the domain's slots)")
        return str(name)

    def action(self, at: tuple[Any, ...], name: Any) -> str:
        """A response of the domain, or an action the bot's actions module (or the domain's ``actions``) defines."""
        if not isinstance(name, str) or not _NAME.match(name):
            self.fail(at, f"{name!r} is not an action name (letters, digits and _)")
            return str(name)
        responses = set(self.domain.responses)
        if name.startswith("utter_"):
            if name not in responses:
                self.fail(at, f"{name!r} is not a response of domain.yml{self._hint(name, responses)}"
                          " (add it under the domain's responses)")
            return name
        declared = set(self.domain.raw.get("actions") or ())
        if self.actions is not None and name not in self.actions and name not in declared:
            known = set(self.actions) | declared | responses
            self.fail(at, f"{name!r} is neither a response of domain.yml nor an action of the bot's actions"
                      f"{self._hint(name, known)} (define a rasa-sdk Action whose name() is {name!r})")
        return name

    def keys(self, at: tuple[Any, ...], raw: Mapping[str, Any], allowed: set[str]) -> None:
        for key in raw:
            if key not in allowed:
                self.fail((*at, key), f"unknown key {key!r}{self._hint(str(key), allowed)} "
                          f"(known: {', '.join(sorted(allowed))})")

    def mapping(self, at: tuple[Any, ...], raw: Any) -> dict[str, Any]:
        if not isinstance(raw, dict):
            self.fail(at, f"must be a mapping, got {type(raw).__name__}")
            return {}
        return raw


def load_definition(path: Path, domain: Domain, actions: Collection[str] | None = None) -> DialogueDefinition:
    """Read and check ``dialogue.yml`` against the bot's ``domain`` and its ``actions`` (None: not known, e.g. a
    remote action server; action names are then not checked). Raises :class:`DefinitionError` listing every problem."""
    try:
        text = path.read_text(encoding="utf-8")
        raw = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DefinitionError(path, [f"{path}: cannot read it: {exc}"]) from exc
    c = _Checker(path, text, domain, actions)
    top = c.mapping((), raw if raw is not None else {})
    c.keys((), top, _TOP_KEYS)
    default_answers = ["inform"] if "inform" in domain.intents else []
    answer_intents = c.intents(("answer_intents",), top.get("answer_intents", default_answers))
    fallback = c.action(("fallback",), top.get("fallback", "utter_fallback"))

    tasks: list[Task] = []
    raw_tasks = c.mapping(("tasks",), top.get("tasks") or {})
    subject = _subject_intents(top, raw_tasks, domain)
    for name, spec in raw_tasks.items():
        task = _task(c, str(name), c.mapping(("tasks", name), spec), answer_intents, subject)
        if task is not None:
            tasks.append(task)

    handoff = None
    if top.get("handoff") is not None:
        h = c.mapping(("handoff",), top["handoff"])
        c.keys(("handoff",), h, {"intents", "action", "reply"})
        handoff = Handoff(action=c.action(("handoff", "action"), h.get("action", "action_handoff")),
                          reply=c.action(("handoff", "reply"), h.get("reply", "utter_handoff")),
                          intents=c.intents(("handoff", "intents"), h.get("intents")))
    small_talk = []
    for intent, spec in c.mapping(("small_talk",), top.get("small_talk") or {}).items():
        at = ("small_talk", intent)
        if isinstance(spec, dict):
            c.keys(at, spec, {"reply", "ends_task"})
            reply, ends = spec.get("reply"), bool(spec.get("ends_task", False))
        else:
            reply, ends = spec, False
        small_talk.append(SmallTalk(c.intent(at, intent), c.action(at if not isinstance(spec, dict) else (*at, "reply"),
                                                                   reply), ends))
    knowledge = None
    if top.get("knowledge") is not None:
        k = c.mapping(("knowledge",), top["knowledge"])
        c.keys(("knowledge",), k, {"action", "intents"})
        knowledge = Knowledge(c.action(("knowledge", "action"), k.get("action")),
                              c.intents(("knowledge", "intents"), k.get("intents")))
    cancel = None
    if top.get("cancel") is not None:
        k = c.mapping(("cancel",), top["cancel"])
        c.keys(("cancel",), k, {"intents", "reply"})
        cancel = Cancel(c.intents(("cancel", "intents"), k.get("intents"), required=True),
                        c.action(("cancel", "reply"), k.get("reply")))
    rules = []
    raw_rules = top.get("rules") or []
    if not isinstance(raw_rules, list):
        c.fail(("rules",), "must be a list of {when: {...}, then: action or [actions]}")
        raw_rules = []
    for i, r in enumerate(raw_rules):
        rule = c.mapping(("rules", i), r)
        c.keys(("rules", i), rule, {"when", "then"})
        when = c.mapping(("rules", i, "when"), rule.get("when") or {})
        c.keys(("rules", i, "when"), when, _RULE_WHEN)
        then = rule.get("then")
        then_list = then if isinstance(then, list) else [then]
        if then is None:
            c.fail(("rules", i), "needs then: an action or a list of actions")
        low = when.get("low_confidence")
        rules.append(Rule(
            then=tuple(c.action(("rules", i, "then"), a) for a in then_list if then is not None),
            intents=c.intents(("rules", i, "when", "intent"), when.get("intent")),
            states=tuple(str(s) for s in (when.get("state") or [])) if isinstance(when.get("state"), list)
            else ((str(when["state"]),) if when.get("state") else ()),
            low_confidence=None if low is None else bool(low),
        ))

    definition = DialogueDefinition(path=path, tasks=tuple(tasks), fallback=fallback, answer_intents=answer_intents,
                                    small_talk=tuple(small_talk), handoff=handoff, knowledge=knowledge, cancel=cancel,
                                    rules=tuple(rules))
    _check_whole(c, definition)
    if c.problems:
        raise DefinitionError(path, c.problems)
    _check_reachable(c, definition)
    if c.problems:
        raise DefinitionError(path, c.problems)
    return definition


def _task(c: _Checker, name: str, spec: dict[str, Any], answer_intents: tuple[str, ...],
          subject: tuple[str, ...]) -> Task | None:
    at: tuple[Any, ...] = ("tasks", name)
    if not _NAME.match(name):
        c.fail(at, f"task name {name!r} must be an identifier (letters, digits and _)")
        return None
    c.keys(at, spec, _TASK_KEYS)
    intents = c.intents((*at, "intents"), spec.get("intents"), required=True)
    if "action" not in spec:
        c.fail(at, "needs action: the action that completes the task")
    action = c.action((*at, "action"), spec.get("action"))
    slots: list[SlotSpec] = []
    raw_slots = spec.get("slots") or []
    if not isinstance(raw_slots, list):
        c.fail((*at, "slots"), "must be a list of {name, ask}")
        raw_slots = []
    for i, raw in enumerate(raw_slots):
        sat = (*at, "slots", i)
        s = c.mapping(sat, raw)
        c.keys(sat, s, _SLOT_KEYS)
        slot = c.slot((*sat, "name"), s.get("name"))
        if "ask" not in s:
            c.fail(sat, f"slot {slot!r} needs ask: the response that asks the customer for it")
        ask = c.action((*sat, "ask"), s.get("ask"))
        state = str(s.get("state") or f"{name}_need_{slot}")
        if not _NAME.match(state):
            c.fail((*sat, "state"), f"state name {state!r} must be an identifier")
        from_text = None
        if s.get("from_text") is not None:
            ft = c.mapping((*sat, "from_text"), s["from_text"] if s["from_text"] is not True else {})
            c.keys((*sat, "from_text"), ft, {"not_intent", "as_intent", "in_request"})
            if not isinstance(ft.get("in_request", False), bool):
                c.fail((*sat, "from_text", "in_request"), "in_request is true or false")
            as_intent = ft.get("as_intent", answer_intents[0] if answer_intents else None)
            # by default, another subject's intent is not an answer; the task's own is ("the router keeps dropping"
            # describes a fault and reads like a request to report one)
            not_intent = (c.intents((*sat, "from_text", "not_intent"), ft["not_intent"]) if "not_intent" in ft
                          else tuple(i for i in subject if i not in intents))
            from_text = FromText(slot, ask, frozenset(not_intent),
                                 c.intent((*sat, "from_text", "as_intent"), as_intent) if as_intent else None,
                                 ft.get("in_request") is True)
        elif slot not in c.domain.entities and not _filled_by_domain(c.domain, slot):
            c.fail(sat, f"no mapping can fill slot {slot!r}: it is not an entity of domain.yml and has no from_text "
                   "(add the entity and annotate it in the NLU data, or add from_text: {})")
        slots.append(SlotSpec(slot, ask, state, from_text))
    confirm = None
    if spec.get("confirm") is not None:
        cat = (*at, "confirm")
        k = c.mapping(cat, spec["confirm"])
        k = {_YAML11_BOOLS.get(key, key) if isinstance(key, bool) else key: v for key, v in k.items()}
        c.keys(cat, k, _CONFIRM_KEYS)
        if "ask" not in k:
            c.fail(cat, "needs ask: the response that asks the customer to confirm")
        yes = c.intents((*cat, "yes"), k.get("yes", ["affirm"] if "affirm" in c.domain.intents else None), required=True)
        no = c.intents((*cat, "no"), k.get("no", ["deny"] if "deny" in c.domain.intents else None), required=True)
        cancelled = c.action((*cat, "cancelled"), k["cancelled"]) if k.get("cancelled") is not None else None
        confirm = Confirm(c.action((*cat, "ask"), k.get("ask")), yes, no, cancelled)
    names = [s.name for s in slots]
    starts_on = tuple(spec.get("starts_on") or ())
    for i, slot_name in enumerate(starts_on):
        if slot_name not in names:
            c.fail((*at, "starts_on", i), f"{slot_name!r} is not one of the task's slots ({', '.join(names) or 'none'})")
    reset = tuple(spec.get("reset") or ())
    for i, slot_name in enumerate(reset):
        c.slot((*at, "reset", i), slot_name)
    return Task(name, intents, tuple(slots), action, starts_on, confirm, reset)


def _subject_intents(top: dict[str, Any], raw_tasks: dict[str, Any], domain: Domain) -> tuple[str, ...]:
    """The intents that change the subject: a message filed under one of them is not an answer to the bot's question,
    so a ``from_text`` slot without its own ``not_intent`` ignores them (every task's, cancel, hand-off, small talk and
    knowledge intents)."""
    found: list[str] = []

    def take(raw: Any) -> None:
        items = raw if isinstance(raw, list) else [raw]
        found.extend(str(i) for i in items if isinstance(i, str) and i in domain.intents)

    for spec in raw_tasks.values():
        if isinstance(spec, dict):
            take(spec.get("intents") or [])
    for key in ("cancel", "handoff", "knowledge"):
        if isinstance(top.get(key), dict):
            take(top[key].get("intents") or [])
    if isinstance(top.get("small_talk"), dict):
        take(list(top["small_talk"]))
    return tuple(dict.fromkeys(found))


def _filled_by_domain(domain: Domain, slot: str) -> bool:
    """A slot with a ``from_text`` mapping in domain.yml (the older place for it)."""
    return any(m.slot == slot for m in domain.from_text)


def _check_whole(c: _Checker, d: DialogueDefinition) -> None:
    """What only the whole file shows: one action with two roles, two tasks waiting in one state."""
    roles: dict[str, str] = {}

    def role(action: str, what: str, at: tuple[Any, ...], shared: bool = False) -> None:
        seen = roles.get(action)
        if seen is not None and not (shared and seen == what):
            c.fail(at, f"{action!r} is already {seen}; one action plays one part (use another response name)")
        roles.setdefault(action, what)

    role(d.fallback, "the fallback", ("fallback",))
    if d.knowledge:
        role(d.knowledge.action, "the knowledge action", ("knowledge", "action"))
    if d.handoff:
        role(d.handoff.action, "the hand-off", ("handoff", "action"))
        role(d.handoff.reply, "the hand-off reply", ("handoff", "reply"))
    if d.cancel:
        role(d.cancel.reply, "the cancel reply", ("cancel", "reply"))
    for talk in d.small_talk:
        role(talk.reply, "a small-talk reply", ("small_talk", talk.intent), shared=True)
    waiting: dict[str, str] = {}
    for task in d.tasks:
        at = ("tasks", task.name)
        role(task.action, f"the action of task {task.name!r}", (*at, "action"))
        for i, slot in enumerate(task.slots):
            role(slot.ask, "a question for a slot", (*at, "slots", i, "ask"), shared=True)
            owner = waiting.setdefault(slot.state, task.name)
            if owner != task.name or slot.state in (IDLE, HANDOFF_STATE):
                c.fail((*at, "slots", i, "state"), f"state {slot.state!r} is already used; each slot waits in its own")
        if task.confirm:
            role(task.confirm.ask, f"the confirmation of task {task.name!r}", (*at, "confirm", "ask"))
            if task.confirm.cancelled:
                role(task.confirm.cancelled, f"the refusal of task {task.name!r}", (*at, "confirm", "cancelled"))
        if len(set(task.slot_names)) != len(task.slots):
            c.fail((*at, "slots"), "a slot is listed twice")
    if not d.tasks and not d.small_talk and not d.knowledge:
        c.fail((), "defines nothing the bot can do (add tasks, small_talk or knowledge)")


def _check_reachable(c: _Checker, d: DialogueDefinition) -> None:
    try:
        edges = d.transitions()
    except DefinitionError as exc:
        c.problems.extend(exc.problems)
        return
    seen, todo = {IDLE}, [IDLE]
    while todo:
        here = todo.pop()
        for source, _, target in edges:
            if source == here and target not in seen:
                seen.add(target)
                todo.append(target)
    for state in d.states:
        if state not in seen:
            task = d.task_of_state(state)
            c.fail(("tasks", task.name) if task else (), f"state {state!r} cannot be reached from {IDLE!r}")
