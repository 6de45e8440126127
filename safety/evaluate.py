"""Metrics for a binary toxicity scorer and the injection check, and evaluation of a trained model on a JSONL file."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from safety.errors import SafetyDataError
from safety.jsonl import read_rows

METRIC_KEYS = ("roc_auc", "recall_at_1pct_fpr", "accuracy", "f1", "threshold", "n")


def read_jsonl(path: str | Path, max_examples: int | None = None, seed: int = 0) -> tuple[list[str], list[int]]:
    """Read ``{"text", "label"}`` lines (label 1 = toxic). ``max_examples`` takes a seeded random subset."""
    p = Path(path)
    texts: list[str] = []
    labels: list[int] = []
    for lineno, row in read_rows(p):
        try:
            text, label = row["text"], int(row["label"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SafetyDataError(p, lineno, f"expected a JSON object with text and label: {exc}") from exc
        if not isinstance(text, str) or label not in (0, 1):
            raise SafetyDataError(p, lineno, "text must be a string and label 0 or 1")
        texts.append(text)
        labels.append(label)
    if not texts:
        raise SafetyDataError(p, 0, "no examples")
    if max_examples is not None and max_examples < len(texts):
        idx = sorted(random.Random(seed).sample(range(len(texts)), max_examples))
        texts = [texts[i] for i in idx]
        labels = [labels[i] for i in idx]
    return texts, labels


def best_f1_threshold(labels: Sequence[int], scores: Sequence[float]) -> float:
    """The score threshold that maximises F1 on these labels (ties: the highest threshold)."""
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(list(labels), list(scores))
    best, best_f1 = 0.5, -1.0
    for p, r, t in zip(precision[:-1], recall[:-1], thresholds, strict=True):
        f1 = 0.0 if p + r == 0 else 2 * p * r / (p + r)
        if f1 >= best_f1:
            best, best_f1 = float(t), f1
    return best


def compute_metrics(labels: Sequence[int], scores: Sequence[float], threshold: float = 0.5) -> dict[str, Any]:
    """``roc_auc``, ``recall_at_1pct_fpr``, and ``accuracy`` / ``f1`` at ``threshold`` (score >= t is toxic).

    ROC-AUC and recall@1%FPR are ``None`` when only one class is present.
    """
    import numpy as np
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score, roc_curve

    if len(labels) != len(scores):
        raise ValueError(f"{len(labels)} labels but {len(scores)} scores")
    if not labels:
        raise ValueError("no examples to evaluate")
    y = np.asarray(labels, dtype=int)
    s = np.asarray(scores, dtype=float)
    pred = (s >= threshold).astype(int)
    roc_auc: float | None = None
    recall_at_1pct: float | None = None
    if len(set(y.tolist())) == 2:
        roc_auc = float(roc_auc_score(y, s))
        fpr, tpr, _ = roc_curve(y, s)
        ok = fpr <= 0.01
        recall_at_1pct = float(tpr[ok].max()) if ok.any() else 0.0
    return {
        "roc_auc": roc_auc,
        "recall_at_1pct_fpr": recall_at_1pct,
        "accuracy": float(accuracy_score(y, pred)),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "threshold": float(threshold),
        "n": len(y),
    }


def evaluate_model(
    model_dir: str | Path,
    data: str | Path,
    language: str = "en",
    threshold: float | None = None,
    max_examples: int | None = None,
    quantize: bool = False,
) -> dict[str, Any]:
    """Score ``data`` with the model in ``model_dir``; metrics at the model's threshold plus the dev-best one."""
    from tqdm.auto import tqdm

    from safety.toxicity import ToxicityClassifier

    clf = ToxicityClassifier.load(model_dir, threshold=threshold, quantize=quantize)
    texts, labels = read_jsonl(data, max_examples=max_examples)
    scores: list[float] = []
    step = 256
    for i in tqdm(range(0, len(texts), step), desc="toxicity eval", unit="batch"):
        scores.extend(clf.score(texts[i : i + step]))
    result = compute_metrics(labels, scores, clf.threshold)
    best = best_f1_threshold(labels, scores)
    result.update(
        {
            "language": language,
            "model_languages": list(clf.config.languages),
            "best_f1_threshold": best,
            "f1_at_best_threshold": compute_metrics(labels, scores, best)["f1"],
            "positive_rate": sum(labels) / len(labels),
            "quantized": quantize,
        }
    )
    return result


def evaluate_injection(data: str | Path, model_dir: str | Path | None = None) -> dict[str, Any]:
    """Flag ``data`` (label 1 = attack) with the input filter's injection check: the rules, plus the learned
    detector in ``model_dir`` when given. Recall, false-positive rate and, with a model, its ROC-AUC."""
    from safety.filters import FLAG_INJECTION, InputFilter
    from safety.injection import InjectionDetector

    model = InjectionDetector.load(model_dir) if model_dir is not None else None
    texts, labels = read_jsonl(data)
    check = InputFilter(injection_model=model, max_chars=10**6).check
    flagged = [FLAG_INJECTION in check(t).flags for t in texts]
    attacks = [f for f, y in zip(flagged, labels, strict=True) if y == 1]
    benign = [f for f, y in zip(flagged, labels, strict=True) if y == 0]
    result: dict[str, Any] = {
        "recall": sum(attacks) / len(attacks) if attacks else None,
        "false_positive_rate": sum(benign) / len(benign) if benign else None,
        "attacks": len(attacks),
        "benign": len(benign),
        "n": len(texts),
        "detector": "rules + model" if model is not None else "rules",
    }
    if model is not None:
        scores = [model.score(t) for t in texts]
        result["model_only"] = compute_metrics(labels, scores, model.threshold)
    return result
