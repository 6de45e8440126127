"""Training loop: length-bucketed batches, Adam, joint loss, early stopping on dev, temperature calibration.

Writes ``config.json``, ``vocab.json``, ``model.safetensors``, ``report.json`` and ``curves.png`` to ``out_dir``.
Seeded and deterministic on CPU (same data + seed + thread count -> same weights).
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from nlu.data import Example
from nlu.errors import TrainingError
from nlu.evaluate import score
from nlu.model import UNK, JointBiLSTMCRF, NLUConfig, Vocab, collate, encode, featurise, normalise_word
from nlu.predict import NLUModel


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 0  # 0 = auto: 16 below 5,000 training examples (more updates on small bot data), else 32
    lr: float = 2e-3
    patience: int = 4  # epochs without dev improvement before stopping
    seed: int = 0
    clip: float = 5.0
    singleton_unk: float = 0.3  # probability of replacing a word seen once in train by UNK
    dev_fraction: float = 0.1  # held out from train (stratified by intent) when no dev set is given
    threads: int = 1  # torch threads (small matrices: 1 is fastest on a busy 2-core box; 0 = all cores)
    max_minutes: float = 0.0  # stop after this much training time (0 = no limit)
    oos_tolerance: float = 0.01  # dev in-scope accuracy the out-of-scope threshold may cost (see fit_oos_threshold)
    progress: bool = True


def split_dev(examples: Sequence[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Stratified (per intent) seeded hold-out; intents with fewer than 2 examples stay entirely in train."""
    rng = random.Random(seed)
    by_intent: dict[str, list[int]] = defaultdict(list)
    for i, ex in enumerate(examples):
        by_intent[ex.intent].append(i)
    dev_idx: set[int] = set()
    for idx in by_intent.values():
        if len(idx) >= 2:
            dev_idx.update(rng.sample(idx, max(1, round(len(idx) * fraction))))
    return ([ex for i, ex in enumerate(examples) if i not in dev_idx],
            [ex for i, ex in enumerate(examples) if i in dev_idx])


def learn_synonyms(examples: Sequence[Example]) -> dict[str, str]:
    """Entity surface text (lower-cased) -> normalised value, where the annotation gave a different value."""
    syn: dict[str, str] = {}
    for ex in examples:
        for e in ex.entities:
            surface = ex.text[e.start : e.end]
            if surface.lower() != e.value.lower():
                syn[surface.lower()] = e.value
    return syn


def make_batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Bucket by length (random tie-break) so batches have little padding; batch order shuffled."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random()))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Temperature T minimising the NLL of softmax(logits / T) (Guo et al. 2017)."""
    if len(labels) == 0:
        return 1.0
    log_t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=100)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))


def calibration(logits: torch.Tensor, labels: torch.Tensor, temperature: float, bins: int = 10) -> dict[str, float]:
    """Negative log-likelihood and expected calibration error at ``temperature``."""
    if len(labels) == 0:
        return {"nll": 0.0, "ece": 0.0}
    probs = torch.softmax(logits / temperature, -1)
    conf, pred = probs.max(-1)
    correct = (pred == labels).float()
    ece = 0.0
    for b in range(bins):
        sel = (conf > b / bins) & (conf <= (b + 1) / bins)
        if sel.any():
            ece += float(sel.float().mean() * (conf[sel].mean() - correct[sel].mean()).abs())
    return {"nll": float(F.cross_entropy(logits / temperature, labels)), "ece": ece}


def fit_oos_threshold(model: NLUModel, probs: torch.Tensor, labels: torch.Tensor, tolerance: float = 0.01
                      ) -> dict[str, float]:
    """Choose (and set) ``model.oos_threshold`` on dev: the largest threshold on a 0.01 grid whose in-scope accuracy
    stays within ``tolerance`` of the plain argmax's, i.e. the best out-of-scope recall that costs at most that much
    in-scope accuracy. Left at 0 (argmax only) when the model has no out-of-scope intent or dev has no example of it
    or no in-scope example. Returns the dev figures before/after."""
    oos = model.oos_label
    model.oos_threshold = 0.0
    if oos is None:
        return {}
    is_oos = labels == model.vocab.intent_id[oos]
    if not bool(is_oos.any()) or bool(is_oos.all()):
        return {}

    def figures(t: float) -> tuple[float, float]:
        pred = model.decide(probs, t)
        in_acc = float((pred[~is_oos] == labels[~is_oos]).float().mean())
        return in_acc, float((pred[is_oos] == labels[is_oos]).float().mean())

    before = figures(0.0)
    best_t = 0.0
    for k in range(1, 100):  # in-scope accuracy can only fall as the threshold rises
        if figures(k / 100)[0] < before[0] - tolerance - 1e-9:
            break
        best_t = k / 100
    model.oos_threshold = best_t
    after = figures(best_t)
    return {"threshold": best_t, "tolerance": tolerance, "dev_in_scope_accuracy_argmax": before[0],
            "dev_oos_recall_argmax": before[1], "dev_in_scope_accuracy": after[0], "dev_oos_recall": after[1]}


