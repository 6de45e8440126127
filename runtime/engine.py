"""Async batched generation engine for any transformers causal LM folder.

One asyncio background task drives a :class:`~runtime.scheduler.Scheduler`; each model step runs in a
worker thread (``asyncio.to_thread``) so the event loop never blocks. A step decodes the running rows
(one token each, with the KV cache) and prefills the newly admitted requests (continuous batching:
requests join mid-flight; a burst of arrivals is admitted ``max_prefill_tokens`` prompt tokens per step,
interleaved with decoding). Prompts admitted together are prefilled in groups of similar length (left
padded, attention mask, explicit position ids, logits of the last position only).

The running batch's keys/values live in a :class:`_Slab`: per layer one buffer
``[max_batch, heads, columns, head_dim]`` allocated once and grown by doubling. A decode step writes one
column in place (no per-step concatenation or re-padding of the cache); joining rows write their prefill
keys/values right-aligned at the current end column; a finished or cancelled row is replaced by the last
row (only the moved rows are copied) and leading all-padding columns are trimmed by moving the window
start. Models see the slab through a transformers cache-layer subclass (views, no copies).

Prompt cache: the keys/values and next-token logits of recently prefilled prompts are kept by token ids
(least recently used out, ``prompt_cache_mb``); a repeated prompt joins the batch by copying them, with no
forward. The embedded generator's prompts name an act and its slots, never slot values, so in a running
bot nearly every reply's prompt is a repeat, and the step that admits it costs one decode forward instead
of one plus a prefill forward per length group.

Decode steps pass the padding mask as the 4D boolean mask SDPA takes (one query per row, so it is the whole
attention mask), which spares the model rebuilding it from the 2D mask every step.

Each row attends only to its own tokens (padding is masked) and uses its own positions, so a batched
greedy request yields the same tokens as ``model.generate`` for that prompt alone (up to floating-point
reduction order, which only matters for near-ties). Models whose cache is not made of plain full
attention layers (sliding window, linear/recurrent state) are run with ``allow_join=False`` and keep the
model's own cache object: requests that arrive together are prefilled together and later ones wait for
the batch to drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.errors import EngineClosed, GenerationError, ModelLoadError
from runtime.scheduler import Request, Scheduler, StepOutputs, StepPlan

log = logging.getLogger(__name__)


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


class TextEngine:
    """What :class:`runtime.nlg.NLG` and the HTTP API need from an engine, in-process or remote: ``stream``
    text deltas for a prompt; ``generate`` is built on it here, once for every engine."""

    def stream(self, prompt: str, params: SamplingParams | None = None) -> AsyncIterator[str]:
        raise NotImplementedError

    async def generate(self, prompt: str, params: SamplingParams | None = None) -> str:
        """The whole completion as one string."""
        return "".join([delta async for delta in self.stream(prompt, params)])

    async def aclose(self) -> None:
        """Release the engine; further requests raise :class:`~runtime.errors.EngineClosed`."""


_END = object()


@dataclass
class _Slot:
    request_id: str
    params: SamplingParams
    queue: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    ids: list[int] = field(default_factory=list)
    emitted: int = 0  # characters of the decoded text already sent
    generator: Any = None
    done: bool = False
    info: dict[str, Any] | None = None


class Engine(TextEngine):
    """Batched async text generation (see module docstring)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        device: str = "cpu",
        max_batch: int = 16,
        max_queue: int = 256,
        max_prefill_tokens: int | None = 512,
        prompt_cache_mb: float = 64.0,
    ) -> None:
        """``prompt_cache_mb`` bounds the prompt cache (see the module docstring; 0 turns it off)."""
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.max_batch = max_batch
        eos: set[int] = set()
        for src in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
            if isinstance(src, int):
                eos.add(src)
            elif isinstance(src, (list, tuple)):
                eos.update(int(x) for x in src)
        self.eos_token_ids = frozenset(eos)
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = next(iter(sorted(eos)), 0)
        self.pad_token_id = int(pad)
        cfg = model.config
        self.max_positions: int | None = getattr(cfg, "n_positions", None) or getattr(
            cfg, "max_position_embeddings", None
        )
        self.allow_join = self._plain_cache_model()
        self._decode_mask_4d = self.allow_join and getattr(cfg, "_attn_implementation", None) == "sdpa"
        self.scheduler = Scheduler(
            max_batch,
            max_queue,
            allow_join=self.allow_join,
            max_prefill_tokens=max_prefill_tokens if self.allow_join else None,
        )
        self._slots: dict[str, _Slot] = {}
        self._ids = itertools.count()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        # batch state, touched only inside the worker thread (one step at a time)
        self._rows: list[str] = []
        self._slab = _Slab(max_batch)
        self._cache: Any = None  # static batching only: the model's own cache object
        self._logits_to_keep = True
        self._mask: Any = None
        self._pos: Any = None
        self._last: Any = None
        self._pending_drop: set[str] = set()
        self._prompt_cache = _PromptCache(int(prompt_cache_mb * 2**20) if self.allow_join else 0)
        #: counters: model steps, steps with admissions, joins (admissions while others decode), largest
        #: batch, generated tokens, prefill forwards, prompts taken from the prompt cache
        self.stats = {
            "steps": 0, "prefills": 0, "joins": 0, "max_rows": 0, "tokens": 0, "prefill_forwards": 0,
            "prompt_cache_hits": 0,
        }  # fmt: skip

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(
        cls, model_dir: str | Path, device: str = "cpu", max_batch: int = 16, max_queue: int = 256, **options: Any
    ) -> Engine:
        """Load a causal LM and its tokenizer from a local folder (never downloads); ``options`` go to
        the constructor (``max_prefill_tokens``, ``prompt_cache_mb``)."""
        path = Path(model_dir)
        if not path.is_dir():
            raise ModelLoadError(str(path), "not a directory")
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            model: Any = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True, dtype=torch.float32)
        except Exception as exc:  # transformers raises OSError, ValueError, KeyError, safetensors errors...
            raise ModelLoadError(str(path), f"{type(exc).__name__}: {exc}") from exc
        model = model.to(device)
        model.eval()
        return cls(model, tokenizer, device=device, max_batch=max_batch, max_queue=max_queue, **options)

    def _plain_cache_model(self) -> bool:
        cfg = self.model.config
        if getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", True):
            return False
        layer_types = getattr(cfg, "layer_types", None)
        return not (layer_types and any(t != "full_attention" for t in layer_types))

    # ------------------------------------------------------------------ public API
    async def stream(
        self, prompt: str, params: SamplingParams | None = None, info: dict[str, Any] | None = None
    ) -> AsyncIterator[str]:
        """Yield text deltas as tokens are produced. Stopping iteration (``aclose`` / task cancel)
        cancels the request and frees its batch slot.

        ``info``, when given, is filled with ``prompt_tokens`` at submission and, once the request ends,
        ``completion_tokens`` and ``finish_reason`` (``"stop"``: EOS or a stop string, ``"length"``:
        ``max_tokens`` or the model's context was reached)."""
        params = params or SamplingParams()
        if self._closed:
            raise EngineClosed("engine is closed")
        prompt_ids = list(self.tokenizer(prompt, add_special_tokens=True)["input_ids"])
        if not prompt_ids:
            prompt_ids = [next(iter(sorted(self.eos_token_ids)), self.pad_token_id)]
        max_tokens = params.max_tokens
        if self.max_positions is not None:
            room = self.max_positions - len(prompt_ids)
            if room < 1:
                raise GenerationError(f"prompt of {len(prompt_ids)} tokens exceeds the model's {self.max_positions}")
            max_tokens = min(max_tokens, room)
        rid = f"r{next(self._ids)}"
        slot = _Slot(rid, params, info=info)
        if info is not None:
            info["prompt_tokens"] = len(prompt_ids)
        if params.temperature > 0:
            import torch

            slot.generator = torch.Generator(device="cpu")
            if params.seed is not None:
                slot.generator.manual_seed(params.seed)
            else:
                slot.generator.seed()
        self.scheduler.add(Request(rid, prompt_ids, max_tokens, self.eos_token_ids))  # may raise QueueFull
        self._slots[rid] = slot
        self._ensure_started()
        self._kick()
        try:
            while True:
                item = await slot.queue.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            if not slot.done:
                slot.done = True
                self.scheduler.cancel(rid)
                self._slots.pop(rid, None)
                self._kick()

    async def aclose(self) -> None:
        """Stop the background task; pending requests get :class:`EngineClosed`."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._fail_all(EngineClosed("engine closed"))

    @property
    def active(self) -> int:
        """Requests waiting or running."""
        return len(self.scheduler)

    # ------------------------------------------------------------------ background loop
    def _ensure_started(self) -> None:
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="kefu-runtime-engine")

    def _kick(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            if not self.scheduler.has_work():
                self._wake.clear()
                await self._wake.wait()
                continue
            plan = self.scheduler.schedule()
            drop = self._pending_drop | set(plan.release)
            self._pending_drop = set()
            if plan.empty:
                if drop:
                    await asyncio.to_thread(self._drop_rows, drop)
                continue
            sampling = {rid: self._slots[rid] for rid in plan.scheduled if rid in self._slots}
            self.stats["steps"] += 1
            self.stats["prefills"] += bool(plan.prefill)
            self.stats["joins"] += bool(plan.prefill and plan.decode)
            try:
                prompts = [self._prompt_ids(rid) for rid in plan.prefill]
                tokens = await asyncio.to_thread(self._step, plan, drop, sampling, prompts)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a model failure ends every active request, the engine stays usable
                log.exception("generation step failed")
                self._reset_batch()
                self._fail_all(GenerationError(f"generation step failed: {type(exc).__name__}: {exc}"))
                continue
            stopped = set()
            deltas: dict[str, str] = {}
            for rid, tok in tokens.items():
                slot = self._slots.get(rid)
                if slot is None or slot.done:
                    continue
                slot.ids.append(tok)
                delta, hit_stop = self._detok(slot, final=False)
                deltas[rid] = delta
                if hit_stop:
                    stopped.add(rid)
            self.stats["tokens"] += len(tokens)
            finished = set(self.scheduler.update(StepOutputs(tokens=tokens, finished=frozenset(stopped))))
            self._pending_drop |= finished
            for rid, delta in deltas.items():
                slot = self._slots[rid]
                if rid in finished and rid not in stopped:
                    delta += self._detok(slot, final=True)[0]
                if delta:
                    slot.queue.put_nowait(delta)
                if rid in finished:
                    if slot.info is not None:
                        natural = rid in stopped or (slot.ids and slot.ids[-1] in self.eos_token_ids)
                        slot.info["completion_tokens"] = len(slot.ids)
                        slot.info["finish_reason"] = "stop" if natural else "length"
                    slot.done = True
                    slot.queue.put_nowait(_END)
                    del self._slots[rid]

    def _fail_all(self, exc: BaseException) -> None:
        self.scheduler.abort_all()
        for slot in list(self._slots.values()):
            if not slot.done:
                slot.done = True
                slot.queue.put_nowait(exc)
        self._slots.clear()

    # ------------------------------------------------------------------ detokenisation
    def _detok(self, slot: _Slot, final: bool) -> tuple[str, bool]:
        """New text since the last call; holds back an incomplete UTF-8 char or a possible stop prefix."""
        text = self.tokenizer.decode(slot.ids, skip_special_tokens=True)
        stops = slot.params.stop
        if stops:
            start = max(0, slot.emitted - max(len(s) for s in stops))
            cut = min((i for i in (text.find(s, start) for s in stops) if i >= 0), default=-1)
            if cut >= 0:
                delta = text[slot.emitted : cut] if cut > slot.emitted else ""
                slot.emitted = max(slot.emitted, cut)
                return delta, True
        end = len(text)
        if not final:
            if text.endswith("\ufffd"):
                end -= 1
            for s in stops:
                for k in range(min(len(s) - 1, end - slot.emitted), 0, -1):
                    if text[end - k : end] == s[:k]:
                        end -= k
                        break
        delta = text[slot.emitted : end] if end > slot.emitted else ""
        slot.emitted = max(slot.emitted, end)
        return delta, False

    # ------------------------------------------------------------------ model work (worker thread)
    def _reset_batch(self) -> None:
        self._rows, self._mask, self._pos, self._last, self._cache = [], None, None, None, None
        self._slab.clear()
        self._pending_drop = set()

    def _drop_rows(self, drop: set[str]) -> None:
        """Free the rows of finished/cancelled requests: the last rows move into the holes (a copy of the
        moved rows only, not of the whole cache), then leading all-padding columns are trimmed."""
        import torch

        if not drop or not self._rows:
            return
        with torch.inference_mode():
            self._drop_rows_now(drop)

    def _drop_rows_now(self, drop: set[str]) -> None:
        import torch

        gone = [i for i, rid in enumerate(self._rows) if rid in drop]
        if not gone:
            return
        n = len(self._rows)
        if len(gone) == n:
            self._reset_batch()
            return
        if not self.allow_join:  # the model's own cache object (any layer kind): select the kept rows
            keep = [i for i in range(n) if i not in set(gone)]
            idx = torch.tensor(keep, device=self._mask.device)
            self._cache.reorder_cache(idx)
            self._mask, self._pos = self._mask.index_select(0, idx), self._pos.index_select(0, idx)
            self._last = self._last.index_select(0, idx)
            self._rows = [self._rows[i] for i in keep]
            return
        n_new = n - len(gone)
        holes = [i for i in gone if i < n_new]
        movers = [i for i in range(n_new, n) if self._rows[i] not in drop]
        if holes:
            h = torch.tensor(holes, device=self._mask.device)
            m = torch.tensor(movers, device=self._mask.device)
            self._slab.move_rows(h, m)
            self._mask[h] = self._mask[m]
            self._pos[h] = self._pos[m]
            self._last[h] = self._last[m]
            for a, b in zip(holes, movers, strict=True):
                self._rows[a] = self._rows[b]
        self._rows = self._rows[:n_new]
        self._mask, self._pos, self._last = self._mask[:n_new], self._pos[:n_new], self._last[:n_new]
        self._slab.n = n_new
        nz = self._mask.any(dim=0).nonzero()
        first = int(nz[0]) if len(nz) else 0
        if first:
            self._slab.s += first
            self._mask = self._mask[:, first:]

    def _sample(self, logits: Any, slots: list[_Slot | None]) -> list[int]:
        import torch

        out: list[int] = logits.argmax(dim=-1).tolist()
        for i, slot in enumerate(slots):
            p = slot.params if slot is not None else None
            if p is None or p.temperature <= 0:
                continue
            probs = torch.softmax(logits[i].float() / p.temperature, dim=-1)
            if p.top_p < 1.0:
                sp, si = probs.sort(descending=True)
                keep = sp.cumsum(-1) - sp < p.top_p
                keep[0] = True
                probs = torch.zeros_like(probs).scatter(0, si[keep], sp[keep])
            out[i] = int(torch.multinomial(probs.cpu(), 1, generator=slot.generator if slot else None))
        return out

    def _prompt_ids(self, rid: str) -> list[int]:
        req = self.scheduler.get(rid)
        return list(req.prompt_ids) if req is not None else [self.pad_token_id]

    def _forward(self, **kwargs: Any) -> Any:
        if self._logits_to_keep:
            try:
                return self.model(**kwargs, logits_to_keep=1)
            except TypeError as exc:  # an older model class without ``logits_to_keep``
                if "logits_to_keep" not in str(exc):
                    raise
                self._logits_to_keep = False
        return self.model(**kwargs)

    def _step(
        self, plan: StepPlan, drop: set[str], slots: dict[str, _Slot], prompts: list[list[int]]
    ) -> dict[str, int]:
        import torch

        with torch.inference_mode():
            self._drop_rows(drop)
            tokens: dict[str, int] = {}
            if plan.decode:
                if len(self._rows) != len(plan.decode) or set(self._rows) != set(plan.decode):
                    raise GenerationError("batch rows out of sync with the scheduler")
                if self.allow_join:
                    self._slab.ensure_room()
                mask = torch.cat([self._mask, torch.ones_like(self._mask[:, :1])], dim=1)
                out = self._forward(
                    input_ids=self._last[:, None],
                    # one query per row: the padding mask is the whole attention mask; given in the 4D boolean
                    # form that SDPA takes, the model does not rebuild it every step (a noticeable share of a small model's step)
                    attention_mask=mask.bool()[:, None, None, :] if self._decode_mask_4d else mask,
                    position_ids=self._pos[:, None],
                    past_key_values=self._slab.cache if self.allow_join else self._cache,
                    use_cache=True,
                )
                if self.allow_join:
                    self._slab.e += 1
                self._mask = mask
                self._pos += 1
                new = self._sample(out.logits[:, -1, :], [slots.get(r) for r in self._rows])
                self._last = torch.tensor(new, device=self.device)
                tokens.update(zip(self._rows, new, strict=True))
            if plan.prefill:
                items = list(zip(plan.prefill, prompts, strict=True))
                if self.allow_join:
                    hits = [(rid, hit) for rid, p in items if (hit := self._prompt_cache.get(p)) is not None]
                    if hits:
                        tokens.update(self._join_cached(hits, slots))
                        self.stats["prompt_cache_hits"] += len(hits)
                        cached = {rid for rid, _ in hits}
                        items = [(rid, p) for rid, p in items if rid not in cached]
                for group in _length_groups(items) if self.allow_join else [items]:
                    tokens.update(self._prefill(group, slots))
            self.stats["max_rows"] = max(self.stats["max_rows"], len(self._rows))
            return tokens

    def _prefill(self, group: list[tuple[str, list[int]]], slots: dict[str, _Slot]) -> dict[str, int]:
        """Run the prompts of ``group`` (left padded to the longest), sample their first tokens and write
        their keys/values into the running batch (and the prompt cache)."""
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
        new = self._sample(logits, [slots.get(r) for r in rows])
        if not self.allow_join:  # static batching (see the module docstring): keep the model's own cache
            if self._rows:
                raise GenerationError("static batching: a prefill while rows are running")
            self._cache, self._mask, self._pos = out.past_key_values, pmask, pmask.sum(-1)
            self._last, self._rows = torch.tensor(new, device=self.device), rows
            return dict(zip(rows, new, strict=True))
        kv = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
        if self._prompt_cache.max_bytes:
            for i, (_, p) in enumerate(group):
                self._prompt_cache.put(
                    p, [(k[i, :, width - len(p) :], v[i, :, width - len(p) :]) for k, v in kv], logits[i]
                )
        return self._join(rows, kv, pmask, new)

    def _join_cached(self, hits: list[tuple[str, _Prompt]], slots: dict[str, _Slot]) -> dict[str, int]:
        """Admit prompts whose keys/values and next-token logits are in the prompt cache: no forward."""
        import torch

        rows = [rid for rid, _ in hits]
        width = max(h.length for _, h in hits)
        pmask = torch.zeros((len(hits), width), dtype=torch.long, device=self.device)
        kv = []
        for layer, (k0, v0) in enumerate(hits[0][1].kv):
            k = k0.new_zeros((len(hits), k0.shape[0], width, k0.shape[2]))
            v = v0.new_zeros((len(hits), v0.shape[0], width, v0.shape[2]))
            for i, (_, h) in enumerate(hits):
                k[i, :, width - h.length :] = h.kv[layer][0]
                v[i, :, width - h.length :] = h.kv[layer][1]
            kv.append((k, v))
        for i, (_, h) in enumerate(hits):
            pmask[i, width - h.length :] = 1
        new = self._sample(torch.stack([h.logits for _, h in hits]), [slots.get(r) for r in rows])
        return self._join(rows, kv, pmask, new)

    def _join(self, rows: list[str], kv: list[tuple[Any, Any]], pmask: Any, new: list[int]) -> dict[str, int]:
        """Append prefilled rows (keys/values ``[rows, heads, width, dim]`` per layer, left padded as
        ``pmask`` says; first tokens ``new``) to the running batch."""
        import torch

        width = pmask.shape[1]
        old_width = self._mask.shape[1] if self._rows else 0
        grow = self._slab.join(kv)
        if self._rows:
            self._mask = torch.cat([torch.zeros_like(self._mask[:, :1]).expand(-1, grow), self._mask], dim=1)
            fill = self._mask.shape[1] - width
            new_mask = torch.cat([torch.zeros_like(pmask[:, :1]).expand(-1, fill), pmask], dim=1)
            self._mask = torch.cat([self._mask, new_mask])
            self._pos = torch.cat([self._pos, pmask.sum(-1)])
            self._last = torch.cat([self._last, torch.tensor(new, device=self.device)])
            self._rows = self._rows + rows
        else:
            self._mask, self._pos = pmask, pmask.sum(-1)
            self._last = torch.tensor(new, device=self.device)
            self._rows = rows
        assert self._mask.shape[1] == self._slab.e - self._slab.s, (old_width, grow, width)
        return dict(zip(rows, new, strict=True))


def _length_groups(items: list[tuple[str, list[int]]], waste: float = 1.25) -> list[list[tuple[str, list[int]]]]:
    """Split prompts into prefill groups of similar length, so that left padding wastes at most about
    ``waste - 1`` of a group's compute (longest first)."""
    groups: list[list[tuple[str, list[int]]]] = []
    current: list[tuple[str, list[int]]] = []
    width = total = 0
    for item in sorted(items, key=lambda it: -len(it[1])):
        n = len(item[1])
        if current and (len(current) + 1) * width > waste * (total + n):
            groups.append(current)
            current, total = [], 0
        if not current:
            width = n
        current.append(item)
        total += n
    if current:
        groups.append(current)
    return groups


