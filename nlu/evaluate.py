"""Evaluation: intent accuracy, span-level slot F1 (seqeval), sentence accuracy, OOS metrics and throughput."""

from __future__ import annotations

import json
import random
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from seqeval.metrics import f1_score, precision_score, recall_score

from nlu.data import Example
from nlu.predict import OOS_LABELS, NLUModel


def intent_macro_f1(gold: Sequence[str], pred: Sequence[str]) -> float:
    """Unweighted mean F1 over the gold intent labels."""
    labels = sorted(set(gold))
    scores = []
    for lab in labels:
        tp = sum(g == lab and p == lab for g, p in zip(gold, pred))
        fp = sum(g != lab and p == lab for g, p in zip(gold, pred))
        fn = sum(g == lab and p != lab for g, p in zip(gold, pred))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / len(scores) if scores else 0.0


def score(gold_intents: Sequence[str], pred_intents: Sequence[str],
          gold_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]]) -> dict[str, float]:
    """Metrics from predictions alone (used by evaluate() and for the dev set during training)."""
    n = len(gold_intents)
    intent_ok = [g == p for g, p in zip(gold_intents, pred_intents)]
    frame_ok = [ok and list(gt) == list(pt) for ok, gt, pt in zip(intent_ok, gold_tags, pred_tags)]
    gt, pt = [list(t) for t in gold_tags], [list(t) for t in pred_tags]
    has_slots = any(t != "O" for seq in gt for t in seq)
    out: dict[str, float] = {
        "intent_accuracy": sum(intent_ok) / n if n else 0.0,
        "intent_macro_f1": intent_macro_f1(gold_intents, pred_intents),
        "slot_f1": float(f1_score(gt, pt, zero_division=0)) if has_slots else 0.0,
        "slot_precision": float(precision_score(gt, pt, zero_division=0)) if has_slots else 0.0,
        "slot_recall": float(recall_score(gt, pt, zero_division=0)) if has_slots else 0.0,
        "sentence_accuracy": sum(frame_ok) / n if n else 0.0,
    }
    oos = [i for i, g in enumerate(gold_intents) if g in OOS_LABELS]
    if oos:
        ins = [i for i, g in enumerate(gold_intents) if g not in OOS_LABELS]
        out["oos_recall"] = sum(pred_intents[i] in OOS_LABELS for i in oos) / len(oos)
        out["in_scope_accuracy"] = sum(intent_ok[i] for i in ins) / len(ins) if ins else 0.0
    return out


def evaluate(model: NLUModel, examples: Sequence[Example], batch_size: int = 128) -> dict[str, float | int]:
    """Evaluate on gold-tokenised examples. Keys: n, intent_accuracy, intent_macro_f1, slot_f1, slot_precision,
    slot_recall, sentence_accuracy, utterances_per_second, single_parse_ms (median), and with OOS gold labels
    (``oos``/``out_of_scope``) also oos_recall and in_scope_accuracy. Accuracies are fractions in [0, 1]."""
    return _evaluate(model, examples, batch_size)[0]


def _evaluate(model: NLUModel, examples: Sequence[Example], batch_size: int
              ) -> tuple[dict[str, float | int], list[str]]:
    """:func:`evaluate`'s metrics and the predicted intent of each example."""
    t0 = time.perf_counter()
    probs, pred_tags = model.predict_tokens([ex.tokens for ex in examples], batch_size,
                                            [ex.text for ex in examples])
    elapsed = time.perf_counter() - t0
    pred_intents = [model.vocab.intents[i] for i in model.decide(probs).tolist()] if len(examples) else []
    out: dict[str, float | int] = {"n": len(examples)}
    out.update(score([ex.intent for ex in examples], pred_intents, [ex.tags for ex in examples], pred_tags))
    out["utterances_per_second"] = len(examples) / elapsed if elapsed > 0 else 0.0
    timings = []
    for ex in examples[:50]:  # single-utterance latency, tokenizer and entity extraction included
        t = time.perf_counter()
        model.parse(ex.text)
        timings.append((time.perf_counter() - t) * 1000)
    out["single_parse_ms"] = statistics.median(timings) if timings else 0.0
    return out, pred_intents


