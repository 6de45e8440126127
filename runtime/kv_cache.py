"""Keys and values of the running batch, and of recently prefilled prompts.

:class:`KVCache` holds the running batch's keys/values in a slab: per layer one buffer
``[max_rows, heads, columns, head_dim]``, kept across requests and replaced (twice the size needed) only when the
window no longer fits in it; when it fits but is against an end, the window is moved inside the same buffers (fresh
memory costs page faults on first touch, a move only copies the live window). A decode step writes one column in
place (no per-step concatenation or re-padding of the cache); joining rows write their prefill keys/values
right-aligned at the current end column; a finished or cancelled row is replaced by the last row (only the moved
rows are copied) and leading all-padding columns are trimmed by moving the window start. Models see the slab
through a transformers cache-layer subclass (views, no copies). The slab's padding mask lives here too, since its
columns are the slab's columns.

:class:`PromptCache` (owned by a :class:`KVCache`) keeps the keys/values and next-token logits of recently
prefilled prompts by token ids (least recently used out): a repeated prompt joins the batch by copying them, with
no forward. The embedded generator's prompts name an act and its slots, never slot values, so in a running bot
nearly every reply's prompt is a repeat.

:class:`ModelCache` is the same surface over the model's own cache object, for models whose cache the slab cannot
hold (sliding window, linear/recurrent state): no joining, rows only leave.

Why a module of its own: the slab's invariants (which rows and columns are live, what has been written) are easy
to break from outside; here every change goes through a method that keeps them, and the model runner only asks
for appends, removals and a decode column.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from runtime.errors import GenerationError


class BatchCache:
    """What the model runner needs of the running batch's cache, whichever object holds the keys/values: the
    padding mask ``[rows, columns]`` (1: a token, 0: left padding), the cache object the model takes, a decode
    column (:meth:`decode_mask`, then :meth:`advance` once the forward wrote it) and row removal."""

    def __init__(self) -> None:
        self._mask: Any = None
        self._next_mask: Any = None

    @property
    def rows(self) -> int:
        """Live rows."""
        return 0 if self._mask is None else int(self._mask.shape[0])

    @property
    def mask(self) -> Any:
        """The padding mask of the live rows over the attended columns (``None`` when empty)."""
        return self._mask

    @property
    def past_key_values(self) -> Any:
        """The object passed to the model as ``past_key_values``."""
        raise NotImplementedError

    def decode_mask(self) -> Any:
        """The attention mask of a decode step: the padding mask plus the column the step writes."""
        import torch

        self._next_mask = torch.cat([self._mask, torch.ones_like(self._mask[:, :1])], dim=1)
        return self._next_mask

    def advance(self) -> None:
        """The decode step's forward wrote its column: it is now part of every row."""
        self._mask, self._next_mask = self._next_mask, None

    def remove(self, gone: list[int]) -> list[int]:
        """Free rows ``gone`` (ascending, not all of them); returns the new row order: new row ``i`` holds what
        was row ``order[i]``, so the caller can move its own per-row state the same way."""
        raise NotImplementedError

    def clear(self) -> None:
        """Forget every row (after the last one left, or after a failed step)."""
        self._mask = self._next_mask = None


class ModelCache(BatchCache):
    """The model's own cache object (any layer kind), for static batching: set by one prefill, rows leave by
    :meth:`reorder_cache`, nothing joins until the batch is empty."""

    def __init__(self) -> None:
        super().__init__()
        self._cache: Any = None

    @property
    def past_key_values(self) -> Any:
        return self._cache

    def adopt(self, cache: Any, pmask: Any) -> None:
        """Start a batch from a prefill's cache object and its padding mask."""
        if self.rows:
            raise GenerationError("static batching: a prefill while rows are running")
        self._cache, self._mask = cache, pmask

    def remove(self, gone: list[int]) -> list[int]:
        import torch

        dropped = set(gone)
        keep = [i for i in range(self.rows) if i not in dropped]
        idx = torch.tensor(keep, device=self._mask.device)
        self._cache.reorder_cache(idx)
        self._mask = self._mask.index_select(0, idx)
        return keep

    def clear(self) -> None:
        super().clear()
        self._cache = None


