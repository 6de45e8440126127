"""Replay Rasa end-to-end test stories against an imported bot and report what ``rasa test`` reports.

Like ``rasa test``, the replay follows the story (teacher forcing): each user step's text is parsed by the bot's NLU
and compared with the story's intent and inline entities, each bot step compares the action the bot predicts with the
story's, and then the story's own events (its intent, actions, ``active_loop`` and ``slot_was_set`` steps) are applied,
so one mistake is counted once instead of derailing the rest. Where the story answers a message during a form with
something else than the form, the form's rejection is emulated, as ``rasa test`` does. A story is right when every
step is; the report gives conversation accuracy, action accuracy and F1, intent accuracy, and each failed story's
steps side by side.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from dialogue.rasa.forms import extract_slots
from dialogue.rasa.policy import RasaPolicy
from dialogue.rasa.stories import ActionStep, EntityValue, Story, UserStep
from dialogue.rasa.tracker import LISTEN, Tracker


@dataclass(frozen=True)
class ParsedText:
    intent: str
    entities: tuple[EntityValue, ...] = ()


Parse = Callable[[str], ParsedText]


@dataclass(frozen=True)
class Step:
    kind: str  # intent | entities | action
    expected: str
    predicted: str
    why: str = ""  # for actions: the policy's reason (rule, memo, loop, fallback...)

    @property
    def ok(self) -> bool:
        return self.expected == self.predicted


@dataclass
class StoryResult:
    name: str
    source: str
    steps: list[Step] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.steps)


@dataclass
class Report:
    stories: list[StoryResult]

    def _steps(self, kind: str) -> list[Step]:
        return [s for story in self.stories for s in story.steps if s.kind == kind]

    def summary(self) -> dict[str, Any]:
        actions = self._steps("action")
        intents = self._steps("intent")
        entities = self._steps("entities")
        return {
            "stories": len(self.stories),
            "conversation_accuracy": _share(sum(s.ok for s in self.stories), len(self.stories)),
            "actions": len(actions),
            "action_accuracy": _share(sum(s.ok for s in actions), len(actions)),
            "action_f1": action_f1(actions),
            "intents": len(intents),
            "intent_accuracy": _share(sum(s.ok for s in intents), len(intents)),
            "entity_accuracy": _share(sum(s.ok for s in entities), len(entities)),
            "failed": [
                {"story": r.name, "source": r.source, "steps": [asdict(s) | {"ok": s.ok} for s in r.steps]}
                for r in self.stories if not r.ok
            ],
        }


def _share(right: int, total: int) -> float | None:
    return round(right / total, 4) if total else None


def action_f1(steps: Sequence[Step]) -> float | None:
    """Support-weighted F1 over the expected actions (what ``rasa test`` prints as the weighted average)."""
    if not steps:
        return None
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    for step in steps:
        if step.ok:
            tp[step.expected] += 1
        else:
            fp[step.predicted] += 1
            fn[step.expected] += 1
    support = Counter(s.expected for s in steps)
    total = 0.0
    for label, count in support.items():
        precision = tp[label] / (tp[label] + fp[label]) if tp[label] + fp[label] else 0.0
        recall = tp[label] / (tp[label] + fn[label]) if tp[label] + fn[label] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        total += f1 * count
    return round(total / len(steps), 4)


def replay(policy: RasaPolicy, story: Story, parse: Parse | None) -> StoryResult:
    """One test story, teacher-forced (see the module docstring)."""
    result = StoryResult(story.name, story.source)
    tracker = Tracker.start(policy.project)

    def expect_action(expected: str) -> None:
        prediction = policy.predict(tracker)
        loop = tracker.active_loop
        if prediction.action == loop and expected != loop:
            # as `rasa test` does: the form may have rejected the message, so predict again as if it had
            tracker.rejected = True
            prediction = policy.predict(tracker, exclude=frozenset({loop}))
        result.steps.append(Step("action", expected, prediction.action, prediction.reason))

    for step in story.steps:
        if isinstance(step, UserStep):
            if tracker.prev_action != LISTEN:
                expect_action(LISTEN)
            intent, entities = step.intent, step.entities
            if step.text is not None and parse is not None:
                parsed = parse(step.text)
                if step.intent:
                    result.steps.append(Step("intent", step.intent, parsed.intent))
                    result.steps.append(Step("entities", _entity_text(step.entities), _entity_text(parsed.entities)))
                else:
                    intent, entities = parsed.intent, parsed.entities
            tracker.user(intent or "", entities, step.text)
            for name, value in extract_slots(policy.project, tracker, loop=tracker.active_loop).items():
                tracker.slots[name] = value
        else:
            if isinstance(step, ActionStep) and step.name:
                expect_action(step.name)
            tracker.follow(step)
    return result


def evaluate(policy: RasaPolicy, stories: Sequence[Story], parse: Parse | None) -> Report:
    return Report([replay(policy, story, parse) for story in stories])


def _entity_text(entities: Sequence[EntityValue]) -> str:
    return ", ".join(sorted(f"{e.entity}={str(e.value).lower()}" + (f"#{e.role}" if e.role else "") for e in entities))
