"""Train the embedded generator (dialogue act + slot names -> delexicalised reply) on a domain's responses."""

from __future__ import annotations

import json
import math
import platform
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.model import GeneratorConfig, build_model, build_prompt
from runtime.templates import Templates, delexicalise

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


def greedy_eval(model: Any, tokenizer: Any, pairs: list[Pair], max_new_tokens: int = 200) -> dict[str, float]:
    """Greedy decoding of every distinct prompt (batched, left padded), scored against its variants.

    ``variant_match``: the reply equals one of the prompt's delexicalised variants; ``slot_valid``: the
    reply passes :func:`runtime.nlg.check_slots` for the prompt's slots (so the model would be used).
    """
    import torch

    from runtime.nlg import check_slots
    from runtime.templates import DELEX_RE

    targets: dict[str, set[str]] = {}
    slots: dict[str, tuple[str, ...]] = {}
    for p in pairs:
        targets.setdefault(p.prompt, set()).add(p.target)
        slots[p.prompt] = tuple(dict.fromkeys(m.group(1) for m in DELEX_RE.finditer(p.target)))
    prompts = list(targets)
    if not prompts:
        return {"variant_match": 0.0, "slot_valid": 0.0, "prompts": 0}
    match = valid = 0
    model.eval()
    tokenizer.padding_side = "left"
    limit = getattr(model.config, "n_positions", 256)
    for start in range(0, len(prompts), 32):
        chunk = prompts[start : start + 32]
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
            text = tokenizer.decode(row, skip_special_tokens=True)
            match += int(text in targets[prompt])
            valid += int(not check_slots(text, slots[prompt]))
    return {"variant_match": match / len(prompts), "slot_valid": valid / len(prompts), "prompts": len(prompts)}


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
) -> TrainResult:
    """Train on every response variant and write model + tokenizer + report.json + curves.png to ``out_dir``."""
    import torch

    cfg = config or GeneratorConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(max(1, cfg.threads))
    try:
        return _train(templates, out, cfg, progress, evaluate)
    finally:
        torch.set_num_threads(threads_before)


def _train(templates: Templates, out: Path, cfg: GeneratorConfig, progress: bool, evaluate: bool) -> TrainResult:
    import torch
    from tqdm import tqdm

    from runtime.tokenizer import build_tokenizer

    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()

    pairs = training_pairs(templates)
    placeholders = {p for v in templates.all_variants() for p in v.placeholders}
    tokenizer = build_tokenizer(
        [p.prompt for p in pairs] + [p.target for p in pairs], placeholders, templates.languages()
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
    bar = tqdm(range(cfg.steps), desc="train generator", disable=not progress, unit="step")
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
    train_seconds = time.perf_counter() - t0

    model.eval()
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    scores = greedy_eval(model, tokenizer, pairs) if evaluate else None
    exact = scores["variant_match"] if scores else float("nan")
    tail = losses[-20:]
    final_loss = sum(tail) / len(tail)
    report = {
        "task": "embedded generator: dialogue act -> delexicalised reply (SC-GPT style)",
        "final_train_loss": final_loss,
        "final_train_loss_note": "mean cross-entropy (nats/token) over the last 20 steps, reply tokens only",
        "train_variant_match": scores["variant_match"] if scores else None,
        "train_slot_valid": scores["slot_valid"] if scores else None,
        "train_eval_note": "greedy reply per distinct act prompt: equals one of its variants / passes the slot check",
        "held_out": None,
        "held_out_note": "no held-out variants yet: trained on every variant",
        "pairs": len(pairs),
        "keys": len(templates.keys()),
        "languages": templates.languages(),
        "vocab_size": len(tokenizer),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "max_sequence_tokens": longest,
        "config": cfg.to_dict(),
        "train_seconds": round(train_seconds, 2),
        "total_seconds": round(time.perf_counter() - t0, 2),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "loss_curve": losses,
    }
    (out / REPORT_NAME).write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    _plot(out, losses, lrs)
    return TrainResult(out, final_loss, exact, round(time.perf_counter() - t0, 2), report)
