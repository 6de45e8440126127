"""Linear-chain CRF: batched, masked log-likelihood (forward algorithm) and Viterbi decoding.

Shapes: emissions ``[B, L, T]``, tags ``[B, L]`` (long), mask ``[B, L]`` (bool, left-aligned: every sequence
starts at position 0 and has length >= 1). Optional BIO constraints forbid impossible transitions (``O -> I-x``,
``B-x -> I-y``, ``start -> I-x``) by a large negative score, both in training and decoding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

_FORBIDDEN = -1e4


class CRF(nn.Module):
    allowed: Tensor  # [from, to] bool buffer
    allowed_start: Tensor  # [tag] bool buffer

    def __init__(self, n_tags: int) -> None:
        super().__init__()
        self.n_tags = n_tags
        self.transitions = nn.Parameter(torch.empty(n_tags, n_tags).uniform_(-0.1, 0.1))  # [from, to]
        self.start = nn.Parameter(torch.empty(n_tags).uniform_(-0.1, 0.1))
        self.end = nn.Parameter(torch.empty(n_tags).uniform_(-0.1, 0.1))
        self.register_buffer("allowed", torch.ones(n_tags, n_tags, dtype=torch.bool))
        self.register_buffer("allowed_start", torch.ones(n_tags, dtype=torch.bool))

    def set_bio_constraints(self, tags: Sequence[str]) -> None:
        """Forbid transitions that cannot occur in valid BIO sequences over the tag names ``tags``."""
        for j, to in enumerate(tags):
            if to.startswith("I-"):
                self.allowed_start[j] = False
                for i, frm in enumerate(tags):
                    self.allowed[i, j] = frm[2:] == to[2:] and frm[:2] in ("B-", "I-")

    def _scores(self) -> tuple[Tensor, Tensor]:
        trans = self.transitions.masked_fill(~self.allowed, _FORBIDDEN)
        start = self.start.masked_fill(~self.allowed_start, _FORBIDDEN)
        return trans, start

    def potentials(self) -> tuple[Tensor, Tensor, Tensor]:
        """Transition ``[T, T]``, start and end ``[T]`` scores, forbidden moves masked (what :func:`viterbi` takes)."""
        trans, start = self._scores()
        return trans, start, self.end

    def score(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """Unnormalised score of the tag path ``tags`` for each sequence: ``[B]``."""
        trans, start = self._scores()
        maskf = mask.to(emissions.dtype)
        emit = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # [B, L]
        s = start[tags[:, 0]] + (emit * maskf).sum(1)
        s = s + (trans[tags[:, :-1], tags[:, 1:]] * maskf[:, 1:]).sum(1)
        last = tags.gather(1, (mask.sum(1) - 1).unsqueeze(1)).squeeze(1)
        return s + self.end[last]

    def log_partition(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """log Z for each sequence (forward algorithm): ``[B]``."""
        trans, start = self._scores()
        # logsumexp_i(alpha_i + trans_ij) computed as a matmul in shifted exp space: [B,T] @ [T,T] per step
        # instead of a [B,T,T] logsumexp (several times faster on CPU, forward and backward)
        trans_max = trans.max()
        exp_trans = (trans - trans_max).exp()
        alpha = start + emissions[:, 0]  # [B, T]
        for t in range(1, emissions.size(1)):
            a_max = alpha.max(dim=1, keepdim=True).values
            nxt = ((alpha - a_max).exp() @ exp_trans).clamp_min(1e-30).log() + a_max + trans_max + emissions[:, t]
            alpha = torch.where(mask[:, t].unsqueeze(1), nxt, alpha)
        return torch.logsumexp(alpha + self.end, dim=1)

    def log_likelihood(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """log p(tags | emissions) for each sequence: ``[B]``."""
        return self.score(emissions, tags, mask) - self.log_partition(emissions, mask)

    def decode(self, emissions: Tensor, mask: Tensor) -> list[list[int]]:
        """Viterbi: the best tag path of each sequence (lists of length ``mask.sum(1)``)."""
        trans, start = self._scores()
        return viterbi(emissions, mask, trans, start, self.end)


def viterbi(emissions: Tensor, mask: Tensor, trans: Tensor, start: Tensor, end: Tensor) -> list[list[int]]:
    """Best tag paths under explicit potentials (an ensemble decodes its members' averaged potentials with it).

    The forward pass keeps only the best scores (``amax``: on CPU, ``max`` with indices over ``[B, T, T]`` costs ~7x
    more); the backtrack recovers each step's best previous tag for the one tag each sequence is at."""
    trans_to = trans.t().contiguous()  # [to, from]
    score = start + emissions[:, 0]
    alphas = [score]  # best score of a path ending in each tag, per position
    for t in range(1, emissions.size(1)):
        nxt = (score.unsqueeze(1) + trans_to).amax(dim=2) + emissions[:, t]
        score = torch.where(mask[:, t].unsqueeze(1), nxt, score)
        alphas.append(score)
    lengths = mask.sum(1)
    tag = (score + end).argmax(1)  # best last tag of each sequence
    best_last = tag
    path = torch.zeros_like(mask, dtype=torch.long)
    path[:, -1] = tag
    for t in range(emissions.size(1) - 2, -1, -1):  # backtrack, all sequences at once
        prev = (alphas[t] + trans[:, tag].t()).argmax(1)  # tag at t given the tag at t + 1
        tag = torch.where(t >= lengths - 1, best_last, prev)  # positions at/after a sequence's end hold its last tag
        path[:, t] = tag
    return [p[:n] for p, n in zip(path.tolist(), lengths.tolist())]
