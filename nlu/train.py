"""Training loop: training-time augmentation of small data (nlu.augment), length-bucketed batches, Adam with warm-up +
linear decay, joint loss, early stopping on dev, temperature calibration, out-of-scope threshold; optionally K members
with different seeds saved as one ensemble.

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

from nlu.augment import Augmenter
from nlu.data import Example
from nlu.errors import TrainingError
from nlu.evaluate import score
from nlu.model import (
    UNK,
    Ensemble,
    JointBiLSTMCRF,
    NLUConfig,
    Vocab,
    collate,
    encode,
    featurise,
    is_cjk_char,
    normalise_word,
)
from nlu.patterns import Pattern
from nlu.predict import NLUModel
from nlu.pretrained import load_table
from nlu.prior import NgramPrior
from nlu.sentence import SentenceHead
from nlu.wordvec import shared_word_vectors


@dataclass
class TrainConfig:
    epochs: int = 0  # the learning-rate schedule spans this many (early stopping may end sooner); 0 = auto_epochs
    batch_size: int = 0  # 0 = auto: see auto_batch_size
    lr: float = 2e-3
    schedule: str = "linear"  # "linear": warm-up, then linear decay to 0 at the last epoch; "constant"
    warmup: float = 0.05  # fraction of all steps spent warming the learning rate up from 0 ("linear" only)
    patience: int = 4  # epochs without dev improvement before stopping
    seed: int = 0
    clip: float = 5.0
    singleton_unk: float = 0.3  # probability of replacing a word seen once in train by UNK
    label_smoothing: float = 0.0  # intent cross-entropy label smoothing
    ensemble: int = 2  # members trained with seeds seed, seed+1, ... and averaged at parse time (see README figures)
    dev_fraction: float = 0.1  # held out from train (stratified by intent) when no dev set is given
    threads: int = 1  # torch threads (small matrices: 1 is fastest on a busy 2-core box; 0 = all cores)
    workers: int = 1  # ensemble members trained at once, each in its own process (0 = one per core, at most K)
    max_minutes: float = 0.0  # stop after this much training time, all members together (0 = no limit)
    oos_tolerance: float = 0.01  # dev in-scope accuracy the out-of-scope threshold may cost (see fit_oos_threshold)
    prior: bool = True  # fit the n-gram sentence prior (nlu.prior) and add it where it helps on dev
    augment: float = 1.0  # augmented examples per training example (nlu.augment; 0 = off), made after the dev split
    augment_max: int = 5000  # no augmentation above this many training examples (public datasets need none)
    refit: bool = False  # after early stopping on a held-out split, train again on train + dev (see _refit_epochs)
    fit_oos: bool = True  # choose an out-of-scope threshold on dev (False: `out_of_scope` is an intent like any other)
    sentence: bool = False  # add the sentence head (nlu.sentence: the frozen encoder's meaning), weighted on dev
    # its weight; negative: chosen on dev as the n-gram prior's. 2.0: on 25 clinc150 intents x 12 examples (a small
    # bot), test accuracy 0.924 -> 0.971 and 0.957 -> 0.976 (two samples, benchmarks/nlu_small_data.py; 4.0 is a hair
    # better still, 0.5 clearly worse), while a tiny dev set prefers 0 (its examples are near copies of training ones)
    sentence_weight: float = 2.0
    progress: bool = True


def auto_batch_size(n_examples: int) -> int:
    """16 below 5,000 training examples (more updates for small bot data), 32 below 10,000, else 64: on large data
    a bigger batch costs no accuracy and a step's fixed costs (optimizer, CRF recursion) are shared by more examples."""
    return 16 if n_examples < 5000 else 32 if n_examples < 10000 else 64


def auto_epochs(n_examples: int) -> int:
    """20 epochs, more for small data (about 150,000 examples seen, at most 40). On the three dev sets 20 epochs of the
    linear schedule did at least as well as 10 (cais: +0.8 intent accuracy, +1.5 slot F1), and small bot data needs
    many passes; early stopping usually ends large datasets a few epochs sooner."""
    return min(40, max(20, round(150_000 / max(n_examples, 1))))


