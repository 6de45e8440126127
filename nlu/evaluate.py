"""Evaluation: intent accuracy, span-level slot F1 (seqeval), sentence accuracy, OOS metrics and throughput."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

from seqeval.metrics import f1_score, precision_score, recall_score

from nlu.data import Example
from nlu.predict import NLUModel

OOS_LABELS = frozenset({"oos", "out_of_scope"})


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


def evaluate(model: NLUModel, examples: Sequence[Example], batch_size: int = 256) -> dict[str, float | int]:
    """Evaluate on gold-tokenised examples. Keys: n, intent_accuracy, intent_macro_f1, slot_f1, slot_precision,
    slot_recall, sentence_accuracy, utterances_per_second, single_parse_ms (median), and with OOS gold labels
    (``oos``/``out_of_scope``) also oos_recall and in_scope_accuracy. Accuracies are fractions in [0, 1]."""
    t0 = time.perf_counter()
    probs, pred_tags = model.predict_tokens([ex.tokens for ex in examples], batch_size)
    elapsed = time.perf_counter() - t0
    pred_intents = [model.vocab.intents[i] for i in probs.argmax(-1).tolist()] if len(examples) else []
    out: dict[str, float | int] = {"n": len(examples)}
    out.update(score([ex.intent for ex in examples], pred_intents, [ex.tags for ex in examples], pred_tags))
    out["utterances_per_second"] = len(examples) / elapsed if elapsed > 0 else 0.0
    timings = []
    for ex in examples[:50]:  # single-utterance latency, tokenizer and entity extraction included
        t = time.perf_counter()
        model.parse(ex.text)
        timings.append((time.perf_counter() - t) * 1000)
    out["single_parse_ms"] = statistics.median(timings) if timings else 0.0
    return out
