"""An agenda-based user simulator (after ConvLab's ABUS) derived from any bot's dialogue definition.

The simulator plays the *user* and the *tracker* side of a turn as ``dialogue.engine`` does: the user says a
semantic act (an intent and slot values), the noise channel (:mod:`policy.noise`) turns it into what the bot's NLU
would output, entities overwrite the tracked slots, a ``from_text`` slot takes the message when it answers the bot's
question, the bot's real flows give the mask (``allowed``), the policy picks one action, ``advance`` moves the FSM
and the definition's resets clear slots. The user then reacts to the action the bot took.

Nothing here names a bot. What the simulator needs from one is a :class:`SimBot`: the dialogue definition's shape
(tasks with their slots, questions, confirmations and completing actions; small talk; knowledge; hand-off; cancel;
the fallback), the compiled flows, the domain's intents and slots, and values for every slot (the composition root,
``kefu.policy_cli``, reads them from the NLU data's entity annotations, lookup tables and the bot's own data files).
The ``dialogue`` objects satisfy the protocols below structurally; this package never imports them.

**Goals** (:func:`draw_goal`) are an agenda of *wants*, each fulfilled by one action of the definition:

- a task: its completing action, run with the goal's slot values (the definition's idea of success). The user may
  give values up front (some or all), answers the bot's questions for them, says yes to a confirmation that shows
  the goal's values and no to one that does not, and may: switch task midway (ask for another task first and change
  their mind once the bot asks for its slot), correct a value (give a wrong one first and put it right at the next
  answer), ask an off-topic question instead of the first answer (and answer once the bot has answered it),
  change their mind at the confirmation (say no: the task's cancelled reply fulfils the want, its action fails it),
  or give a value the completing action refuses (a card that does not match, an order that does not exist: see
  *refusals* below);
- a question for the knowledge action (which reads the text: it must answer right after the question), an
  off-topic request (``out_of_scope``: the fallback says what the bot can do), small talk (its reply), a hand-off
  intent (the hand-off; it ends the conversation), giving up a task (the cancel reply);
- a second want after the first (a task may reuse the first one's values, as customers do: "and return it"),
  an opening small-talk act, and closing small talk.

**Failure**: the completing action run with values that are not the goal's (a return on the wrong order cannot be
taken back), a task's action the user never asked for run on values that are not theirs, a hand-off nobody asked
for, patience run out (every bot turn that does not move the user forward costs one unit: a fallback, a wrong
reply, being asked again for something already said), or ``max_turns``. **Success**: every want fulfilled in order
(closing small talk after the goal excepted: a user whose thanks went unanswered leaves with what they came for).

**Refusals**: the simulator plays the completing action's result for a goal with a refused value as the engine
handles an action that clears a value of its task: the refused slot (or, as a verification that does not say which
value was wrong, every slot of the task) is cleared and the task waits for the first cleared slot again
(``FlowsLike.reopens``). The user, who believed the value right, then gives the right one. Any other run of a
completing action succeeds or fails on its values alone.

Not simulated: the engine's knowledge-first retrieval and its low-confidence loop hand-off (they act on top of
whichever policy serves).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from policy.base import Decision, Observation, Policy
from policy.errors import PolicyError
from policy.noise import OUT_OF_SCOPE, NLUHypothesis, NoiseChannel, NoiseStats, UserAct, other_value

__all__ = ["DialogueSimulation", "Episode", "Goal", "NLUHypothesis", "NoiseStats", "SimBot", "SimConfig",
           "SimulatedUser", "SimulatorError", "Step", "UserAct", "Users", "Want", "draw_goal", "summarise"]


class SimulatorError(PolicyError):
    """The bot lacks what the simulator needs (a definition with something a user can want)."""


# -- what the simulator reads of a bot (``dialogue.definition`` and ``dialogue.flows`` objects fit) ---------------


class FromTextLike(Protocol):
    @property
    def slot(self) -> str: ...

    def takes(self, last_action: str | None, intent: str, filled: bool, awaited: frozenset[str] = ...) -> bool: ...

    @property
    def as_intent(self) -> str | None: ...


class SlotLike(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def ask(self) -> str: ...


class ConfirmLike(Protocol):
    @property
    def ask(self) -> str: ...

    @property
    def yes(self) -> Sequence[str]: ...

    @property
    def no(self) -> Sequence[str]: ...

    @property
    def cancelled(self) -> str | None: ...


class TaskLike(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def intents(self) -> Sequence[str]: ...

    @property
    def slots(self) -> Sequence[SlotLike]: ...

    @property
    def action(self) -> str: ...

    @property
    def confirm(self) -> ConfirmLike | None: ...

    @property
    def reset(self) -> Sequence[str]: ...


class SmallTalkLike(Protocol):
    @property
    def intent(self) -> str: ...

    @property
    def reply(self) -> str: ...

    @property
    def ends_task(self) -> bool: ...


class HandoffLike(Protocol):
    @property
    def action(self) -> str: ...

    @property
    def intents(self) -> Sequence[str]: ...


class KnowledgeLike(Protocol):
    @property
    def action(self) -> str: ...

    @property
    def intents(self) -> Sequence[str]: ...


class CancelLike(Protocol):
    @property
    def intents(self) -> Sequence[str]: ...

    @property
    def reply(self) -> str: ...


class DefinitionLike(Protocol):
    """The dialogue definition's shape (``dialogue.definition.DialogueDefinition``)."""

    @property
    def tasks(self) -> Sequence[TaskLike]: ...

    @property
    def fallback(self) -> str: ...

    @property
    def answer_intents(self) -> Sequence[str]: ...

    @property
    def small_talk(self) -> Sequence[SmallTalkLike]: ...

    @property
    def handoff(self) -> HandoffLike | None: ...

    @property
    def knowledge(self) -> KnowledgeLike | None: ...

    @property
    def cancel(self) -> CancelLike | None: ...


