"""The dialogue policy of an imported Rasa project: rules, forms, memoised stories and the core fallback, in Rasa's order.

Rasa runs an ensemble (``RulePolicy``, ``MemoizationPolicy``, ``TEDPolicy``) and takes the most confident prediction,
rules first. This module predicts the same way without training a network, so an imported project behaves as its
author wrote it from the first minute:

1. An action an action asked for (``FollowupAction``) runs next; then RulePolicy's default intents (``/restart``,
   ``/back``, ``/session_start``) run their default actions.
2. A form that just asked for a slot waits for the user (``action_listen``).
3. An active form runs whenever it was not the last action (after each user message, or after an action activated
   it), before any rule; when it cannot use the message (rejected), rules and stories answer instead, and the form
   asks again afterwards (also after a rule that names no loop, as Rasa's RulePolicy returns to the loop).
4. Rules (``rules:``): a rule is a sequence of partial states; it applies when its states are subsets of the
   tracker's latest states (its ``condition`` in its first state; a rule that names no ``active_loop`` only applies
   when no loop is active or the loop rejected the message; ``conversation_start`` only on the first user message;
   actions before the rule's first user message are context, never predicted). The longest matching rule wins (more
   states, then more features: a rule with a condition beats the same rule without); after a rule's last action the
   bot listens unless ``wait_for_user_input: false``.
5. Memoised stories: the tracker's last ``max_history`` states looked up in every story's states; when the
   exact history is unknown it backs off to fewer states, then to states without slots, then without entities, then
   to the bare skeleton of previous actions and loops (Rasa's TED would generalise here; the back-off is what makes an
   unseen path still follow the stories' local habits: "after the quote form, get the quote", whatever the last
   message said). The skeleton never answers a user message itself: a message no story knows goes to the core
   fallback.
6. Nothing applies: after a user message the core fallback action, otherwise ``action_listen``.

Predictions come with the reason (``rule``, ``loop``, ``memo``, ``fallback``...) so a failed test story can say why.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dialogue.rasa.project import RasaProject
from dialogue.rasa.stories import ActionStep, LoopStep, SlotStep, Story, UserStep
from dialogue.rasa.tracker import BACK, LISTEN, REQUESTED_SLOT, RESTART, SESSION_START, Tracker, slot_feature

DEFAULT_INTENT_ACTIONS = {"restart": RESTART, "back": BACK, "session_start": SESSION_START}  # RulePolicy's defaults
DEFAULT_HISTORY = 5  # Rasa 3's max_history for memoisation keys when config.yml gives none we can use
MAJORITY = 2 / 3  # a memoised key whose stories disagree predicts only when this share agrees


@dataclass(frozen=True)
class Prediction:
    action: str
    reason: str  # followup | default | loop | rule | memo | fallback | listen
    source: str = ""  # the rule's or the story's name


@dataclass(frozen=True)
class _Snippet:
    """A rule's partial states up to one of its actions, and that action."""

    states: tuple[tuple[tuple[str, Any], ...], ...]
    action: str
    rule: str
    conversation_start: bool
    ignores_loop: bool  # the rule names no active_loop: it applies only when no loop is active

    @property
    def specificity(self) -> tuple[int, int]:
        """Rasa applies the longest matching rule key: more states first, then more features (its conditions)."""
        return len(self.states), sum(len(state) for state in self.states)


