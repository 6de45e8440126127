"""The running batch's KV cache on its own: rows join (right aligned, the window growing left), decode columns are
written in place (the slab reallocated when full), rows leave (the last rows fill the holes, padding-only columns
are trimmed), and the prompt cache gives back exactly what a prefill wrote. No model: keys and values are
numbered tensors, so every cell can be checked."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from runtime.errors import GenerationError
from runtime.kv_cache import KVCache, ModelCache, PromptCache

HEADS, DIM = 2, 3


def prefill(lengths: list[int], base: float) -> tuple[list[tuple[Any, Any]], Any]:
    """One layer of left-padded prefill keys/values (values ``base + row*100 + column``, padding ``-1``) and its
    padding mask."""
    width = max(lengths)
    k = torch.full((len(lengths), HEADS, width, DIM), -1.0)
    mask = torch.zeros((len(lengths), width), dtype=torch.long)
    for i, n in enumerate(lengths):
        cols = torch.arange(n, dtype=torch.float32)
        k[i, :, width - n :] = (base + 100 * i + cols)[None, :, None]
        mask[i, width - n :] = 1
    return [(k, -k)], mask


def real(keys: Any, row: int, mask: Any) -> list[float]:
    """The unpadded keys of ``row`` (first head, first dim) over the window."""
    return [float(keys[row, 0, c, 0]) for c in range(mask.shape[1]) if mask[row, c]]


def decode(cache: KVCache, value: float) -> tuple[Any, Any]:
    """One decode step writing ``value`` for every row; returns the layer's keys over the window."""
    cache.decode_mask()
    step = torch.full((cache.rows, HEADS, 1, DIM), value)
    keys, _ = cache.write_layer(0, step, -step)
    cache.advance()
    return keys, cache.mask


def test_rows_join_right_aligned_and_decode_writes_one_column() -> None:
    cache = KVCache(max_rows=4)
    kv, pmask = prefill([3, 2], base=0)
    cache.append(kv, pmask)
    assert cache.rows == 2 and cache.width == 3 and torch.equal(cache.mask, pmask)
    assert cache.past_key_values.layers[0].get_seq_length() == 3

    mask = cache.decode_mask()
    assert mask.shape == (2, 4) and mask[:, -1].tolist() == [1, 1]
    keys, mask = decode(cache, 7.0)
    assert cache.width == 4 and keys.shape == (2, HEADS, 4, DIM)
    assert real(keys, 0, mask) == [0, 1, 2, 7] and real(keys, 1, mask) == [100, 101, 7]

    # a longer prompt joins: the window grows to the left, the running rows get padding there
    kv, pmask = prefill([6], base=1000)
    cache.append(kv, pmask)
    assert cache.rows == 3 and cache.width == 6 and cache.mask.shape == (3, 6)
    assert cache.mask[:2, :2].sum() == 0 and cache.mask[2].tolist() == [1] * 6
    keys, mask = decode(cache, 8.0)
    assert real(keys, 0, mask) == [0, 1, 2, 7, 8]
    assert real(keys, 1, mask) == [100, 101, 7, 8]
    assert real(keys, 2, mask) == [1000, 1001, 1002, 1003, 1004, 1005, 8]
    _, values = cache.write_layer(0, torch.zeros((3, HEADS, 0, DIM)), torch.zeros((3, HEADS, 0, DIM)))
    assert values[2, 0, -1, 0] == -8  # values live beside the keys


def test_leaving_rows_are_filled_from_the_end_and_padding_columns_trimmed() -> None:
    cache = KVCache(max_rows=4)
    kv, pmask = prefill([2, 5, 3], base=0)
    cache.append(kv, pmask)
    keys, mask = decode(cache, 9.0)

    order = cache.remove([0])  # row 2 moves into the hole
    assert order == [2, 1] and cache.rows == 2
    keys, mask = decode(cache, 10.0)
    assert real(keys, 0, mask) == [200, 201, 202, 9, 10] and real(keys, 1, mask) == [100, 101, 102, 103, 104, 9, 10]

    order = cache.remove([1])  # the longest row leaves: its columns are trimmed from the window
    assert order == [0] and cache.rows == 1
    assert cache.width == 5 and cache.mask.tolist() == [[1] * 5]
    keys, mask = decode(cache, 11.0)
    assert real(keys, 0, mask) == [200, 201, 202, 9, 10, 11]

    cache.clear()
    assert cache.rows == 0 and cache.mask is None and cache.width == 0
    kv, pmask = prefill([4], base=500)  # the buffers are reused after a clear
    cache.append(kv, pmask)
    keys, mask = decode(cache, 1.0)
    assert real(keys, 0, mask) == [500, 501, 502, 503, 1]


def test_many_decode_steps_reallocate_without_losing_keys() -> None:
    cache = KVCache(max_rows=2)
    kv, pmask = prefill([2], base=0)
    cache.append(kv, pmask)
    first = cache.capacity
    for t in range(150):
        keys, mask = decode(cache, 1000.0 + t)
    assert cache.capacity > first and cache.width == 152
    assert real(keys, 0, mask) == [0, 1] + [1000.0 + t for t in range(150)]


def test_a_full_batch_refuses_more_rows() -> None:
    cache = KVCache(max_rows=2)
    kv, pmask = prefill([3, 1], base=0)
    cache.append(kv, pmask)
    kv, pmask = prefill([2], base=0)
    with pytest.raises(GenerationError, match="full"):
        cache.append(kv, pmask)


