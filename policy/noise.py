"""The NLU noise channel: what the bot's NLU makes of what a simulated user means, at a chosen semantic error rate.

A user act (an intent and the slot values said) becomes an NLU hypothesis (intent, confidence, ranking, entities)
the way the bot's own NLU would read it. *How* the NLU goes wrong is measured, not invented: :class:`NoiseStats`
holds what ``policy.calibrate.measure`` saw on the NLU's held-out split (the confusion matrix by intent, which
intents rank second, the share of slot errors and dropped values, Beta fits of the confidences of right and wrong
parses); *how often* it goes wrong is the noise level ``e`` the caller picks (0.0, 0.15, 0.3...), so one policy can
be trained and compared across levels. At ``e`` = 0.0 nothing is misread but confidences still vary.

Small held-out splits leave most cells of the confusion matrix empty, so each intent's row is smoothed towards the
errors of every intent (what this NLU confuses things *with*) and, thinly, towards any intent.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

OUT_OF_SCOPE = "out_of_scope"  # the NLU's out-of-scope label (nlu, dialogue.events and the default policy share it)
SLOT_ERRORS = ("lost", "boundary", "other")  # how an annotated value can be misread
_DIGIT = re.compile(r"\d")


@dataclass(frozen=True)
class NoiseStats:
    """How one NLU misreads utterances, as measured on a held-out split (see ``policy.calibrate.measure``).

    Counts are kept as counts (not rates) so the JSON says how much evidence each number rests on.
    """

    n: int = 0  # utterances measured
    error_rate: float = 0.0  # their semantic error rate (wrong intent or wrong slots): the NLU's own noise level
    conf_right: tuple[float, float] = (6.0, 0.35)  # Beta(a, b) of a right parse's confidence
    conf_wrong: tuple[float, float] = (3.0, 1.3)  # Beta(a, b) of a wrong intent's confidence
    conf_slot_error: tuple[float, float] = (6.0, 0.35)  # Beta(a, b) of a right intent with wrong slots
    with_slots: int = 0  # utterances with annotated entities ...
    intent_errors_with_slots: int = 0  # ... whose intent was wrong ...
    slot_errors: int = 0  # ... or whose intent was right and slots wrong
    slots_lost_with_intent: int = 0  # intent errors of utterances with entities that lost a value too
    # slot -> {"seen", "lost", "boundary", "other"}: values annotated in utterances whose intent was read right, and
    # how many were lost, read with other span boundaries (overlapping), or read as another value
    slot_reads: dict[str, dict[str, int]] = field(default_factory=dict)
    true_second: int = 0  # intent errors with the true intent second in the ranking
    intent_errors: int = 0
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)  # true intent -> read as -> count (errors)
    second: dict[str, dict[str, int]] = field(default_factory=dict)  # true intent -> second-ranked -> count (right)
    source: str = ""  # what was measured (model, split), for the report

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NoiseStats:
        known = set(cls.__dataclass_fields__)
        raw = {k: v for k, v in data.items() if k in known}
        for key in ("conf_right", "conf_wrong", "conf_slot_error"):
            if key in raw:
                raw[key] = tuple(float(x) for x in raw[key])
        for key in ("confusion", "second", "slot_reads"):
            if key in raw:
                raw[key] = {str(t): {str(p): int(c) for p, c in row.items()} for t, row in raw[key].items()}
        return cls(**raw)

    # -- where an error falls ------------------------------------------------------------------------------------
    # Given that an utterance is misread (the noise level says how often), the error falls on its intent or on one
    # of its values in proportion to how often the NLU misread each on the held-out split: the intent at its rate on
    # utterances with values (plus one pseudo-error: an intent can always be misread), a slot at its own rate, with
    # no pseudo-errors (a value the split never saw misread, like a regex-matched order number, is not misread
    # here either: smoothing it up would invent errors the measurement ruled out as rare).
    @property
    def intent_error_weight(self) -> float:
        return (self.intent_errors_with_slots + 1) / (self.with_slots + 1)

    def slot_error_weight(self, slot: str) -> float:
        reads = self.slot_reads.get(slot, {})
        errors = sum(reads.get(k, 0) for k in SLOT_ERRORS)
        return errors / reads["seen"] if errors else 0.0

    def slot_error_kinds(self, slot: str) -> list[float]:
        """Counts of (lost, boundary, other) misreadings of ``slot``."""
        reads = self.slot_reads.get(slot, {})
        return [float(reads.get(k, 0)) for k in SLOT_ERRORS]

    @property
    def p_lost_with_intent(self) -> float:
        """A misread intent on an utterance with values also loses one of them (as measured; none measured: 0)."""
        return self.slots_lost_with_intent / self.intent_errors_with_slots if self.intent_errors_with_slots else 0.0

    @property
    def p_true_second(self) -> float:
        return (self.true_second + 1) / (self.intent_errors + 2)


@dataclass(frozen=True)
class UserAct:
    """What the user means: an intent, the slot values an entity extractor can read from the message, and the slot
    values the whole message *is* (the answer to a question the bot asked, taken by a ``from_text`` mapping)."""

    intent: str
    slots: tuple[tuple[str, str], ...] = ()
    texts: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class NLUHypothesis:
    intent: str
    confidence: float
    ranking: tuple[tuple[str, float], ...]
    entities: tuple[tuple[str, str], ...]
    correct: bool


def other_value(value: str, known: Sequence[str], rng: random.Random) -> str:
    """A value that is not ``value``: another one the bot knows for the slot, or (for a number) one digit changed,
    as a misheard or mistyped value would be."""
    others = [v for v in known if v != value]
    digits = [m.start() for m in _DIGIT.finditer(value)]
    if digits and (not others or rng.random() < 0.5):
        i = rng.choice(digits)
        return value[:i] + str((int(value[i]) + rng.randint(1, 9)) % 10) + value[i + 1:]
    if others:
        return rng.choice(others)
    return value[:-1] if len(value) > 1 else value + value


def _distribution(row: Mapping[str, float], backoff: Mapping[str, float], names: Sequence[str], exclude: str,
                  weight: float, floor: float) -> tuple[list[str], list[float]]:
    """``row`` smoothed with ``weight`` pseudo-counts spread like ``backoff`` and ``floor`` on every name."""
    candidates = [n for n in names if n != exclude]
    back_total = sum(v for k, v in backoff.items() if k != exclude and k in candidates)
    weights = []
    for name in candidates:
        b = backoff.get(name, 0.0) / back_total if back_total else 0.0
        weights.append(row.get(name, 0.0) + weight * b + floor)
    return candidates, weights


class NoiseChannel:
    """Turns a :class:`UserAct` into an :class:`NLUHypothesis` at semantic error rate ``error_rate``."""

    def __init__(self, stats: NoiseStats, intents: Sequence[str], values: Mapping[str, Sequence[str]],
                 error_rate: float, ranking_size: int = 5) -> None:
        if not 0.0 <= error_rate <= 1.0:
            raise ValueError(f"semantic error rate must be in [0, 1], got {error_rate}")
        self.stats = stats
        self.intents = tuple(intents)
        self.values = values
        self.error_rate = error_rate
        self.ranking_size = max(2, ranking_size)
        errors_as: dict[str, float] = {}
        for row in stats.confusion.values():
            for name, count in row.items():
                errors_as[name] = errors_as.get(name, 0.0) + count
        seconds: dict[str, float] = {}
        for row in stats.second.values():
            for name, count in row.items():
                seconds[name] = seconds.get(name, 0.0) + count
        self._confusion = {i: _distribution(stats.confusion.get(i, {}), errors_as, self.intents, i, 1.0, 0.02)
                           for i in self.intents}
        self._second = {i: _distribution(stats.second.get(i, {}), seconds, self.intents, i, 1.0, 0.05)
                        for i in self.intents}

    def misread(self, intent: str, rng: random.Random) -> str:
        names, weights = self._confusion.get(intent) or ([i for i in self.intents if i != intent], None)
        return rng.choices(names, weights=weights)[0] if names else intent

    def parse(self, act: UserAct, rng: random.Random) -> NLUHypothesis:
        st = self.stats
        intent = act.intent
        entities = dict(act.slots)
        error = rng.random() < self.error_rate
        intent_error = False
        conf = st.conf_right
        if error:
            names = sorted(entities)
            where = rng.choices(["", *names], weights=[st.intent_error_weight,
                                                        *(st.slot_error_weight(n) for n in names)])[0]
            if not where:
                intent, intent_error, conf = self.misread(act.intent, rng), True, st.conf_wrong
                if entities and rng.random() < st.p_lost_with_intent:  # the tagger misses a value too
                    entities.pop(rng.choice(names))
            else:
                slot = where
                kind = rng.choices(SLOT_ERRORS, weights=st.slot_error_kinds(slot))[0]
                conf = st.conf_slot_error
                if kind == "lost":
                    del entities[slot]
                elif kind == "other" or _DIGIT.search(entities[slot]):  # a number read with other bounds is
                    entities[slot] = self.wrong_value(slot, entities[slot], rng)  # another number
                # else: free text read with other bounds ("my card has money" for "but my card has money", or with
                # a second span) still says what the user means: the value stays theirs
        confidence = min(max(rng.betavariate(*conf), 0.02), 0.999)
        ranking = self._ranking(intent, act.intent if intent_error else None, confidence, rng)
        return NLUHypothesis(intent, ranking[0][1], ranking, tuple(sorted(entities.items())), not error)

    def wrong_value(self, slot: str, value: str, rng: random.Random) -> str:
        return other_value(value, self.values.get(slot, ()), rng)

    def _ranking(self, top: str, true: str | None, confidence: float, rng: random.Random
                 ) -> tuple[tuple[str, float], ...]:
        """A ranking with ``top`` first at ``confidence``; the runner-up as measured (the true intent for most
        confusions, the intent's usual neighbour for right parses); cut to the NLU's ranking size."""
        others = [i for i in self.intents if i != top]
        if not others:
            return ((top, 1.0),)
        if true is not None and true in others and rng.random() < self.stats.p_true_second:
            second = true
        else:
            names, weights = self._second.get(top) or (others, None)
            second = rng.choices(names, weights=weights)[0] if names else rng.choice(others)
        rest = 1.0 - confidence
        share = rng.betavariate(4.0, 2.0)
        tail = {i: rng.gammavariate(0.5, 1.0) + 1e-6 for i in others if i != second}
        total_tail = sum(tail.values()) or 1.0
        probs = {second: rest * share, **{i: rest * (1.0 - share) * w / total_tail for i, w in tail.items()}}
        cap = confidence * 0.98  # the top intent is the argmax
        overflow = sum(max(0.0, p - cap) for p in probs.values())
        probs = {i: min(p, cap) for i, p in probs.items()}
        total = confidence + overflow + sum(probs.values())
        ranked = sorted(probs.items(), key=lambda kv: (-kv[1], kv[0]))[: self.ranking_size - 1]
        return ((top, (confidence + overflow) / total), *((i, p / total) for i, p in ranked))


NOISE_FILE = "noise.json"


def write_noise(path: Path, populations: Mapping[str, NoiseStats]) -> None:
    """``noise.json``: one :class:`NoiseStats` per user population (``training``, ``held_out``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({k: v.to_dict() for k, v in populations.items()}, indent=2, ensure_ascii=False),
                    encoding="utf-8")


def read_noise(path: Path) -> dict[str, NoiseStats]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the measured NLU noise {path}: {exc}") from exc
    return {str(k): NoiseStats.from_dict(v) for k, v in raw.items()}
