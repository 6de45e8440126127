"""The joint intent + slot model: word/shape/char features -> BiLSTM -> CRF over BIO tags and a pooled intent head.

Also holds ``Vocab`` (string <-> id tables, stored as vocab.json) and ``encode`` (token lists -> padded tensors),
the only featurisation code, shared by training and inference.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nlu.crf import CRF

PAD, UNK = "<pad>", "<unk>"
MAX_CHARS = 20  # characters kept per token for the char-CNN
_DIGIT_RE = re.compile(r"\d")

SHAPES = [PAD, "lower", "title", "upper", "mixed", "alnum", "punct", "cjk", "other"] + [f"digit{n}" for n in range(1, 9)]
_SHAPE_ID = {s: i for i, s in enumerate(SHAPES)}


def normalise_word(token: str) -> str:
    """Word-embedding key: lower-cased, every digit mapped to 0 (so order numbers 10234/55555 share ``00000``)."""
    return _DIGIT_RE.sub("0", token.lower())


def word_shape(token: str) -> str:
    if token.isdigit():
        return f"digit{min(len(token), 8)}"
    if len(token) == 1 and unicodedata.category(token).startswith("Lo") and ord(token) >= 0x2E80:
        return "cjk"
    if token.isalpha():
        if token.islower():
            return "lower"
        if token.isupper():
            return "upper"
        return "title" if token[0].isupper() and token[1:].islower() else "mixed"
    if any(c.isalnum() for c in token):
        return "alnum"
    if all(unicodedata.category(c).startswith(("P", "S")) for c in token):
        return "punct"
    return "other"


@dataclass
class Vocab:
    words: list[str]
    chars: list[str]
    tags: list[str]
    intents: list[str]
    synonyms: dict[str, str] = field(default_factory=dict)  # lower-cased entity text -> canonical value

    def __post_init__(self) -> None:
        self.word_id = {w: i for i, w in enumerate(self.words)}
        self.char_id = {c: i for i, c in enumerate(self.chars)}
        self.tag_id = {t: i for i, t in enumerate(self.tags)}
        self.intent_id = {t: i for i, t in enumerate(self.intents)}

    @classmethod
    def build(
        cls,
        token_lists: Sequence[Sequence[str]],
        tag_lists: Sequence[Sequence[str]],
        intents: Sequence[str],
        synonyms: dict[str, str] | None = None,
    ) -> Vocab:
        words = Counter(normalise_word(t) for toks in token_lists for t in toks)
        chars = Counter(c for toks in token_lists for t in toks for c in normalise_word(t))
        tags = sorted({t for ts in tag_lists for t in ts} - {"O"}, key=lambda t: (t[2:], t[:2]))
        return cls(
            words=[PAD, UNK] + sorted(words, key=lambda w: (-words[w], w)),
            chars=[PAD, UNK] + sorted(chars, key=lambda c: (-chars[c], c)),
            tags=["O"] + tags,
            intents=sorted(set(intents)),
            synonyms=dict(synonyms or {}),
        )

    def to_dict(self) -> dict[str, object]:
        return {"words": self.words, "chars": self.chars, "tags": self.tags, "intents": self.intents,
                "synonyms": self.synonyms}


def encode(vocab: Vocab, token_lists: Sequence[Sequence[str]]) -> dict[str, Tensor]:
    """Pad a batch of token lists into ``words [B,L]``, ``shapes [B,L]``, ``chars [B,L,C]``, ``mask [B,L]``."""
    B = len(token_lists)
    L = max(1, max((len(t) for t in token_lists), default=1))
    C = max(1, min(MAX_CHARS, max((len(t) for toks in token_lists for t in toks), default=1)))
    words = torch.zeros(B, L, dtype=torch.long)
    shapes = torch.zeros(B, L, dtype=torch.long)
    chars = torch.zeros(B, L, C, dtype=torch.long)
    mask = torch.zeros(B, L, dtype=torch.bool)
    unk_w, unk_c = vocab.word_id[UNK], vocab.char_id[UNK]
    for b, toks in enumerate(token_lists):
        if not toks:  # an empty utterance is read as a single unknown word
            toks = [UNK]
        for i, tok in enumerate(toks[:L]):
            norm = normalise_word(tok)
            words[b, i] = vocab.word_id.get(norm, unk_w)
            shapes[b, i] = _SHAPE_ID[word_shape(tok)] if tok != UNK else _SHAPE_ID["other"]
            ids = [vocab.char_id.get(c, unk_c) for c in norm[:C]] or [unk_c]
            chars[b, i, : len(ids)] = torch.tensor(ids)
            mask[b, i] = True
    return {"words": words, "shapes": shapes, "chars": chars, "mask": mask}


@dataclass
class NLUConfig:
    n_words: int = 0
    n_chars: int = 0
    n_tags: int = 1
    n_intents: int = 1
    n_shapes: int = len(SHAPES)
    word_dim: int = 100
    shape_dim: int = 16
    char_dim: int = 32
    char_filters: int = 64
    char_kernel: int = 3
    hidden: int = 300  # BiLSTM output size (hidden // 2 per direction)
    layers: int = 1
    dropout: float = 0.5
    word_dropout: float = 0.05  # training-time probability of replacing a word id by UNK (train.py adds singletons)


class CharCNN(nn.Module):
    def __init__(self, n_chars: int, dim: int, filters: int, kernel: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(n_chars, dim, padding_idx=0)
        self.conv = nn.Conv1d(dim, filters, kernel, padding=kernel // 2)

    def forward(self, chars: Tensor) -> Tensor:  # [B, L, C] -> [B, L, filters]
        B, L, C = chars.shape
        x = self.emb(chars.view(B * L, C)).transpose(1, 2)  # [BL, dim, C]
        h = self.conv(x).masked_fill((chars.view(B * L, 1, C) == 0), -1e4)
        return h.max(dim=2).values.clamp_min(-1.0).view(B, L, -1)


class JointBiLSTMCRF(nn.Module):
    def __init__(self, config: NLUConfig) -> None:
        super().__init__()
        c = self.config = config
        self.word_emb = nn.Embedding(c.n_words, c.word_dim, padding_idx=0)
        self.shape_emb = nn.Embedding(c.n_shapes, c.shape_dim, padding_idx=0)
        self.char_cnn = CharCNN(c.n_chars, c.char_dim, c.char_filters, c.char_kernel)
        self.drop = nn.Dropout(c.dropout)
        self.lstm = nn.LSTM(c.word_dim + c.shape_dim + c.char_filters, c.hidden // 2, num_layers=c.layers,
                            bidirectional=True, batch_first=True, dropout=c.dropout if c.layers > 1 else 0.0)
        self.tag_head = nn.Linear(c.hidden, c.n_tags)
        self.intent_head = nn.Sequential(nn.Linear(2 * c.hidden, c.hidden), nn.Tanh(), nn.Dropout(c.dropout),
                                         nn.Linear(c.hidden, c.n_intents))
        self.crf = CRF(c.n_tags)

    def encode(self, words: Tensor, shapes: Tensor, chars: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Returns tag emissions ``[B, L, n_tags]`` and intent logits ``[B, n_intents]``."""
        if self.training and self.config.word_dropout > 0:
            drop = torch.rand(words.shape, device=words.device) < self.config.word_dropout
            words = words.masked_fill(drop & mask, 1)  # 1 = UNK
        x = torch.cat([self.word_emb(words), self.shape_emb(shapes), self.char_cnn(chars)], dim=-1)
        lengths = mask.sum(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.drop(x), lengths, batch_first=True, enforce_sorted=False)
        h, _ = self.lstm(packed)
        h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=words.size(1))
        h = self.drop(h)
        m = mask.unsqueeze(2)
        pooled_max = h.masked_fill(~m, -1e4).max(1).values
        pooled_mean = (h * m).sum(1) / m.sum(1).clamp_min(1)
        return self.tag_head(h), self.intent_head(torch.cat([pooled_max, pooled_mean], dim=-1))

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Joint loss = mean CRF negative log-likelihood + intent cross-entropy; returns (slot_loss, intent_loss)."""
        emissions, logits = self.encode(batch["words"], batch["shapes"], batch["chars"], batch["mask"])
        slot = -self.crf.log_likelihood(emissions, batch["tags"], batch["mask"]).mean()
        return slot, F.cross_entropy(logits, batch["intents"])

    @torch.inference_mode()
    def predict(self, batch: dict[str, Tensor]) -> tuple[Tensor, list[list[int]]]:
        """Intent logits ``[B, n_intents]`` (uncalibrated) and Viterbi tag ids per sequence."""
        emissions, logits = self.encode(batch["words"], batch["shapes"], batch["chars"], batch["mask"])
        return logits, self.crf.decode(emissions, batch["mask"])