class FlowsLike(Protocol):
    """The compiled FSM (``dialogue.flows.Flows``): the mask, the transitions and the hand-written policy."""

    @property
    def initial_state(self) -> str: ...

    @property
    def states(self) -> tuple[str, ...]: ...

    @property
    def actions(self) -> tuple[str, ...]: ...

    @property
    def resets(self) -> Mapping[str, tuple[str, ...]]: ...

    @property
    def reopens(self) -> Mapping[str, tuple[tuple[str, str], ...]]: ...

    @property
    def default_policy(self) -> Callable[..., str]: ...

    def allowed(self, context: Any) -> list[str]: ...

    def advance(self, context: Any, action: str) -> str: ...

    def awaited(self, state: str, last_action: str | None) -> frozenset[str]: ...


@dataclass
class SimContext:
    """What the flows' conditions read (``dialogue.flows.FlowContext`` has the same fields; pass it as
    :attr:`SimBot.context` so the flows reuse their pooled machine)."""

    state: str
    intent: str
    slots: dict[str, Any] = field(default_factory=dict)
    filled: frozenset[str] = frozenset()

    def has(self, slot: str) -> bool:
        value = self.slots.get(slot)
        return value is not None and value != ""


ContextFactory = Callable[[str, str, dict[str, Any], frozenset[str]], Any]


@dataclass(frozen=True)
class SimBot:
    """Everything the simulator knows of one bot (built from its folder by ``kefu.policy_cli.sim_bot``)."""

    definition: DefinitionLike
    flows: FlowsLike
    intents: tuple[str, ...]  # the domain's intents (what the NLU can say)
    slots: tuple[str, ...]  # the domain's slots
    entities: tuple[str, ...]  # the slots an entity extractor fills (the domain's entities)
    values: Mapping[str, tuple[str, ...]]  # slot -> values a customer may give (annotations, lookups, bot data)
    from_text: tuple[FromTextLike, ...] = ()  # the domain's from_text mappings (the definition's included)
    languages: tuple[str, ...] = ("en",)
    confidence_threshold: float = 0.5
    ranking_size: int = 5  # intents in the NLU's ranking
    context: ContextFactory = SimContext

    def check(self) -> None:
        d = self.definition
        if not d.tasks and not d.knowledge and not d.small_talk:
            raise SimulatorError("the dialogue definition has nothing a simulated user can want")
        unknown = sorted({i for t in d.tasks for i in t.intents} - set(self.intents))
        if unknown:
            raise SimulatorError(f"task intents {unknown} are not intents of the domain")


@dataclass(frozen=True)
class SimConfig:
    """The simulated users' habits: which goals, how they give values, how patient they are."""

    goal_weights: tuple[tuple[str, float], ...] = (
        ("task", 0.56), ("knowledge", 0.14), ("handoff", 0.08), ("chat", 0.07), ("out_of_scope", 0.07),
        ("cancel", 0.08),
    )  # kinds the bot lacks are dropped and the rest renormalised
    p_second: float = 0.25  # a second want after the first (a task or a question)
    p_switch: float = 0.1  # a task goal opens with another task and switches when the bot asks for its slot
    p_correct: float = 0.1  # a task goal gives one value wrong first and corrects it at the next answer
    p_offtopic: float = 0.1  # a task goal asks an off-topic question instead of the first answer
    p_decline: float = 0.1  # a task goal with a confirmation says no to it (changed their mind)
    p_refused: float = 0.1  # a task goal gives a value its completing action refuses, then the right one
    p_all_upfront: float = 0.2  # every value the NLU can extract is in the opening request
    p_slot_upfront: float = 0.4  # otherwise each of them is, independently
    p_same_value: float = 0.7  # a second task reuses the first one's value of a shared slot
    p_opener: float = 0.3  # the user opens with small talk (a greeting)
    p_closing: float = 0.5  # after the last want, one or two small-talk acts that want their reply
    patience: tuple[int, int] = (2, 4)  # inclusive range of unproductive bot turns a user tolerates
    max_turns: int = 20
    success_reward: float = 20.0
    failure_reward: float = -10.0
    turn_reward: float = -1.0

    @classmethod
    def held_out(cls) -> SimConfig:
        """Users no training ever met: other patience, more up-front values, more switching and side questions."""
        return cls(p_second=0.35, p_switch=0.2, p_correct=0.15, p_offtopic=0.15, p_decline=0.15, p_refused=0.15,
                   p_all_upfront=0.35,
                   p_slot_upfront=0.25, p_same_value=0.5, p_opener=0.45, p_closing=0.35, patience=(1, 5))


