"""The dialogue definition: a bot's dialogue written as data (``dialogue.yml``), compiled into its FSM.

Bot authors describe *tasks* (the intents that start them, the slots they need and the response that asks for each,
an optional confirmation, the action that completes them), hand-off, small talk, the knowledge action, cancel and
the fallback; ``docs/bots.md`` is the reference. :func:`load_definition` checks the file against the bot's domain
and actions and refuses it with ``file:line: where: what, and the fix``; :meth:`DialogueDefinition.flows` compiles it
into a python-statemachine class whose events are actions, so the enabled events stay the policy's allowed set and
the rest of Kefu (engine, policies, simulator) sees the same :class:`~dialogue.flows.Flows` a Python flows module
gives. The definition also yields the hand-written default policy (:meth:`DialogueDefinition.default_policy`) and
is what the user simulator derives its goals from, so one file drives the FSM, the rules and the RL training.

Why compile to python-statemachine instead of interpreting the YAML: the FSM is the contract between the dialogue
and the policies (``Flows.allowed`` / ``Flows.advance``); a Python flows module remains possible for what the data
cannot say, and both kinds are served by the same code.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, reduce
from pathlib import Path
from typing import Any

import yaml
from statemachine import State, StateMachine

from dialogue.domain import Domain, FromText
from dialogue.flows import FlowContext, FlowError, Flows, first_allowed

IDLE = "idle"
HANDOFF_STATE = "handed_off"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TOP_KEYS = {"answer_intents", "tasks", "cancel", "handoff", "small_talk", "knowledge", "fallback", "rules"}
_TASK_KEYS = {"intents", "slots", "starts_on", "action", "confirm", "reset", "description"}
_SLOT_KEYS = {"name", "ask", "state", "from_text"}
_CONFIRM_KEYS = {"ask", "yes", "no", "cancelled"}
_RULE_WHEN = {"intent", "state", "low_confidence"}
_YAML11_BOOLS = {True: "yes", False: "no"}  # YAML 1.1 reads a bare `yes:` / `no:` key as a boolean


class DefinitionError(FlowError):
    """``dialogue.yml`` is invalid; ``problems`` holds one ``file:line: where: what`` line per mistake."""

    def __init__(self, path: Path, problems: Sequence[str]) -> None:
        self.path = path
        self.problems = tuple(problems)
        more = f" ({len(problems)} problems)" if len(problems) > 1 else ""
        super().__init__(f"invalid dialogue definition {path}{more}:\n" + "\n".join(self.problems))


@dataclass(frozen=True)
class SlotSpec:
    """A slot a task asks for: the response (or action) that asks, and the FSM state that waits for the answer."""

    name: str
    ask: str
    state: str
    from_text: FromText | None = None


@dataclass(frozen=True)
class Confirm:
    """A question before an action that cannot be undone: ``yes`` intents run it, ``no`` intents drop the task."""

    ask: str
    yes: tuple[str, ...]
    no: tuple[str, ...]
    cancelled: str | None = None


@dataclass(frozen=True)
class Task:
    name: str
    intents: tuple[str, ...]
    slots: tuple[SlotSpec, ...]
    action: str
    starts_on: tuple[str, ...] = ()
    confirm: Confirm | None = None
    reset: tuple[str, ...] = ()

    @property
    def confirm_state(self) -> str | None:
        return f"{self.name}_confirm" if self.confirm else None

    @property
    def states(self) -> tuple[str, ...]:
        """The FSM states in which this task is open (waiting for a slot, or for the confirmation)."""
        own = tuple(s.state for s in self.slots)
        return own + ((self.confirm_state,) if self.confirm_state else ())

    @property
    def slot_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.slots)


@dataclass(frozen=True)
class SmallTalk:
    intent: str
    reply: str
    ends_task: bool = False


@dataclass(frozen=True)
class Handoff:
    action: str
    reply: str
    intents: tuple[str, ...] = ()


@dataclass(frozen=True)
class Knowledge:
    action: str
    intents: tuple[str, ...] = ()


@dataclass(frozen=True)
class Cancel:
    intents: tuple[str, ...]
    reply: str


@dataclass(frozen=True)
class Rule:
    """An author's rule of the default policy: when the turn matches, the first action of ``then`` the FSM allows."""

    then: tuple[str, ...]
    intents: tuple[str, ...] = ()
    states: tuple[str, ...] = ()
    low_confidence: bool | None = None

    def matches(self, obs: Any) -> bool:
        return ((not self.intents or obs.intent in self.intents) and (not self.states or obs.state in self.states)
                and (self.low_confidence is None or bool(obs.low_confidence) == self.low_confidence))


