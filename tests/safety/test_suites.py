"""Measured quality gates on seeded generated suites: PII, prompt injection, benign false positives."""

from __future__ import annotations

from collections import Counter

import pytest

from safety import InputFilter
from safety.pii import cn_id_valid, find_pii, iban_valid
from safety.shared_data import shared_data_dir
from safety.suites import (
    DEFAULT_BANNED_TERMS,
    INJECTION_UNSEEN,
    benign_texts,
    injection_suite,
    pii_negatives,
    pii_positives,
    score_pii,
)

DATA = shared_data_dir()


def _finder(text: str) -> list[tuple[str, int, int]]:
    return [(r.kind, r.start, r.end) for r in InputFilter().check(text).redactions]


@pytest.mark.parametrize(
    ("number", "valid"),
    [
        ("11010519491231002X", True),
        ("11010519491231002x", True),
        ("110105194912310021", False),
        ("110105 19491231 002X", True),
        ("11010519491231002", False),
    ],
)
def test_cn_id_check_character(number: str, valid: bool) -> None:
    assert cn_id_valid(number) is valid


@pytest.mark.parametrize(
    ("iban", "valid"),
    [
        ("GB82 WEST 1234 5698 7654 32", True),
        ("DE89370400440532013000", True),
        ("DE89370400440532013001", False),
        ("GB82 WEST 1234 5698 7654", False),  # too short for GB
        ("XX82WEST12345698765432", False),  # unknown country
    ],
)
def test_iban_checksum(iban: str, valid: bool) -> None:
    assert iban_valid(iban) is valid


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        ("身份证号11010519491231002X谢谢", ["id_cn"]),
        ("身份证110105194912310021", []),  # wrong check character: neither an ID nor a card
        ("IBAN DE89 3704 0044 0532 0130 00, thanks", ["iban"]),
        ("账号GB82WEST12345698765432", ["iban"]),
        ("ISBN 978-3-16-148410-0", []),
        ("运单号SF4833350975744", []),
        ("+86 138 1234 5678 and 4111 1111 1111 1111", ["phone", "card"]),
    ],
)
def test_new_pii_kinds(text: str, kinds: list[str]) -> None:
    assert [s.kind for s in find_pii(text)] == kinds


def test_pii_suite_recall_and_precision() -> None:
    positives, negatives = pii_positives(), pii_negatives()
    assert len(positives) >= 1000 and len(negatives) >= 1000
    assert {c.language for c in positives} == {"en", "zh"} == {c.language for c in negatives}
    kinds = Counter(kind for c in positives for kind, _ in c.expected)
    assert set(kinds) == {"email", "phone", "card", "id_cn", "iban"} and min(kinds.values()) >= 150
    score = score_pii(_finder, positives + negatives)
    assert score.recall >= 0.99, Counter(score.misses)
    assert score.precision >= 0.97, Counter(score.false_categories)
    neg = score_pii(_finder, negatives)
    assert neg.found <= 0.01 * len(negatives), Counter(neg.false_categories)


def test_injection_suite() -> None:
    cases = injection_suite()
    attacks = [c for c in cases if c.attack]
    benign = [c for c in cases if not c.attack]
    for group in (attacks, benign):
        assert len(group) >= 200 and {c.language for c in group} == {"en", "zh"}
    f = InputFilter()
    recall = sum("prompt_injection" in f.check(c.text).flags for c in attacks) / len(attacks)
    fp = sum("prompt_injection" in f.check(c.text).flags for c in benign) / len(benign)
    assert recall >= 0.90 and fp <= 0.01, (recall, fp)


def test_injection_unseen_phrasings() -> None:
    """Phrasings outside the templates. Measured at 0.20 recall when first written, then used to generalise the
    rules (verb + filler + target): now a regression gate. The untouched estimate is INJECTION_FRESH, reported by
    benchmarks/safety.py, not asserted."""
    f = InputFilter()
    attacks = [t for t, attack in INJECTION_UNSEEN if attack]
    benign = [t for t, attack in INJECTION_UNSEEN if not attack]
    recall = sum("prompt_injection" in f.check(t).flags for t in attacks) / len(attacks)
    fp = sum("prompt_injection" in f.check(t).flags for t in benign) / len(benign)
    assert recall >= 0.75 and fp <= 0.05, (recall, fp)


@pytest.mark.skipif(not (DATA / "clinc150").is_dir(), reason="shared benign data sets not available")
def test_benign_customer_messages_are_rarely_blocked() -> None:
    f = InputFilter(DEFAULT_BANNED_TERMS, block_banned=True, block_injection=True)
    total: Counter[str] = Counter()
    blocked: Counter[str] = Counter()
    for name, text in benign_texts(DATA, splits=("dev", "test")):  # benchmarks/safety.py runs all 48k texts
        total[name] += 1
        blocked[name] += f.check(text).blocked
    assert set(total) == {"snips", "clinc150", "cais"} and sum(total.values()) > 10_000
    for name in total:
        assert blocked[name] / total[name] <= 0.005, (name, blocked[name], total[name])
