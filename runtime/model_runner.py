"""The model work of one engine step: the torch forwards that a :class:`~runtime.scheduler.StepPlan` asks for.

A step decodes the running rows (one token each, with the KV cache) and prefills the newly admitted requests.
Prompts admitted together are prefilled in groups (left padded, attention mask, explicit position ids, logits of
the last position only) chosen by :func:`length_groups` to cost the least: padding against one more forward; a
prompt found in the prompt cache joins with no forward.
Decode steps pass the padding mask as the 4D boolean mask SDPA takes (one query per row, so it is the whole
attention mask), which spares the model rebuilding it from the 2D mask every step.

Each row attends only to its own tokens (padding is masked) and uses its own positions, so a batched greedy
request yields the same tokens as ``model.generate`` for that prompt alone (up to floating-point reduction order,
which only matters for near-ties). Models whose cache is not made of plain full attention layers (sliding window,
linear/recurrent state) keep the model's own cache object (:class:`~runtime.kv_cache.ModelCache`, static
batching); the others use the slab (:class:`~runtime.kv_cache.KVCache`) and rows join mid-flight.

Why a module of its own: this is the only part of the engine that touches torch and the model; it runs in a
worker thread, one step at a time, and owns the running batch (row ids, positions, last tokens, cache), so the
engine's request lifecycle stays plain asyncio code.
"""

from __future__ import annotations

from typing import Any

from runtime.errors import GenerationError
from runtime.kv_cache import CachedPrompt, KVCache, ModelCache
from runtime.sampling import Sampler, sample
from runtime.scheduler import StepPlan


def joinable(config: Any) -> bool:
    """Whether the model's cache is plain full attention layers, which the slab can hold (rows can join)."""
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        return False
    layer_types = getattr(config, "layer_types", None)
    return not (layer_types and any(t != "full_attention" for t in layer_types))


def length_groups(
    items: list[tuple[str, list[int]]], overhead: int = 48, max_tokens: int = 2048
) -> list[list[tuple[str, list[int]]]]:
    """Split prompts into prefill groups (longest first) that cost the least in all: a group costs its padded
    tokens (rows x its longest prompt) plus ``overhead`` tokens' worth for the forward itself (reading every weight
    once, the per-layer Python), so short prompts are merged even at some padding while long ones are only grouped
    with prompts of nearly their length. A group holds at most ``max_tokens`` padded tokens (unless a single prompt
    is longer), beyond which a larger matrix only thrashes the caches.

    Why not a fixed padding ratio: one forward per one or two prompts wastes more (small matrices, the weights
    streamed again) than the padding a merge costs."""
    order = sorted(items, key=lambda it: -len(it[1]))
    n = len(order)
    inf = float("inf")
    best = [0.0] + [inf] * n  # best[j]: least cost of the first j prompts
    cut = [0] * (n + 1)  # cut[j]: where the last group of that best split starts
    for j in range(1, n + 1):
        for i in range(j - 1, -1, -1):
            width = len(order[i][1])  # the longest of order[i:j]
            if i < j - 1 and (j - i) * width > max_tokens:
                break
            cost = best[i] + overhead + (j - i) * width
            if cost < best[j]:
                best[j], cut[j] = cost, i
    groups: list[list[tuple[str, list[int]]]] = []
    j = n
    while j > 0:
        groups.append(order[cut[j] : j])
        j = cut[j]
    return groups[::-1]


