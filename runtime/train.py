"""Train the embedded generator (dialogue act + slot names -> delexicalised reply) on a domain's responses.

Evaluation, in ``report.json``: ``train_*`` scores the final model on the acts it was trained on (does it
reproduce a variant, does it pass the slot check). ``held_out`` (``train_generator(held_out=True)``, on by
default in ``kefu runtime train``) is leave-one-variant-out: fold k trains a model (same config and seed,
tokenizer included) without variant k of every act that has several, and scores its greedy reply for each
such act against that unseen variant. Pooled over the folds: corpus BLEU-4 (words for English, characters
for Chinese, a placeholder is one word) and the slot error rate of Wen et al. 2015 / SC-GPT, (missing +
redundant slots) / slots in the acts. The replies the generator learns are close paraphrases of each other,
so held-out BLEU is low in absolute terms and mostly tells which known variant the model picked; it is there
to compare tokenizers and model sizes on the same folds, together with the slot error rate that decides
whether a reply is used at all. A bot has few acts, so differences of a point or two are noise.
"""

from __future__ import annotations

import json
import math
import platform
import random
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.model import GeneratorConfig, build_model, build_prompt, write_generator_meta
from runtime.templates import DELEX_RE, Templates, delexicalise

REPORT_NAME = "report.json"
CURVES_NAME = "curves.png"


@dataclass(frozen=True)
class Pair:
    """One training example: act prompt -> delexicalised reply."""

    key: str
    language: str
    prompt: str
    target: str


def training_pairs(templates: Templates) -> list[Pair]:
    """One pair per response variant of every key and language."""
    pairs = []
    for v in templates.all_variants():
        pairs.append(Pair(v.key, v.language, build_prompt(v.key, v.placeholders, v.language), delexicalise(v.text)))
    return pairs


@dataclass
class TrainResult:
    out_dir: Path
    final_loss: float
    train_variant_match: float
    seconds: float
    report: dict[str, Any]


