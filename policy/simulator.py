"""An agenda-based user simulator (after ConvLab's ABUS) for a Kefu bot, with an NLU noise channel.

The simulator plays the *user* and the *tracker* side of a turn exactly as ``dialogue.engine`` does:
the user says a semantic act (intent + slot values), the noise channel turns it into what an NLU
model would output (intent, confidence, ranking, entities), entities overwrite the tracked slots,
the bot's real flows (``Flows.allowed``) give the mask, the policy picks one action, and
``Flows.advance`` moves the FSM. The user then reacts to the action the bot took.

Goals (drawn from the bot's own data: order ids from ``orders.yml``, return reasons from the NLU
training data's ``reason`` annotations):

- ``order_status``: needs ``action_order_status`` run on the goal's order id. Run on another
  *existing* order it discloses a stranger's order (a failure); on a number that does not exist the
  bot says it cannot find it and the user repeats the request;
- ``return``: needs ``action_return`` run on the goal's order id *and* reason. A return processed on
  the wrong order or reason is a failure and ends the dialogue (it cannot be taken back by the bot);
- ``kb``: a shipping / payment / product question; ``action_answer_kb`` answers the user's latest
  text (the KB retriever reads the text, not the intent), so it succeeds when taken right after the
  user asked the question;
- ``complaint``: needs ``action_handoff``. A hand-off for any other goal is a failure (a human had to
  take over a conversation the bot should have handled);
- ``chitchat``: a greeting / thanks / goodbye exchange; each act needs its matching ``utter_*``;
- ``out_of_scope``: one to three off-topic requests; ``utter_fallback`` (what the bot can do) answers each.

After a completed task half the users close with thanks and/or goodbye, which need their replies too.

Patience: every bot turn that does not move the user forward (a fallback, a wrong answer, being asked
again for something already said) costs one unit; the user leaves when it runs out, or at
``max_turns``. Success = the goal completed by the right action with the right slot values before that.

The noise channel, at semantic error rate ``e``: with probability ``e`` an utterance's parse is wrong.
80% of the errors (all of them for acts without slots) are intent confusions: half of them say
``out_of_scope``, the others pick a plausible neighbour (order status <-> shipping, return <->
complaint, ...); the rest damage a slot value (dropped, or replaced by another order id / a digit
swap / another reason). Confidence scores are Beta draws: high for right parses, lower but
overlapping for wrong intents; slot errors keep a right-looking confidence (``slot_error_visible``),
as the joint model's intent confidence does not see them. The ranking keeps the true intent second
for most intent confusions. All these shares and Beta parameters are measured on the bot's real NLU
(``policy.calibrate.measure_nlu``, its held-out split); see ``SimConfig``. At e = 0.0 there are no
errors but confidences still vary.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dialogue.flows import FlowContext, Flows, load_flows
from policy.base import Decision, Observation, Policy
from policy.errors import PolicyError

KB_INTENTS = ("shipping_question", "payment_problem", "product_question")
GOAL_KINDS = ("order_status", "return", "kb", "complaint", "chitchat", "out_of_scope")
HANDOFF_STATE = "handed_off"

# Plausible NLU confusions (who gets mistaken for whom), used by the noise channel.
CONFUSIONS: dict[str, tuple[str, ...]] = {
    "order_status": ("shipping_question", "return_request", "inform", "complaint"),
    "return_request": ("complaint", "order_status", "product_question"),
    "shipping_question": ("order_status", "product_question", "complaint"),
    "payment_problem": ("complaint", "shipping_question", "return_request"),
    "product_question": ("shipping_question", "return_request", "out_of_scope"),
    "complaint": ("return_request", "payment_problem", "out_of_scope"),
    "inform": ("out_of_scope", "order_status", "return_request", "complaint"),
    "greet": ("out_of_scope", "thanks"),
    "goodbye": ("thanks", "out_of_scope"),
    "thanks": ("goodbye", "greet"),
    "out_of_scope": ("complaint", "product_question"),
}


class SimulatorError(PolicyError):
    """The bot folder lacks what the simulator needs (orders, intents, flows)."""


@dataclass(frozen=True)
class SimConfig:
    """Knobs of the simulated users and of the noise channel."""

    goal_weights: tuple[tuple[str, float], ...] = (
        ("order_status", 0.28), ("return", 0.28), ("kb", 0.2), ("complaint", 0.1), ("chitchat", 0.07),
        ("out_of_scope", 0.07),
    )
    p_closing: float = 0.5  # after its task, the user closes with thanks and/or goodbye
    patience: tuple[int, int] = (2, 4)  # inclusive range of unproductive bot turns a user tolerates
    max_turns: int = 12
    p_greet_first: float = 0.3
    p_order_id_upfront: float = 0.5
    p_reason_upfront: float = 0.4  # given the order id is up front
    # The channel's shares and Beta fits are measured on the shop's real NLU with `kefu policy calibrate`
    # (`policy.calibrate.measure_nlu`: the NLU's own held-out split, 116 utterances, 12.9% semantic
    # errors; 101 right parses: median confidence 0.99, none below 0.5; 12 wrong intents: median 0.74,
    # 27% below 0.5, half of them out_of_scope, 10 of 12 with the true intent second; 3 slot errors, all
    # at confidence >= 0.99). Small samples: re-run `calibrate` after retraining the NLU.
    p_intent_error: float = 0.8  # share of errors that are intent confusions (when the act has slots)
    p_slot_drop: float = 0.4  # share of slot errors that drop the value (else: a wrong value)
    slot_error_visible: float = 0.0  # share of slot errors whose confidence looks like an error's
    conf_correct: tuple[float, float] = (6.18, 0.35)  # Beta(a, b) of a right parse's confidence
    conf_error: tuple[float, float] = (2.99, 1.33)  # Beta(a, b) of a wrong parse's confidence
    p_confuse_oos: float = 0.5  # an intent confusion says out_of_scope (else: a neighbour from CONFUSIONS)
    p_true_second: float = 0.83  # an intent confusion keeps the true intent second in the ranking
    p_neighbour_second: float = 0.5  # a right parse has a neighbour second (else: any intent)
    success_reward: float = 20.0
    failure_reward: float = -10.0
    turn_reward: float = -1.0


@dataclass(frozen=True)
class ShopDomain:
    """What the simulator draws goals from, read from a bot folder."""

    intents: tuple[str, ...]
    slots: tuple[str, ...]
    order_ids: tuple[str, ...]
    reasons: tuple[str, ...]
    languages: tuple[str, ...]
    confidence_threshold: float
    flows: Flows

    @classmethod
    def from_bot(cls, bot_dir: Path) -> ShopDomain:
        bot_dir = Path(bot_dir)
        cfg_path = bot_dir / "bot.yml"
        if not cfg_path.is_file():
            raise SimulatorError(f"no bot.yml in {bot_dir}")
        cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
        domain = yaml.safe_load((bot_dir / cfg.get("domain", "domain.yml")).read_text(encoding="utf-8")) or {}
        orders_doc = yaml.safe_load((bot_dir / cfg.get("orders", "data/orders.yml")).read_text(encoding="utf-8")) or {}
        order_ids = tuple(str(o["order_id"]) for o in orders_doc.get("orders", []))
        reasons: list[str] = []
        for rel in cfg.get("nlu_data", []):
            text = (bot_dir / rel).read_text(encoding="utf-8")
            for value in re.findall(r"\[([^\]]+)\]\(reason\)", text):
                if value not in reasons:
                    reasons.append(value)
        if not order_ids or not reasons:
            raise SimulatorError(f"{bot_dir}: need orders and annotated return reasons to draw goals from")
        intents = tuple(domain.get("intents", []))
        missing = {"inform", "order_status", "return_request", "complaint"} - set(intents)
        if missing:
            raise SimulatorError(f"{bot_dir}: domain lacks intents the simulator plays: {sorted(missing)}")
        return cls(
            intents=intents,
            slots=tuple((domain.get("slots") or {}).keys()),
            order_ids=order_ids,
            reasons=tuple(reasons),
            languages=tuple(cfg.get("languages", ["en"])),
            confidence_threshold=float(cfg.get("confidence_threshold", 0.5)),
            flows=load_flows(bot_dir / cfg.get("flows", "flows.py")),
        )


@dataclass(frozen=True)
class Goal:
    kind: str
    intent: str  # the intent of the main request
    order_id: str | None = None
    reason: str | None = None
    upfront: frozenset[str] = frozenset()  # slots the opening request already carries
    smalltalk: tuple[str, ...] = ()  # chitchat acts, or the closing acts after the task, in order
    greet_first: bool = False
    patience: int = 3
    language: str = "en"


@dataclass(frozen=True)
class UserAct:
    intent: str
    slots: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class NLUHypothesis:
    intent: str
    confidence: float
    ranking: tuple[tuple[str, float], ...]
    entities: tuple[tuple[str, str], ...]
    correct: bool


def draw_goal(domain: ShopDomain, cfg: SimConfig, rng: random.Random) -> Goal:
    kinds, weights = zip(*cfg.goal_weights, strict=True)
    kind = rng.choices(kinds, weights=weights)[0]
    patience = rng.randint(*cfg.patience)
    language = rng.choice(domain.languages)
    greet = rng.random() < cfg.p_greet_first
    closing: tuple[str, ...] = ()
    if rng.random() < cfg.p_closing:
        closing = rng.choice([("thanks",), ("goodbye",), ("thanks", "goodbye")])
    if kind == "order_status":
        first = frozenset({"order_id"}) if rng.random() < cfg.p_order_id_upfront else frozenset()
        return Goal(kind, "order_status", rng.choice(domain.order_ids), None, first, closing, greet, patience, language)
    if kind == "return":
        up: set[str] = set()
        if rng.random() < cfg.p_order_id_upfront:
            up.add("order_id")
            if rng.random() < cfg.p_reason_upfront:
                up.add("reason")
        return Goal(kind, "return_request", rng.choice(domain.order_ids), rng.choice(domain.reasons),
                    frozenset(up), closing, greet, patience, language)
    if kind == "kb":
        return Goal(kind, rng.choice(KB_INTENTS), None, None, frozenset(), closing, greet, patience, language)
    if kind == "complaint":
        return Goal(kind, "complaint", None, None, frozenset(), (), greet, patience, language)
    if kind == "out_of_scope":  # one to three off-topic requests, each wants the fallback
        more = ("out_of_scope",) * rng.choice((0, 0, 1, 2))
        return Goal(kind, "out_of_scope", None, None, frozenset(), more + closing, greet, patience, language)
    acts = rng.choice([("greet", "goodbye"), ("greet", "thanks"), ("thanks", "goodbye"), ("greet", "thanks", "goodbye")])
    return Goal(kind, acts[0], None, None, frozenset(), acts, False, patience, language)


class NoiseChannel:
    """Turns the user's true act into an NLU hypothesis at semantic error rate ``error_rate``."""

    def __init__(self, domain: ShopDomain, cfg: SimConfig, error_rate: float) -> None:
        if not 0.0 <= error_rate <= 1.0:
            raise SimulatorError(f"semantic error rate must be in [0, 1], got {error_rate}")
        self.domain = domain
        self.cfg = cfg
        self.error_rate = error_rate

    def parse(self, act: UserAct, rng: random.Random) -> NLUHypothesis:
        cfg = self.cfg
        intent = act.intent
        entities = dict(act.slots)
        error = rng.random() < self.error_rate
        intent_error = False
        visible = False
        if error:
            if not entities or rng.random() < cfg.p_intent_error:
                choices = [c for c in CONFUSIONS.get(act.intent, ("out_of_scope",)) if c in self.domain.intents]
                if act.intent != "out_of_scope" and "out_of_scope" in self.domain.intents and rng.random() < cfg.p_confuse_oos:
                    choices = ["out_of_scope"]
                intent = rng.choice(choices or [i for i in self.domain.intents if i != act.intent])
                intent_error = visible = True
                if entities and rng.random() < 0.3:  # the tagger misses the value too
                    entities.pop(rng.choice(sorted(entities)))
            else:
                slot = rng.choice(sorted(entities))
                visible = rng.random() < cfg.slot_error_visible
                if rng.random() < cfg.p_slot_drop:
                    del entities[slot]
                else:
                    entities[slot] = self._wrong_value(slot, entities[slot], rng)
        a, b = cfg.conf_error if visible else cfg.conf_correct
        confidence = min(max(rng.betavariate(a, b), 0.05), 0.999)
        ranking = self._ranking(intent, act.intent if intent_error else None, confidence, rng)
        return NLUHypothesis(intent, ranking[0][1], ranking, tuple(sorted(entities.items())), not error)

    def _wrong_value(self, slot: str, value: str, rng: random.Random) -> str:
        if slot == "order_id":
            if rng.random() < 0.5 and len(value) > 1:  # a digit swap / misheard digit
                i = rng.randrange(len(value) - 1)
                swapped = value[:i] + value[i + 1] + value[i] + value[i + 2:]
                if swapped != value:
                    return swapped
                return value[:-1] + str((int(value[-1]) + 1) % 10)
            return rng.choice([o for o in self.domain.order_ids if o != value])
        if slot == "reason":
            return rng.choice([r for r in self.domain.reasons if r != value])
        return value + "?"

    def _ranking(self, top: str, true: str | None, confidence: float, rng: random.Random) -> tuple[tuple[str, float], ...]:
        others = [i for i in self.domain.intents if i != top]
        rest = 1.0 - confidence
        weights = {i: rng.gammavariate(0.5, 1.0) + 1e-6 for i in others}
        second = true if (true is not None and rng.random() < self.cfg.p_true_second) else None
        if second is None:
            near = [c for c in CONFUSIONS.get(top, ()) if c in weights]
            if rng.random() >= self.cfg.p_neighbour_second:
                near = []
            second = rng.choice(near) if near else rng.choice(others)
        share = rng.betavariate(4.0, 2.0)
        probs = {second: rest * share}
        tail = sum(w for i, w in weights.items() if i != second)
        for i, w in weights.items():
            if i != second:
                probs[i] = rest * (1.0 - share) * w / tail
        cap = confidence * 0.98  # the top intent is the argmax
        overflow = sum(max(0.0, p - cap) for p in probs.values())
        probs = {i: min(p, cap) for i, p in probs.items()}
        total = confidence + sum(probs.values()) + overflow
        ranked = sorted(probs.items(), key=lambda kv: -kv[1])
        return ((top, (confidence + overflow) / total), *((i, p / total) for i, p in ranked))


