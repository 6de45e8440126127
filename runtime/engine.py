"""Async batched generation engine for any transformers causal LM folder.

One asyncio background task drives a :class:`~runtime.scheduler.Scheduler`; each model step runs in a
worker thread (``asyncio.to_thread``) so the event loop never blocks. A step decodes the running rows
(one token each, with the KV cache) and prefills the newly admitted requests (left padded, with
attention mask and explicit position ids); the new rows' cache is then left padded to the running
batch's length and concatenated on the batch axis (continuous batching: requests join mid-flight).
Finished or cancelled rows are removed from the cache and leading all-padding columns are trimmed.

Each row attends only to its own tokens (padding is masked) and uses its own positions, so a batched
greedy request yields the same tokens as ``model.generate`` for that prompt alone (up to floating-point
reduction order, which only matters for near-ties). Models whose cache is not made of plain full
attention layers (sliding window, linear/recurrent state) are run with ``allow_join=False``: requests
that arrive together are prefilled together and later ones wait for the batch to drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
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


class Engine:
    """Batched async text generation (see module docstring)."""

    def __init__(
        self, model: Any, tokenizer: Any, device: str = "cpu", max_batch: int = 16, max_queue: int = 256
    ) -> None:
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
        self.scheduler = Scheduler(max_batch, max_queue, allow_join=self.allow_join)
        self._slots: dict[str, _Slot] = {}
        self._ids = itertools.count()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        # batch state, touched only inside the worker thread (one step at a time)
        self._rows: list[str] = []
        self._cache: Any = None
        self._mask: Any = None
        self._pos: Any = None
        self._last: Any = None
        self._pending_drop: set[str] = set()
        #: counters: model steps, prefill batches, joins (prefill while others decode), largest batch
        self.stats = {"steps": 0, "prefills": 0, "joins": 0, "max_rows": 0}

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, model_dir: str | Path, device: str = "cpu", max_batch: int = 16, max_queue: int = 256) -> Engine:
        """Load a causal LM and its tokenizer from a local folder (never downloads)."""
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
        return cls(model, tokenizer, device=device, max_batch=max_batch, max_queue=max_queue)

    def _plain_cache_model(self) -> bool:
        cfg = self.model.config
        if getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", True):
            return False
        layer_types = getattr(cfg, "layer_types", None)
        return not (layer_types and any(t != "full_attention" for t in layer_types))

    # ------------------------------------------------------------------ public API
    async def stream(self, prompt: str, params: SamplingParams | None = None) -> AsyncIterator[str]:
        """Yield text deltas as tokens are produced. Stopping iteration (``aclose`` / task cancel)
        cancels the request and frees its batch slot."""
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
        slot = _Slot(rid, params)
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

    async def generate(self, prompt: str, params: SamplingParams | None = None) -> str:
        """The whole completion as one string."""
        parts = []
        async for delta in self.stream(prompt, params):
            parts.append(delta)
        return "".join(parts)

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
            finished = set(self.scheduler.update(StepOutputs(tokens=tokens, finished=frozenset(stopped))))
            self._pending_drop |= finished
            for rid, delta in deltas.items():
                slot = self._slots[rid]
                if rid in finished and rid not in stopped:
                    delta += self._detok(slot, final=True)[0]
                if delta:
                    slot.queue.put_nowait(delta)
                if rid in finished:
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
        self._rows, self._cache, self._mask, self._pos, self._last = [], None, None, None, None
        self._pending_drop = set()

    def _layers_kv(self, cache: Any) -> list[tuple[Any, Any]]:
        return [(layer.keys, layer.values) for layer in cache.layers]

    def _make_cache(self, kv: list[tuple[Any, Any]]) -> Any:
        from transformers import DynamicCache

        return DynamicCache(ddp_cache_data=kv)

    def _drop_rows(self, drop: set[str]) -> None:
        import torch

        if not drop or not self._rows:
            return
        keep = [i for i, rid in enumerate(self._rows) if rid not in drop]
        if len(keep) == len(self._rows):
            return
        if not keep:
            self._reset_batch()
            return
        idx = torch.tensor(keep, device=self._mask.device)
        mask = self._mask.index_select(0, idx)
        # trim leading columns that are padding for every remaining row
        nz = mask.any(dim=0).nonzero()
        first = int(nz[0]) if len(nz) else 0
        kv = [
            (k.index_select(0, idx)[:, :, first:], v.index_select(0, idx)[:, :, first:])
            for k, v in self._layers_kv(self._cache)
        ]
        self._cache = self._make_cache(kv)
        self._mask = mask[:, first:]
        self._pos = self._pos.index_select(0, idx)
        self._last = self._last.index_select(0, idx)
        self._rows = [self._rows[i] for i in keep]

    def _sample(self, logits: Any, slots: list[_Slot | None]) -> list[int]:
        import torch

        out: list[int] = []
        greedy = logits.argmax(dim=-1).tolist()
        for i, slot in enumerate(slots):
            p = slot.params if slot is not None else None
            if p is None or p.temperature <= 0:
                out.append(int(greedy[i]))
                continue
            probs = torch.softmax(logits[i].float() / p.temperature, dim=-1)
            if p.top_p < 1.0:
                sp, si = probs.sort(descending=True)
                keep = sp.cumsum(-1) - sp < p.top_p
                keep[0] = True
                probs = torch.zeros_like(probs).scatter(0, si[keep], sp[keep])
            out.append(int(torch.multinomial(probs.cpu(), 1, generator=slot.generator if slot else None)))
        return out

    def _prompt_ids(self, rid: str) -> list[int]:
        req = self.scheduler.get(rid)
        return list(req.prompt_ids) if req is not None else [self.pad_token_id]

    def _step(
        self, plan: StepPlan, drop: set[str], slots: dict[str, _Slot], prompts: list[list[int]]
    ) -> dict[str, int]:
        import torch

        with torch.inference_mode():
            self._drop_rows(drop)
            tokens: dict[str, int] = {}
            if plan.decode:
                if self._rows != list(plan.decode):
                    raise GenerationError("batch rows out of sync with the scheduler")
                mask = torch.cat([self._mask, torch.ones_like(self._mask[:, :1])], dim=1)
                out = self.model(
                    input_ids=self._last[:, None],
                    attention_mask=mask,
                    position_ids=self._pos[:, None],
                    past_key_values=self._cache,
                    use_cache=True,
                )
                self._cache, self._mask = out.past_key_values, mask
                self._pos = self._pos + 1
                new = self._sample(out.logits[:, -1, :], [slots.get(r) for r in self._rows])
                self._last = torch.tensor(new, device=self.device)
                tokens.update(zip(self._rows, new, strict=True))
            if plan.prefill:
                width = max(len(p) for p in prompts)
                ids = torch.full((len(prompts), width), self.pad_token_id, dtype=torch.long)
                pmask = torch.zeros((len(prompts), width), dtype=torch.long)
                for i, p in enumerate(prompts):
                    ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
                    pmask[i, width - len(p) :] = 1
                pos = (pmask.cumsum(-1) - 1).clamp(min=0)
                ids, pmask, pos = ids.to(self.device), pmask.to(self.device), pos.to(self.device)
                from transformers import DynamicCache

                out = self.model(
                    input_ids=ids,
                    attention_mask=pmask,
                    position_ids=pos,
                    past_key_values=DynamicCache(),
                    use_cache=True,
                )
                new = self._sample(out.logits[:, -1, :], [slots.get(r) for r in plan.prefill])
                tokens.update(zip(plan.prefill, new, strict=True))
                self._merge(
                    list(plan.prefill), out.past_key_values, pmask, pmask.sum(-1), torch.tensor(new, device=self.device)
                )
            self.stats["max_rows"] = max(self.stats["max_rows"], len(self._rows))
            return tokens

    def _merge(self, rows: list[str], cache: Any, mask: Any, pos: Any, last: Any) -> None:
        import torch

        if not self._rows:
            self._rows, self._cache, self._mask, self._pos, self._last = rows, cache, mask, pos, last
            return
        old_kv, new_kv = self._layers_kv(self._cache), self._layers_kv(cache)
        lo, ln = self._mask.shape[1], mask.shape[1]
        length = max(lo, ln)

        def pad(t: Any, n: int) -> Any:  # left pad the sequence axis (dim 2 of kv, dim 1 of masks)
            if n == 0:
                return t
            shape = list(t.shape)
            axis = 2 if t.dim() == 4 else 1
            shape[axis] = n
            return torch.cat([torch.zeros(shape, dtype=t.dtype, device=t.device), t], dim=axis)

        kv = [
            (
                torch.cat([pad(ko, length - lo), pad(kn, length - ln)]),
                torch.cat([pad(vo, length - lo), pad(vn, length - ln)]),
            )
            for (ko, vo), (kn, vn) in zip(old_kv, new_kv, strict=True)
        ]
        self._cache = self._make_cache(kv)
        self._mask = torch.cat([pad(self._mask, length - lo), pad(mask, length - ln)])
        self._pos = torch.cat([self._pos, pos])
        self._last = torch.cat([self._last, last])
        self._rows = self._rows + rows
