"""A sentence-level intent prior beside the BiLSTM-CRF: a linear softmax over hashed n-grams of the utterance.

Why: on a bot's few hundred examples the recurrent model learns word order and context well but its intent head
over-trusts whichever sentence shape it saw most (unfamiliar Chinese questions read as ``complaint``); a bag of word
n-grams and in-word character n-grams (typos: ``ordr`` shares ``<or``, ``ord`` with ``order``) is the classic strong
small-data baseline and makes different mistakes. With the bundled MiniLM piece table, the mean piece embedding
of the utterance's Latin words is a dense input too (``parcel`` lands near ``package``); with the Chinese word vectors
(:mod:`nlu.wordvec`), so is the SIF sentence vector of its Chinese characters (给钱 lands near 付款, which no n-gram
of the training examples says). Their logits are added (``alpha`` chosen on dev, 0 allowed, so it cannot do worse
than the BiLSTM on dev) and then calibrated together.

Features come from the tokens alone (the tokenizer gives one token per Chinese character), so training and serving
see the same thing; ids are CRC32 hashes into ``dim`` buckets (deterministic across processes, no vocabulary to
store). Serving costs one ``embedding_bag`` of a few dozen rows.
"""

from __future__ import annotations

import math
import unicodedata
import zlib
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from nlu.encoder import TextEncoder
from nlu.model import is_cjk_char
from nlu.pretrained import PieceTable

DEFAULT_DIM = 1 << 16
DENSE_SCALE = 2.0  # of the dense features against the n-grams' (each row of either has norm 1 before scaling)


def features(tokens: Sequence[str], dim: int) -> list[int]:
    """Hashed feature ids of one utterance: word 1-3-grams and the 3-/4-grams of each Latin word (with ``<>``)."""
    words = [unicodedata.normalize("NFKC", t).lower() for t in tokens]
    grams: list[str] = []
    for n in (1, 2, 3):
        grams.extend(f"{n}:" + "\x1f".join(words[i : i + n]) for i in range(len(words) - n + 1))
    for w in words:
        if len(w) > 2 and w.isascii() and w.isalpha():
            padded = f"<{w}>"
            grams.extend("c:" + padded[i : i + n] for n in (3, 4) for i in range(len(padded) - n + 1))
    return sorted({zlib.crc32(g.encode("utf-8")) % dim for g in grams})


def batch(token_lists: Sequence[Sequence[str]], dim: int) -> tuple[Tensor, Tensor, Tensor]:
    """``embedding_bag`` inputs: ids, offsets and per-id weights (each row L2-normalised)."""
    ids: list[int] = []
    offsets: list[int] = []
    weights: list[float] = []
    for toks in token_lists:
        f = features(toks, dim)
        offsets.append(len(ids))
        ids.extend(f)
        weights.extend([1.0 / math.sqrt(max(len(f), 1))] * len(f))
    return (torch.tensor(ids, dtype=torch.long), torch.tensor(offsets, dtype=torch.long),
            torch.tensor(weights, dtype=torch.float32))


def dense_features(token_lists: Sequence[Sequence[str]], table: PieceTable) -> Tensor:
    """Mean pretrained piece embedding of each utterance's Latin-script tokens, L2-normalised and scaled by
    :data:`DENSE_SCALE` ``[N, dim]`` (zeros without such a token). Latin only: the bundled MiniLM is English, and its
    vectors for Chinese characters made Chinese cross-validation worse (0.858 -> 0.796 intent accuracy, n-grams alone
    against n-grams + dense) while English gained (0.817 -> 0.891)."""
    rows = []
    for toks in token_lists:
        ids = [i for t in toks if t.isascii() for i in table.pieces(t)]
        rows.append(table.weight[ids].mean(0) if ids else torch.zeros(table.dim))
    return F.normalize(torch.stack(rows), dim=-1) * DENSE_SCALE