@dataclass
class _Prompt:
    """A cached prompt: per layer its keys and values ``[heads, length, dim]``, and the logits of the token
    that follows it."""

    kv: list[tuple[Any, Any]]
    logits: Any
    length: int
    nbytes: int


class _PromptCache:
    """Prefill results of recent prompts by token ids: least recently used first out, at most ``max_bytes``.

    Why: a bot's act prompts carry slot names, never slot values, so a handful of prompts recur in every
    conversation; a hit costs copying the prompt's keys/values into the batch instead of a model forward.
    An entry is what the prompt's prefill wrote into the batch, so a hit continues exactly as that did.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._entries: OrderedDict[tuple[int, ...], _Prompt] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, ids: list[int]) -> _Prompt | None:
        key = tuple(ids)
        hit = self._entries.get(key)
        if hit is not None:
            self._entries.move_to_end(key)
        return hit

    def put(self, ids: list[int], kv: list[tuple[Any, Any]], logits: Any) -> None:
        key = tuple(ids)
        nbytes = logits.nbytes + sum(k.nbytes + v.nbytes for k, v in kv)
        if key in self._entries or nbytes > self.max_bytes:
            return
        self._entries[key] = _Prompt([(k.clone(), v.clone()) for k, v in kv], logits.clone(), len(ids), nbytes)
        self.nbytes += nbytes
        while self.nbytes > self.max_bytes:
            self.nbytes -= self._entries.popitem(last=False)[1].nbytes


class _Slab:
    """Keys and values of the running batch, in buffers ``[rows, heads, columns, head_dim]`` per layer that
    are allocated once (grown by doubling when needed), so a decode step writes one column in place
    instead of copying the whole cache. Rows ``[0, n)`` are live; columns ``[s, e)`` are the window that
    attention reads; every row's tokens end at column ``e`` (left padding, masked). Every element of
    ``[0, n) x [s, e)`` has been written (keys/values or zeros), so stale memory is never read.
    """

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self.k: list[Any] = []
        self.v: list[Any] = []
        self.n = self.s = self.e = 0
        self.cache: Any = None

    @property
    def capacity(self) -> int:
        return self.k[0].shape[2] if self.k else 0

    def clear(self) -> None:
        self.n = self.s = self.e = 0

    def _allocate(self, like: list[tuple[Any, Any]], left: int, right: int) -> None:
        """New buffers with ``left`` free columns before the window and ``right`` after it."""
        from transformers import DynamicCache

        width = self.e - self.s
        cols = left + width + right
        ks, vs = [], []
        for i, (k, v) in enumerate(like):
            nk = k.new_empty((self.max_rows, k.shape[1], cols, k.shape[3]))
            nv = v.new_empty((self.max_rows, v.shape[1], cols, v.shape[3]))
            if self.n and width:
                nk[: self.n, :, left : left + width] = self.k[i][: self.n, :, self.s : self.e]
                nv[: self.n, :, left : left + width] = self.v[i][: self.n, :, self.s : self.e]
            ks.append(nk)
            vs.append(nv)
        self.k, self.v = ks, vs
        self.s, self.e = left, left + width
        cache = DynamicCache()
        cache.layer_class_to_replicate = None
        cache.layers = [_SlabLayer(self, i) for i in range(len(ks))]
        self.cache = cache

    def join(self, kv: list[tuple[Any, Any]]) -> int:
        """Append rows whose prefill keys/values are ``kv`` (``[rows, heads, width, dim]`` per layer), right
        aligned at column ``e``; returns how many columns the window grew to the left."""
        rows, width = kv[0][0].shape[0], kv[0][0].shape[2]
        if self.n + rows > self.max_rows:
            raise GenerationError("batch is full")
        if self.n == 0:  # empty batch: start the window so that the prompt ends at column ``width``
            self.s = self.e = width if self.capacity > width else 0
        cur = self.e - self.s
        grow = max(0, width - cur)
        if not self.k or self.s < grow or self.capacity - self.e < 1:
            right = max(64, cur + width)  # room for the coming decode steps (doubling)
            self._allocate(kv, left=grow + (0 if self.n == 0 else max(16, cur // 2)), right=right)
        self.s -= grow
        lo, hi = self.n, self.n + rows
        for i, (k, v) in enumerate(kv):
            if grow and self.n:
                self.k[i][: self.n, :, self.s : self.s + grow] = 0
                self.v[i][: self.n, :, self.s : self.s + grow] = 0
            self.k[i][lo:hi, :, self.e - width : self.e] = k
            self.v[i][lo:hi, :, self.e - width : self.e] = v
            if self.e - width > self.s:
                self.k[i][lo:hi, :, self.s : self.e - width] = 0
                self.v[i][lo:hi, :, self.s : self.e - width] = 0
        self.n = hi
        return grow

    def ensure_room(self) -> None:
        """At least one free column after ``e`` (called before a decode step)."""
        if self.capacity - self.e < 1:
            width = self.e - self.s
            self._allocate(list(zip(self.k, self.v, strict=True)), left=0, right=max(64, width))

    def move_rows(self, holes: Any, movers: Any) -> None:
        for k, v in zip(self.k, self.v, strict=True):
            k[holes, :, self.s : self.e] = k[movers, :, self.s : self.e]
            v[holes, :, self.s : self.e] = v[movers, :, self.s : self.e]


def _slab_layer_class() -> type:
    from transformers.cache_utils import DynamicLayer

    class SlabLayer(DynamicLayer):
        """One layer's view of a :class:`_Slab` (the transformers cache-layer interface)."""

        def __init__(self, slab: _Slab, index: int) -> None:
            super().__init__()
            self.slab, self.index, self.is_initialized = slab, index, True

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            sl, q = self.slab, key_states.shape[-2]
            k, v = sl.k[self.index], sl.v[self.index]
            k[: sl.n, :, sl.e : sl.e + q] = key_states
            v[: sl.n, :, sl.e : sl.e + q] = value_states
            self.keys, self.values = k[: sl.n, :, sl.s : sl.e + q], v[: sl.n, :, sl.s : sl.e + q]
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.slab.e - self.slab.s

    return SlabLayer


_SLAB_LAYER: type | None = None


def _SlabLayer(slab: _Slab, index: int) -> Any:
    global _SLAB_LAYER
    if _SLAB_LAYER is None:
        _SLAB_LAYER = _slab_layer_class()
    return _SLAB_LAYER(slab, index)
