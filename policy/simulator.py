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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from policy.base import Decision, Observation, Policy, intent_for, runner_up_questions
from policy.botshape import (
    CancelLike,
    ConfirmLike,
    ContextFactory,
    DefinitionLike,
    FlowsLike,
    FromTextLike,
    HandoffLike,
    KnowledgeLike,
    SimBot,
    SimContext,
    SimulatorError,
    SlotLike,
    SmallTalkLike,
    TaskLike,
    questions,
)
from policy.errors import PolicyError
from policy.goals import Goal, GoalMaker, SimConfig, Users, Want, draw_goal
from policy.noise import OUT_OF_SCOPE, NLUHypothesis, NoiseChannel, NoiseStats, UserAct
from policy.user import SimulatedUser

__all__ = ["CancelLike", "ConfirmLike", "ContextFactory", "DefinitionLike", "DialogueSimulation", "Episode",
           "FlowsLike", "FromTextLike", "Goal", "HandoffLike", "KnowledgeLike", "NLUHypothesis", "NoiseStats", "SimBot",
           "SimConfig", "SimContext", "SimulatedUser", "SimulatorError", "SlotLike", "SmallTalkLike", "Step", "TaskLike",
           "UserAct", "Users", "Want", "draw_goal", "summarise", "with_config"]


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
        self.goals = GoalMaker(bot, users.config)
        self.knowledge_intents = set(bot.definition.knowledge.intents) if bot.definition.knowledge else set()
        self.questions = questions(bot.definition)
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

    def runner_up(self, state: str, intent: str, slots: dict[str, Any], filled: frozenset[str],
                  ranking: Sequence[tuple[str, float]], allowed: tuple[str, ...], unsure: bool
                  ) -> tuple[str | None, tuple[str, ...]]:
        """The ranking's second intent and the questions only it allows (:func:`policy.botshape.questions`), for a
        message the bot is ``unsure`` of (low confidence or out of scope, not an answer to its question)."""
        if not self.bot.runner_up or not unsure:
            return None, ()
        return runner_up_questions(ranking, intent, allowed, self.questions,
                                   lambda second: self.allowed(state, second, slots, filled))

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
            takers = [m for m in bot.from_text
                      if m.takes(last_action, intent, m.slot in filled, awaited, hyp.confidence)]
            if act.intent in self.knowledge_intents:
                takers = []  # the engine's retriever reads a question the knowledge base answers: not an answer
            texts = dict(act.texts)
            for mapping in takers:  # the message answered the bot's question: the message is the value
                slots[mapping.slot] = texts.get(mapping.slot, f"<{act.intent}>")
                filled.add(mapping.slot)
                intent, low = mapping.as_intent or intent, False
            given = frozenset(filled)
            allowed = self.allowed(state, intent, slots, given)
            unsure = not takers and (low or intent == OUT_OF_SCOPE)  # where the rules have only the fallback
            runner_up, extra = self.runner_up(state, intent, slots, given, hyp.ranking, allowed, unsure)
            allowed = allowed + extra
            obs = Observation(
                state=state, intent=intent, confidence=hyp.confidence, filled_slots=_holding(slots),
                ranking=hyp.ranking, turn=turns + 1, last_action=last_action, low_confidence=low,
                language=goal.language, runner_up=runner_up, runner_up_actions=extra,
            )
            decision: Decision = policy.choose(obs, allowed)
            if decision.action not in allowed:
                raise PolicyError(f"policy {policy.name!r} chose {decision.action!r} outside the mask {allowed}")
            state = self.advance(state, intent_for(obs, decision.action), slots, given, decision.action)
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
