"""Toxicity scoring of bot replies through detoxify's ``Detoxify`` class, from a local pickle-free model dir.

A trained model directory holds only ``model.safetensors``, the Hugging Face ``config.json``, tokenizer files
(``tokenizer.json`` / ``tokenizer_config.json`` / ``vocab.txt``) and ``toxicity.json`` (our config: classes,
threshold, languages, base model, ...). Detoxify wants a ``torch.load``-able checkpoint dict
(``{"config": {"arch": {"args": ...}, "dataset": {"args": {"classes": ...}}}, "state_dict": ...}``), so
:meth:`ToxicityClassifier.load` builds that dict in memory from the safetensors weights, serialises it into an
``io.BytesIO`` and passes the buffer as ``checkpoint=`` with ``huggingface_config_path=<dir>``; nothing
pickled ever touches the disk, and the only bytes unpickled are the ones we just produced. ``model_type`` is
the absolute path of the directory, so ``BertConfig.from_pretrained(model_type)`` and the tokenizer resolve
locally; the hub is never contacted (``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` are set, ``local_files_only``).

Scoring calls Detoxify's tokenizer and model directly (:meth:`ToxicityClassifier.score`), not ``Detoxify.predict``:
that one puts the whole model in eval mode on every call (a walk over every module, a sizeable share of a one-reply
check) and runs under ``no_grad``. The model is put in eval mode once at load, and a check runs under
``inference_mode``; the tokenizer call, the logits and the sigmoid are ``predict``'s, so the scores are the same.
"""

from __future__ import annotations

import io
import json
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safety.errors import ToxicityModelError
from safety.normalize import normalize
from safety.types import OutputVerdict, judge

CONFIG_NAME = "toxicity.json"
WEIGHTS_NAME = "model.safetensors"
HF_CONFIG_NAME = "config.json"
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")
DEFAULT_THRESHOLD = 0.5
SUPPORTED_MODELS = ("BertForSequenceClassification",)


