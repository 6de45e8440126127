"""The sentence head: intent logits from what a whole message means, for bots with little training data.

The BiLSTM-CRF reads words it has seen (plus characters and frozen word pieces); with a dozen examples per intent it
has not seen "terrible" or "awful" and files them by their shape ("amazing" is a one-word mood too). The bundled
sentence encoder (:mod:`nlu.encoder`, all-MiniLM-L6-v2) has: a multinomial logistic regression over its frozen
sentence vectors, fitted on the training examples, gives log-probabilities that the model adds to its own with a
fixed weight (``TrainConfig.sentence_weight``, measured by ``benchmarks/nlu_small_data.py``; a negative one is chosen
on dev, as the n-gram prior's). Opt-in (``TrainConfig.sentence``): it costs one encoder pass per message.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

STEPS = 300  # full-batch Adam steps: a convex problem on at most a few thousand vectors
LR = 0.1
L2 = 1e-4
SCALE = 10.0  # the vectors are unit length: logits on a usable scale from the start


@dataclass
class SentenceHead:
    weight: torch.Tensor  # [dim, n_intents]
    bias: torch.Tensor  # [n_intents]

    @classmethod
    def fit(cls, vectors: torch.Tensor, labels: torch.Tensor, n_intents: int, seed: int = 0) -> SentenceHead:
        """Fit on ``vectors`` ``[N, dim]`` (unit rows) and intent ids ``labels`` ``[N]``; deterministic per seed."""
        generator = torch.Generator().manual_seed(seed)
        weight = (torch.randn(vectors.size(1), n_intents, generator=generator) * 0.01).requires_grad_()
        bias = torch.zeros(n_intents, requires_grad=True)
        opt = torch.optim.Adam([weight, bias], lr=LR)
        x = vectors.detach().clone()
        for _ in range(STEPS):
            loss = torch.nn.functional.cross_entropy(SCALE * x @ weight + bias, labels) + L2 * weight.pow(2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return cls(weight.detach().contiguous(), bias.detach().contiguous())

    @property
    def n_intents(self) -> int:
        return int(self.bias.numel())

    def logits(self, vectors: torch.Tensor) -> torch.Tensor:
        """Log-probabilities ``[N, n_intents]`` (normalised, so the weight means the same for every model)."""
        return torch.log_softmax(SCALE * vectors @ self.weight + self.bias, dim=-1)
