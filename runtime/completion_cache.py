"""Finished greedy completions by what determines them: the prompt's token ids, the token budget and the stop
strings (least recently used out).

Why: greedy decoding is a function of the prompt, so generating a prompt seen before is work done twice. The
embedded generator's act prompts name an act and its slots, never slot values (``runtime.model.build_prompt``),
so a running bot asks for the same few dozen prompts all day: a hit sends the text the first run streamed with no
step, no forward, no wait for a batch row and no detokenising, as one delta (the text is all there, and every delta
costs its consumer a frame to the customer). The
:class:`~runtime.kv_cache.PromptCache` spares a repeat's prefill only; this spares its decode steps too, which
are nearly all of a short reply's cost when few conversations share a step.

What it does not change: a sampled request (``temperature > 0``) is never looked up nor stored; a request that
was cancelled or failed is not stored (only a completion the engine finished). The stored tokens are those of
the first run: a later batched run could, in a floating-point near-tie, pick another token (see
:mod:`runtime.model_runner`), so a hit makes the reply of a prompt the same every time rather than less exact.

No torch here: entries are token ids, bounded by count.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

#: what determines a greedy completion: prompt token ids, the token budget, the stop strings
CompletionKey = tuple[tuple[int, ...], int, tuple[str, ...]]


@dataclass(frozen=True)
class Completion:
    """A finished greedy completion: its tokens (the end-of-sequence token included, if one ended it),
    ``finish_reason`` as the engine reported it (``"stop"`` or ``"length"``) and the text it streamed (what the
    tokens detokenise to, cut at a stop string)."""

    tokens: tuple[int, ...]
    finish_reason: str
    text: str


class CompletionCache:
    """At most ``max_entries`` completions, least recently used first out (``max_entries`` 0: off)."""

    def __init__(self, max_entries: int) -> None:
        if max_entries < 0:
            raise ValueError("max_entries must be >= 0")
        self.max_entries = max_entries
        self._entries: OrderedDict[CompletionKey, Completion] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def key(prompt_ids: list[int], max_tokens: int, stop: tuple[str, ...], temperature: float) -> CompletionKey | None:
        """The key of a request, or ``None`` when its completion is not a function of these (sampling)."""
        if temperature != 0:
            return None
        return (tuple(prompt_ids), max_tokens, tuple(stop))

    def get(self, key: CompletionKey | None) -> Completion | None:
        if key is None or not self.max_entries:
            return None
        hit = self._entries.get(key)
        if hit is not None:
            self._entries.move_to_end(key)
        return hit

    def put(self, key: CompletionKey | None, tokens: tuple[int, ...], finish_reason: str, text: str) -> None:
        if key is None or not self.max_entries:
            return
        self._entries[key] = Completion(tokens, finish_reason, text)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
