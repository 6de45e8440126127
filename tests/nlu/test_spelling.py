"""Spelling correction against a bot's own words (nlu.spelling): what it corrects and what it leaves alone."""

from __future__ import annotations

from collections import Counter

import pytest

from nlu.spelling import MEMO_SIZE, Speller, edit_distance

BOT_TEXTS = ["Every product has a 2-year warranty.", "Where is my parcel?", "Standard shipping is free over $49.",
             "Shipping to Norway takes a week.", "Our laptop bag comes in three sizes.", "A prepaid label, free."]
KNOWN = ["ward", "what", "amex", "the", "is", "it", "or", "by", "so", "covered", "about", "prepared"]


@pytest.fixture
def speller() -> Speller:
    return Speller.from_texts(BOT_TEXTS, KNOWN)


@pytest.mark.parametrize(("a", "b", "distance"), [
    ("waranty", "warranty", 1), ("shiping", "shipping", 1), ("laptp", "laptop", 1), ("parcle", "parcel", 1),
    ("ab", "ba", 1), ("kitten", "sitting", 3), ("same", "same", 0),
])
def test_edit_distance(a: str, b: str, distance: int) -> None:
    assert edit_distance(a, b, 5) == distance
    if distance:
        assert edit_distance(a, b, distance - 1) == distance  # over the limit: the limit + 1, found early


@pytest.mark.parametrize(("text", "expected"), [
    ("so is it covered by the waranty or what", "so is it covered by the warranty or what"),
    ("how much is shiping to norway", "how much is shipping to norway"),
    ("is the laptp bag big enough", "is the laptop bag big enough"),
    ("where is my parcle??", "where is my parcel??"),
    ("what about amex", "what about amex"),  # a known word, though near none of the bot's
    ("ward off the cold", "ward off the cold"),  # known: never made into "warranty"
    ("qwzx vbnm", "qwzx vbnm"),  # nothing near
    ("shippping warrranty", "shipping warranty"),  # two edits for long words
    ("lbl", "lbl"),  # too short to guess
])
def test_unknown_words_become_the_bots_nearest_word(speller: Speller, text: str, expected: str) -> None:
    assert speller.correct(text) == expected


def test_a_tie_is_left_alone() -> None:
    speller = Speller(Counter({"cart": 2, "card": 2}))
    assert speller.word("carx") is None  # one edit from both, as frequent: no guess
    assert Speller(Counter({"cart": 3, "card": 2})).word("carx") == "cart"  # the more frequent wins


def test_the_memo_is_bounded(speller: Speller) -> None:
    for n in range(MEMO_SIZE + 10):
        speller.word(f"zzq{n:05d}")
    assert len(speller._memo) <= MEMO_SIZE
    assert "bounded" not in repr(speller) and "zzq" not in repr(speller)  # no customer text in reprs
