"""A bot folder's ``bot.yml``, validated: every path resolves against the bot folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dialogue.handoff import HandoffConfigError, OfficeHours
from kefu.errors import ConfigError

if TYPE_CHECKING:
    from dialogue.knowledge import KnowledgeBase

_CHECKOUT = Path(__file__).resolve().parents[1]


def shared_models() -> Path:
    """Where models that do not depend on the bot live (the toxicity classifiers), built once for every bot on the
    machine: ``$KEFU_MODELS``, else ``.kefu/models`` in this checkout (git-ignored), else ``~/.cache/kefu/models``."""
    env = os.environ.get("KEFU_MODELS")
    if env:
        return Path(env).resolve()
    if (_CHECKOUT / "pyproject.toml").is_file():
        return _CHECKOUT / ".kefu" / "models"
    return Path.home() / ".cache" / "kefu" / "models"


Score = Annotated[float, Field(ge=0.0, le=1.0)]


class HandoffSettings(BaseModel):
    """``bot.yml`` ``handoff:``: how the console's inbox routes conversations queued for a human."""

    model_config = ConfigDict(extra="forbid")

    auto_assign: bool = Field(
        default=True, description="give each queued conversation to the online agent assigned least recently (round-robin); "
        "false: it waits unassigned until someone claims it"
    )


class BotConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    languages: list[Literal["en", "zh"]] = Field(default_factory=lambda: ["en"])  # type: ignore[arg-type]
    nlu_data: list[str]
    domain: str = "domain.yml"
    dialogue: str | None = Field(
        None, description="the dialogue definition (docs/bots.md); when absent, `flows` names a Python flows module"
    )
    flows: str = "flows.py"
    rasa: str | None = Field(
        None, description="an imported Rasa project's folder (`kefu import rasa`): its rules, forms and stories are the "
        "dialogue (docs/rasa.md); dialogue and flows are then unused"
    )
    scenarios: str = Field(
        "scenarios", description="the bot's scripted scenarios (files directly in this folder gate the learned policy)"
    )
    knowledge: str | None = None
    orders: str | None = None
    actions: str | None = "actions.py"
    action_endpoint: str | None = None
    store: str = "sqlite+aiosqlite:///.kefu/bot.db"
    generation: str = "embedded"
    policy: Literal["auto", "fsm", "learned"] = Field(
        "auto", description="auto: the learned policy when models/policy holds one, else the FSM default"
    )
    confidence_threshold: float = Field(0.5, ge=0.0, le=1.0)
    toxicity_threshold: float = Field(0.5, ge=0.0, le=1.0)
    banned_terms: dict[str, list[str]] = Field(default_factory=dict)
    retention_days: float | None = Field(
        None, gt=0, description="kefu serve erases conversations idle for longer than this (hourly); none: keep all"
    )
    knowledge_action: str | None = Field(
        None, description="the action that answers from the knowledge base; set, retrieval scores every turn that is "
        "not a confident task and a confident match answers, whatever the intent said"
    )
    knowledge_threshold: Score | dict[str, Score] = Field(
        0.5, description="minimum retrieval score for that answer: one for every language, or one per language "
        "({en: 0.4, zh: 0.5}; English MiniLM cosines and the Chinese blend are not on one scale); unnamed: 0.5"
    )
    office_hours: dict[str, Any] | None = Field(
        None, description="{timezone, days: [mon..sun], hours: 'HH:MM-HH:MM'}: outside them the bot hands off to nobody"
    )
    handoff: HandoffSettings = Field(default_factory=HandoffSettings)
    handoff_timeout_minutes: float = Field(
        15, gt=0, description="a conversation waiting longer for a human goes back to the bot at its next message"
    )
    admission_budget_ms: float | None = Field(
        None, ge=0, description="kefu serve answers a new message `busy` (retry later) when it would wait longer than "
        "this many ms for the turns the worker holds, and GET /ready says 503 meanwhile; none or 0: never shed"
    )
    nlu_training: dict[str, float | int] = Field(
        default_factory=dict, description="overrides of nlu.train.TrainConfig (epochs, patience, ...) for this bot"
    )
    policy_training: dict[str, bool | float | int | list[float]] = Field(
        default_factory=dict, description="overrides of policy.train.TrainConfig (steps, deviation_margins, ...) for "
        "this bot: a step budget, never a time, so one seed still gives one policy"
    )

    @field_validator("office_hours")
    @classmethod
    def _check_office_hours(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            try:
                OfficeHours.parse(value)
            except HandoffConfigError as exc:
                raise ValueError(str(exc)) from None
        return value

    def hours(self) -> OfficeHours | None:
        return None if self.office_hours is None else OfficeHours.parse(self.office_hours)


class Bot:
    """A bot folder: its config plus the resolved locations of its data and built models."""

    def __init__(self, root: Path, config: BotConfig) -> None:
        self.root = root.resolve()
        self.config = config

    @classmethod
    def load(cls, root: Path) -> Bot:
        path = root / "bot.yml"
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from exc
        try:
            return cls(root, BotConfig.model_validate(raw))
        except ValidationError as exc:
            raise ConfigError(f"{path} is invalid:\n{exc}") from exc

    def path(self, relative: str) -> Path:
        return (self.root / relative).resolve()

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def nlu_model(self) -> Path:
        return self.models / "nlu"

    @property
    def generator_model(self) -> Path:
        return self.models / "generator"

    @property
    def toxicity_model(self) -> Path:
        """Shared by every bot (``shared_models()``): the classifiers learn public data, nothing of the bot."""
        return shared_models() / "toxicity"

    @property
    def injection_model(self) -> Path:
        return self.models / "injection"

    @property
    def policy_model(self) -> Path:
        return self.models / "policy"

    @property
    def kb_cache(self) -> Path:
        return self.models / "kb"

    @property
    def nlu_files(self) -> list[Path]:
        return [self.path(p) for p in self.config.nlu_data]

    def utterances(self) -> list[str]:
        """The texts of the bot's NLU examples: what its customers say (never prompt injections)."""
        from nlu.data import load_examples

        return [e.text for e in load_examples(self.nlu_files)]

    def load_knowledge(self) -> KnowledgeBase:
        """The bot's knowledge base with its NLU examples as the entries' rivals (``dialogue.knowledge``), embeddings
        from the cache under ``models/kb`` when they match. Blocking."""
        from dialogue.knowledge import Example, KnowledgeBase
        from nlu.data import load_examples
        from nlu.tokenize import detect_language

        assert self.config.knowledge is not None
        examples = [Example(e.intent, detect_language(e.text), e.text) for e in load_examples(self.nlu_files)]
        return KnowledgeBase.load(self.path(self.config.knowledge), self.kb_cache, examples=examples)

    def store_url(self, override: str | None = None) -> str:
        """The store URL; a relative SQLite path resolves against the bot folder."""
        url = override or self.config.store
        prefix = "sqlite+aiosqlite:///"
        if url.startswith(prefix) and not url[len(prefix):].startswith("/") and ":memory:" not in url:
            url = prefix + str(self.root / url[len(prefix):])
        return url