class ModelRunner:
    """Runs steps on one model and holds its running batch. Not thread-safe: one step at a time."""

    def __init__(self, model: Any, device: str, max_batch: int, pad_token_id: int, prompt_cache_bytes: int = 0) -> None:
        """``prompt_cache_bytes`` bounds the prompt cache (0 turns it off; always off for static batching)."""
        self.model = model
        self.device = device
        self.pad_token_id = pad_token_id
        self.allow_join = joinable(model.config)
        # slab width allocated up front: room for a prompt and its reply in most chats, within the model's context
        positions = getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", 0)
        min_columns = min(256, int(positions or 256))
        self.cache: KVCache | ModelCache = (
            KVCache(max_batch, device, prompt_cache_bytes, min_columns) if self.allow_join else ModelCache()
        )
        self._decode_mask_4d = self.allow_join and getattr(model.config, "_attn_implementation", None) == "sdpa"
        self._logits_to_keep = True
        self._rows: list[str] = []
        self._pos: Any = None  # [rows] position of each row's next token
        self._last: Any = None  # [rows] each row's last token
        #: counters: prefill forwards, prompts taken from the prompt cache, largest batch
        self.stats = {"prefill_forwards": 0, "prompt_cache_hits": 0, "max_rows": 0}

    @property
    def rows(self) -> tuple[str, ...]:
        """Request ids of the running batch, in row order."""
        return tuple(self._rows)

    def reset(self) -> None:
        """Forget the running batch (every row left, or a step failed)."""
        self._rows, self._pos, self._last = [], None, None
        self.cache.clear()

    def step(
        self, plan: StepPlan, drop: set[str], samplers: dict[str, Sampler], prompts: list[list[int]]
    ) -> dict[str, int]:
        """Free the rows of ``drop``, then decode ``plan.decode`` and prefill ``plan.prefill`` (whose token ids
        are ``prompts``); returns one new token per scheduled request. ``samplers`` says how each chooses."""
        import torch

        with torch.inference_mode():
            self.drop_rows(drop)
            tokens: dict[str, int] = {}
            if plan.decode:
                if len(self._rows) != len(plan.decode) or set(self._rows) != set(plan.decode):
                    raise GenerationError("batch rows out of sync with the scheduler")
                tokens.update(self._decode(samplers))
            if plan.prefill:
                items = list(zip(plan.prefill, prompts, strict=True))
                groups = [items]
                if isinstance(self.cache, KVCache):
                    cache = self.cache
                    hits = [(rid, hit) for rid, p in items if (hit := cache.lookup(p)) is not None]
                    if hits:
                        tokens.update(self._join_cached(hits, samplers))
                        self.stats["prompt_cache_hits"] += len(hits)
                        cached = {rid for rid, _ in hits}
                        items = [(rid, p) for rid, p in items if rid not in cached]
                    groups = length_groups(items)
                for group in groups:
                    tokens.update(self._prefill(group, samplers))
            self.stats["max_rows"] = max(self.stats["max_rows"], len(self._rows))
            return tokens

    def drop_rows(self, drop: set[str]) -> None:
        """Free the rows of finished or cancelled requests (the cache decides which rows move into the holes;
        positions and last tokens follow)."""
        import torch

        if not drop or not self._rows:
            return
        with torch.inference_mode():
            gone = [i for i, rid in enumerate(self._rows) if rid in drop]
            if not gone:
                return
            if len(gone) == len(self._rows):
                self.reset()
                return
            order = self.cache.remove(gone)
            idx = torch.tensor(order, device=self._pos.device)
            self._pos, self._last = self._pos.index_select(0, idx), self._last.index_select(0, idx)
            self._rows = [self._rows[i] for i in order]

    # ------------------------------------------------------------------ forwards
    def _forward(self, **kwargs: Any) -> Any:
        if self._logits_to_keep:
            try:
                return self.model(**kwargs, logits_to_keep=1)
            except TypeError as exc:  # an older model class without ``logits_to_keep``
                if "logits_to_keep" not in str(exc):
                    raise
                self._logits_to_keep = False
        return self.model(**kwargs)

    def _decode(self, samplers: dict[str, Sampler]) -> dict[str, int]:
        """One token for every running row."""
        import torch

        mask = self.cache.decode_mask()
        out = self._forward(
            input_ids=self._last[:, None],
            # one query per row: the padding mask is the whole attention mask; given in the 4D boolean form that
            # SDPA takes, the model does not rebuild it every step (a noticeable share of a small model's step)
            attention_mask=mask.bool()[:, None, None, :] if self._decode_mask_4d else mask,
            position_ids=self._pos[:, None],
            past_key_values=self.cache.past_key_values,
            use_cache=True,
        )
        self.cache.advance()
        self._pos += 1
        new = sample(out.logits[:, -1, :], [samplers.get(r) for r in self._rows])
        self._last = torch.tensor(new, device=self.device)
        return dict(zip(self._rows, new, strict=True))

    def _prefill(self, group: list[tuple[str, list[int]]], samplers: dict[str, Sampler]) -> dict[str, int]:
        """Run the prompts of ``group`` (left padded to the longest), sample their first tokens and add them to
        the running batch (and their keys/values to the prompt cache)."""
        import torch
        from transformers import DynamicCache

        rows = [rid for rid, _ in group]
        width = max(len(p) for _, p in group)
        ids = torch.full((len(group), width), self.pad_token_id, dtype=torch.long)
        pmask = torch.zeros((len(group), width), dtype=torch.long)
        for i, (_, p) in enumerate(group):
            ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            pmask[i, width - len(p) :] = 1
        pos = (pmask.cumsum(-1) - 1).clamp(min=0)
        ids, pmask, pos = ids.to(self.device), pmask.to(self.device), pos.to(self.device)
        out = self._forward(
            input_ids=ids, attention_mask=pmask, position_ids=pos, past_key_values=DynamicCache(), use_cache=True
        )
        self.stats["prefill_forwards"] += 1
        logits = out.logits[:, -1, :]
        new = sample(logits, [samplers.get(r) for r in rows])
        if isinstance(self.cache, ModelCache):  # static batching: keep the model's own cache object
            if self._rows:
                raise GenerationError("static batching: a prefill while rows are running")
            self.cache.adopt(out.past_key_values, pmask)
        else:
            kv = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
            self.cache.remember([p for _, p in group], kv, logits)
            self.cache.append(kv, pmask)
        return self._add_rows(rows, pmask.sum(-1), new)

    def _join_cached(self, hits: list[tuple[str, CachedPrompt]], samplers: dict[str, Sampler]) -> dict[str, int]:
        """Admit prompts whose keys/values and next-token logits are in the prompt cache: no forward."""
        import torch

        assert isinstance(self.cache, KVCache)
        rows = [rid for rid, _ in hits]
        entries = [h for _, h in hits]
        new = sample(torch.stack([h.logits for h in entries]), [samplers.get(r) for r in rows])
        self.cache.append_cached(entries)
        return self._add_rows(rows, torch.tensor([h.length for h in entries], device=self.device), new)

    def _add_rows(self, rows: list[str], pos: Any, new: list[int]) -> dict[str, int]:
        """Rows whose keys/values the cache now holds: their next positions ``pos`` and first tokens ``new``."""
        import torch

        last = torch.tensor(new, device=self.device)
        if self._rows:
            self._pos, self._last = torch.cat([self._pos, pos]), torch.cat([self._last, last])
        else:
            self._pos, self._last = pos, last
        self._rows = self._rows + rows
        return dict(zip(rows, new, strict=True))
