"""Kefu runtime: batched generation engine, embedded act->reply generator, templates and NLG.

Exports are lazy (PEP 562) so ``import runtime`` does not import torch or transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from runtime.errors import (
    APIError,
    EngineClosed,
    GenerationError,
    ModelLoadError,
    QueueFull,
    RemoteError,
    TemplateError,
)
from runtime.types import Act, OnToken, Realisation

if TYPE_CHECKING:
    from runtime.engine import Engine
    from runtime.model import GeneratorConfig
    from runtime.nlg import NLG, check_slots
    from runtime.openai_api import create_app
    from runtime.remote import OpenAIEngine
    from runtime.sampling import SamplingParams
    from runtime.scheduler import Scheduler, StepOutputs, StepPlan
    from runtime.templates import Templates
    from runtime.train import train_generator

_LAZY = {
    "Engine": "runtime.engine",
    "SamplingParams": "runtime.sampling",
    "GeneratorConfig": "runtime.model",
    "NLG": "runtime.nlg",
    "check_slots": "runtime.nlg",
    "OpenAIEngine": "runtime.remote",
    "create_app": "runtime.openai_api",
    "Scheduler": "runtime.scheduler",
    "StepOutputs": "runtime.scheduler",
    "StepPlan": "runtime.scheduler",
    "Templates": "runtime.templates",
    "train_generator": "runtime.train",
}

__all__ = [
    "NLG",
    "APIError",
    "Act",
    "Engine",
    "EngineClosed",
    "GenerationError",
    "GeneratorConfig",
    "ModelLoadError",
    "OnToken",
    "OpenAIEngine",
    "QueueFull",
    "Realisation",
    "RemoteError",
    "SamplingParams",
    "Scheduler",
    "StepOutputs",
    "StepPlan",
    "TemplateError",
    "Templates",
    "check_slots",
    "create_app",
    "train_generator",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'runtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