@dataclass
class RasaPolicy:
    """Rules and memoised stories of one project (built once by :meth:`build`; read-only afterwards)."""

    project: RasaProject
    snippets: list[_Snippet] = field(default_factory=list)
    memory: dict[tuple[Any, ...], Counter[str]] = field(default_factory=dict)
    max_history: int = DEFAULT_HISTORY
    influential: frozenset[str] = frozenset()  # the slots memoised stories remember (influence_conversation)

    @classmethod
    def build(cls, project: RasaProject, rules: Sequence[Story], stories: Sequence[Story]) -> RasaPolicy:
        influential = frozenset(name for name, slot in project.slots.items() if slot.influence_conversation)
        policy = cls(project=project, max_history=project.max_history or DEFAULT_HISTORY, influential=influential)
        for rule in rules:
            policy.snippets.extend(_rule_snippets(project, rule))
        for story in stories:
            policy._memorise(story)
        return policy

    # -- prediction -----------------------------------------------------------------------------------------
    def predict(self, tracker: Tracker, *, exclude: frozenset[str] = frozenset()) -> Prediction:
        """The next action for ``tracker`` (``exclude``: actions already found not to apply this time)."""
        if tracker.followup and tracker.followup not in exclude:
            return Prediction(tracker.followup, "followup")
        default = DEFAULT_INTENT_ACTIONS.get(tracker.intent or "")
        if default and tracker.prev_action == LISTEN and default not in exclude:
            return Prediction(default, "default")  # Rasa's RulePolicy: /restart, /back, /session_start
        loop = tracker.active_loop
        if loop and tracker.prev_action == loop and not tracker.rejected:
            return Prediction(LISTEN, "loop")  # the form asked its question
        if loop and not tracker.rejected and tracker.prev_action != loop and loop not in exclude:
            return Prediction(loop, "loop")  # a loop comes before rules: they answer only what it rejects
        states = tracker.states()
        rule = self._rule(tracker, states, loop_rejected=tracker.rejected, exclude=exclude)
        if rule is not None:
            return rule
        memo = self._recall(states, exclude)
        if memo is not None:
            return memo
        if loop and tracker.rejected and tracker.prev_action not in (LISTEN, loop) and loop not in exclude:
            return Prediction(loop, "loop")  # the interruption was answered: the form asks again
        if tracker.prev_action == LISTEN:
            return Prediction(self.project.core_fallback_action, "fallback")
        return Prediction(LISTEN, "listen")

    def _rule(
        self, tracker: Tracker, states: list[dict[str, Any]], *, loop_rejected: bool, exclude: frozenset[str]
    ) -> Prediction | None:
        best: _Snippet | None = None
        for snippet in self.snippets:
            if snippet.action in exclude or len(snippet.states) > len(states):
                continue
            if best is not None and snippet.specificity <= best.specificity:
                continue
            if snippet.conversation_start and not _starts_conversation(tracker, states, len(snippet.states)):
                continue
            window = states[-len(snippet.states):]
            if all(_matches(pattern, state, relax_loop=loop_rejected and snippet.ignores_loop)
                   for pattern, state in zip(snippet.states, window, strict=True)):
                best = snippet
        if best is None:
            return None
        if best.action == LISTEN and best.ignores_loop and tracker.active_loop and loop_rejected:
            return Prediction(tracker.active_loop, "loop", best.rule)  # Rasa: after a general rule, back to the loop
        return Prediction(best.action, "rule", best.rule)

    def _recall(self, states: list[dict[str, Any]], exclude: frozenset[str]) -> Prediction | None:
        after_user = states[-1].get("prev") == LISTEN
        for level in _LEVELS:
            if level == "skeleton" and after_user:
                break  # never answer a user message whatever it said: that is the core fallback's case
            for n in range(min(self.max_history, len(states)), 0, -1):
                if after_user and n == 1:
                    # The message alone, the history forgotten (as AugmentedMemoization forgets): it may start what
                    # a story starts; an action some story ran after it elsewhere may only be a response (saying
                    # something out of context is recoverable, doing something - blocking a card - is not).
                    alone = self._key(states[-1:], level)
                    found = self._lookup((_START, *alone), exclude)
                    if found is None:
                        found = self._lookup(alone, exclude)
                        if found is not None and not self._says(found.action):
                            found = None
                else:
                    found = self._lookup(self._key(states[-n:], level), exclude)
                if found is not None:
                    return found
        return None

    def _lookup(self, key: tuple[Any, ...], exclude: frozenset[str]) -> Prediction | None:
        counts = self.memory.get(key)
        if not counts:
            return None
        action, count = counts.most_common(1)[0]
        if action in exclude or count / sum(counts.values()) < MAJORITY:
            return None
        return Prediction(action, "memo")

    def _says(self, action: str) -> bool:
        """Whether ``action`` only says something (a response, a retrieval intent's ``utter_faq``)."""
        return action in self.project.responses or (action.startswith("utter_") and action not in self.project.actions)

    # -- training -------------------------------------------------------------------------------------------
    def _memorise(self, story: Story) -> None:
        """Walk the story on a fresh tracker; every action (and the listening between turns) is a lookup entry."""
        tracker = Tracker.start(self.project)
        tracker.slots.update(_condition_slots(story))

        def remember(action: str) -> None:
            states = tracker.states()
            for level in _LEVELS:
                for n in range(1, min(self.max_history, len(states)) + 1):
                    self.memory.setdefault(self._key(states[-n:], level), Counter())[action] += 1
                if len(states) == 1:  # how stories begin, for a conversation's first message
                    self.memory.setdefault((_START, *self._key(states, level)), Counter())[action] += 1

        for step in story.steps:
            if isinstance(step, UserStep):
                if tracker.prev_action != LISTEN:
                    remember(LISTEN)
                tracker.user(step.intent, step.entities, step.text)
            else:
                if isinstance(step, ActionStep) and step.name:
                    remember(step.name)
                tracker.follow(step)
        if tracker.prev_action != LISTEN:
            remember(LISTEN)

    def _key(self, states: Sequence[Mapping[str, Any]], level: str) -> tuple[Any, ...]:
        """A memoisation key at a back-off ``level``: the states with the slots that influence the conversation
        (``full``); without slots and with the user's message only where the bot had just listened (``no_slots``: a
        story that starts with a bot action then applies whatever the user said before it); the same without entities
        (``intents``: an entity no story wrote with that intent does not hide the intent); or only previous actions
        and loops (``skeleton``)."""

        def kept(key: str, state: Mapping[str, Any]) -> bool:
            if key.startswith("slot:"):
                return level == "full" and key[5:] in self.influential
            if key == "intent" or key.startswith("entity:"):
                if level == "skeleton" or (level == "intents" and key != "intent"):
                    return False
                return level == "full" or state.get("prev") == LISTEN  # as TED sees a state: the message after listen
            return True

        return (level, *(tuple(sorted((k, repr(v)) for k, v in state.items() if kept(k, state))) for state in states))