@dataclass
class CachedPrompt:
    """A cached prompt: per layer its keys and values ``[heads, length, dim]``, and the logits of the token
    that follows it."""

    kv: list[tuple[Any, Any]]
    logits: Any
    length: int
    nbytes: int


class PromptCache:
    """Prefill results of recent prompts by token ids: least recently used first out, at most ``max_bytes``.

    Why: a bot's act prompts carry slot names, never slot values, so a handful of prompts recur in every
    conversation; a hit costs copying the prompt's keys/values into the batch instead of a model forward.
    An entry is what the prompt's prefill wrote into the batch, so a hit continues exactly as that did.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._nbytes = 0
        self._entries: OrderedDict[tuple[int, ...], CachedPrompt] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        """Bytes held by the entries (keys, values and logits)."""
        return self._nbytes

    def get(self, ids: list[int]) -> CachedPrompt | None:
        key = tuple(ids)
        hit = self._entries.get(key)
        if hit is not None:
            self._entries.move_to_end(key)
        return hit

    def put(self, ids: list[int], kv: list[tuple[Any, Any]], logits: Any) -> None:
        """Keep a copy of a prompt's keys/values (``[heads, length, dim]`` per layer) and next-token logits."""
        key = tuple(ids)
        nbytes = logits.nbytes + sum(k.nbytes + v.nbytes for k, v in kv)
        if key in self._entries or nbytes > self.max_bytes:
            return
        self._entries[key] = CachedPrompt([(k.clone(), v.clone()) for k, v in kv], logits.clone(), len(ids), nbytes)
        self._nbytes += nbytes
        while self._nbytes > self.max_bytes:
            self._nbytes -= self._entries.popitem(last=False)[1].nbytes