@dataclass(frozen=True)
class DialogueDefinition:
    """A checked ``dialogue.yml``: what the FSM, the default policy and the user simulator are built from."""

    path: Path
    tasks: tuple[Task, ...]
    fallback: str
    answer_intents: tuple[str, ...] = ()
    small_talk: tuple[SmallTalk, ...] = ()
    handoff: Handoff | None = None
    knowledge: Knowledge | None = None
    cancel: Cancel | None = None
    rules: tuple[Rule, ...] = ()

    # -- what the definition says --------------------------------------------------------------------------------
    @cached_property
    def states(self) -> tuple[str, ...]:
        names = [IDLE, *(s for t in self.tasks for s in t.states)]
        if self.handoff:
            names.append(HANDOFF_STATE)
        return tuple(dict.fromkeys(names))

    @property
    def open_states(self) -> tuple[str, ...]:
        """Every state but the hand-off one: where small talk, the fallback and the tasks' events are reachable."""
        return tuple(s for s in self.states if s != HANDOFF_STATE)

    def task_of_state(self, state: str) -> Task | None:
        return next((t for t in self.tasks if state in t.states), None)

    def opening(self, intent: str) -> tuple[Task, frozenset[str], frozenset[str]] | None:
        """The task ``intent`` starts, its small-talk intents and the bot's other intents (cancel, knowledge, other
        tasks): what :func:`dialogue.clauses.detail` may leave out of the message that starts the task."""
        task = next((t for t in self.tasks if intent in t.intents), None)
        if task is None:
            return None
        others = {i for t in self.tasks for i in t.intents} | set(self.knowledge.intents if self.knowledge else ())
        others |= set(self.cancel.intents if self.cancel else ())
        return task, frozenset(talk.intent for talk in self.small_talk), frozenset(others - set(task.intents))

    def claims(self, intent: str, values: Collection[str]) -> bool:
        """Whether a message read as ``intent`` that gave values for the slots ``values`` is about one of the tasks:
        a value of a slot of the task ``intent`` starts, or an answer intent with a value a task starts on."""
        given = set(values)
        if any(intent in t.intents and given & set(t.slot_names) for t in self.tasks):
            return True
        return intent in self.answer_intents and any(given & set(t.starts_on) for t in self.tasks)

    def wants(self, ctx: FlowContext, task: Task) -> bool:
        """Whether this turn asks for ``task`` (docs/bots.md, "What compiles to what")."""
        if ctx.intent in task.intents:
            return True
        if ctx.intent in self.answer_intents and ctx.state in task.states:
            return True
        if task.confirm and ctx.state == task.confirm_state and ctx.intent in (*task.confirm.yes, *task.confirm.no):
            return True
        return ctx.intent in self.answer_intents and ctx.state == IDLE and bool(set(task.starts_on) & ctx.filled)

    def resets(self) -> dict[str, tuple[str, ...]]:
        """Action -> the slots cleared after it ran: a task's ``reset`` when it completes, is refused or cancelled."""
        out: dict[str, set[str]] = {}
        every = {s for t in self.tasks for s in t.reset}
        for task in self.tasks:
            if task.reset:
                out.setdefault(task.action, set()).update(task.reset)
                if task.confirm and task.confirm.cancelled:
                    out.setdefault(task.confirm.cancelled, set()).update(task.reset)
        if self.cancel and every:
            out.setdefault(self.cancel.reply, set()).update(every)
        return {action: tuple(sorted(slots)) for action, slots in out.items()}

    def from_text(self) -> tuple[FromText, ...]:
        return tuple(s.from_text for t in self.tasks for s in t.slots if s.from_text is not None)

    # -- the hand-written default policy -------------------------------------------------------------------------
    def default_policy(self, obs: Any, allowed: Sequence[str]) -> str:
        """The obvious action for the turn, within the mask (the order of docs/bots.md, "The default policy")."""
        for rule in self.rules:
            if rule.matches(obs):
                choice = next((a for a in rule.then if a in allowed), None)
                if choice is not None:
                    return choice
        if obs.state == HANDOFF_STATE and self.handoff:
            return self.handoff.reply
        if obs.low_confidence or "prompt_injection" in obs.flags or obs.intent == "out_of_scope":
            return self.fallback
        for talk in self.small_talk:
            if obs.intent == talk.intent and talk.reply in allowed:
                return talk.reply
        if self.knowledge and obs.intent in self.knowledge.intents and self.knowledge.action in allowed:
            return self.knowledge.action
        if self.handoff and obs.intent in self.handoff.intents and self.handoff.action in allowed:
            return self.handoff.action
        open_task = self.task_of_state(obs.state)
        if self.cancel and obs.intent in self.cancel.intents and open_task and self.cancel.reply in allowed:
            return self.cancel.reply
        ordered = ([open_task] if open_task else []) + [t for t in self.tasks if t is not open_task]
        for task in ordered:
            prefs = self._task_preferences(task, obs, allowed, open_task)
            if prefs:
                return first_allowed([*prefs, self.fallback], allowed)
        return self.fallback

    def _task_preferences(self, task: Task, obs: Any, allowed: Sequence[str], open_task: Task | None) -> list[str]:
        """The task's actions in order of preference when the turn is about it, else nothing."""
        answering = obs.intent in self.answer_intents
        in_task = task is open_task
        if task.confirm and obs.state == task.confirm_state:
            if obs.intent in task.confirm.yes:
                return [task.action, task.confirm.ask]
            if obs.intent in task.confirm.no:
                return [task.confirm.cancelled or self.fallback]
        about = obs.intent in task.intents or (answering and in_task)
        # a value given out of the blue (``starts_on``): the flows allow the task's events only then
        if not about and answering and obs.state == IDLE and task.starts_on:
            about = task.action in allowed or any(s.ask in allowed for s in task.slots)
        if not about:
            return []
        finish = [task.confirm.ask] if task.confirm else [task.action]
        return finish + [s.ask for s in reversed(task.slots)]

    # -- compiling -----------------------------------------------------------------------------------------------
    @cached_property
    def machine(self) -> type[StateMachine]:
        """The python-statemachine class (built once per definition)."""
        return _compile(self)

    def reopens(self) -> dict[str, tuple[tuple[str, str], ...]]:
        """Action -> its task's ``(slot, waiting state)`` pairs in order: when the action clears one of them (an
        account that does not exist), the task waits for that slot again instead of ending, so the customer's
        corrected value alone carries on."""
        return {t.action: tuple((s.name, s.state) for s in t.slots) for t in self.tasks if t.slots}

    def flows(self) -> Flows:
        return Flows(machine=self.machine, default_policy=self.default_policy, resets=self.resets(),
                     reopens=self.reopens(), definition=self)

    def transitions(self) -> list[tuple[str, str, str]]:
        """Every ``(source, action, target)`` of the compiled FSM (for drawing and for the reachability check)."""
        return [(transition.source.id, str(event), transition.target.id)
                for state in self.machine.states  # type: ignore[attr-defined]
                for transition in state.transitions for event in transition.events]