def _encode(tokenizer: Any, pairs: list[Pair]) -> list[tuple[list[int], list[int]]]:
    rows = []
    for p in pairs:
        prompt_ids = tokenizer(p.prompt, add_special_tokens=False)["input_ids"]
        target_ids = tokenizer(p.target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append((prompt_ids, target_ids))
    return rows


def _batch(rows: list[tuple[list[int], list[int]]], pad_id: int) -> tuple[Any, Any, Any]:
    import torch

    length = max(len(p) + len(t) for p, t in rows)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    labels = torch.full((len(rows), length), -100, dtype=torch.long)
    for i, (p, t) in enumerate(rows):
        n = len(p) + len(t)
        ids[i, :n] = torch.tensor(p + t)
        mask[i, :n] = 1
        labels[i, len(p) : n] = torch.tensor(t)
    return ids, mask, labels


def greedy_replies(model: Any, tokenizer: Any, prompts: Sequence[str], max_new_tokens: int = 200) -> dict[str, str]:
    """Greedy delexicalised reply per prompt (``model.generate``, batches of 32, left padded)."""
    import torch

    model.eval()
    tokenizer.padding_side = "left"
    limit = getattr(model.config, "n_positions", 256)
    replies: dict[str, str] = {}
    for start in range(0, len(prompts), 32):
        chunk = list(prompts[start : start + 32])
        enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
        new = max(1, min(max_new_tokens, limit - enc["input_ids"].shape[1]))
        with torch.no_grad():
            out = model.generate(
                **enc,
                max_new_tokens=new,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        for prompt, row in zip(chunk, out[:, enc["input_ids"].shape[1] :], strict=True):
            replies[prompt] = tokenizer.decode(row, skip_special_tokens=True)
    return replies


def _slots_of(delex: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(m.group(1) for m in DELEX_RE.finditer(delex)))


def greedy_eval(model: Any, tokenizer: Any, pairs: list[Pair], max_new_tokens: int = 200) -> dict[str, float]:
    """Greedy decoding of every distinct prompt, scored against its variants.

    ``variant_match``: the reply equals one of the prompt's delexicalised variants; ``slot_valid``: the
    reply passes :func:`runtime.nlg.check_slots` for the prompt's slots (so the model would be used).
    """
    from runtime.nlg import check_slots

    targets: dict[str, set[str]] = {}
    slots: dict[str, tuple[str, ...]] = {}
    for p in pairs:
        targets.setdefault(p.prompt, set()).add(p.target)
        slots[p.prompt] = _slots_of(p.target)
    if not targets:
        return {"variant_match": 0.0, "slot_valid": 0.0, "prompts": 0}
    replies = greedy_replies(model, tokenizer, list(targets), max_new_tokens)
    match = sum(replies[p] in targets[p] for p in targets)
    valid = sum(not check_slots(replies[p], slots[p]) for p in targets)
    return {"variant_match": match / len(targets), "slot_valid": valid / len(targets), "prompts": len(targets)}


# ---------------------------------------------------------------------------------------- held-out scores
_BLEU_TOKEN = re.compile(r"\[[A-Za-z0-9_]+\]|[A-Za-z0-9_']+|\S")


def bleu_tokens(text: str) -> list[str]:
    """BLEU words: a placeholder, a latin word, or any other single non-space character (so Chinese is
    scored by character, as is usual for Chinese BLEU)."""
    return _BLEU_TOKEN.findall(text)


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]], max_n: int = 4) -> float:
    """Corpus BLEU (Papineni et al. 2002, 0-100): clipped n-gram precisions up to ``max_n`` summed over the
    corpus, geometric mean, brevity penalty against the closest reference length. No smoothing."""
    matched = [0] * max_n
    total = [0] * max_n
    hyp_len = ref_len = 0
    for hyp, refs in zip(hypotheses, references, strict=True):
        h = bleu_tokens(hyp)
        rs = [bleu_tokens(r) for r in refs]
        hyp_len += len(h)
        ref_len += min((abs(len(r) - len(h)), len(r)) for r in rs)[1]
        for n in range(1, max_n + 1):
            grams = Counter(tuple(h[i : i + n]) for i in range(len(h) - n + 1))
            best: Counter[tuple[str, ...]] = Counter()
            for r in rs:
                best |= Counter(tuple(r[i : i + n]) for i in range(len(r) - n + 1))
            matched[n - 1] += sum(min(c, best[g]) for g, c in grams.items())
            total[n - 1] += max(0, len(h) - n + 1)
    if hyp_len == 0 or min(matched) == 0:
        return 0.0
    log_p = sum(math.log(m / t) for m, t in zip(matched, total, strict=True)) / max_n
    bp = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return 100 * bp * math.exp(log_p)


def slot_error_rate(replies: Sequence[str], expected: Sequence[Sequence[str]]) -> tuple[float | None, int]:
    """(missing + redundant slots) / expected slots over all replies (``None`` when no act has a slot);
    redundant = a slot repeated (each extra copy) or one the act does not have. Also returns the slot count."""
    errors = slots = 0
    for reply, want in zip(replies, expected, strict=True):
        found = Counter(m.group(1) for m in DELEX_RE.finditer(reply))
        slots += len(want)
        errors += sum(1 for s in want if found[s] == 0)
        errors += sum(n - 1 if s in want else n for s, n in found.items() if n > (1 if s in want else 0))
    return (errors / slots if slots else None), slots


def split_held_out(pairs: list[Pair], fold: int) -> tuple[list[Pair], list[Pair]]:
    """Fold ``fold`` of leave-one-variant-out: variant number ``fold`` of every act (prompt) that has more
    than ``fold`` variants and at least two is held out; the act stays in training through its others."""
    by_prompt: dict[str, list[Pair]] = {}
    for p in pairs:
        by_prompt.setdefault(p.prompt, []).append(p)
    train: list[Pair] = []
    held: list[Pair] = []
    for group in by_prompt.values():
        out = fold if len(group) > max(1, fold) else -1
        for i, p in enumerate(group):
            (held if i == out else train).append(p)
    return train, held