def intent_report(gold: Sequence[str], pred: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per-intent precision / recall / F1 / support (over gold and predicted labels), plus macro and weighted
    averages, like scikit-learn's ``classification_report(output_dict=True)``."""
    labels = sorted(set(gold) | set(pred))
    out: dict[str, dict[str, float]] = {}
    for lab in labels:
        tp = sum(g == lab and p == lab for g, p in zip(gold, pred))
        n_pred = sum(p == lab for p in pred)
        n_gold = sum(g == lab for g in gold)
        prec = tp / n_pred if n_pred else 0.0
        rec = tp / n_gold if n_gold else 0.0
        out[lab] = {"precision": prec, "recall": rec, "f1": 2 * prec * rec / (prec + rec) if prec + rec else 0.0,
                    "support": n_gold}
    rows = [out[lab] for lab in labels if out[lab]["support"]]
    total = sum(r["support"] for r in rows) or 1
    for name, weight in (("macro avg", lambda r: 1 / max(len(rows), 1)),
                         ("weighted avg", lambda r: r["support"] / total)):
        out[name] = {k: sum(weight(r) * r[k] for r in rows) for k in ("precision", "recall", "f1")}
        out[name]["support"] = total
    return out


def confusion_matrix(gold: Sequence[str], pred: Sequence[str]) -> tuple[list[str], list[list[int]]]:
    """Labels (sorted union) and counts ``matrix[gold][pred]``."""
    labels = sorted(set(gold) | set(pred))
    index = {lab: i for i, lab in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for g, p in zip(gold, pred):
        matrix[index[g]][index[p]] += 1
    return labels, matrix


def plot_confusion(labels: Sequence[str], matrix: Sequence[Sequence[int]], path: Path) -> None:
    """Row-normalised confusion matrix as a PNG (label ticks dropped above 60 labels)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(labels)
    rows = [[c / max(sum(r), 1) for c in r] for r in matrix]
    size = min(4 + 0.35 * n, 30)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    if n <= 60:
        ax.set_xticks(range(n), labels, rotation=90, fontsize=8)
        ax.set_yticks(range(n), labels, fontsize=8)
        if n <= 25:
            for i in range(n):
                for j in range(n):
                    if matrix[i][j]:
                        ax.text(j, i, str(matrix[i][j]), ha="center", va="center", fontsize=7,
                                color="white" if rows[i][j] > 0.5 else "black")
    ax.set(xlabel="predicted intent", ylabel="gold intent", title="intent confusion (row-normalised)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(model: NLUModel, examples: Sequence[Example], out_dir: str | Path, batch_size: int = 128
                 ) -> dict[str, float | int]:
    """Evaluate and write, like ``rasa test nlu``: ``metrics.json``, ``intent_report.json`` (per-intent P/R/F1),
    ``intent_errors.json`` (misclassified examples), ``confusion_matrix.png`` and, when the data has slots,
    ``slot_report.txt`` / ``slot_report.json`` (seqeval, per entity type). Returns the metrics."""
    from seqeval.metrics import classification_report

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = evaluate(model, examples, batch_size)
    probs, pred_tags = model.predict_tokens([ex.tokens for ex in examples], batch_size,
                                            [ex.text for ex in examples])
    decided = model.decide(probs).tolist() if len(examples) else []
    pred = [model.vocab.intents[i] for i in decided]
    gold = [ex.intent for ex in examples]
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    (out / "intent_report.json").write_text(json.dumps(intent_report(gold, pred), indent=2, ensure_ascii=False),
                                            encoding="utf-8")
    errors = [{"text": ex.text, "intent": ex.intent, "predicted": p, "confidence": float(probs[i].max())}
              for i, (ex, p) in enumerate(zip(examples, pred)) if p != ex.intent]
    (out / "intent_errors.json").write_text(json.dumps(errors, indent=2, ensure_ascii=False), encoding="utf-8")
    labels, matrix = confusion_matrix(gold, pred)
    plot_confusion(labels, matrix, out / "confusion_matrix.png")
    gt = [list(ex.tags) for ex in examples]
    if any(t != "O" for seq in gt for t in seq):
        (out / "slot_report.txt").write_text(str(classification_report(gt, pred_tags, digits=4, zero_division=0)),
                                             encoding="utf-8")
        slot = classification_report(gt, pred_tags, output_dict=True, zero_division=0)
        (out / "slot_report.json").write_text(json.dumps(
            {k: {m: float(v) for m, v in row.items()} for k, row in slot.items()}, indent=2), encoding="utf-8")
    return metrics


def stratified_folds(examples: Sequence[Example], k: int, seed: int = 0) -> list[list[int]]:
    """``k`` disjoint index lists covering ``examples``; each intent's examples are dealt round-robin after a seeded
    shuffle, so every fold gets a share of every intent with at least ``k`` examples."""
    if k < 2:
        raise ValueError("need at least 2 folds")
    rng = random.Random(seed)
    by_intent: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        by_intent.setdefault(ex.intent, []).append(i)
    folds: list[list[int]] = [[] for _ in range(k)]
    start = 0
    for intent in sorted(by_intent):
        idx = by_intent[intent]
        rng.shuffle(idx)
        for j, i in enumerate(idx):
            folds[(start + j) % k].append(i)
        start += len(idx)
    return [sorted(f) for f in folds]


def cross_validate(examples: Sequence[Example], k: int, train_fn: Callable[[list[Example], Path], NLUModel],
                   seed: int = 0, work_dir: str | Path | None = None) -> dict[str, object]:
    """K-fold cross-validation for data without a test split: train on k-1 folds (``train_fn(train, out_dir)``,
    which early-stops on its own held-out share), evaluate on the remaining fold. Returns per-fold metrics and the
    mean and standard deviation of each metric; for data in more than one language (``detect_language`` of each
    text), also ``by_language``: each language's intent accuracy over all its held-out predictions (a bot is judged
    per language: one language's errors hide in a pooled mean)."""
    import tempfile

    from nlu.tokenize import detect_language

    folds = stratified_folds(examples, k, seed)
    results: list[dict[str, float | int]] = []
    languages = [detect_language(ex.text) for ex in examples]
    right: dict[str, list[bool]] = {}
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        for f, test_idx in enumerate(folds):
            held = set(test_idx)
            model = train_fn([ex for i, ex in enumerate(examples) if i not in held], Path(tmp) / f"fold{f}")
            test = [examples[i] for i in test_idx]
            metrics, predicted = _evaluate(model, test, 128)
            results.append(metrics)
            for i, ex, intent in zip(test_idx, test, predicted):
                right.setdefault(languages[i], []).append(intent == ex.intent)
    keys = [key for key in results[0] if key != "n" and all(key in r for r in results)]
    summary: dict[str, object] = {"folds": k, "n": len(examples), "per_fold": results}
    summary["mean"] = {key: statistics.fmean(float(r[key]) for r in results) for key in keys}
    summary["std"] = {key: statistics.pstdev(float(r[key]) for r in results) for key in keys}
    if len(right) > 1:
        summary["by_language"] = {lang: {"n": len(hits), "intent_accuracy": sum(hits) / len(hits)}
                                  for lang, hits in sorted(right.items())}
    return summary