def calibrate_oos(model: NLUModel, dev: Sequence[Example], tolerance: float = 0.01) -> dict[str, float]:
    """Re-choose ``model.oos_threshold`` (see :func:`fit_oos_threshold`) on the examples ``dev``."""
    known = [ex for ex in dev if ex.intent in model.vocab.intent_id]
    probs, _ = model.predict_tokens([ex.tokens for ex in known])
    labels = torch.tensor([model.vocab.intent_id[ex.intent] for ex in known], dtype=torch.long)
    return fit_oos_threshold(model, probs, labels, tolerance)


def train(
    examples: Sequence[Example],
    out_dir: str | Path,
    dev: Sequence[Example] | None = None,
    config: NLUConfig | None = None,
    train_config: TrainConfig | None = None,
    data_files: Sequence[str] = (),
    synonyms: dict[str, str] | None = None,
) -> NLUModel:
    """Train a joint model on ``examples`` (early-stopped on ``dev`` or a held-out split) and save it to ``out_dir``.

    ``synonyms`` (lower-cased variant -> canonical value, e.g. from Rasa ``synonym:`` blocks) is stored with the
    model together with the synonyms implied by the examples' entity values, and applied to parsed entities."""
    tc = train_config or TrainConfig()
    if not examples:
        raise TrainingError("no training examples")
    if len({ex.intent for ex in examples}) < 2:
        raise TrainingError("need at least two intents to train an intent classifier")
    prev_threads, prev_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(tc.threads or os.cpu_count() or 1)
    torch.use_deterministic_algorithms(True)
    try:
        return _train(list(examples), Path(out_dir), list(dev) if dev is not None else None, config, tc, data_files,
                      synonyms or {})
    finally:
        torch.set_num_threads(prev_threads)
        torch.use_deterministic_algorithms(prev_det)


