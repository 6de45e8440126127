"""Measure the bot's real NLU on its held-out split, to set the simulator's noise channel.

The split is the one NLU training holds out (``nlu.train.split_dev(examples, 0.1, seed)``), so the
parses are of utterances the model did not train on. Confidences are summarised by method-of-moments
Beta fits for right and wrong parses; the error mix (intent vs slot, ``out_of_scope``, true intent
second in the ranking) gives the channel's shares.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def _beta_fit(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    var = max(sum((v - mean) ** 2 for v in values) / n, 1e-6)
    k = max(mean * (1 - mean) / var - 1, 1e-3)
    return round(mean * k, 2), round((1 - mean) * k, 2)


def measure_nlu(bot_dir: str | Path, dev_fraction: float = 0.1, seed: int = 0) -> dict[str, Any]:
    from nlu.data import load_examples
    from nlu.predict import NLUModel
    from nlu.train import split_dev

    root = Path(bot_dir)
    cfg = yaml.safe_load((root / "bot.yml").read_text(encoding="utf-8")) or {}
    examples = load_examples([root / p for p in cfg.get("nlu_data", [])])
    _, dev = split_dev(examples, dev_fraction, seed)
    model = NLUModel.load(root / "models" / "nlu")
    parses = model.parse_batch([ex.text for ex in dev])
    right: list[float] = []
    wrong_intent: list[float] = []
    wrong_slots: list[float] = []
    oos = true_second = 0
    for ex, p in zip(dev, parses, strict=True):
        gold = {(e.entity, e.value) for e in ex.entities}
        pred = {(e.entity, e.value) for e in p.entities}
        if p.intent != ex.intent:
            wrong_intent.append(p.confidence)
            oos += p.intent == "out_of_scope"
            true_second += len(p.ranking) > 1 and p.ranking[1][0] == ex.intent
        elif gold != pred:
            wrong_slots.append(p.confidence)
        else:
            right.append(p.confidence)
    wrong = wrong_intent + wrong_slots
    return {
        "n": len(dev), "right": len(right), "wrong_intent": len(wrong_intent), "wrong_slots": len(wrong_slots),
        "semantic_error_rate": round(len(wrong) / max(len(dev), 1), 4),
        "conf_correct": _beta_fit(right) if len(right) > 1 else None,
        "conf_error": _beta_fit(wrong_intent) if len(wrong_intent) > 1 else None,
        "share_below_0.5": {"right": round(sum(c < 0.5 for c in right) / max(len(right), 1), 3),
                            "wrong": round(sum(c < 0.5 for c in wrong) / max(len(wrong), 1), 3)},
        "p_intent_error": round(len(wrong_intent) / max(len(wrong), 1), 3),
        "p_confuse_oos": round(oos / max(len(wrong_intent), 1), 3),
        "p_true_second": round(true_second / max(len(wrong_intent), 1), 3),
        "slot_error_confidences": [round(c, 3) for c in wrong_slots],
    }