class SimulatedUser:
    """The agenda: the goal's acts, what has been said, patience, and the verdict."""

    def __init__(self, goal: Goal, known_orders: frozenset[str] = frozenset()) -> None:
        self.goal = goal
        self.known_orders = known_orders
        self.frustration = 0
        self.said: set[str] = set()  # slots the user has already given
        self.smalltalk_left = list(goal.smalltalk)
        self.task_done = goal.kind == "chitchat"  # chitchat has no task: its acts are the goal
        self.greeted = not goal.greet_first
        self.last_act: UserAct | None = None
        self.success = False
        self.failed: str | None = None

    @property
    def done(self) -> bool:
        return self.success or self.failed is not None

    def _request(self, with_slots: frozenset[str] | set[str]) -> UserAct:
        g = self.goal
        values = {"order_id": g.order_id, "reason": g.reason}
        slots = tuple((s, str(values[s])) for s in ("order_id", "reason") if s in with_slots and values.get(s))
        self.said.update(s for s, _ in slots)
        return UserAct(g.intent, slots)

    def _inform(self, slot: str) -> UserAct:
        value = self.goal.order_id if slot == "order_id" else self.goal.reason
        self.said.add(slot)
        return UserAct("inform", ((slot, str(value)),))

    def first_act(self) -> UserAct:
        g = self.goal
        if g.kind == "chitchat":
            act = UserAct(self.smalltalk_left[0])
        elif g.greet_first:
            act = UserAct("greet")
        else:
            act = self._request(g.upfront)
        self.last_act = act
        return act

    def _task_completed(self) -> UserAct | None:
        self.task_done = True
        if not self.smalltalk_left:
            self.success = True
            return None
        return UserAct(self.smalltalk_left[0])  # closing: thanks / goodbye, each wants its reply

    def _annoyed(self) -> UserAct | None:
        self.frustration += 1
        if self.frustration > self.goal.patience:
            self.failed = "patience"
            return None
        assert self.last_act is not None
        return self.last_act  # says it again (a new parse draws new noise)

    def react(self, action: str, slots: dict[str, Any]) -> UserAct | None:
        """The user's next act after the bot's ``action`` (``slots``: the tracker's, as the action saw them)."""
        act = self._react(action, slots)
        if act is not None:
            self.last_act = act
        return act

    def _react(self, action: str, slots: dict[str, Any]) -> UserAct | None:
        g = self.goal
        last = self.last_act
        assert last is not None
        if self.task_done:
            expected = {"greet": "utter_greet", "thanks": "utter_thanks", "goodbye": "utter_goodbye",
                        "out_of_scope": "utter_fallback"}[self.smalltalk_left[0]]
            if action == "action_handoff":
                self.failed = "unwanted_handoff"
                return None
            if action == "action_return":
                self.failed = "wrong_return"
                return None
            if action != expected:
                return self._annoyed()
            self.smalltalk_left.pop(0)
            if not self.smalltalk_left:
                self.success = True
                return None
            return UserAct(self.smalltalk_left[0])
        if not self.greeted:  # the opening greeting
            if action == "action_handoff":
                self.failed = "unwanted_handoff"
                return None
            if action == "action_return":
                self.failed = "wrong_return"
                return None
            self.greeted = True
            if action != "utter_greet":
                self.frustration += 1  # not fatal: the user moves on to the request
                if self.frustration > g.patience:
                    self.failed = "patience"
                    return None
            return self._request(g.upfront)
        if action == "action_handoff":
            if g.kind == "complaint":
                self.success = True
            else:
                self.failed = "unwanted_handoff"
            return None
        if action == "action_return":
            if g.kind == "return" and slots.get("order_id") == g.order_id and slots.get("reason") == g.reason:
                return self._task_completed()
            else:
                self.failed = "wrong_return"
            return None
        if action == "action_order_status" and g.kind == "order_status" and slots.get("order_id") == g.order_id:
            return self._task_completed()
        if action == "action_answer_kb" and g.kind == "kb" and last.intent == g.intent:
            return self._task_completed()
        if action == "utter_fallback" and g.kind == "out_of_scope":  # told what the bot can do: fine
            return self._task_completed()
        if action == "utter_ask_order_id" and g.order_id is not None:
            if "order_id" in self.said:  # asked again: a confirmation costs patience
                self.frustration += 1
                if self.frustration > g.patience:
                    self.failed = "patience"
                    return None
            return self._inform("order_id")
        if action == "utter_ask_reason" and g.reason is not None:
            if "reason" in self.said:
                self.frustration += 1
                if self.frustration > g.patience:
                    self.failed = "patience"
                    return None
            return self._inform("reason")
        if action == "action_order_status" and g.order_id is not None and slots.get("order_id") != g.order_id:
            if slots.get("order_id") in self.known_orders:
                # the status of another customer's order was disclosed: a privacy failure
                self.failed = "wrong_order_disclosed"
                return None
            # "I couldn't find order <id>": the user repeats the request with the number
            annoyed = self._annoyed()
            return None if annoyed is None else self._request({"order_id"})
        annoyed = self._annoyed()
        if annoyed is None:
            return None
        if annoyed.intent in ("greet", "inform") and g.kind in ("kb", "complaint"):
            return self._request(set())
        if annoyed.intent == "greet":
            return self._request(g.upfront)
        return annoyed


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

    def __init__(self, domain: ShopDomain, cfg: SimConfig | None = None) -> None:
        self.domain = domain
        self.cfg = cfg or SimConfig()
        self._allowed: dict[tuple[str, str, frozenset[str]], tuple[str, ...]] = {}
        self._advance: dict[tuple[str, str, frozenset[str], str], str] = {}

    # The shop's flow conditions read the intent, the state and *whether* a slot is filled
    # (``FlowContext.has``), so masks and transitions are cached on exactly that key.
    def allowed(self, state: str, intent: str, slots: dict[str, Any]) -> tuple[str, ...]:
        key = (state, intent, frozenset(k for k, v in slots.items() if v not in (None, "")))
        hit = self._allowed.get(key)
        if hit is None:
            hit = tuple(self.domain.flows.allowed(FlowContext(state, intent, dict(slots))))
            self._allowed[key] = hit
        return hit

    def advance(self, state: str, intent: str, slots: dict[str, Any], action: str) -> str:
        key = (state, intent, frozenset(k for k, v in slots.items() if v not in (None, "")), action)
        hit = self._advance.get(key)
        if hit is None:
            hit = self.domain.flows.advance(FlowContext(state, intent, dict(slots)), action)
            self._advance[key] = hit
        return hit

    def run(
        self, policy: Policy, error_rate: float, seed: int, steps: list[Step] | None = None
    ) -> Episode:
        """One dialogue; the user (goal and noise) depends only on ``seed``, not on the policy."""
        cfg = self.cfg
        goal = draw_goal(self.domain, cfg, random.Random(seed * 2 + 1))
        noise_rng = random.Random(seed * 2 + 2)
        channel = NoiseChannel(self.domain, cfg, error_rate)
        user = SimulatedUser(goal, frozenset(self.domain.order_ids))
        state = self.domain.flows.initial_state
        slots: dict[str, Any] = {}
        last_action: str | None = None
        act: UserAct | None = user.first_act()
        turns = 0
        reward = 0.0
        actions: list[str] = []
        while act is not None:
            hyp = channel.parse(act, noise_rng)
            for slot, value in hyp.entities:
                slots[slot] = value
            allowed = self.allowed(state, hyp.intent, slots)
            obs = Observation(
                state=state,
                intent=hyp.intent,
                confidence=hyp.confidence,
                filled_slots=frozenset(k for k, v in slots.items() if v not in (None, "")),
                ranking=hyp.ranking,
                turn=turns + 1,
                last_action=last_action,
                low_confidence=hyp.confidence < self.domain.confidence_threshold,
                language=goal.language,
            )
            decision: Decision = policy.choose(obs, allowed)
            if decision.action not in allowed:
                raise PolicyError(f"policy {policy.name!r} chose {decision.action!r} outside the mask {allowed}")
            state = self.advance(state, hyp.intent, slots, decision.action)
            turns += 1
            actions.append(decision.action)
            last_action = decision.action
            act = user.react(decision.action, slots)
            r = cfg.turn_reward
            if act is None and not user.done:
                user.failed = "patience"
            if act is not None and turns >= cfg.max_turns:
                user.failed = "max_turns"
                act = None
            if user.success:
                r += cfg.success_reward
            elif user.failed is not None:
                r += cfg.failure_reward
            reward += r
            if steps is not None:
                steps.append(Step(obs, allowed, decision.action, r, act is None))
            if state == HANDOFF_STATE and act is not None:  # nothing but the hand-off reply is possible now
                user.failed = user.failed or "unwanted_handoff"
                act = None
        return Episode(goal, user.success, turns, reward, user.failed, actions)


def summarise(episodes: Sequence[Episode]) -> dict[str, float]:
    n = max(len(episodes), 1)
    return {
        "success_rate": round(sum(e.success for e in episodes) / n, 4),
        "avg_turns": round(sum(e.turns for e in episodes) / n, 3),
        "avg_reward": round(sum(e.reward for e in episodes) / n, 3),
    }
