"""Kefu safety: input normalisation, PII redaction, banned terms, prompt-injection flags, toxicity scoring.

``import safety`` is cheap: torch, transformers and detoxify load only when a toxicity model is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from safety.errors import InputTooLongError, SafetyDataError, SafetyError, ToxicityModelError
from safety.filters import DEFAULT_BANNED_TERMS, BannedTerms, InputFilter, OutputFilter, TermMatch, detect_injection
from safety.normalize import Normalized, normalize
from safety.pii import find_pii, redact
from safety.types import InputVerdict, OutputVerdict, Redaction

if TYPE_CHECKING:
    from safety.toxicity import ToxicityClassifier, ToxicityRouter
    from safety.train import TrainConfig

__all__ = [
    "DEFAULT_BANNED_TERMS",
    "BannedTerms",
    "InputFilter",
    "InputTooLongError",
    "InputVerdict",
    "Normalized",
    "OutputFilter",
    "OutputVerdict",
    "Redaction",
    "SafetyDataError",
    "SafetyError",
    "TermMatch",
    "ToxicityClassifier",
    "ToxicityModelError",
    "ToxicityRouter",
    "TrainConfig",
    "detect_injection",
    "find_pii",
    "normalize",
    "redact",
]

_LAZY = {"ToxicityClassifier": "safety.toxicity", "ToxicityRouter": "safety.toxicity", "TrainConfig": "safety.train"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'safety' has no attribute {name!r}")