def _train(examples: list[Example], out: Path, dev: list[Example] | None, config: NLUConfig | None,
           tc: TrainConfig, data_files: Sequence[str], synonyms: dict[str, str]) -> NLUModel:
    random.seed(tc.seed)
    torch.manual_seed(tc.seed)
    rng = random.Random(tc.seed)
    dev_source = "dev file"
    if dev is None:
        examples, dev = split_dev(examples, tc.dev_fraction, tc.seed)
        dev_source = f"held-out {tc.dev_fraction:.0%} of train"
    base = config or NLUConfig()
    vocab = Vocab.build([ex.tokens for ex in examples], [ex.tags for ex in examples], [ex.intent for ex in examples],
                        {**synonyms, **learn_synonyms(examples)}, pretrained=base.pretrained)
    cfg = replace(base, n_words=len(vocab.words), n_chars=len(vocab.chars),
                  n_tags=len(vocab.tags), n_intents=len(vocab.intents))
    net = JointBiLSTMCRF(cfg)
    net.crf.set_bio_constraints(vocab.tags)
    model = NLUModel(net, vocab)
    counts = Counter(normalise_word(t) for ex in examples for t in ex.tokens)
    singleton = torch.zeros(len(vocab.words), dtype=torch.bool)
    singleton[[vocab.word_id[w] for w, c in counts.items() if c == 1]] = True

    feats = [featurise(vocab, ex.tokens) for ex in examples]
    for f, ex in zip(feats, examples):
        f["tags"] = torch.tensor([vocab.tag_id.get(t, 0) for t in ex.tags] or [0], dtype=torch.long)
    batch_size = tc.batch_size or (16 if len(examples) < 5000 else 32)
    opt = torch.optim.Adam(net.parameters(), lr=tc.lr)
    history: list[dict[str, float]] = []
    best_score, best_epoch, best_state, best_dev = -math.inf, 0, copy.deepcopy(net.state_dict()), {}
    dev_has_slots = any(t != "O" for ex in dev for t in ex.tags)
    t_start = time.perf_counter()

    def out_of_time() -> bool:  # the time budget is checked after every batch (a partial epoch still counts)
        return bool(tc.max_minutes) and time.perf_counter() - t_start > tc.max_minutes * 60

    for epoch in range(1, tc.epochs + 1):
        net.train()
        t_epoch = time.perf_counter()
        sums = {"slot_loss": 0.0, "intent_loss": 0.0}
        seen = 0
        batches = make_batches([len(ex.tokens) for ex in examples], batch_size, rng)
        bar = tqdm(batches, desc=f"epoch {epoch}/{tc.epochs}", disable=not tc.progress, leave=False, unit="batch")
        for idx in bar:
            batch = collate([feats[i] for i in idx])
            words = batch["words"]
            drop = singleton[words] & (torch.rand(words.shape) < tc.singleton_unk)
            batch["words"] = words.masked_fill(drop, vocab.word_id[UNK])
            batch["tags"] = torch.nn.utils.rnn.pad_sequence([feats[i]["tags"] for i in idx], batch_first=True)
            batch["intents"] = torch.tensor([vocab.intent_id[examples[i].intent] for i in idx])
            slot_loss, intent_loss = net.loss(batch)
            opt.zero_grad()
            (slot_loss + intent_loss).backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), tc.clip)
            opt.step()
            sums["slot_loss"] += slot_loss.item() * len(idx)
            sums["intent_loss"] += intent_loss.item() * len(idx)
            bar.set_postfix(loss=f"{slot_loss.item() + intent_loss.item():.3f}")
            seen += len(idx)
            if out_of_time():
                break
        net.eval()
        probs, pred_tags = model.predict_tokens([ex.tokens for ex in dev])
        pred_intents = [vocab.intents[i] for i in probs.argmax(-1).tolist()]
        dev_metrics = score([ex.intent for ex in dev], pred_intents, [ex.tags for ex in dev], pred_tags)
        row = {"epoch": epoch, "slot_loss": sums["slot_loss"] / max(seen, 1),
               "intent_loss": sums["intent_loss"] / max(seen, 1), "fraction": seen / len(examples),
               "dev_intent_accuracy": dev_metrics["intent_accuracy"], "dev_slot_f1": dev_metrics["slot_f1"],
               "dev_sentence_accuracy": dev_metrics["sentence_accuracy"],
               "seconds": time.perf_counter() - t_epoch}
        row["loss"] = row["slot_loss"] + row["intent_loss"]
        history.append(row)
        current = (dev_metrics["intent_accuracy"] + dev_metrics["slot_f1"]) / 2 if dev_has_slots \
            else dev_metrics["intent_accuracy"]
        improved = current > best_score or not dev  # without any dev example: keep the latest epoch
        if improved:
            best_score, best_epoch, best_dev = current, epoch, dev_metrics
            best_state = copy.deepcopy(net.state_dict())
        if tc.progress:
            tqdm.write(f"epoch {epoch}: loss {row['loss']:.4f}  dev intent acc {row['dev_intent_accuracy']:.4f}  "
                       f"slot F1 {row['dev_slot_f1']:.4f}  ({row['seconds']:.1f}s){'  *' if improved else ''}")
        if epoch - best_epoch >= tc.patience:
            break
        if out_of_time():
            break
    train_seconds = time.perf_counter() - t_start
    net.load_state_dict(best_state)
    net.eval()

    # temperature scaling on dev logits (examples whose intent the model knows)
    known = [ex for ex in dev if ex.intent in vocab.intent_id]
    with torch.inference_mode():
        logits = torch.cat([net.predict(encode(vocab, [ex.tokens for ex in known[i : i + 256]]))[0]
                            for i in range(0, len(known), 256)]) if known else torch.zeros(0, len(vocab.intents))
    labels = torch.tensor([vocab.intent_id[ex.intent] for ex in known], dtype=torch.long)
    logits = logits.clone()  # a normal tensor (inference-mode tensors cannot enter autograd)
    model.temperature = fit_temperature(logits, labels)
    oos_report = fit_oos_threshold(model, torch.softmax(logits / model.temperature, -1), labels,
                                   tc.oos_tolerance)
    model.save(out)
    report = {
        "data": list(data_files), "n_train": len(examples), "n_dev": len(dev), "dev_source": dev_source,
        "intents": vocab.intents, "n_tags": len(vocab.tags), "n_words": len(vocab.words),
        "epochs_run": len(history), "best_epoch": best_epoch, "train_seconds": round(train_seconds, 1),
        "dev": best_dev, "temperature": model.temperature,
        "calibration_before": calibration(logits, labels, 1.0),
        "calibration_after": calibration(logits, labels, model.temperature),
        "oos_threshold": model.oos_threshold, "oos_calibration": oos_report,
        "history": history, "config": asdict(cfg), "train_config": asdict(tc), "batch_size": batch_size,
        "threads": torch.get_num_threads(),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    plot_curves(history, out / "curves.png")
    return model


def plot_curves(history: Sequence[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [h["loss"] for h in history], label="total")
    ax1.plot(epochs, [h["slot_loss"] for h in history], label="slot (CRF NLL)")
    ax1.plot(epochs, [h["intent_loss"] for h in history], label="intent (CE)")
    ax1.set(xlabel="epoch", ylabel="train loss", title="training loss")
    ax1.legend()
    ax2.plot(epochs, [h["dev_intent_accuracy"] for h in history], marker="o", label="intent accuracy")
    ax2.plot(epochs, [h["dev_slot_f1"] for h in history], marker="o", label="slot F1")
    ax2.set(xlabel="epoch", ylabel="dev score", title="dev metrics")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
