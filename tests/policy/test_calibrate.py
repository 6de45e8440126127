"""Calibration counts what the NLU got wrong on a held-out split, by intent and by slot."""

from __future__ import annotations

from dataclasses import dataclass

from policy.calibrate import beta_fit, measure, summary


@dataclass(frozen=True)
class Ent:
    entity: str
    value: str


@dataclass(frozen=True)
class Parse:
    intent: str
    confidence: float
    ranking: tuple[tuple[str, float], ...]
    entities: tuple[Ent, ...] = ()


def parse(intent: str, conf: float, second: str, *ents: tuple[str, str]) -> Parse:
    return Parse(intent, conf, ((intent, conf), (second, 1 - conf)), tuple(Ent(e, v) for e, v in ents))


LABELLED = [
    ("greet", [], parse("greet", 0.99, "goodbye")),
    ("greet", [], parse("greet", 0.97, "goodbye")),
    ("greet", [], parse("out_of_scope", 0.6, "greet")),
    ("book_table", [("day", "friday")], parse("book_table", 0.95, "inform", ("day", "friday"))),
    ("book_table", [("day", "friday")], parse("inform", 0.7, "order_food")),  # intent wrong, value lost
    ("inform", [("note", "no nuts please")], parse("inform", 0.98, "greet", ("note", "no nuts"))),  # boundary
    ("inform", [("party_size", "4")], parse("inform", 0.9, "greet")),  # lost
    ("inform", [("dish", "noodles")], parse("inform", 0.9, "greet", ("dish", "rice"))),  # another value
]


def test_counts_by_intent_and_by_slot() -> None:
    stats = measure(LABELLED, source="test")
    assert (stats.n, stats.intent_errors, stats.slot_errors) == (8, 2, 3)
    assert stats.error_rate == round(5 / 8, 4)
    assert stats.confusion == {"book_table": {"inform": 1}, "greet": {"out_of_scope": 1}}
    assert stats.true_second == 1 and stats.with_slots == 5 and stats.intent_errors_with_slots == 1
    assert stats.slots_lost_with_intent == 1
    assert stats.second == {"greet": {"goodbye": 2}, "book_table": {"inform": 1}}
    assert stats.slot_reads["note"] == {"seen": 1, "lost": 0, "boundary": 1, "other": 0}
    assert stats.slot_reads["party_size"]["lost"] == 1 and stats.slot_reads["dish"]["other"] == 1
    assert stats.slot_reads["day"] == {"seen": 1, "lost": 0, "boundary": 0, "other": 0}  # only right intents count
    assert stats.slot_error_weight("day") == 0.0 and stats.slot_error_weight("dish") == 1.0
    assert summary(stats)["semantic_error_rate"] == stats.error_rate


def test_beta_fit_recovers_the_mean() -> None:
    a, b = beta_fit([0.9, 0.95, 0.99, 0.97, 0.8], (1.0, 1.0))
    assert abs(a / (a + b) - 0.922) < 0.01
    assert beta_fit([0.5], (2.0, 3.0)) == (2.0, 3.0)  # one value: nothing to fit