def _compile(d: DialogueDefinition) -> type[StateMachine]:
    """Build the StateMachine subclass: one State per state name, one event per action, conditions as methods."""
    states = {name: State(name=name, value=name, initial=(name == IDLE)) for name in d.states}
    edges: dict[str, list[Any]] = {}

    def add(event: str, source: str, target: str, cond: list[str] | None = None) -> None:
        src, dst = states[source], states[target]
        edges.setdefault(event, []).append(src.to(dst, cond=cond or []) if src is not dst else src.to.itself(cond=cond or []))

    methods: dict[str, Any] = {}

    def condition(name: str, test: Any) -> str:
        def check(self: StateMachine) -> bool:
            return bool(test(self.model))

        methods[name] = check
        return name

    cancelled = None
    if d.cancel:
        cancel_intents = d.cancel.intents
        cancelled = condition("cancel_intent", lambda ctx: ctx.intent in cancel_intents)
    for state in d.open_states:
        add(d.fallback, state, state)
        if d.knowledge:
            add(d.knowledge.action, state, state)
        for talk in {t.reply: t for t in d.small_talk}.values():
            add(talk.reply, state, IDLE if talk.ends_task else state)
        if d.cancel and cancelled:
            add(d.cancel.reply, state, IDLE, [cancelled])
        if d.handoff:
            add(d.handoff.action, state, HANDOFF_STATE)
    if d.handoff:
        add(d.handoff.reply, HANDOFF_STATE, HANDOFF_STATE)

    for task in d.tasks:
        wants = condition(f"wants__{task.name}", lambda ctx, t=task: d.wants(ctx, t))
        has = [condition(f"has__{s.name}", lambda ctx, n=s.name: ctx.has(n)) for s in task.slots]
        for i, slot in enumerate(task.slots):
            for state in d.open_states:
                add(slot.ask, state, slot.state, [wants, *has[:i]])
        if task.confirm:
            confirm_state = task.confirm_state
            assert confirm_state is not None
            yes, no = task.confirm.yes, task.confirm.no
            said_yes = condition(f"yes__{task.name}", lambda ctx, y=yes: ctx.intent in y)
            for state in d.open_states:
                add(task.confirm.ask, state, confirm_state, [wants, *has])
            add(task.action, confirm_state, IDLE, [said_yes, *has])
            if task.confirm.cancelled:
                add(task.confirm.cancelled, confirm_state, IDLE,
                    [condition(f"no__{task.name}", lambda ctx, n=no: ctx.intent in n)])
        else:
            for state in d.open_states:
                add(task.action, state, IDLE, [wants, *has])

    attrs: dict[str, Any] = {**states, **methods, "__module__": __name__}
    for event, transitions in edges.items():
        attrs[event] = reduce(lambda a, b: a | b, transitions)
    try:
        return type("DefinedFlows", (StateMachine,), attrs)
    except Exception as exc:  # python-statemachine's own checks (e.g. a state with no way in)
        raise DefinitionError(d.path, [f"{d.path}: the compiled FSM is invalid: {exc}"]) from exc


# -- loading and checking ----------------------------------------------------------------------------------------


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


def definition_of(flows: Flows) -> DialogueDefinition | None:
    """The definition a :class:`Flows` was compiled from (None for a Python flows module)."""
    found = flows.definition
    return found if isinstance(found, DialogueDefinition) else None