@dataclass(frozen=True)
class Users:
    """A population of simulated users: their habits and the noise channel of the NLU they talk through."""

    config: SimConfig
    noise: NoiseStats
    name: str = "training"


@dataclass(frozen=True)
class Want:
    """One thing the user wants from the bot; ``expects`` is the action that fulfils it."""

    kind: str  # task | ask | handoff | cancel
    intent: str  # the intent of the request
    expects: str
    task: str | None = None
    values: tuple[tuple[str, str], ...] = ()  # the task's slot values (in the task's order)
    upfront: tuple[str, ...] = ()  # slots given with the request
    wrong_first: tuple[str, str] | None = None  # (slot, wrong value) given first, corrected at the next answer
    switch_from: str | None = None  # another task's intent, asked for first
    interrupt: Want | None = None  # asked instead of the first answer
    courtesy: bool = False  # closing small talk after the goal: an unanswered one costs turns, not the success
    decline: bool = False  # says no at the task's confirmation: fulfilled by its cancelled reply, failed by its action
    refused: tuple[str, str] | None = None  # (slot, value the action refuses), believed right until it is refused
    refuse_all: bool = False  # the refusal clears every slot of the task (a verification that says no more)


@dataclass(frozen=True)
class Goal:
    wants: tuple[Want, ...]
    opener: str | None = None  # a small-talk intent said before the first want
    patience: int = 3
    language: str = "en"

    @property
    def kind(self) -> str:
        return "+".join(w.kind for w in self.wants)


# -- goals -------------------------------------------------------------------------------------------------------


