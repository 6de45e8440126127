"""What a checked ``dialogue.yml`` is and compiles to: its records, the default policy, and the FSM class.

:class:`DialogueDefinition` holds the tasks, hand-off, small talk, knowledge, cancel, fallback and the author's rules;
it answers what the turn is about (:meth:`~DialogueDefinition.wants`), gives the hand-written default policy and
compiles itself (:func:`_compile`) into a python-statemachine class whose events are actions. Reading and checking
the file is :mod:`dialogue.definition.parser`'s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import cached_property, reduce
from pathlib import Path
from typing import Any

from statemachine import State, StateMachine

from dialogue.domain import FromText
from dialogue.flows import FlowContext, FlowError, Flows, first_allowed

IDLE = "idle"
HANDOFF_STATE = "handed_off"


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

    def unsure_subjects(self, mappings: Sequence[FromText]) -> tuple[FromText, ...]:
        """``mappings`` (this definition's and those of ``domain.yml``) with their small-talk and hand-off intents
        marked ``unsure``: they change the subject only when the NLU is sure of them (``FromText.takes``). A reason
        misread lands there far more often than a real change of subject; another task's, cancel's or knowledge's
        intents always change it, so a customer switching tasks keeps the switch.

        Small talk that ends the task (``ends_task``: a goodbye) changes the subject the same way even where the
        mapping's ``not_intent`` leaves it out: asked for a return's reason, "hmm actually never mind, I think I'll
        keep them after all. thanks anyway, bye" (goodbye, 0.96) was the reason of an approved return. A reason that
        only reads like a goodbye ("dont need it anymore") is not said plainly enough to be one (``FromText.takes``)."""
        unsure = {talk.intent for talk in self.small_talk} | set(self.handoff.intents if self.handoff else ())
        ending = frozenset(talk.intent for talk in self.small_talk if talk.ends_task)
        return tuple(dataclasses.replace(m, not_intent=m.not_intent | ending,
                                         unsure=(m.not_intent | ending) & frozenset(unsure)) for m in mappings)

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



def definition_of(flows: Flows) -> DialogueDefinition | None:
    """The definition a :class:`Flows` was compiled from (None for a Python flows module)."""
    found = flows.definition
    return found if isinstance(found, DialogueDefinition) else None