def chinese_features(token_lists: Sequence[Sequence[str]], vectors: TextEncoder) -> Tensor:
    """The word-vector sentence vector of each utterance's Chinese characters (the tokenizer gives one token per
    character; the encoder cuts them into words again), scaled by :data:`DENSE_SCALE` ``[N, vectors.dim]`` (zeros
    without Chinese)."""
    texts = ["".join(t for t in toks if is_cjk_char(t)) for toks in token_lists]
    return vectors.encode(texts) * DENSE_SCALE


class NgramPrior:
    """Weights ``[dim, n_intents]``, bias ``[n_intents]``; with a piece table, dense weights ``[table.dim, n_intents]``
    over :func:`dense_features`; with Chinese word vectors, ``words`` ``[vectors.dim, n_intents]`` over
    :func:`chinese_features`. :meth:`logits` of tokenised utterances."""

    def __init__(self, weight: Tensor, bias: Tensor, dense: Tensor | None = None,
                 table: PieceTable | None = None, words: Tensor | None = None,
                 vectors: TextEncoder | None = None) -> None:
        if (dense is None) != (table is None):
            raise ValueError("dense weights and a piece table go together")
        if (words is None) != (vectors is None):
            raise ValueError("word-vector weights and the word vectors go together")
        self.weight = weight
        self.bias = bias
        self.dense = dense
        self.table = table
        self.words = words
        self.vectors = vectors

    @property
    def dim(self) -> int:
        return int(self.weight.size(0))

    def logits(self, token_lists: Sequence[Sequence[str]]) -> Tensor:
        if not token_lists:
            return torch.zeros(0, self.weight.size(1))
        ids, offsets, w = batch(token_lists, self.dim)
        out = F.embedding_bag(ids, self.weight, offsets, mode="sum", per_sample_weights=w) + self.bias
        if self.dense is not None and self.table is not None:
            out = out + dense_features(token_lists, self.table) @ self.dense
        if self.words is not None and self.vectors is not None:
            out = out + chinese_features(token_lists, self.vectors) @ self.words
        return out

    @classmethod
    def fit(cls, token_lists: Sequence[Sequence[str]], labels: Sequence[int], n_intents: int, seed: int = 0,
            dim: int = DEFAULT_DIM, table: PieceTable | None = None, steps: int = 150, lr: float = 0.2,
            weight_decay: float = 1e-4, vectors: TextEncoder | None = None) -> NgramPrior:
        """Full-batch Adam on cross-entropy with an L2 penalty on the weights in use (a fixed step budget;
        deterministic: zero start, full batch). ``table``: also learn dense weights over :func:`dense_features`;
        ``vectors``: and over :func:`chinese_features`."""
        torch.manual_seed(seed)
        weight = torch.zeros(dim, n_intents, requires_grad=True)  # buckets no example uses stay exactly 0
        bias = torch.zeros(n_intents, requires_grad=True)
        params = [weight, bias]
        dense = torch.zeros(table.dim, n_intents, requires_grad=True) if table is not None else None
        x = dense_features(token_lists, table) if table is not None else None
        if dense is not None:
            params.append(dense)
        words = torch.zeros(vectors.dim, n_intents, requires_grad=True) if vectors is not None else None
        z = chinese_features(token_lists, vectors) if vectors is not None else None
        if words is not None:
            params.append(words)
        ids, offsets, w = batch(token_lists, dim)
        y = torch.tensor(list(labels), dtype=torch.long)
        opt = torch.optim.Adam(params, lr=lr)
        used = torch.unique(ids)
        for _ in range(steps):
            opt.zero_grad()
            logits = F.embedding_bag(ids, weight, offsets, mode="sum", per_sample_weights=w) + bias
            penalty = weight[used].pow(2).sum()
            if dense is not None and x is not None:
                logits = logits + x @ dense
                penalty = penalty + dense.pow(2).sum()
            if words is not None and z is not None:
                logits = logits + z @ words
                penalty = penalty + words.pow(2).sum()
            loss = F.cross_entropy(logits, y) + weight_decay * penalty
            loss.backward()
            opt.step()
        return cls(weight.detach().contiguous(), bias.detach().contiguous(),
                   dense.detach().contiguous() if dense is not None else None, table,
                   words.detach().contiguous() if words is not None else None, vectors)