class _GoalMaker:
    """Draws goals from what the definition offers (one per bot and users, reused across dialogues)."""

    def __init__(self, bot: SimBot, cfg: SimConfig) -> None:
        self.bot, self.cfg = bot, cfg
        d = bot.definition
        self.tasks = list(d.tasks)
        self.slotted = [t for t in self.tasks if t.slots]
        talk = list(d.small_talk)
        self.openers = [t for t in talk if not t.ends_task]
        self.talk = talk
        self.oos = OUT_OF_SCOPE if OUT_OF_SCOPE in bot.intents else None
        have = {
            "task": bool(self.tasks),
            "knowledge": bool(d.knowledge and d.knowledge.intents),
            "handoff": bool(d.handoff and d.handoff.intents),
            "chat": bool(talk),
            "out_of_scope": self.oos is not None,
            "cancel": bool(d.cancel and d.cancel.intents and self.slotted),
        }
        self.kinds = [(k, w) for k, w in cfg.goal_weights if have.get(k) and w > 0]
        if not self.kinds:
            raise SimulatorError("the dialogue definition has nothing a simulated user can want")

    def value(self, slot: str, rng: random.Random) -> str:
        pool = self.bot.values.get(slot) or ()
        return rng.choice(pool) if pool else f"{slot}_{rng.randint(1, 99)}"

    def ask(self, kind: str, rng: random.Random) -> Want:
        d = self.bot.definition
        if kind == "knowledge" and d.knowledge:
            return Want("ask", rng.choice(list(d.knowledge.intents)), d.knowledge.action)
        if kind == "out_of_scope" and self.oos:
            return Want("ask", self.oos, d.fallback)
        talk = rng.choice(self.openers or self.talk)
        return Want("ask", talk.intent, talk.reply)

    def side_question(self, rng: random.Random) -> Want | None:
        """A question for the knowledge base (else small talk) asked while the bot waits for a value."""
        d = self.bot.definition
        if d.knowledge and d.knowledge.intents:
            return self.ask("knowledge", rng)
        return self.ask("chat", rng) if self.openers else None

    def task(self, task: TaskLike, rng: random.Random, known: Mapping[str, str], done: Sequence[str]) -> Want:
        """A task want; ``known``: the values the bot holds from earlier wants, ``done``: their tasks."""
        cfg, entities = self.cfg, set(self.bot.entities)
        names = [s.name for s in task.slots]
        values: dict[str, str] = {}
        forced: list[str] = []
        again = any(w == task.name for w in done)  # the same task once more: another order, another transfer
        for name in names:
            if name in known:
                if name in entities and (again or rng.random() >= cfg.p_same_value):
                    values[name] = other_value(known[name], self.bot.values.get(name, ()), rng)
                    forced.append(name)  # another value than the bot holds: the user says it
                else:
                    values[name] = known[name]
            else:
                values[name] = self.value(name, rng)
        extractable = [n for n in names if n in entities]
        if rng.random() < cfg.p_all_upfront:
            upfront = set(extractable)
        else:
            upfront = {n for n in extractable if rng.random() < cfg.p_slot_upfront}
        upfront.update(forced)
        wrong: tuple[str, str] | None = None
        # a slip is corrected with a later answer: only when a later value is still to be asked for
        fixable = [n for i, n in enumerate(names[:-1]) if n in entities and n not in forced
                   and not any(m in known for m in names[i + 1:])]
        if fixable and rng.random() < cfg.p_correct:
            slot = rng.choice(fixable)
            later = set(names[names.index(slot) + 1:])
            upfront -= later  # the correction rides on a later answer, so a later value is still to be asked
            wrong = (slot, other_value(values[slot], self.bot.values.get(slot, ()), rng))
        switch = None
        others = [t for t in self.slotted if t.name != task.name]
        if not done and others and rng.random() < cfg.p_switch:
            switch = rng.choice(list(rng.choice(others).intents))
            upfront = set()  # a user who changes their mind mid-way gives the values once they have
        interrupt = None
        if len(upfront) < len(names) and rng.random() < cfg.p_offtopic:
            interrupt = self.side_question(rng)
        decline = task.confirm is not None and task.confirm.cancelled is not None and rng.random() < cfg.p_decline
        refused: tuple[str, str] | None = None
        refuse_all = False
        refusable = [n for n in names if n in entities and n not in forced and n not in known
                     and (wrong is None or wrong[0] != n)]
        if not decline and refusable and rng.random() < cfg.p_refused:
            slot = rng.choice(refusable)
            refused = (slot, other_value(values[slot], self.bot.values.get(slot, ()), rng))
            refuse_all = rng.random() < 0.5
        return Want("task", rng.choice(list(task.intents)), task.action, task.name,
                    tuple((n, values[n]) for n in names), tuple(n for n in names if n in upfront), wrong, switch,
                    interrupt, decline=decline, refused=refused, refuse_all=refuse_all)

    def want(self, kind: str, rng: random.Random, earlier: Sequence[Want]) -> Want:
        d = self.bot.definition
        if kind == "task":
            done = [w.task for w in earlier if w.task]
            return self.task(rng.choice(self.tasks), rng, _tracked(self.bot, earlier), done)
        if kind == "handoff" and d.handoff:
            return Want("handoff", rng.choice(list(d.handoff.intents)), d.handoff.action)
        if kind == "cancel" and d.cancel:
            task = rng.choice(self.slotted)
            return Want("cancel", rng.choice(list(task.intents)), d.cancel.reply, task.name)
        return self.ask(kind, rng)

    def goal(self, rng: random.Random) -> Goal:
        cfg = self.cfg
        kinds, weights = zip(*self.kinds, strict=True)
        kind = rng.choices(kinds, weights=weights)[0]
        wants: list[Want] = []
        if kind == "chat":  # small talk only: two or three acts, the ones that end a conversation last
            k = min(len(self.talk), rng.choice((2, 2, 3)))
            acts = sorted(rng.sample(self.talk, k), key=lambda t: t.ends_task)
            wants = [Want("ask", t.intent, t.reply) for t in acts]
        elif kind == "out_of_scope":
            wants = [self.ask(kind, rng) for _ in range(rng.choice((1, 1, 2, 3)))]
        else:
            wants = [self.want(kind, rng, [])]
            if wants[0].kind != "handoff" and rng.random() < cfg.p_second:
                then = [(k, w) for k, w in self.kinds if k in ("task", "knowledge", "handoff")]
                if then:
                    names, ws = zip(*then, strict=True)
                    wants.append(self.want(rng.choices(names, weights=ws)[0], rng, wants))
            if wants[-1].kind != "handoff" and self.talk and rng.random() < cfg.p_closing:
                k = min(len(self.talk), rng.choice((1, 1, 2)))
                acts = sorted(rng.sample(self.talk, k), key=lambda t: t.ends_task)
                wants += [Want("ask", t.intent, t.reply, courtesy=True) for t in acts]
        opener = None
        if self.openers and wants[0].kind != "ask" and rng.random() < cfg.p_opener:
            opener = rng.choice(self.openers).intent
        return Goal(tuple(wants), opener, rng.randint(*cfg.patience), rng.choice(list(self.bot.languages)))


