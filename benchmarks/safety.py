"""Safety benchmark: quality of the input filters on the generated suites and benign data, and latency.

    python benchmarks/safety.py --json                                # filters only
    python benchmarks/safety.py --models models/toxicity --json       # + output classifier latency per language

Figures: PII recall/precision, obfuscation recall, prompt-injection recall/false positives (generated suite, the
tuned hand-written set, and an untouched hand-written set), share of benign snips/clinc150/cais messages
blocked, input-filter latency p50/p99 (ms per message) and toxicity p50/p99 (ms per reply, one reply at a time).
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
    shared_data_dir,
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


def quality(data_dir: Path) -> dict[str, Any]:
    plain = InputFilter()

    def finder(text: str) -> list[tuple[str, int, int]]:
        return [(r.kind, r.start, r.end) for r in plain.check(text).redactions]

    pos, neg = pii_positives(), pii_negatives()
    pii = score_pii(finder, pos + neg)
    out: dict[str, Any] = {
        "pii": {
            "recall": round(pii.recall, 4),
            "precision": round(pii.precision, 4),
            "positives": pii.positives,
            "negatives": pii.negatives,
            "expected_values": pii.expected,
            "detections": pii.found,
            "missed_by_kind": dict(Counter(pii.misses)),
            "false_by_category": dict(Counter(pii.false_categories)),
        }
    }
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
    inj = injection_suite()
    attacks = [c for c in inj if c.attack]
    benign = [c for c in inj if not c.attack]

    def flagged(text: str) -> bool:
        return "prompt_injection" in plain.check(text).flags

    def rate(texts: list[str]) -> float:
        return round(sum(flagged(t) for t in texts) / len(texts), 4) if texts else 0.0

    out["prompt_injection"] = {
        "generated": {
            "attacks": len(attacks),
            "benign": len(benign),
            "recall": rate([c.text for c in attacks]),
            "false_positive_rate": rate([c.text for c in benign]),
            "recall_en": rate([c.text for c in attacks if c.language == "en"]),
            "recall_zh": rate([c.text for c in attacks if c.language == "zh"]),
        },
        "handwritten_tuned": {
            "attacks": sum(a for _, a in INJECTION_UNSEEN),
            "recall": rate([t for t, a in INJECTION_UNSEEN if a]),
            "false_positive_rate": rate([t for t, a in INJECTION_UNSEEN if not a]),
            "note": "measured at recall 0.20 when written, then used to generalise the rules",
        },
        "handwritten_tuned_2": {
            "attacks": sum(a for _, a in INJECTION_FRESH),
            "recall": rate([t for t, a in INJECTION_FRESH if a]),
            "false_positive_rate": rate([t for t, a in INJECTION_FRESH if not a]),
            "note": "measured at recall 0.20 when written, then used to broaden the rules",
        },
        "handwritten_heldout": {
            "attacks": sum(a for _, a in INJECTION_HELDOUT),
            "benign": sum(not a for _, a in INJECTION_HELDOUT),
            "recall": rate([t for t, a in INJECTION_HELDOUT if a]),
            "false_positive_rate": rate([t for t, a in INJECTION_HELDOUT if not a]),
            "note": "never used for tuning: the honest estimate on paraphrased attacks",
        },
    }
    strict = InputFilter(DEFAULT_BANNED_TERMS, block_banned=True, block_injection=True)
    total: Counter[str] = Counter()
    blocked: Counter[str] = Counter()
    flags: Counter[str] = Counter()
    for name, text in benign_texts(data_dir):
        verdict = strict.check(text)
        total[name] += 1
        blocked[name] += verdict.blocked
        flags.update(verdict.flags)
    out["benign_blocked"] = {
        name: {"n": total[name], "blocked": blocked[name], "rate": round(blocked[name] / total[name], 5)}
        for name in sorted(total)
    }
    if total:
        out["benign_blocked"]["all"] = {
            "n": sum(total.values()),
            "blocked": sum(blocked.values()),
            "rate": round(sum(blocked.values()) / sum(total.values()), 5),
            "flags": dict(flags),
        }
    return out


def input_latency(data_dir: Path, repeats: int) -> dict[str, Any]:
    f = InputFilter(DEFAULT_BANNED_TERMS, block_banned=True, block_injection=True, mask_banned=True)
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
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {
        "quality": quality(args.data),
        "input_filter_latency": input_latency(args.data, args.repeats),
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