def evaluate_held_out(folds: list[tuple[Any, Any, list[Pair]]]) -> dict[str, Any]:
    """BLEU-4 and slot error rate of the greedy replies for the held-out variants, pooled over the folds
    (``(model, tokenizer, held-out pairs)`` each; see the module docstring)."""
    from runtime.nlg import check_slots

    hyps: list[str] = []
    refs: list[list[str]] = []
    langs: list[str] = []
    tokens = 0
    for model, tokenizer, held in folds:
        by_prompt: dict[str, list[Pair]] = {}
        for p in held:
            by_prompt.setdefault(p.prompt, []).append(p)
        replies = greedy_replies(model, tokenizer, list(by_prompt))
        for prompt, ps in by_prompt.items():
            hyps.append(replies[prompt])
            refs.append([p.target for p in ps])
            langs.append(ps[0].language)
            tokens += len(tokenizer(replies[prompt], add_special_tokens=False)["input_ids"]) + 1
    want = [_slots_of(r[0]) for r in refs]
    ser, slots = slot_error_rate(hyps, want)
    by_lang = {
        lang: round(corpus_bleu([h for h, g in zip(hyps, langs, strict=True) if g == lang],
                                [r for r, g in zip(refs, langs, strict=True) if g == lang]), 2)
        for lang in sorted(set(langs))
    }  # fmt: skip
    return {
        "folds": len(folds),
        "replies": len(hyps),
        "bleu": round(corpus_bleu(hyps, refs), 2),
        "bleu_by_language": by_lang,
        "slot_error_rate": None if ser is None else round(ser, 4),
        "slots": slots,
        "slot_valid": round(sum(not check_slots(h, w) for h, w in zip(hyps, want, strict=True)) / len(hyps), 4),
        "reply_tokens_mean": round(tokens / len(hyps), 2),
    }


def _plot(out_dir: Path, losses: list[float], lrs: list[float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
    ax1.plot(range(1, len(losses) + 1), losses, lw=0.8, label="train loss (per step)")
    if len(losses) >= 10:
        k = 10
        smooth = [
            sum(losses[max(0, i - k + 1) : i + 1]) / len(losses[max(0, i - k + 1) : i + 1]) for i in range(len(losses))
        ]
        ax1.plot(range(1, len(losses) + 1), smooth, lw=1.5, label="10-step mean")
    ax1.set_yscale("log")
    ax1.set_xlabel("step")
    ax1.set_ylabel("cross-entropy (nats/token)")
    ax1.set_title("Embedded generator: train loss")
    ax1.legend()
    ax2.plot(range(1, len(lrs) + 1), lrs)
    ax2.set_xlabel("step")
    ax2.set_ylabel("learning rate")
    ax2.set_title("Schedule (warmup + cosine)")
    fig.tight_layout()
    fig.savefig(out_dir / CURVES_NAME, dpi=110)
    plt.close(fig)


def train_generator(
    templates: Templates,
    out_dir: str | Path,
    config: GeneratorConfig | None = None,
    progress: bool = True,
    evaluate: bool = True,
    held_out: bool = False,
    held_out_folds: int = 3,
) -> TrainResult:
    """Train on every response variant and write model + tokenizer + generator.json + report.json +
    curves.png to ``out_dir``; ``held_out`` first trains and scores up to ``held_out_folds`` models, each
    without one variant per act (see the module docstring; each fold costs one more training)."""
    import torch

    cfg = config or GeneratorConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(max(1, cfg.threads))
    try:
        return _train(templates, out, cfg, progress, evaluate, held_out, held_out_folds)
    finally:
        torch.set_num_threads(threads_before)


@dataclass
class _Fit:
    model: Any
    tokenizer: Any
    losses: list[float]
    lrs: list[float]
    longest: int


def _fit(
    pairs: list[Pair], placeholders: set[str], languages: list[str], cfg: GeneratorConfig, progress: bool, desc: str
) -> _Fit:
    """Tokenizer trained on ``pairs``' texts, then the model (``cfg.n_positions`` grows to fit the longest)."""
    import torch
    from tqdm import tqdm

    from runtime.tokenizer import build_tokenizer

    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    tokenizer = build_tokenizer(
        [p.prompt for p in pairs] + [p.target for p in pairs],
        placeholders,
        languages,
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.bpe_min_frequency,
    )
    rows = _encode(tokenizer, pairs)
    longest = max(len(p) + len(t) for p, t in rows)
    if longest > cfg.n_positions:
        cfg.n_positions = int(2 ** math.ceil(math.log2(longest + 32)))
    model = build_model(cfg, tokenizer)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optim = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )

    def lr_at(step: int) -> float:
        if step < cfg.warmup_steps:
            return cfg.lr * (step + 1) / cfg.warmup_steps
        frac = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))

    rng = random.Random(cfg.seed)
    order: list[int] = []
    losses: list[float] = []
    lrs: list[float] = []
    bar = tqdm(range(cfg.steps), desc=desc, disable=not progress, unit="step")
    for step in bar:
        if len(order) < cfg.batch_size:
            perm = list(range(len(rows)))
            rng.shuffle(perm)
            order.extend(perm)
        idx, order = order[: cfg.batch_size], order[cfg.batch_size :]
        ids, mask, labels = _batch([rows[i] for i in idx], tokenizer.pad_token_id)
        lr = lr_at(step)
        for g in optim.param_groups:
            g["lr"] = lr
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        losses.append(float(loss.item()))
        lrs.append(lr)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
    bar.close()
    model.eval()
    return _Fit(model, tokenizer, losses, lrs, longest)