def _tracked(bot: SimBot, wants: Sequence[Want]) -> dict[str, str]:
    """The slot values the bot holds after these wants were fulfilled (a task's reset clears its slots)."""
    known: dict[str, str] = {}
    resets = bot.flows.resets
    for w in wants:
        if w.kind == "task":
            known.update(w.values)
            for slot in resets.get(w.expects, ()):
                known.pop(slot, None)
    return known


def draw_goal(bot: SimBot, cfg: SimConfig, rng: random.Random) -> Goal:
    return _GoalMaker(bot, cfg).goal(rng)


# -- the user ----------------------------------------------------------------------------------------------------


class SimulatedUser:
    """The agenda: the goal's wants in order, what has been said, patience, and the verdict."""

    def __init__(self, goal: Goal, bot: SimBot) -> None:
        self.goal, self.bot = goal, bot
        d = bot.definition
        self.definition = d
        self.tasks = {t.name: t for t in d.tasks}
        self.by_action = {t.action: t for t in d.tasks}
        self.by_confirm = {t.confirm.ask: t for t in d.tasks if t.confirm}
        self.by_cancelled = {t.confirm.cancelled: t for t in d.tasks if t.confirm and t.confirm.cancelled}
        self.by_ask: dict[str, list[str]] = {}
        for t in d.tasks:
            for s in t.slots:
                names = self.by_ask.setdefault(s.ask, [])
                if s.name not in names:
                    names.append(s.name)
        self.replies = {t.intent: t.reply for t in d.small_talk}
        self.text_slots = {m.slot for m in bot.from_text}
        self.entity_slots = set(bot.entities)
        self.answer_intent = d.answer_intents[0] if d.answer_intents else None
        self.own = ({(s, v) for w in goal.wants for s, v in w.values}
                    | {w.wrong_first for w in goal.wants if w.wrong_first}
                    | {w.refused for w in goal.wants if w.refused})
        self.clears: tuple[str, ...] = ()  # slots the action the bot just ran refused (the simulation clears them)
        self.index = 0
        self.frustration = 0
        self.greeted = goal.opener is None
        self.last_act: UserAct | None = None
        self.success = False
        self.failed: str | None = None
        self._fresh()

    def _fresh(self) -> None:
        """Per-want state."""
        self.said: dict[str, str] = {}
        self.switched = False
        self.wrong_given = False
        self.corrected = False
        self.denied = False
        self.refusal_done = False
        self.cancel_said = False
        self.interrupt = "pending"  # pending | asked | done
        self.pending_slot: str | None = None

    @property
    def done(self) -> bool:
        return self.success or self.failed is not None

    @property
    def want(self) -> Want:
        return self.goal.wants[self.index]

    # -- acts ----------------------------------------------------------------------------------------------------
    def _say(self, act: UserAct) -> UserAct:
        self.last_act = act
        return act

    def _value(self, w: Want, slot: str) -> str:
        if w.wrong_first and w.wrong_first[0] == slot and not self.corrected:
            self.wrong_given = True
            return w.wrong_first[1]
        if w.refused and w.refused[0] == slot and not self.refusal_done:
            return w.refused[1]
        return dict(w.values)[slot]

    def _expected(self, w: Want) -> dict[str, str]:
        """The values the user believes right now: the goal's, with a value the action has not refused yet."""
        values = dict(w.values)
        if w.refused and not self.refusal_done:
            values[w.refused[0]] = w.refused[1]
        return values

    def _carry(self, slot: str, value: str) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
        """The value as the NLU can read it (an entity) and as the whole message would be taken (from_text)."""
        ents = ((slot, value),) if slot in self.entity_slots else ()
        texts = ((slot, value),) if slot in self.text_slots else ()
        return ents, texts

    def _request(self, w: Want, everything: bool = False) -> UserAct:
        if w.kind == "task" and w.switch_from and not self.switched:
            return UserAct(w.switch_from)
        if w.kind != "task":
            return UserAct(w.intent)
        given = [s for s, _ in w.values if s in self.entity_slots] if everything else list(w.upfront)
        ents: list[tuple[str, str]] = []
        for slot in given:
            value = self._value(w, slot) if not everything else self._expected(w)[slot]
            self.said[slot] = value
            ents.append((slot, value))
        if everything:
            self.corrected = True  # said again from the start: no slip this time
        return UserAct(w.intent, tuple(ents))

    def _answer(self, w: Want, slot: str) -> UserAct:
        value = self._value(w, slot)
        ents, texts = self._carry(slot, value)
        self.said[slot] = value
        if self.wrong_given and not self.corrected and w.wrong_first and w.wrong_first[0] != slot:
            right = dict(w.values)[w.wrong_first[0]]  # "... and sorry, the order is 10388, not 10383"
            more, _ = self._carry(w.wrong_first[0], right)
            ents = ents + more
            self.said[w.wrong_first[0]] = right
            self.corrected = True
        elif w.wrong_first and w.wrong_first[0] == slot and self.wrong_given and value == dict(w.values)[slot]:
            self.corrected = True
        return UserAct(self.answer_intent or w.intent, tuple(sorted(ents)), texts)

    def first_act(self) -> UserAct:
        if self.goal.opener is not None:
            return self._say(UserAct(self.goal.opener))
        return self._say(self._request(self.want))

    # -- verdicts ------------------------------------------------------------------------------------------------
    def _fail(self, why: str) -> UserAct | None:
        """The dialogue is over, failed (the caller returns this: no next act)."""
        self.failed = why
        return None

    def leave(self, why: str) -> UserAct | None:
        """The user gives up (patience, too many turns): a failure, unless all that is left is closing small talk."""
        if self.index < len(self.goal.wants) and self.want.courtesy:
            self.success = True
            return None
        return self._fail(why)

    def _annoyed(self, restate: bool = False) -> UserAct | None:
        """An unproductive turn: one unit of patience, then the user says it again (a new parse, new noise); with
        ``restate`` (the bot went down another task's path: asked for a value this task does not need, or ran
        another task's action), a task's user says the request again with every value given so far ("no, I want to
        *return* order 10234")."""
        self.frustration += 1
        if self.frustration > self.goal.patience:
            return self.leave("patience")
        w = self.want
        if restate and w.kind == "task" and self.greeted and (not w.switch_from or self.switched):
            given = [s for s, _ in w.values if s in self.entity_slots and (s in self.said or s in w.upfront)]
            values = self._expected(w)
            self.corrected = self.corrected or self.wrong_given  # a slip is put right when saying it all again
            for s in given:
                self.said[s] = values[s]
            return self._say(UserAct(w.intent, tuple((s, values[s]) for s in given)))
        assert self.last_act is not None
        return self._say(self.last_act)

    def _fulfilled(self) -> UserAct | None:
        self.index += 1
        self._fresh()
        if self.index == len(self.goal.wants):
            self.success = True
            return None
        return self._say(self._request(self.want))

    # -- reacting to the bot -------------------------------------------------------------------------------------
    def react(self, action: str, slots: Mapping[str, Any]) -> UserAct | None:
        """The user's next act after the bot's ``action`` (``slots``: the tracker's, as the action saw them);
        None when the dialogue is over (see :attr:`success` and :attr:`failed`)."""
        self.clears = ()
        if self.done:
            return None
        d, w = self.definition, self.want
        if d.handoff and action == d.handoff.action:
            if w.kind == "handoff" and self.greeted:
                return self._fulfilled()
            return self._fail("unwanted_handoff")
        task = self.by_action.get(action)
        if task is not None:
            return self._completed(task, slots)
        if not self.greeted:  # the opener wanted its reply; the user moves on to the request either way
            self.greeted = True
            if action != self.replies.get(self.goal.opener or ""):
                self.frustration += 1
                if self.frustration > self.goal.patience:
                    return self.leave("patience")
            return self._say(self._request(w))
        task = self.by_confirm.get(action)
        if task is not None:
            return self._confirm(task, slots)
        task = self.by_cancelled.get(action)
        if task is not None or (d.cancel is not None and action == d.cancel.reply):
            return self._dropped(action, task)
        asked = self.by_ask.get(action)
        if asked:
            return self._asked(asked)
        last = self.last_act
        if self.interrupt == "asked" and w.interrupt and action == w.interrupt.expects:
            self.interrupt = "done"  # the side question is answered: now the answer the bot asked for
            assert self.pending_slot is not None
            return self._say(self._answer(w, self.pending_slot))
        if w.kind == "ask" and action == w.expects and last is not None and last.intent == w.intent:
            return self._fulfilled()
        return self._annoyed()  # a fallback or a reply that does not help: the user says it again

    def _completed(self, task: TaskLike, slots: Mapping[str, Any]) -> UserAct | None:
        w = self.want
        seen = {s.name: slots.get(s.name) for s in task.slots}
        if w.kind == "task" and w.task == task.name and self.greeted and (not w.switch_from or self.switched):
            if w.decline:
                return self._fail("declined_action_run")
            if w.refused and not self.refusal_done and all(seen[s] == v for s, v in self._expected(w).items()):
                return self._refused(w, task)
            if all(seen[s] == v for s, v in w.values):
                return self._fulfilled()
            return self._fail("wrong_values")
        if all(v is not None and (s, v) in self.own for s, v in seen.items()):
            return self._annoyed(restate=True)  # the user's own data, but not what they asked for now
        return self._fail("unwanted_action")

    def _refused(self, w: Want, task: TaskLike) -> UserAct | None:
        """The action refused the value the user believed right (the simulation clears ``self.clears`` and reopens the
        wait); the user gives the right value of the first cleared slot at once, as a customer answers "that card
        does not match"."""
        assert w.refused is not None
        self.refusal_done = True
        self.clears = tuple(s.name for s in task.slots) if w.refuse_all else (w.refused[0],)
        for slot in self.clears:
            self.said.pop(slot, None)
        return self._say(self._answer(w, self.clears[0]))

    def _confirm(self, task: TaskLike, slots: Mapping[str, Any]) -> UserAct | None:
        w = self.want
        assert task.confirm is not None
        if w.kind == "task" and w.task == task.name and (not w.switch_from or self.switched):
            if self.denied and self._annoyed() is None:  # asked again after saying no
                return None
            if not w.decline and all(slots.get(s) == v for s, v in self._expected(w).items()):
                return self._say(UserAct(task.confirm.yes[0]))
            self.denied = True
            return self._say(UserAct(task.confirm.no[0]))
        if self._annoyed() is None:
            return None
        return self._say(UserAct(task.confirm.no[0]))

    def _dropped(self, action: str, task: TaskLike | None) -> UserAct | None:
        """The open task was dropped (a refused confirmation, or cancelled)."""
        w = self.want
        d = self.definition
        if w.kind == "cancel" and self.cancel_said and d.cancel is not None and action == d.cancel.reply:
            return self._fulfilled()
        if w.kind == "task" and w.decline and self.denied and task is not None and task.name == w.task:
            return self._fulfilled()  # the user said no, and the bot dropped the task
        if self._annoyed() is None:  # a detour, even when the user said no to wrong values
            return None
        self.denied = False
        if w.kind == "task":
            return self._say(self._request(w, everything=True))  # asks again, with every value at once
        return self.last_act

    def _asked(self, slots_asked: Sequence[str]) -> UserAct | None:
        w = self.want
        d = self.definition
        if w.kind == "task" and w.switch_from and not self.switched:
            self.switched = True  # "actually, I want something else"
            return self._say(self._request(w))
        if w.kind == "cancel":
            if not self.cancel_said and d.cancel is not None:
                self.cancel_said = True
                return self._say(UserAct(d.cancel.intents[0]))
            return self._annoyed()
        needed = [s for s in slots_asked if w.kind == "task" and s in dict(w.values)]
        if self.interrupt == "asked":
            return self._annoyed()  # the side question first
        if not needed:
            return self._annoyed(restate=True)
        slot = needed[0]
        if self.interrupt == "pending" and w.interrupt is not None:
            self.interrupt, self.pending_slot = "asked", slot
            return self._say(UserAct(w.interrupt.intent))
        fixing = w.wrong_first is not None and w.wrong_first[0] == slot and self.wrong_given and not self.corrected
        if slot in self.said and not fixing:  # asked again for what was said: a confirmation costs patience
            self.frustration += 1
            if self.frustration > self.goal.patience:
                return self.leave("patience")
        return self._say(self._answer(w, slot))


