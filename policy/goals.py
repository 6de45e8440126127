"""The simulated users' goals, drawn from what a bot's dialogue definition offers: an agenda of *wants* (tasks with
their values, questions, hand-offs, cancelling, small talk) and the habits of a population of users
(:class:`SimConfig`). See :mod:`policy.simulator` for what each habit means in a dialogue."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from policy.botshape import SimBot, SimulatorError, TaskLike
from policy.noise import OUT_OF_SCOPE, NoiseStats, other_value


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


class GoalMaker:
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
    return GoalMaker(bot, cfg).goal(rng)
