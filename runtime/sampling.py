"""How a request's next token is chosen: :class:`SamplingParams` (what the caller asked for), :class:`Sampler`
(one request's choice, with its own random generator) and :func:`sample` (a batch's logits -> tokens).

Why a module of its own: the parameters cross the whole runtime (the HTTP API parses them, the remote engine
sends them, NLG sets them) without needing torch, while the choice itself runs in the model runner's worker
thread; keeping both here keeps the engine, the runner and the API agreeing on one meaning of ``temperature``
and ``top_p``. torch is imported only when a token is actually sampled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SamplingParams:
    """How to sample: ``temperature == 0`` is greedy; ``top_p`` nucleus; ``stop`` strings end the text
    (not included); ``seed`` makes sampling reproducible per request."""

    max_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be >= 1")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError("temperature must be >= 0 and 0 < top_p <= 1")


class Sampler:
    """One request's token choice. A sampling request owns a CPU random generator (seeded from ``seed``, or
    from the OS), so its tokens do not depend on which other requests share its batch."""

    def __init__(self, params: SamplingParams) -> None:
        self.params = params
        self.generator: Any = None
        if params.temperature > 0:
            import torch

            self.generator = torch.Generator(device="cpu")
            if params.seed is not None:
                self.generator.manual_seed(params.seed)
            else:
                self.generator.seed()


def sample(logits: Any, samplers: Sequence[Sampler | None]) -> list[int]:
    """The next token of each row of ``logits`` (``[rows, vocab]``): the argmax for greedy rows (and rows
    without a sampler), otherwise drawn from the softmax at the row's temperature, cut to its ``top_p``."""
    import torch

    out: list[int] = logits.argmax(dim=-1).tolist()
    for i, sampler in enumerate(samplers):
        if sampler is None or sampler.params.temperature <= 0:
            continue
        p = sampler.params
        probs = torch.softmax(logits[i].float() / p.temperature, dim=-1)
        if p.top_p < 1.0:
            sp, si = probs.sort(descending=True)
            keep = sp.cumsum(-1) - sp < p.top_p
            keep[0] = True
            probs = torch.zeros_like(probs).scatter(0, si[keep], sp[keep])
        out[i] = int(torch.multinomial(probs.cpu(), 1, generator=sampler.generator))
    return out