def lr_factor(step: int, total: int, tc: TrainConfig) -> float:
    """Learning-rate multiplier at optimizer step ``step`` (0-based) of ``total``."""
    if tc.schedule == "constant" or total <= 0:
        return 1.0
    warm = max(1, round(tc.warmup * total))
    if step < warm:
        return (step + 1) / warm
    return max(0.0, (total - step) / max(1, total - warm))


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
    probs, _ = model.predict_tokens([ex.tokens for ex in known], texts=[ex.text for ex in known])
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
    patterns: Sequence[Pattern] = (),
) -> NLUModel:
    """Train a joint model on ``examples`` (early-stopped on ``dev`` or a held-out split) and save it to ``out_dir``.

    ``synonyms`` (lower-cased variant -> canonical value, e.g. from Rasa ``synonym:`` blocks) is stored with the
    model together with the synonyms implied by the examples' entity values, and applied to parsed entities.
    ``patterns`` (Rasa ``lookup:`` / ``regex:`` blocks) become one token feature each (see nlu.patterns)."""
    tc = train_config or TrainConfig()
    if not examples:
        raise TrainingError("no training examples")
    if len({ex.intent for ex in examples}) < 2:
        raise TrainingError("need at least two intents to train an intent classifier")
    if tc.ensemble < 1:
        raise TrainingError("ensemble must be at least 1")
    if tc.schedule not in ("linear", "constant"):
        raise TrainingError(f"unknown learning-rate schedule {tc.schedule!r} (linear or constant)")
    prev_threads, prev_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(tc.threads or os.cpu_count() or 1)
    torch.use_deterministic_algorithms(True)
    try:
        return _train(list(examples), Path(out_dir), list(dev) if dev is not None else None, config, tc, data_files,
                      synonyms or {}, list(patterns))
    finally:
        torch.set_num_threads(prev_threads)
        torch.use_deterministic_algorithms(prev_det)


