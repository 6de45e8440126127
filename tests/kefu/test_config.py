"""bot.yml read into BotConfig: what it accepts and what it refuses."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kefu.config import BotConfig


@pytest.mark.parametrize(("setting", "valid"), [
    (0.5, True), ({"en": 0.45, "zh": 0.5}, True), (1.5, False), ({"en": -0.1}, False), ({"en": "high"}, False),
])
def test_the_knowledge_threshold_is_one_number_or_one_per_language(setting: object, valid: bool) -> None:
    raw = {"name": "tiny", "nlu_data": ["data/nlu.yml"], "knowledge_threshold": setting}
    if valid:
        assert BotConfig.model_validate(raw).knowledge_threshold == setting
    else:
        with pytest.raises(ValidationError, match="knowledge_threshold"):
            BotConfig.model_validate(raw)
