"""Measure how a bot's NLU misreads utterances it never trained on: the numbers behind the noise channel.

Pure: the caller parses the NLU's held-out split (``kefu.policy_cli`` does, with the split NLU training made) and
passes the gold labels with the parses; :func:`measure` returns :class:`~policy.noise.NoiseStats`. Confidences
are summarised by method-of-moments Beta fits; the confusion matrix by intent, the runner-up intents of right parses
and the error mix (intent vs slot errors, dropped vs wrong values, true intent second) are counted as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from policy.noise import NoiseStats


class EntityLike(Protocol):
    @property
    def entity(self) -> str: ...

    @property
    def value(self) -> str: ...


class ParseLike(Protocol):
    """What the calibration reads of an NLU parse (``nlu.types.Parse`` has it)."""

    @property
    def intent(self) -> str: ...

    @property
    def confidence(self) -> float: ...

    @property
    def ranking(self) -> Sequence[tuple[str, float]]: ...

    @property
    def entities(self) -> Sequence[EntityLike]: ...


def beta_fit(values: Sequence[float], default: tuple[float, float]) -> tuple[float, float]:
    """Method-of-moments Beta(a, b) of ``values`` (``default`` below two values: no variance to fit)."""
    n = len(values)
    if n < 2:
        return default
    mean = min(max(sum(values) / n, 1e-3), 1 - 1e-3)
    var = max(sum((v - mean) ** 2 for v in values) / n, 1e-6)
    k = max(mean * (1 - mean) / var - 1, 1e-3)
    return round(mean * k, 3), round((1 - mean) * k, 3)


def _slot_error(value: str, read: Sequence[str]) -> str:
    """How an annotated ``value`` was misread: ``lost``; ``boundary`` (the same words with other bounds: every value
    read overlaps it, or it was read together with another span, "wrong size" and "too small"); ``other``."""
    if not read:
        return "lost"
    if value in read or all(r in value or value in r for r in read):
        return "boundary"
    return "other"


def measure(labelled: Iterable[tuple[str, Sequence[tuple[str, str]], ParseLike]], source: str = "") -> NoiseStats:
    """Noise statistics from ``(gold intent, gold (entity, value) pairs, parse)`` triples."""
    right: list[float] = []
    wrong_intent: list[float] = []
    wrong_slots: list[float] = []
    confusion: dict[str, dict[str, int]] = {}
    second: dict[str, dict[str, int]] = {}
    slot_reads: dict[str, dict[str, int]] = {}
    n = with_slots = intent_errors_with_slots = lost_with_intent = true_second = 0
    for intent, gold_entities, parse in labelled:
        n += 1
        gold = {(e, v) for e, v in gold_entities}
        pred = {(e.entity, e.value) for e in parse.entities}
        with_slots += bool(gold)
        if parse.intent != intent:
            wrong_intent.append(float(parse.confidence))
            row = confusion.setdefault(intent, {})
            row[parse.intent] = row.get(parse.intent, 0) + 1
            true_second += len(parse.ranking) > 1 and parse.ranking[1][0] == intent
            if gold:
                intent_errors_with_slots += 1
                lost_with_intent += bool(gold - pred)
            continue
        for slot, value in sorted(gold):
            reads = slot_reads.setdefault(slot, {"seen": 0, "lost": 0, "boundary": 0, "other": 0})
            reads["seen"] += 1
            read = sorted(v for e, v in pred if e == slot)
            if read != [value]:
                reads[_slot_error(value, read)] += 1
        if gold != pred:
            wrong_slots.append(float(parse.confidence))
        else:
            right.append(float(parse.confidence))
            if len(parse.ranking) > 1:
                row = second.setdefault(intent, {})
                runner = parse.ranking[1][0]
                row[runner] = row.get(runner, 0) + 1
    conf_right = beta_fit(right, NoiseStats.conf_right)
    return NoiseStats(
        n=n,
        error_rate=round((len(wrong_intent) + len(wrong_slots)) / max(n, 1), 4),
        conf_right=conf_right,
        conf_wrong=beta_fit(wrong_intent, NoiseStats.conf_wrong),
        conf_slot_error=beta_fit(wrong_slots, conf_right),  # unmeasured: slot errors look like right parses
        with_slots=with_slots,
        intent_errors_with_slots=intent_errors_with_slots,
        slot_errors=len(wrong_slots),
        slot_reads=dict(sorted(slot_reads.items())),
        slots_lost_with_intent=lost_with_intent,
        true_second=true_second,
        intent_errors=len(wrong_intent),
        confusion={k: dict(sorted(v.items())) for k, v in sorted(confusion.items())},
        second={k: dict(sorted(v.items())) for k, v in sorted(second.items())},
        source=source,
    )


def summary(stats: NoiseStats) -> dict[str, object]:
    """The figures a person reads (``kefu policy calibrate``): rates and medians, not the raw counts."""

    def mean(ab: tuple[float, float]) -> float:
        return round(ab[0] / (ab[0] + ab[1]), 3)

    return {
        "n": stats.n, "semantic_error_rate": stats.error_rate, "intent_errors": stats.intent_errors,
        "slot_errors": stats.slot_errors, "mean_confidence": {"right": mean(stats.conf_right),
                                                              "wrong_intent": mean(stats.conf_wrong),
                                                              "wrong_slots": mean(stats.conf_slot_error)},
        "intent_errors_with_slots": f"{stats.intent_errors_with_slots}/{stats.with_slots}", "slot_reads": stats.slot_reads,
        "p_true_second": round(stats.p_true_second, 3),
        "read_as": {k: v for k, v in stats.confusion.items()}, "source": stats.source,
    }