class KVCache(BatchCache):
    """The running batch's keys and values in a slab (see the module docstring), for models made of plain full
    attention layers, and the prompt cache whose entries join it.

    Rows ``[0, rows)`` are live; columns ``[start, end)`` are the window that attention reads; every row's tokens
    end at column ``end`` (left padding, masked). Every element of ``[0, rows) x [start, end)`` has been written
    (keys/values or zeros), so stale memory is never read.
    """

    def __init__(self, max_rows: int, device: str = "cpu", prompt_cache_bytes: int = 0, min_columns: int = 0) -> None:
        """``prompt_cache_bytes`` bounds the prompt cache (0 turns it off); ``device`` is where joining rows'
        padding masks are made; ``min_columns``: the buffers are never allocated narrower (a width that most
        requests fit in spares the reallocations of a batch growing from its first short prompt)."""
        super().__init__()
        self.max_rows = max_rows
        self.min_columns = min_columns
        self.device = device
        self.prompts = PromptCache(prompt_cache_bytes)
        self._k: list[Any] = []
        self._v: list[Any] = []
        self._n = self._s = self._e = 0
        self._view: Any = None

    # ------------------------------------------------------------------ state
    @property
    def rows(self) -> int:
        return self._n

    @property
    def width(self) -> int:
        """Columns attention reads (the longest row, padding included)."""
        return self._e - self._s

    @property
    def capacity(self) -> int:
        """Columns allocated per row."""
        return self._k[0].shape[2] if self._k else 0

    @property
    def past_key_values(self) -> Any:
        return self._view

    # ------------------------------------------------------------------ prompt cache
    def lookup(self, prompt_ids: list[int]) -> CachedPrompt | None:
        """The cached prefill of this exact prompt, if any (and mark it recently used)."""
        return self.prompts.get(prompt_ids)

    def remember(self, prompts: list[list[int]], kv: list[tuple[Any, Any]], logits: Any) -> None:
        """Keep the prefill of ``prompts`` (keys/values ``[rows, heads, width, dim]`` per layer, left padded to
        the longest; ``logits`` ``[rows, vocab]``) in the prompt cache."""
        if not self.prompts.max_bytes:
            return
        width = kv[0][0].shape[2]
        for i, p in enumerate(prompts):
            self.prompts.put(p, [(k[i, :, width - len(p) :], v[i, :, width - len(p) :]) for k, v in kv], logits[i])

    # ------------------------------------------------------------------ rows
    def append(self, kv: list[tuple[Any, Any]], pmask: Any) -> None:
        """Append prefilled rows: keys/values ``[rows, heads, width, dim]`` per layer, left padded as ``pmask``
        (``[rows, width]``) says."""
        import torch

        had = self._n
        width = pmask.shape[1]
        grow = self._join(kv)
        if had:
            mask = torch.cat([torch.zeros_like(self._mask[:, :1]).expand(-1, grow), self._mask], dim=1)
            fill = mask.shape[1] - width
            new_mask = torch.cat([torch.zeros_like(pmask[:, :1]).expand(-1, fill), pmask], dim=1)
            self._mask = torch.cat([mask, new_mask])
        else:
            self._mask = pmask
        assert self._mask.shape[1] == self._e - self._s, (grow, width)

    def append_cached(self, hits: list[CachedPrompt]) -> None:
        """Append rows for prompts found in the prompt cache: their keys/values are gathered, left padded to
        the longest, and appended as a prefill's would be."""
        import torch

        width = max(h.length for h in hits)
        pmask = torch.zeros((len(hits), width), dtype=torch.long, device=self.device)
        kv = []
        for layer, (k0, v0) in enumerate(hits[0].kv):
            k = k0.new_zeros((len(hits), k0.shape[0], width, k0.shape[2]))
            v = v0.new_zeros((len(hits), v0.shape[0], width, v0.shape[2]))
            for i, h in enumerate(hits):
                k[i, :, width - h.length :] = h.kv[layer][0]
                v[i, :, width - h.length :] = h.kv[layer][1]
            kv.append((k, v))
        for i, h in enumerate(hits):
            pmask[i, width - h.length :] = 1
        self.append(kv, pmask)

    def decode_mask(self) -> Any:
        self._ensure_room()
        return super().decode_mask()

    def advance(self) -> None:
        super().advance()
        self._e += 1

    def remove(self, gone: list[int]) -> list[int]:
        """The last live rows move into the holes (a copy of the moved rows only, not of the whole cache), then
        leading all-padding columns are trimmed."""
        import torch

        n = self._n
        n_new = n - len(gone)
        dropped = set(gone)
        holes = [i for i in gone if i < n_new]
        movers = [i for i in range(n_new, n) if i not in dropped]
        if holes:
            h = torch.tensor(holes, device=self._mask.device)
            m = torch.tensor(movers, device=self._mask.device)
            for k, v in zip(self._k, self._v, strict=True):
                k[h, :, self._s : self._e] = k[m, :, self._s : self._e]
                v[h, :, self._s : self._e] = v[m, :, self._s : self._e]
            self._mask[h] = self._mask[m]
        self._mask = self._mask[:n_new]
        self._n = n_new
        nz = self._mask.any(dim=0).nonzero()
        first = int(nz[0]) if len(nz) else 0
        if first:
            self._s += first
            self._mask = self._mask[:, first:]
        order = list(range(n_new))
        for a, b in zip(holes, movers, strict=True):
            order[a] = b
        return order

    def clear(self) -> None:
        super().clear()
        self._n = self._s = self._e = 0

    # ------------------------------------------------------------------ the slab
    def write_layer(self, index: int, key_states: Any, value_states: Any) -> tuple[Any, Any]:
        """The model's cache update for layer ``index``: write the step's keys/values at column ``end`` of every
        live row; returns the layer's keys and values over the window, the new columns included (views)."""
        q = key_states.shape[-2]
        k, v, n, s, e = self._k[index], self._v[index], self._n, self._s, self._e
        k[:n, :, e : e + q] = key_states
        v[:n, :, e : e + q] = value_states
        return k[:n, :, s : e + q], v[:n, :, s : e + q]

    def _make_room(self, like: list[tuple[Any, Any]], left: int, right: int) -> None:
        """At least ``left`` free columns before the window and ``right`` after it. When the buffers hold enough
        columns in all, the window is moved inside them; otherwise they are replaced by buffers twice the size
        needed. In both cases a quarter of the spare columns goes to the left (longer prompts joining), the rest to
        the right (decode steps).

        Why not a fresh allocation each time: new memory is paid for in page faults on first touch (hundreds of
        milliseconds for a GPT-2-small batch), while moving the window copies only the live rows' window."""
        s, e = self._s, self._e
        if self._k and s >= left and self.capacity - e >= right:
            return
        need = left + (e - s) + right
        if self._k and need <= self.capacity:
            self._move(left + (self.capacity - need) // 4)
        else:
            cols = max(2 * need, need + 64, self.min_columns)
            self._allocate(like, cols, left + (cols - need) // 4)

    def _move(self, start: int) -> None:
        """Move the window (its live rows) to begin at column ``start`` of the same buffers."""
        n, s, e = self._n, self._s, self._e
        if n and e > s and start != s:
            scratch = self._k[0].new_empty((n, *self._k[0].shape[1:2], e - s, self._k[0].shape[3]))
            for buf in (*self._k, *self._v):
                scratch.copy_(buf[:n, :, s:e])
                buf[:n, :, start : start + e - s] = scratch
        self._s, self._e = start, start + e - s

    def _allocate(self, like: list[tuple[Any, Any]], cols: int, start: int) -> None:
        """New buffers of ``cols`` columns, the window (its live rows copied) beginning at column ``start``."""
        from transformers import DynamicCache

        width = self._e - self._s
        ks, vs = [], []
        for i, (k, v) in enumerate(like):
            nk = k.new_empty((self.max_rows, k.shape[1], cols, k.shape[3]))
            nv = v.new_empty((self.max_rows, v.shape[1], cols, v.shape[3]))
            if self._n and width:
                nk[: self._n, :, start : start + width] = self._k[i][: self._n, :, self._s : self._e]
                nv[: self._n, :, start : start + width] = self._v[i][: self._n, :, self._s : self._e]
            ks.append(nk)
            vs.append(nv)
        self._k, self._v = ks, vs
        self._s, self._e = start, start + width
        view = DynamicCache()
        view.layer_class_to_replicate = None
        view.layers = [_slab_layer(self, i) for i in range(len(ks))]
        self._view = view

    def _join(self, kv: list[tuple[Any, Any]]) -> int:
        """Write rows whose prefill keys/values are ``kv`` right aligned at column ``end``; returns how many
        columns the window grew to the left."""
        rows, width = kv[0][0].shape[0], kv[0][0].shape[2]
        if self._n + rows > self.max_rows:
            raise GenerationError("batch is full")
        if self._n == 0:  # empty batch: nothing to keep, the window may start anywhere
            self._s = self._e = 0
        cur = self._e - self._s
        grow = max(0, width - cur)
        self._make_room(kv, left=grow, right=1)
        self._s -= grow
        s, e, lo, hi = self._s, self._e, self._n, self._n + rows
        for i, (k, v) in enumerate(kv):
            if grow and self._n:
                self._k[i][: self._n, :, s : s + grow] = 0
                self._v[i][: self._n, :, s : s + grow] = 0
            self._k[i][lo:hi, :, e - width : e] = k
            self._v[i][lo:hi, :, e - width : e] = v
            if e - width > s:
                self._k[i][lo:hi, :, s : e - width] = 0
                self._v[i][lo:hi, :, s : e - width] = 0
        self._n = hi
        return grow

    def _ensure_room(self) -> None:
        """At least one free column after ``end`` (before a decode step: the buffers' list is built only when a
        column is missing)."""
        if self.capacity - self._e < 1:
            self._make_room(list(zip(self._k, self._v, strict=True)), left=0, right=1)


def _slab_layer_class() -> type:
    from transformers.cache_utils import DynamicLayer

    class SlabLayer(DynamicLayer):
        """One layer's view of a :class:`KVCache` (the transformers cache-layer interface)."""

        def __init__(self, owner: KVCache, index: int) -> None:
            super().__init__()
            self.owner, self.index, self.is_initialized = owner, index, True

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            self.keys, self.values = self.owner.write_layer(self.index, key_states, value_states)
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.owner.width

    return SlabLayer


_SLAB_LAYER: type | None = None


def _slab_layer(owner: KVCache, index: int) -> Any:
    """A :class:`SlabLayer` (the class is built on first use, so importing this module does not import
    transformers)."""
    global _SLAB_LAYER
    if _SLAB_LAYER is None:
        _SLAB_LAYER = _slab_layer_class()
    return _SLAB_LAYER(owner, index)