def set_offline() -> None:
    """Make sure no Hugging Face code path tries the network."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@dataclass(frozen=True)
class ToxicityConfig:
    """Contents of ``toxicity.json``."""

    classes: tuple[str, ...] = ("toxicity",)
    threshold: float = DEFAULT_THRESHOLD
    languages: tuple[str, ...] = ("en",)
    base_model: str = ""
    model_name: str = "BertForSequenceClassification"
    tokenizer_name: str = "BertTokenizerFast"
    max_len: int = 128
    batch_size: int = 32

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": 1,
            "classes": list(self.classes),
            "threshold": self.threshold,
            "languages": list(self.languages),
            "base_model": self.base_model,
            "model_name": self.model_name,
            "tokenizer_name": self.tokenizer_name,
            "max_len": self.max_len,
            "batch_size": self.batch_size,
        }

    @classmethod
    def read(cls, path: Path) -> ToxicityConfig:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ToxicityModelError(path, "missing") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ToxicityModelError(path, f"unreadable JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise ToxicityModelError(path, "expected a JSON object")
        try:
            cfg = cls(
                classes=tuple(str(c) for c in raw.get("classes", ["toxicity"])),
                threshold=float(raw.get("threshold", DEFAULT_THRESHOLD)),
                languages=tuple(str(lang) for lang in raw.get("languages", ["en"])),
                base_model=str(raw.get("base_model", "")),
                model_name=str(raw.get("model_name", "BertForSequenceClassification")),
                tokenizer_name=str(raw.get("tokenizer_name", "BertTokenizerFast")),
                max_len=int(raw.get("max_len", 128)),
                batch_size=int(raw.get("batch_size", 32)),
            )
        except (TypeError, ValueError) as exc:
            raise ToxicityModelError(path, f"bad field: {exc}") from exc
        if not cfg.classes:
            raise ToxicityModelError(path, "no classes")
        if cfg.model_name not in SUPPORTED_MODELS:
            raise ToxicityModelError(path, f"unsupported model_name {cfg.model_name!r}")
        if not 0.0 <= cfg.threshold <= 1.0:
            raise ToxicityModelError(path, f"threshold {cfg.threshold} outside [0, 1]")
        return cfg


def build_checkpoint(model_dir: Path, cfg: ToxicityConfig, state_dict: dict[str, Any]) -> io.BytesIO:
    """The detoxify checkpoint dict for ``model_dir``, ``torch.save``-d into an in-memory buffer."""
    import torch

    checkpoint = {
        "config": {
            "arch": {
                "args": {
                    "model_type": str(model_dir.resolve()),
                    "model_name": cfg.model_name,
                    "tokenizer_name": cfg.tokenizer_name,
                    "num_classes": len(cfg.classes),
                }
            },
            "dataset": {"args": {"classes": list(cfg.classes)}},
        },
        "state_dict": state_dict,
    }
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    buffer.seek(0)
    return buffer


class ToxicityClassifier:
    """A Detoxify model loaded from a local directory; scores texts in [0, 1] (probability of toxicity)."""

    def __init__(self, detoxify: Any, config: ToxicityConfig, model_dir: Path, threshold: float) -> None:
        self._detoxify = detoxify
        # Eval mode once (dropout off), here rather than in every predict call; score() runs the model directly.
        detoxify.model.eval()
        self._class_index = list(detoxify.class_names).index(config.classes[0])
        self.config = config
        self.model_dir = model_dir
        self.threshold = threshold
        self.quantized = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ToxicityClassifier(model_dir={self.model_dir}, threshold={self.threshold})"

    @classmethod
    def load(
        cls, model_dir: str | Path, threshold: float | None = None, *, quantize: bool = False
    ) -> ToxicityClassifier:
        """Load a trained directory (see module doc). ``threshold`` defaults to ``toxicity.json``'s (0.5).

        ``quantize`` converts the Linear layers to dynamic int8 after loading (about 2x faster on CPU; scores
        move by a few hundredths: evaluate with the same setting you serve with).

        Raises :class:`~safety.errors.ToxicityModelError` naming the missing or corrupt file.
        """
        set_offline()
        root = Path(model_dir)
        if not root.is_dir():
            raise ToxicityModelError(root, "model directory does not exist")
        cfg = ToxicityConfig.read(root / CONFIG_NAME)
        hf_config = root / HF_CONFIG_NAME
        try:
            json.loads(hf_config.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ToxicityModelError(hf_config, "missing") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ToxicityModelError(hf_config, f"unreadable JSON: {exc}") from exc
        if not any((root / name).is_file() for name in TOKENIZER_FILES):
            raise ToxicityModelError(root / TOKENIZER_FILES[0], "missing tokenizer (tokenizer.json or vocab.txt)")
        weights = root / WEIGHTS_NAME
        if not weights.is_file():
            raise ToxicityModelError(weights, "missing")

        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state_dict = load_file(str(weights))
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise ToxicityModelError(weights, f"corrupt safetensors: {exc}") from exc
        head = state_dict.get("classifier.weight")
        if head is None or "classifier.bias" not in state_dict:
            raise ToxicityModelError(weights, "no classifier head (classifier.weight / classifier.bias)")
        if head.shape[0] != len(cfg.classes):
            raise ToxicityModelError(weights, f"classifier has {head.shape[0]} outputs, config has {len(cfg.classes)}")

        import torch
        from detoxify import Detoxify

        buffer = build_checkpoint(root, cfg, state_dict)
        try:
            detox = Detoxify(checkpoint=buffer, device="cpu", huggingface_config_path=str(root.resolve()))
        except Exception as exc:  # transformers raises many types for a bad config/tokenizer
            raise ToxicityModelError(root, f"detoxify could not build the model: {type(exc).__name__}: {exc}") from exc
        # transformers silently re-initialises weights it cannot match: make sure ours were really used.
        loaded = detox.model.state_dict()
        for key in ("classifier.weight", "bert.embeddings.word_embeddings.weight"):
            if key in state_dict and (key not in loaded or not torch.equal(loaded[key].cpu(), state_dict[key])):
                raise ToxicityModelError(weights, f"weight {key} was not loaded into the model")
        detox.tokenizer.model_max_length = cfg.max_len
        if quantize:
            import warnings

            from torch.ao.quantization import quantize_dynamic

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                detox.model = quantize_dynamic(detox.model.eval(), {torch.nn.Linear}, dtype=torch.qint8)
        clf = cls(detox, cfg, root, cfg.threshold if threshold is None else float(threshold))
        clf.quantized = quantize
        return clf

    def score(self, texts: Sequence[str]) -> list[float]:
        """Probability of toxicity for each text (normalised first), in batches: ``Detoxify.predict``'s tokenizer
        call, forward pass and sigmoid, without its per-call ``model.eval()`` (see the module docstring)."""
        import torch

        texts = [normalize(t).text for t in texts]
        scores: list[float] = []
        bs = max(1, self.config.batch_size)
        model, tokenizer = self._detoxify.model, self._detoxify.tokenizer
        with self._lock, torch.inference_mode():  # Detoxify/torch module state is not meant for concurrent calls
            for i in range(0, len(texts), bs):
                batch = texts[i : i + bs]
                inputs = tokenizer(batch, return_tensors="pt", truncation=True, padding=True).to(model.device)
                logits = model(**inputs)[0]
                scores.extend(float(v) for v in torch.sigmoid(logits)[:, self._class_index].tolist())
        for s in scores:
            if math.isnan(s):
                raise ToxicityModelError(self.model_dir / WEIGHTS_NAME, "model produced NaN scores")
        return scores

    def check(
        self, text: str, language: str = "en", threshold: float | None = None, baseline: str | None = None
    ) -> OutputVerdict:
        """Toxicity verdict on one reply by this model; ``language`` is recorded (use :class:`ToxicityRouter` to
        pick the model by language). ``baseline``: the author's words alone, when ``text`` is a trusted template
        with values put into it (:func:`safety.types.judge`). Each is scored alone, not in one batch: int8 dynamic
        quantisation scales activations over the whole batch, so a reply's score would depend on its batch-mate."""
        thr = self.threshold if threshold is None else threshold
        score = self.score([text])[0]
        return judge(score, thr, language, None if baseline is None else self.score([baseline])[0])