def _refit_epochs(member: dict[str, object], has_slots: bool, epochs: int) -> int:
    """How long a refit trains: the last epoch that scored as well on dev as the best one (a small dev set ties
    often, and its first perfect epoch is no sign the model has learned enough), and at least half the schedule."""
    history = member["history"]
    assert isinstance(history, list)
    scores = [_dev_score({"intent_accuracy": row["dev_intent_accuracy"], "slot_f1": row["dev_slot_f1"]}, has_slots)
              for row in history]
    best = max(scores, default=0.0)
    last_tie = max((i + 1 for i, s in enumerate(scores) if s >= best - 1e-9), default=1)
    return max(last_tie, epochs // 2, 1)


def _dev_score(metrics: dict[str, float], has_slots: bool) -> float:
    """What early stopping maximises: mean of intent accuracy and slot F1 (intent accuracy alone without slots)."""
    return (metrics["intent_accuracy"] + metrics["slot_f1"]) / 2 if has_slots else metrics["intent_accuracy"]


def _dev_metrics(model: NLUModel, dev: Sequence[Example]) -> dict[str, float]:
    probs, pred_tags = model.predict_tokens([ex.tokens for ex in dev], texts=[ex.text for ex in dev])
    pred_intents = [model.vocab.intents[i] for i in probs.argmax(-1).tolist()]
    return score([ex.intent for ex in dev], pred_intents, [ex.tags for ex in dev], pred_tags)


@dataclass
class _MemberJob:
    """Everything one ensemble member's training needs; picklable, so a worker process can run it."""

    cfg: NLUConfig
    vocab: Vocab
    examples: list[Example]
    feats: list[dict[str, torch.Tensor]] | None  # None: featurise in the worker (see __getstate__)
    dev: list[Example]
    tc: TrainConfig
    seed: int
    batch_size: int
    singleton: torch.Tensor
    budget_s: float
    name: str
    bars: bool

    def __getstate__(self) -> dict[str, object]:
        """What goes to a worker: no features (tens of thousands of small tensors, each shared through a file
        descriptor by torch's pickler; featurising again takes seconds) and a vocabulary without its caches (the
        word-piece table alone is 47 MB; the worker reloads the table it names)."""
        state = dict(self.__dict__)
        v = self.vocab
        state["vocab"] = Vocab(words=v.words, chars=v.chars, tags=v.tags, intents=v.intents, synonyms=v.synonyms,
                               pretrained=v.pretrained, patterns=v.patterns, bigrams=v.bigrams)
        state["feats"] = None
        return state


def _run_jobs(jobs: list[_MemberJob], workers: int) -> list[tuple[dict[str, torch.Tensor], dict[str, object]]]:
    """Train the members, ``workers`` at a time in worker processes (one: in this process)."""
    if workers <= 1:
        return [_member_job(job) for job in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn: a fresh interpreter per worker (forking a process whose OpenMP threads ran is not safe); like any
    # spawn, a script calling train() with workers > 1 needs an `if __name__ == "__main__":` guard
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(_member_job, jobs))


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the ensemble's worker processes)."""
    try:
        import resource
    except ImportError:  # not on Unix: this process only
        return time.process_time()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def featurise_examples(vocab: Vocab, examples: Sequence[Example]) -> list[dict[str, torch.Tensor]]:
    """Training features of each example (``featurise``) with its gold tag ids."""
    feats = [featurise(vocab, ex.tokens, ex.text) for ex in examples]
    for f, ex in zip(feats, examples):
        f["tags"] = torch.tensor([vocab.tag_id.get(t, 0) for t in ex.tags] or [0], dtype=torch.long)
    return feats


def _member_job(job: _MemberJob) -> tuple[dict[str, torch.Tensor], dict[str, object]]:
    """Build and train one ensemble member (in this process or a worker); returns its weights and report."""
    torch.set_num_threads(job.tc.threads or os.cpu_count() or 1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(job.seed)
    net = JointBiLSTMCRF(job.cfg)
    net.crf.set_bio_constraints(job.vocab.tags)
    feats = job.feats if job.feats is not None else featurise_examples(job.vocab, job.examples)
    report = _fit_member(net, job.vocab, job.examples, feats, job.dev, job.tc, job.seed, job.batch_size,
                         job.singleton, job.budget_s, job.name, job.bars)
    return {k: v.detach().clone() for k, v in net.state_dict().items()}, report


def _fit_member(net: JointBiLSTMCRF, vocab: Vocab, examples: list[Example], feats: list[dict[str, torch.Tensor]],
                dev: list[Example], tc: TrainConfig, seed: int, batch_size: int, singleton: torch.Tensor,
                budget_s: float, name: str, bars: bool = True) -> dict[str, object]:
    """Train one network in place (left at its best dev epoch); returns its history and dev figures. ``bars``:
    per-batch progress bars (off in worker processes, whose bars would overwrite each other; epochs still print)."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = NLUModel(net, vocab)
    # fused: one vectorised pass over all parameters (the per-tensor loop was ~15% of a step on CPU)
    opt = torch.optim.Adam(net.parameters(), lr=tc.lr, fused=True)
    steps_per_epoch = math.ceil(len(examples) / batch_size)
    total_steps, step = tc.epochs * steps_per_epoch, 0
    history: list[dict[str, float]] = []
    best_score, best_epoch, best_state, best_dev = -math.inf, 0, copy.deepcopy(net.state_dict()), {}
    dev_has_slots = any(t != "O" for ex in dev for t in ex.tags)
    intent_ids = [vocab.intent_id[ex.intent] for ex in examples]
    t_start = time.perf_counter()

    def out_of_time() -> bool:  # the time budget is checked after every batch (a partial epoch still counts)
        return bool(budget_s) and time.perf_counter() - t_start > budget_s

    for epoch in range(1, tc.epochs + 1):
        net.train()
        t_epoch = time.perf_counter()
        sums = {"slot_loss": 0.0, "intent_loss": 0.0}
        seen = 0
        batches = make_batches([len(ex.tokens) for ex in examples], batch_size, rng)
        bar = tqdm(batches, desc=f"{name}epoch {epoch}/{tc.epochs}", disable=not (tc.progress and bars),
                   leave=False, unit="batch")
        for idx in bar:
            batch = collate([feats[i] for i in idx])
            words = batch["words"]
            drop = singleton[words] & (torch.rand(words.shape) < tc.singleton_unk)
            batch["words"] = words.masked_fill(drop, vocab.word_id[UNK])
            batch["tags"] = torch.nn.utils.rnn.pad_sequence([feats[i]["tags"] for i in idx], batch_first=True)
            batch["intents"] = torch.tensor([intent_ids[i] for i in idx])
            for group in opt.param_groups:
                group["lr"] = tc.lr * lr_factor(step, total_steps, tc)
            slot_loss, intent_loss = net.loss(batch, tc.label_smoothing)
            opt.zero_grad()
            (slot_loss + intent_loss).backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), tc.clip)
            opt.step()
            step += 1
            sums["slot_loss"] += slot_loss.item() * len(idx)
            sums["intent_loss"] += intent_loss.item() * len(idx)
            bar.set_postfix(loss=f"{slot_loss.item() + intent_loss.item():.3f}")
            seen += len(idx)
            if out_of_time():
                break
        net.eval()
        dev_metrics = _dev_metrics(model, dev)
        row = {"epoch": epoch, "slot_loss": sums["slot_loss"] / max(seen, 1),
               "intent_loss": sums["intent_loss"] / max(seen, 1), "fraction": seen / len(examples),
               "dev_intent_accuracy": dev_metrics["intent_accuracy"], "dev_slot_f1": dev_metrics["slot_f1"],
               "dev_sentence_accuracy": dev_metrics["sentence_accuracy"],
               "seconds": time.perf_counter() - t_epoch}
        row["loss"] = row["slot_loss"] + row["intent_loss"]
        history.append(row)
        current = _dev_score(dev_metrics, dev_has_slots)
        improved = current > best_score or not dev  # without any dev example: keep the latest epoch
        if improved:
            best_score, best_epoch, best_dev = current, epoch, dev_metrics
            best_state = copy.deepcopy(net.state_dict())
        if tc.progress:
            tqdm.write(f"{name}epoch {epoch}: loss {row['loss']:.4f}  dev intent acc {row['dev_intent_accuracy']:.4f}"
                       f"  slot F1 {row['dev_slot_f1']:.4f}  ({row['seconds']:.1f}s){'  *' if improved else ''}")
        if epoch - best_epoch >= tc.patience or out_of_time():
            break
    net.load_state_dict(best_state)
    net.eval()
    return {"seed": seed, "epochs_run": len(history), "best_epoch": best_epoch, "dev": best_dev,
            "train_seconds": round(time.perf_counter() - t_start, 1), "history": history}


def _train(examples: list[Example], out: Path, dev: list[Example] | None, config: NLUConfig | None,
           tc: TrainConfig, data_files: Sequence[str], synonyms: dict[str, str], patterns: list[Pattern]
           ) -> NLUModel:
    random.seed(tc.seed)
    torch.manual_seed(tc.seed)
    dev_source = "dev file"
    if dev is None:
        examples, dev = split_dev(examples, tc.dev_fraction, tc.seed)
        dev_source = f"held-out {tc.dev_fraction:.0%} of train"
    originals = examples
    augmenter: Augmenter | None = None
    if tc.augment > 0 and len(examples) <= tc.augment_max:
        augmenter = Augmenter(examples, tc.seed)
        examples = examples + augmenter.generate(round(tc.augment * len(examples)))
    base = config or NLUConfig()
    vocab = Vocab.build([ex.tokens for ex in examples], [ex.tags for ex in examples], [ex.intent for ex in examples],
                        {**synonyms, **learn_synonyms(examples)}, pretrained=base.pretrained, patterns=patterns,
                        bigrams=base.bigram_dim > 0)
    cfg = replace(base, n_words=len(vocab.words), n_chars=len(vocab.chars), n_tags=len(vocab.tags),
                  n_intents=len(vocab.intents), n_patterns=len(vocab.patterns), n_bigrams=len(vocab.bigrams))
    counts = Counter(normalise_word(t) for ex in examples for t in ex.tokens)
    singleton = torch.zeros(len(vocab.words), dtype=torch.bool)
    singleton[[vocab.word_id[w] for w, c in counts.items() if c == 1]] = True

    workers = min(tc.ensemble, tc.workers or os.cpu_count() or 1)
    feats = featurise_examples(vocab, examples) if workers == 1 else None
    batch_size = tc.batch_size or auto_batch_size(len(examples))
    tc = replace(tc, epochs=tc.epochs or auto_epochs(len(examples)))
    t_start, cpu_start = time.perf_counter(), _cpu_seconds()
    nets: list[JointBiLSTMCRF] = []
    members: list[dict[str, object]] = []
    jobs = [_MemberJob(cfg, vocab, examples, feats, dev, tc, tc.seed + k, batch_size, singleton,
                       tc.max_minutes * 60 / tc.ensemble * workers,
                       f"member {k + 1}/{tc.ensemble} " if tc.ensemble > 1 else "", workers == 1)
            for k in range(tc.ensemble)]
    done = _run_jobs(jobs, workers)
    for state, member in done:
        net = JointBiLSTMCRF(cfg)
        net.load_state_dict(state)
        nets.append(net.eval())
        members.append(member)
    model = NLUModel(nets[0] if len(nets) == 1 else Ensemble(nets), vocab)
    train_seconds, cpu_seconds = time.perf_counter() - t_start, _cpu_seconds() - cpu_start
    final_dev = _dev_metrics(model, dev) if len(nets) > 1 else members[0]["dev"]

    # temperature scaling on dev logits (examples whose intent the model knows); with augmentation, on dev and an
    # augmented copy of it as well: clean dev is nearly all right, so a temperature fitted on it alone leaves the
    # model as sure of a customer's unfamiliar wording as of its own examples (wrong intents at 0.9+)
    calib = list(dev) + (augmenter.generate(2 * len(dev), sources=dev, seed=tc.seed + 1) if augmenter else [])
    known = [ex for ex in calib if ex.intent in vocab.intent_id]
    with torch.inference_mode():
        logits = torch.cat([model.net.predict(encode(vocab, [ex.tokens for ex in known[i : i + 256]],
                                                     [ex.text for ex in known[i : i + 256]]))[0]
                            for i in range(0, len(known), 256)]) if known else torch.zeros(0, len(vocab.intents))
    labels = torch.tensor([vocab.intent_id[ex.intent] for ex in known], dtype=torch.long)
    logits = logits.clone()  # a normal tensor (inference-mode tensors cannot enter autograd)
    prior_report: dict[str, object] = {}
    if tc.prior and known:
        logits, prior_report = _attach_prior(model, examples, known, logits, labels, tc.seed)
        final_dev = _dev_metrics(model, dev)
    sentence_report: dict[str, object] = {}
    if tc.sentence and known:
        logits, sentence_report = _attach_sentence(model, examples, known, logits, labels, tc.seed,
                                                   tc.sentence_weight)
        final_dev = _dev_metrics(model, dev)
    model.temperature = fit_temperature(logits, labels)
    n_dev = sum(1 for ex in dev if ex.intent in vocab.intent_id)  # the OOS threshold is chosen on clean dev only
    oos_report = fit_oos_threshold(model, torch.softmax(logits[:n_dev] / model.temperature, -1), labels[:n_dev],
                                   tc.oos_tolerance) if tc.fit_oos else {}
    refit: dict[str, object] = {}
    if tc.refit and dev_source != "dev file" and dev:
        # Small bot data: the held-out examples ("yes", "no"...) are too precious to leave out of the model. Each
        # member trains again on train + dev for as many epochs as early stopping chose; the calibration fitted above
        # on the held-out model is kept (fitted on data the final weights saw, it would make them overconfident).
        full = examples + [ex for ex in dev if ex.intent in vocab.intent_id]
        feats_full = featurise_examples(vocab, full) if workers == 1 else None
        has_slots = any(t != "O" for ex in dev for t in ex.tags)
        refit_jobs = [replace(job, examples=full, feats=feats_full, dev=[], name=f"{job.name}refit ",
                              tc=replace(tc, epochs=_refit_epochs(m, has_slots, tc.epochs), patience=tc.epochs + 1))
                      for job, m in zip(jobs, members)]
        for net, (state, _) in zip(nets, _run_jobs(refit_jobs, workers)):
            net.load_state_dict(state)
        if model.sentence is not None:  # the head learns the held-out examples too
            model.sentence = _fit_sentence(model.vocab, full, tc.seed)
        refit = {"examples": len(full), "epochs": [job.tc.epochs for job in refit_jobs]}
    model.save(out)
    first = members[0]
    history = first["history"]
    assert isinstance(history, list)
    report = {
        "data": list(data_files), "n_train": len(originals), "n_dev": len(dev), "dev_source": dev_source,
        "n_augmented": len(examples) - len(originals), "n_calibration": len(known),
        "intents": vocab.intents, "n_tags": len(vocab.tags), "n_words": len(vocab.words),
        "patterns": [f"{p.kind}:{p.name}" for p in vocab.patterns],
        "epochs_run": first["epochs_run"], "best_epoch": first["best_epoch"], "train_seconds": round(train_seconds, 1),
        "train_cpu_seconds": round(cpu_seconds, 1), "dev": final_dev, "temperature": model.temperature,
        "calibration_before": calibration(logits, labels, 1.0),
        "calibration_after": calibration(logits, labels, model.temperature),
        "oos_threshold": model.oos_threshold, "oos_calibration": oos_report, "prior": prior_report, "sentence": sentence_report,
        "refit": refit,
        "history": history, "config": asdict(cfg), "train_config": asdict(tc), "batch_size": batch_size,
        "threads": torch.get_num_threads(),
    }
    if len(members) > 1:
        report["members"] = [{k: v for k, v in m.items() if k != "history"} for m in members]

    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    plot_curves(history, out / "curves.png")
    return model


PRIOR_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)


def _choose_weight(logits: torch.Tensor, extra: torch.Tensor, labels: torch.Tensor, weights: Sequence[float]
                   ) -> tuple[float, list[dict[str, float]]]:
    """The weight of ``extra`` logits added to the model's that does best on the calibration examples: the best
    accuracy, then the lowest NLL after temperature scaling; and every candidate's figures."""
    rows = []
    for w in weights:
        combined = logits + w * extra
        t = fit_temperature(combined, labels)
        acc = float((combined.argmax(-1) == labels).float().mean())
        rows.append({"weight": w, "accuracy": acc, "nll": calibration(combined, labels, t)["nll"]})
    best = max(rows, key=lambda r: (round(float(r["accuracy"]), 6), -float(r["nll"])))
    return float(best["weight"]), rows


def _attach_prior(model: NLUModel, examples: Sequence[Example], known: Sequence[Example], logits: torch.Tensor,
                  labels: torch.Tensor, seed: int) -> tuple[torch.Tensor, dict[str, object]]:
    """Fit the n-gram prior on the training examples and choose its weight on the calibration examples (dev and its
    augmented copy): the weight with the best accuracy, then the lowest NLL after temperature scaling; 0 (no prior)
    is a candidate. Sets ``model.prior``/``prior_weight``; returns the combined calibration logits and a report."""
    vocab = model.vocab
    t0 = time.perf_counter()
    chinese = any(is_cjk_char(t) for ex in examples for t in ex.tokens)  # the word vectors read Chinese only
    prior = NgramPrior.fit([ex.tokens for ex in examples], [vocab.intent_id[ex.intent] for ex in examples],
                           len(vocab.intents), seed, table=load_table(vocab.pretrained) if vocab.pretrained else None,
                           vectors=shared_word_vectors() if chinese else None)
    with torch.inference_mode():
        prior_logits = prior.logits([ex.tokens for ex in known]).clone()
    weight, rows = _choose_weight(logits, prior_logits, labels, PRIOR_WEIGHTS)
    model.prior, model.prior_weight = (prior, weight) if weight else (None, 0.0)
    return logits + weight * prior_logits, {"weight": weight, "candidates": rows,
                                            "seconds": round(time.perf_counter() - t0, 2)}


SENTENCE_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0)


def _fit_sentence(vocab: Vocab, examples: Sequence[Example], seed: int) -> SentenceHead:
    from nlu.encoder import shared_encoder

    known = [ex for ex in examples if ex.intent in vocab.intent_id]
    vectors = shared_encoder().encode([ex.text or " ".join(ex.tokens) for ex in known])
    labels = torch.tensor([vocab.intent_id[ex.intent] for ex in known], dtype=torch.long)
    return SentenceHead.fit(vectors, labels, len(vocab.intents), seed)


def _attach_sentence(model: NLUModel, examples: Sequence[Example], known: Sequence[Example], logits: torch.Tensor,
                     labels: torch.Tensor, seed: int, fixed: float = -1.0) -> tuple[torch.Tensor, dict[str, object]]:
    """Fit the sentence head on the training examples and choose its weight on the calibration examples, as the
    n-gram prior's (best accuracy, then lowest NLL after temperature scaling; 0 is a candidate)."""
    from nlu.encoder import shared_encoder

    t0 = time.perf_counter()
    head = _fit_sentence(model.vocab, examples, seed)
    with torch.inference_mode():
        head_logits = head.logits(shared_encoder().encode([ex.text or " ".join(ex.tokens) for ex in known])).clone()
    weight, rows = _choose_weight(logits, head_logits, labels, SENTENCE_WEIGHTS if fixed < 0 else (fixed,))
    model.sentence, model.sentence_weight = (head, weight) if weight else (None, 0.0)
    return logits + weight * head_logits, {"weight": weight, "candidates": rows,
                                           "seconds": round(time.perf_counter() - t0, 2)}


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
