"""Seeded, generated evaluation suites for the input filters (used by tests/safety and benchmarks/safety.py).

Every generator is deterministic for a seed. Positives carry the exact substring that must be found, so a
score says whether the filter found the right thing at the right place, not just "something". One module a suite:

- :mod:`safety.suites.pii`: :func:`pii_positives` / :func:`pii_negatives` (real-format PII and tricky near-PII in
  English and Chinese) and :func:`score_pii`.
- :mod:`safety.suites.obfuscation`: :func:`obfuscation_suite`, banned terms and injection phrases hidden by each
  trick (full-width, zero-width, look-alikes, leetspeak, spacing, punctuation, mixed case), EN + ZH.
- :mod:`safety.suites.injection`: :func:`injection_suite`, prompt-injection attacks and benign look-alikes, EN + ZH,
  and the hand-written sets :data:`INJECTION_UNSEEN`, :data:`INJECTION_FRESH`, :data:`INJECTION_HELDOUT`.
- :mod:`safety.suites.benign`: :func:`benign_texts`, the texts of snips, clinc150 and cais for false positives.

:data:`DEFAULT_BANNED_TERMS` is the filters' (:mod:`safety.filters`), named here too for the callers that import it
from the suites.
"""

from __future__ import annotations

from safety.filters import DEFAULT_BANNED_TERMS
from safety.suites.benign import BENIGN_SETS, benign_texts
from safety.suites.injection import (
    INJECTION_FRESH,
    INJECTION_HELDOUT,
    INJECTION_UNSEEN,
    InjectionCase,
    injection_suite,
)
from safety.suites.obfuscation import TRICKS, ZH_TRICKS, ObfuscationCase, obfuscate, obfuscation_suite
from safety.suites.pii import PiiCase, PiiScore, pii_negatives, pii_positives, score_pii

__all__ = [
    "BENIGN_SETS",
    "DEFAULT_BANNED_TERMS",
    "INJECTION_FRESH",
    "INJECTION_HELDOUT",
    "INJECTION_UNSEEN",
    "TRICKS",
    "ZH_TRICKS",
    "InjectionCase",
    "ObfuscationCase",
    "PiiCase",
    "PiiScore",
    "benign_texts",
    "injection_suite",
    "obfuscate",
    "obfuscation_suite",
    "pii_negatives",
    "pii_positives",
    "score_pii",
]
