"""Kefu NLU: joint BiLSTM-CRF intent classification and BIO slot filling (English words, Chinese characters).

``import nlu`` is cheap: torch-dependent names are imported on first attribute access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from nlu.errors import DataError, ModelLoadError, NLUError, TrainingError
from nlu.tokenize import Token, detect_language, tokenize  # pure Python; imported eagerly (shares its module's name)
from nlu.types import Entity, Parse

if TYPE_CHECKING:
    from nlu.data import Example, load_examples, read_jsonl, read_rasa_nlu
    from nlu.evaluate import evaluate
    from nlu.model import NLUConfig
    from nlu.predict import NLUModel
    from nlu.train import TrainConfig, train

_LAZY = {
    "NLUModel": "nlu.predict",
    "NLUConfig": "nlu.model",
    "TrainConfig": "nlu.train",
    "train": "nlu.train",
    "evaluate": "nlu.evaluate",
    "Example": "nlu.data",
    "load_examples": "nlu.data",
    "read_jsonl": "nlu.data",
    "read_rasa_nlu": "nlu.data",
}

__all__ = [
    "DataError", "Entity", "Example", "ModelLoadError", "NLUConfig", "NLUError", "NLUModel", "Parse", "Token",
    "TrainConfig", "TrainingError", "detect_language", "evaluate", "load_examples", "read_jsonl", "read_rasa_nlu",
    "tokenize", "train",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nlu' has no attribute {name!r}")