_LEVELS = ("full", "no_slots", "intents", "skeleton")
_START = "start"  # a memo key prefix: the first state of a story


def _matches(pattern: tuple[tuple[str, Any], ...], state: Mapping[str, Any], *, relax_loop: bool) -> bool:
    for key, value in pattern:
        if relax_loop and key == "loop":
            continue
        if key.startswith("slot:") or key == "loop":
            if state.get(key) != value:
                return False
        elif key not in state or state[key] != value:
            return False
    return True


def _starts_conversation(tracker: Tracker, states: list[dict[str, Any]], length: int) -> bool:
    """Whether the rule's window begins at the conversation's first user message."""
    window = states[-length:]
    users_in_window = sum(1 for s in window if s.get("prev") == LISTEN and "intent" in s)
    return tracker.user_turns <= max(1, users_in_window)


def _condition_slots(story: Story) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for step in story.condition:
        if isinstance(step, SlotStep):
            out.update(dict(step.slots))
    return out


def _rule_snippets(project: RasaProject, rule: Story) -> list[_Snippet]:
    """The partial states of a rule before each of its actions (and before the listening that ends it)."""
    current: dict[str, Any] = {}
    names_loop = False
    for step in rule.condition:
        if isinstance(step, LoopStep):
            current["loop"], names_loop = step.name, True
        elif isinstance(step, SlotStep):
            for name, value in step.slots:
                current[f"slot:{name}"] = _feature(project, name, value)
    if not names_loop:
        current["loop"] = None  # Rasa: a rule without an active_loop condition applies only outside loops
    states: list[tuple[tuple[str, Any], ...]] = []
    snippets: list[_Snippet] = []
    last_action: str | None = None

    def close(action: str) -> None:
        states.append(tuple(sorted(current.items(), key=lambda kv: kv[0])))
        snippets.append(_Snippet(tuple(states), action, rule.name, rule.conversation_start, not names_loop))

    for step in rule.steps:
        if isinstance(step, UserStep):
            if last_action is not None and last_action != LISTEN:
                close(LISTEN)
                current = {k: v for k, v in current.items() if k.startswith("slot:") or k == "loop"}
            current["prev"] = LISTEN
            if step.intent:
                current["intent"] = step.intent
            for entity in step.entities:
                current[f"entity:{entity.entity}"] = True
            last_action = LISTEN
        elif isinstance(step, ActionStep) and step.name:
            if last_action is not None:  # Rasa's rule snippet starts after a leading action: it is context only
                close(step.name)
            current = {k: v for k, v in current.items() if k.startswith("slot:") or k == "loop"}
            current["prev"] = step.name
            last_action = step.name
        elif isinstance(step, LoopStep):
            current["loop"] = step.name
            if step.name is None:
                current[f"slot:{REQUESTED_SLOT}"] = None
        elif isinstance(step, SlotStep):
            for name, value in step.slots:
                current[f"slot:{name}"] = _feature(project, name, value)
    if rule.wait_for_user_input and last_action not in (None, LISTEN):
        close(LISTEN)
    return snippets


def _feature(project: RasaProject, name: str, value: Any) -> Any:
    if name == REQUESTED_SLOT:
        return value
    return slot_feature(project.slots.get(name), value)


def load_policy(folder: Path) -> RasaPolicy:
    """The policy of the Rasa project in ``folder`` (an imported bot's ``rasa/``): its rules and stories, built."""
    from dialogue.rasa.project import load_project
    from dialogue.rasa.stories import load_stories

    project = load_project(folder)
    return RasaPolicy.build(project, load_stories(project.rule_files, "rule"), load_stories(project.story_files, "story"))