# -- dialogues ---------------------------------------------------------------------------------------------------


@dataclass
class Episode:
    goal: Goal
    success: bool
    turns: int
    reward: float
    failure: str | None
    actions: list[str] = field(default_factory=list)


@dataclass
class Step:
    """One bot turn seen by a learner: the observation, its mask, the decision and its outcome."""

    observation: Observation
    allowed: tuple[str, ...]
    action: str
    reward: float
    done: bool


class DialogueSimulation:
    """Runs simulated dialogues between a policy and users with the bot's real flows in the loop."""

    def __init__(self, bot: SimBot, users: Users) -> None:
        bot.check()
        self.bot, self.users, self.cfg = bot, users, users.config
        self.goals = _GoalMaker(bot, users.config)
        self.knowledge_intents = set(bot.definition.knowledge.intents) if bot.definition.knowledge else set()
        self._channels: dict[float, NoiseChannel] = {}
        self._allowed: dict[tuple[str, str, frozenset[str], frozenset[str]], tuple[str, ...]] = {}
        self._advance: dict[tuple[str, str, frozenset[str], frozenset[str], str], str] = {}

    def channel(self, error_rate: float) -> NoiseChannel:
        hit = self._channels.get(error_rate)
        if hit is None:
            hit = NoiseChannel(self.users.noise, self.bot.intents, self.bot.values, error_rate, self.bot.ranking_size)
            self._channels[error_rate] = hit
        return hit

    # The definition's conditions read the intent, the state, which slots hold a value and which this message gave,
    # so masks and transitions are cached on exactly that.
    def allowed(self, state: str, intent: str, slots: dict[str, Any], filled: frozenset[str]) -> tuple[str, ...]:
        key = (state, intent, _holding(slots), filled)
        hit = self._allowed.get(key)
        if hit is None:
            hit = tuple(self.bot.flows.allowed(self.bot.context(state, intent, dict(slots), filled)))
            self._allowed[key] = hit
        return hit

    def advance(self, state: str, intent: str, slots: dict[str, Any], filled: frozenset[str], action: str) -> str:
        key = (state, intent, _holding(slots), filled, action)
        hit = self._advance.get(key)
        if hit is None:
            hit = self.bot.flows.advance(self.bot.context(state, intent, dict(slots), filled), action)
            self._advance[key] = hit
        return hit

    def goal(self, seed: int) -> Goal:
        return self.goals.goal(random.Random(seed * 2 + 1))

    def run(self, policy: Policy, error_rate: float, seed: int, steps: list[Step] | None = None) -> Episode:
        """One dialogue; the user (goal and noise stream) depends only on ``seed``, not on the policy."""
        cfg, bot = self.cfg, self.bot
        goal = self.goal(seed)
        noise_rng = random.Random(seed * 2 + 2)
        channel = self.channel(error_rate)
        user = SimulatedUser(goal, bot)
        state = bot.flows.initial_state
        slots: dict[str, Any] = {}
        last_action: str | None = None
        act: UserAct | None = user.first_act()
        turns, reward, actions = 0, 0.0, []
        while act is not None:
            hyp = channel.parse(act, noise_rng)
            filled: set[str] = set()
            for slot, value in hyp.entities:
                if slot in bot.slots:
                    slots[slot] = value
                    filled.add(slot)
            intent, low = hyp.intent, hyp.confidence < bot.confidence_threshold
            awaited = bot.flows.awaited(state, last_action)
            takers = [m for m in bot.from_text if m.takes(last_action, intent, m.slot in filled, awaited)]
            if act.intent in self.knowledge_intents:
                takers = []  # the engine's retriever reads a question the knowledge base answers: not an answer
            texts = dict(act.texts)
            for mapping in takers:  # the message answered the bot's question: the message is the value
                slots[mapping.slot] = texts.get(mapping.slot, f"<{act.intent}>")
                filled.add(mapping.slot)
                intent, low = mapping.as_intent or intent, False
            given = frozenset(filled)
            allowed = self.allowed(state, intent, slots, given)
            obs = Observation(
                state=state, intent=intent, confidence=hyp.confidence, filled_slots=_holding(slots),
                ranking=hyp.ranking, turn=turns + 1, last_action=last_action, low_confidence=low,
                language=goal.language,
            )
            decision: Decision = policy.choose(obs, allowed)
            if decision.action not in allowed:
                raise PolicyError(f"policy {policy.name!r} chose {decision.action!r} outside the mask {allowed}")
            state = self.advance(state, intent, slots, given, decision.action)
            turns += 1
            actions.append(decision.action)
            last_action = decision.action
            seen = dict(slots)
            for slot in bot.flows.resets.get(decision.action, ()):
                slots[slot] = None
            act = user.react(decision.action, seen)
            if user.clears:  # the action refused a value: the task waits for it again (the engine's reopening)
                for slot in user.clears:
                    slots[slot] = None
                state = next(st for s, st in bot.flows.reopens.get(decision.action, ()) if s in user.clears)
            if act is None and not user.done:
                user.failed = "patience"
            if act is not None and turns >= cfg.max_turns:
                user.leave("max_turns")
                act = None
            r = cfg.turn_reward
            if user.success:
                r += cfg.success_reward
            elif user.failed is not None:
                r += cfg.failure_reward
            reward += r
            if steps is not None:
                steps.append(Step(obs, allowed, decision.action, r, act is None))
        return Episode(goal, user.success, turns, reward, user.failed, actions)


def _holding(slots: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(k for k, v in slots.items() if v is not None and v != "")


def summarise(episodes: Sequence[Episode]) -> dict[str, float]:
    n = max(len(episodes), 1)
    return {
        "success_rate": round(sum(e.success for e in episodes) / n, 4),
        "avg_turns": round(sum(e.turns for e in episodes) / n, 3),
        "avg_reward": round(sum(e.reward for e in episodes) / n, 3),
    }


def with_config(users: Users, **changes: Any) -> Users:
    """The same users with some habits changed (tests, ablations)."""
    return replace(users, config=replace(users.config, **changes))
