"""The noise channel reads user acts the way the measured NLU does, at the noise level asked for."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from policy.noise import NoiseChannel, NoiseStats, UserAct, other_value, read_noise, write_noise
from tests.policy.tinybot import NOISE, VALUES

INTENTS = ("greet", "goodbye", "inform", "book_table", "order_food", "opening_hours", "complain", "affirm", "deny",
           "cancel", "out_of_scope")


def channel(rate: float, stats: NoiseStats = NOISE) -> NoiseChannel:
    return NoiseChannel(stats, INTENTS, VALUES, rate, ranking_size=5)


@pytest.mark.parametrize("rate", [0.0, 0.15, 0.3])
def test_the_error_rate_is_the_noise_level(rate: float) -> None:
    rng = random.Random(0)
    noisy = channel(rate)
    hyps = [noisy.parse(UserAct("greet"), rng) for _ in range(4000)]
    wrong = sum(not h.correct for h in hyps) / len(hyps)
    assert abs(wrong - rate) < 0.025
    assert all(h.intent != "greet" for h in hyps if not h.correct)  # an act without values: its intent is misread


def test_confusions_follow_the_measured_matrix_smoothed_towards_every_error() -> None:
    rng = random.Random(1)
    always = channel(1.0)
    misread = Counter(always.parse(UserAct("order_food"), rng).intent for _ in range(3000))
    assert misread.most_common(1)[0][0] == "book_table"  # measured: 3 of 3
    unmeasured = Counter(always.parse(UserAct("deny"), rng).intent for _ in range(3000))
    top = {name for name, _ in unmeasured.most_common(2)}
    assert top == {"out_of_scope", "book_table"}  # no row of its own: misread like the NLU misreads anything
    assert set(unmeasured) > top  # and, thinly, as any intent


def test_values_are_misread_only_where_the_nlu_misread_them() -> None:
    rng = random.Random(2)
    act = UserAct("book_table", (("day", "friday"), ("party_size", "4")))
    always = channel(1.0)
    hyps = [always.parse(act, rng) for _ in range(3000)]
    right_intent = [h for h in hyps if h.intent == "book_table"]
    assert right_intent and all(dict(h.entities).get("day") == "friday" for h in right_intent)  # 0 of 15 misread
    assert all(dict(h.entities).get("day") in (None, "friday") for h in hyps)  # lost with a misread intent at most
    lost = sum("party_size" not in dict(h.entities) for h in hyps if h.intent == "book_table")
    assert lost > 0  # party sizes were lost (2 of 20): that is how values go wrong here
    assert all(dict(h.entities).get("party_size") in (None, "4") for h in hyps)  # never read as another number


def test_a_misread_dish_is_another_dish_or_the_same_words_in_other_bounds() -> None:
    rng = random.Random(3)
    act = UserAct("order_food", (("dish", "noodles"),))
    stats = NoiseStats(n=10, with_slots=10, slot_reads={"dish": {"seen": 10, "lost": 0, "boundary": 1, "other": 1}})
    always = channel(1.0, stats)
    read = Counter(dict(always.parse(act, rng).entities).get("dish") for _ in range(2000))
    assert read["noodles"] > 0 and set(read) - {"noodles"} <= {"dumplings", "fried rice"}
    assert other_value("10234", (), random.Random(0)) != "10234"  # a number: a misheard digit


def test_confidence_and_ranking_look_like_the_nlus() -> None:
    rng = random.Random(4)
    noisy = channel(0.3)
    hyps = [noisy.parse(UserAct("book_table"), rng) for _ in range(3000)]
    right = [h.confidence for h in hyps if h.correct]
    wrong = [h.confidence for h in hyps if not h.correct]
    assert sum(right) / len(right) > sum(wrong) / len(wrong) + 0.2
    for h in hyps[:300]:
        assert h.ranking[0] == (h.intent, h.confidence) and len(h.ranking) <= 5
        assert all(p <= h.confidence for _, p in h.ranking) and sum(p for _, p in h.ranking) <= 1 + 1e-9
    seconds = Counter(h.ranking[1][0] for h in hyps if h.correct)
    assert seconds.most_common(1)[0][0] == "order_food"  # measured runner-up of book_table


def test_noise_json_round_trip(tmp_path: Path) -> None:
    write_noise(tmp_path / "noise.json", {"training": NOISE})
    assert read_noise(tmp_path / "noise.json") == {"training": NOISE}
    with pytest.raises(ValueError):
        NoiseChannel(NOISE, INTENTS, VALUES, 1.5)