def _train(
    templates: Templates,
    out: Path,
    cfg: GeneratorConfig,
    progress: bool,
    evaluate: bool,
    held_out: bool,
    held_out_folds: int,
) -> TrainResult:
    import torch

    from runtime.tokenizer import TOKENIZER_KIND

    t0 = time.perf_counter()
    pairs = training_pairs(templates)
    placeholders = {p for v in templates.all_variants() for p in v.placeholders}
    languages = templates.languages()
    held_scores: dict[str, Any] | None = None
    if held_out:
        folds = []
        for fold in range(max(1, held_out_folds)):
            train_part, held = split_held_out(pairs, fold)
            if not held:
                break
            fit = _fit(
                train_part,
                placeholders,
                languages,
                GeneratorConfig.from_dict(cfg.to_dict()),
                progress,
                f"train generator (held-out fold {fold + 1})",
            )
            folds.append((fit.model, fit.tokenizer, held))
        held_scores = (
            evaluate_held_out(folds) if folds else {"skipped": "no act has two or more variants to hold one out"}
        )
        del folds
    t1 = time.perf_counter()
    fit = _fit(pairs, placeholders, languages, cfg, progress, "train generator")
    model, tokenizer, losses = fit.model, fit.tokenizer, fit.losses
    train_seconds = time.perf_counter() - t1

    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    write_generator_meta(out, cfg, TOKENIZER_KIND)
    scores = greedy_eval(model, tokenizer, pairs) if evaluate else None
    exact = scores["variant_match"] if scores else float("nan")
    tail = losses[-20:]
    final_loss = sum(tail) / len(tail)
    tokens = {
        lang: round(sum(len(tokenizer(p.target, add_special_tokens=False)["input_ids"]) + 1 for p in sel) / len(sel), 2)
        for lang in languages
        if (sel := [p for p in pairs if p.language == lang])
    }
    report = {
        "task": "embedded generator: dialogue act -> delexicalised reply (SC-GPT style)",
        "final_train_loss": final_loss,
        "final_train_loss_note": "mean cross-entropy (nats/token) over the last 20 steps, reply tokens only",
        "train_variant_match": scores["variant_match"] if scores else None,
        "train_slot_valid": scores["slot_valid"] if scores else None,
        "train_eval_note": "greedy reply per distinct act prompt: equals one of its variants / passes the slot check",
        "held_out": held_scores,
        "held_out_note": "leave-one-variant-out: per fold a model trained without one variant of each act, "
        "scored on those variants (pooled over the folds): corpus BLEU-4 (English words, Chinese characters) "
        "and slot error rate (missing + redundant) / slots"
        if held_out
        else "not run (kefu runtime train --held-out)",
        "pairs": len(pairs),
        "keys": len(templates.keys()),
        "languages": languages,
        "tokenizer": TOKENIZER_KIND,
        "vocab_size": len(tokenizer),
        "reply_tokens_mean": tokens,
        "reply_tokens_note": "tokens per delexicalised training reply, end-of-sequence included (= decode steps)",
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "max_sequence_tokens": fit.longest,
        "config": cfg.to_dict(),
        "train_seconds": round(train_seconds, 2),
        "held_out_seconds": round(t1 - t0, 2) if held_out else None,
        "total_seconds": round(time.perf_counter() - t0, 2),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "loss_curve": losses,
    }
    (out / REPORT_NAME).write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    _plot(out, losses, fit.lrs)
    return TrainResult(out, final_loss, exact, round(time.perf_counter() - t0, 2), report)