class ToxicityRouter:
    """One toxicity model per language, chosen by the reply's language; models load on first use.

    Layout: ``root/<lang>/`` model dirs (``root/en``, ``root/zh``; the language is read from each dir's
    ``toxicity.json``), or a single model dir at ``root`` (the older flat layout: its ``toxicity.json``
    languages, e.g. ``["en"]``), or both (a flat English model at ``root`` plus ``root/zh``: training the
    Chinese model into ``models/toxicity/zh`` is the whole migration). A language with no model of its own (``"fr"``,
    or ``None``) goes to ``default_language``'s model.

    The router never guesses the language from the reply's text: the caller names it, and the engine decides a turn's
    language once (the conversation's, or the one the customer clearly switched to: :func:`nlu.tokenize.clear_language`)
    for the NLU, the reply and this check alike. A second detector here could only disagree with that decision.
    """

    def __init__(
        self,
        model_dirs: dict[str, Path],
        *,
        default_language: str = "en",
        threshold: float | None = None,
        classifiers: dict[str, ToxicityClassifier] | None = None,
        quantize: bool = False,
    ) -> None:
        if not model_dirs and not classifiers:
            raise ToxicityModelError("<none>", "a toxicity router needs at least one model")
        self.model_dirs = dict(model_dirs)
        self.threshold = threshold
        self.quantize = quantize
        self._classifiers: dict[str, ToxicityClassifier] = dict(classifiers or {})
        langs = set(self.model_dirs) | set(self._classifiers)
        self.default_language = default_language if default_language in langs else min(langs)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ToxicityRouter(languages={self.languages}, threshold={self.threshold})"

    @property
    def languages(self) -> list[str]:
        return sorted(set(self.model_dirs) | set(self._classifiers))

    @classmethod
    def load(
        cls,
        root: str | Path,
        threshold: float | None = None,
        *,
        default_language: str = "en",
        eager: bool = False,
        quantize: bool = False,
    ) -> ToxicityRouter:
        """Find the model dirs under ``root`` (see class doc); ``eager`` loads every model now (fail fast);
        ``quantize`` serves every model with dynamic int8 Linear layers."""
        base = Path(root)
        if not base.is_dir():
            raise ToxicityModelError(base, "model directory does not exist")
        dirs: dict[str, Path] = {}
        for sub in sorted(p for p in base.iterdir() if p.is_dir()):
            if (sub / CONFIG_NAME).is_file():
                for lang in ToxicityConfig.read(sub / CONFIG_NAME).languages:
                    dirs.setdefault(lang, sub)
        if (base / CONFIG_NAME).is_file():  # a flat model dir: serves its languages unless a sub-dir does
            for lang in ToxicityConfig.read(base / CONFIG_NAME).languages:
                dirs.setdefault(lang, base)
        if not dirs:
            raise ToxicityModelError(base / CONFIG_NAME, f"no {CONFIG_NAME} in the directory or its sub-directories")
        router = cls(dirs, default_language=default_language, threshold=threshold, quantize=quantize)
        if eager:
            for lang in router.languages:
                router.classifier_for(lang)
        return router

    def route(self, language: str | None) -> str:
        """The language whose model scores a reply in ``language`` (``zh-CN`` -> ``zh``; no model: the default's)."""
        langs = set(self.languages)
        if language:
            lang = language.lower().replace("_", "-")
            if lang in langs:
                return lang
            if lang.split("-")[0] in langs:
                return lang.split("-")[0]
        return self.default_language

    def classifier_for(self, language: str | None) -> ToxicityClassifier:
        lang = self.route(language)
        with self._lock:
            clf = self._classifiers.get(lang)
            if clf is None:
                path = self.model_dirs[lang]
                # one directory may serve several languages: load it once
                clf = next((c for c in self._classifiers.values() if c.model_dir == path), None)
                if clf is None:
                    clf = ToxicityClassifier.load(path, quantize=self.quantize)
                self._classifiers[lang] = clf
            return clf

    def score(self, texts: Sequence[str], language: str | None = None) -> list[float]:
        return self.classifier_for(language).score(texts)

    def check(
        self, text: str, language: str | None = "en", threshold: float | None = None, baseline: str | None = None
    ) -> OutputVerdict:
        """Toxicity verdict on one reply with the model of its language (blocking; use ``asyncio.to_thread``).

        The threshold is ``threshold``, else the router's, else the chosen model's own (its ``toxicity.json``);
        ``baseline`` as in :meth:`ToxicityClassifier.check`.
        """
        clf = self.classifier_for(language)
        thr = threshold if threshold is not None else self.threshold
        return clf.check(text, self.route(language), threshold=thr, baseline=baseline)