def test_a_cached_prompt_joins_as_its_prefill_did() -> None:
    cache = KVCache(max_rows=4, prompt_cache_bytes=10**6)
    kv, _ = prefill([4, 2], base=0)
    logits = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    cache.remember([[1, 2, 3, 4], [5, 6]], kv, logits)
    assert cache.lookup([9]) is None
    long, short = cache.lookup([1, 2, 3, 4]), cache.lookup([5, 6])
    assert long is not None and short is not None and len(cache.prompts) == 2
    assert short.length == 2 and short.logits.tolist() == [2.0, 3.0]
    assert short.kv[0][0][0, :, 0].tolist() == [100, 101]  # no padding kept
    kv[0][0][1] = 0  # entries are copies
    assert short.kv[0][0][0, :, 0].tolist() == [100, 101]

    cache.append_cached([short, long])
    assert cache.rows == 2 and cache.mask.tolist() == [[0, 0, 1, 1], [1, 1, 1, 1]]
    keys, mask = decode(cache, 5.0)
    assert real(keys, 0, mask) == [100, 101, 5] and real(keys, 1, mask) == [0, 1, 2, 3, 5]
    assert keys[0, 0, :2].abs().sum() == 0  # padding of a cached row is zeros, never stale memory


def test_the_prompt_cache_keeps_the_recently_used_within_its_bytes() -> None:
    kv, _ = prefill([2], base=0)
    one = kv[0][0][0, :, :2], kv[0][1][0, :, :2]
    logits = torch.zeros(4)
    size = logits.nbytes + one[0].nbytes + one[1].nbytes
    cache = PromptCache(max_bytes=2 * size)
    cache.put([1], [one], logits)
    cache.put([2], [one], logits)
    assert cache.get([1]) is not None  # [2] is now the least recently used
    cache.put([3], [one], logits)
    assert len(cache) == 2 and cache.nbytes == 2 * size
    assert cache.get([2]) is None and cache.get([1]) is not None and cache.get([3]) is not None
    PromptCache(max_bytes=size - 1).put([4], [one], logits)  # too big for the cache: not kept, no error
    off = KVCache(max_rows=1)
    kv, _ = prefill([2], base=0)
    off.remember([[1, 2]], kv, logits[None])
    assert len(off.prompts) == 0


class _Reorderable:
    def __init__(self) -> None:
        self.order: list[int] = []

    def reorder_cache(self, idx: Any) -> None:
        self.order = idx.tolist()


def test_model_cache_keeps_the_models_own_object() -> None:
    cache = ModelCache()
    own = _Reorderable()
    pmask = torch.tensor([[1, 1], [0, 1], [1, 1]])
    cache.adopt(own, pmask)
    assert cache.past_key_values is own and cache.rows == 3
    with pytest.raises(GenerationError, match="static batching"):
        cache.adopt(_Reorderable(), pmask)
    mask = cache.decode_mask()
    assert mask.shape == (3, 3)
    cache.advance()
    assert cache.remove([1]) == [0, 2] and own.order == [0, 2]
    assert cache.mask.tolist() == [[1, 1, 1], [1, 1, 1]]
    cache.clear()
    assert cache.rows == 0 and cache.past_key_values is None


def test_the_window_moves_inside_the_buffers_before_they_are_replaced() -> None:
    """Longer prompts joining and decode steps reuse the buffers while they hold enough columns (the window is
    moved, the keys kept); only when they do not are they replaced, at twice the size needed."""
    cache = KVCache(max_rows=4)
    kv, pmask = prefill([2], base=0)
    cache.append(kv, pmask)
    buffers, capacity = cache._k[0], cache.capacity
    assert capacity >= 2 * 3  # first allocation: twice the columns needed
    for t in range(capacity // 2):
        keys, mask = decode(cache, 50.0 + t)
    kv, pmask = prefill([capacity // 2 + 3], base=1000)  # longer than the window: it grows left
    cache.append(kv, pmask)
    keys, mask = decode(cache, 9.0)
    assert cache._k[0] is buffers or cache.capacity > capacity
    assert real(keys, 0, mask) == [0, 1] + [50.0 + t for t in range(capacity // 2)] + [9.0]
    assert real(keys, 1, mask) == [1000.0 + c for c in range(capacity // 2 + 3)] + [9.0]

    cache.clear()  # an empty batch starts anywhere in the same buffers
    kept = cache._k[0]
    kv, pmask = prefill([3, 1], base=500)
    cache.append(kv, pmask)
    assert cache._k[0] is kept
    keys, mask = decode(cache, 1.0)
    assert real(keys, 0, mask) == [500, 501, 502, 1] and real(keys, 1, mask) == [600, 1]


def test_a_window_that_fits_is_moved_not_reallocated() -> None:
    cache = KVCache(max_rows=2)
    kv, pmask = prefill([10], base=0)
    cache.append(kv, pmask)
    buffers, capacity = cache._k[0], cache.capacity
    steps = capacity - 12  # past the free columns on the right, not past the buffers' width
    for t in range(steps):
        keys, mask = decode(cache, 100.0 + t)
    assert cache._k[0] is buffers and cache.width == 10 + steps  # the window moved left in place
    assert real(keys, 0, mask) == [float(c) for c in range(10)] + [100.0 + t for t in range(steps)]
    for t in range(steps, capacity):
        keys, mask = decode(cache, 100.0 + t)
    assert cache.capacity == 2 * (capacity + 1)  # full: replaced by buffers twice the size needed
    assert real(keys, 0, mask) == [float(c) for c in range(10)] + [100.0 + t for t in range(capacity)]
