"""Async batched generation engine for any transformers causal LM folder: the request lifecycle.

One asyncio background task drives a :class:`~runtime.scheduler.Scheduler` through its contract: ``schedule()``
plans a step, the model runner runs it, ``update(StepOutputs)`` applies its tokens and names the requests that
finished. Each step runs in a worker thread (``asyncio.to_thread``) so the event loop never blocks. Requests join
mid-flight (continuous batching): a burst of arrivals is admitted ``max_prefill_tokens`` prompt tokens per step,
shortest prompt first (see :mod:`runtime.scheduler`), interleaved with decoding.

What lives where: this module owns requests (submission, the queue of text deltas each consumer reads,
cancellation, finishing, failure); :mod:`runtime.model_runner` runs the forwards of a step and holds the running
batch; :mod:`runtime.kv_cache` holds the batch's keys/values (a slab written in place) and the prompt cache;
:mod:`runtime.detokenizer` turns each request's tokens into safe-to-send text; :mod:`runtime.sampling` chooses
tokens. A batched greedy request yields the same tokens as ``model.generate`` for that prompt alone (see
:mod:`runtime.model_runner`).

Prompt cache: the keys/values and next-token logits of recently prefilled prompts are kept by token ids (least
recently used out, ``prompt_cache_mb``); a repeated prompt joins the batch with no forward. The embedded
generator's prompts name an act and its slots, never slot values, so in a running bot nearly every reply's prompt
is a repeat, and the step that admits it costs one decode forward instead of one plus a prefill forward per length
group.

Completion cache (:mod:`runtime.completion_cache`): a greedy request whose prompt, token budget and stop strings
were completed before is answered from the stored tokens, with no step at all (``completion_cache`` entries; 0
turns it off). For the same reason as above, in a running bot nearly every reply is such a repeat.
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

from runtime.completion_cache import CompletionCache, CompletionKey
from runtime.detokenizer import Detokenizer
from runtime.errors import EngineClosed, GenerationError, ModelLoadError
from runtime.model_runner import ModelRunner
from runtime.sampling import Sampler, SamplingParams
from runtime.scheduler import Request, Scheduler, StepOutputs

__all__ = ["Engine", "SamplingParams", "TextEngine"]

log = logging.getLogger(__name__)


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
    """One submitted request on the engine's side: how it samples, its text so far, and the queue its
    consumer reads (text deltas, then an exception or the end marker)."""

    request_id: str
    sampler: Sampler
    text: Detokenizer
    queue: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    done: bool = False
    info: dict[str, Any] | None = None
    memo: CompletionKey | None = None  # where its completion is stored once finished (greedy requests)


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
        completion_cache: int = 1024,
    ) -> None:
        """``prompt_cache_mb`` bounds the prompt cache, ``completion_cache`` the completions kept (see the module
        docstring; 0 turns either off)."""
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
        #: the model work, touched only inside the worker thread (one step at a time)
        self.runner = ModelRunner(model, device, max_batch, self.pad_token_id, int(prompt_cache_mb * 2**20))
        self.allow_join = self.runner.allow_join
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
        self._pending_drop: set[str] = set()  # finished rows, freed at the start of the next step
        self.completions = CompletionCache(completion_cache)
        self._counts = {"steps": 0, "prefills": 0, "joins": 0, "tokens": 0, "completion_cache_hits": 0}

    @property
    def stats(self) -> dict[str, int]:
        """Counters: model steps, steps with admissions, joins (admissions while others decode), largest batch,
        generated tokens, prefill forwards, prompts taken from the prompt cache, requests answered from the
        completion cache."""
        c, r = self._counts, self.runner.stats
        return {
            "steps": c["steps"], "prefills": c["prefills"], "joins": c["joins"], "max_rows": r["max_rows"],
            "tokens": c["tokens"], "prefill_forwards": r["prefill_forwards"],
            "prompt_cache_hits": r["prompt_cache_hits"], "completion_cache_hits": c["completion_cache_hits"],
        }  # fmt: skip

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(
        cls, model_dir: str | Path, device: str = "cpu", max_batch: int = 16, max_queue: int = 256, **options: Any
    ) -> Engine:
        """Load a causal LM and its tokenizer from a local folder (never downloads); ``options`` go to
        the constructor (``max_prefill_tokens``, ``prompt_cache_mb``, ``completion_cache``)."""
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
        if info is not None:
            info["prompt_tokens"] = len(prompt_ids)
        memo = self.completions.key(prompt_ids, max_tokens, params.stop, params.temperature)
        done = self.completions.get(memo)
        if done is not None:
            self._counts["completion_cache_hits"] += 1
            if info is not None:
                info["completion_tokens"] = len(done.tokens)
                info["finish_reason"] = done.finish_reason
            if done.text:
                yield done.text  # one delta: the text is all there, and each delta costs its consumer a frame
            return
        rid = f"r{next(self._ids)}"
        slot = _Slot(rid, Sampler(params), Detokenizer(self.tokenizer, params.stop), info=info, memo=memo)
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
                    await asyncio.to_thread(self.runner.drop_rows, drop)
                continue
            samplers = {rid: self._slots[rid].sampler for rid in plan.scheduled if rid in self._slots}
            self._counts["steps"] += 1
            self._counts["prefills"] += bool(plan.prefill)
            self._counts["joins"] += bool(plan.prefill and plan.decode)
            try:
                prompts = [self._prompt_ids(rid) for rid in plan.prefill]
                tokens = await asyncio.to_thread(self.runner.step, plan, drop, samplers, prompts)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a model failure ends every active request, the engine stays usable
                log.exception("generation step failed")
                self.runner.reset()
                self._pending_drop = set()
                self._fail_all(GenerationError(f"generation step failed: {type(exc).__name__}: {exc}"))
                continue
            self._deliver(tokens)

    def _deliver(self, tokens: dict[str, int]) -> None:
        """One step's tokens: detokenise them, let the scheduler finish requests, and send each consumer its
        text (and the end, with ``info`` filled, for the finished ones)."""
        stopped = set()
        deltas: dict[str, str] = {}
        for rid, tok in tokens.items():
            slot = self._slots.get(rid)
            if slot is None or slot.done:
                continue
            deltas[rid], hit_stop = slot.text.push(tok)
            if hit_stop:
                stopped.add(rid)
        self._counts["tokens"] += len(tokens)
        finished = set(self.scheduler.update(StepOutputs(tokens=tokens, finished=frozenset(stopped))))
        self._pending_drop |= finished
        for rid, delta in deltas.items():
            slot = self._slots[rid]
            if rid in finished and rid not in stopped:
                delta += slot.text.flush()
            if delta:
                slot.queue.put_nowait(delta)
            if rid in finished:
                ids = slot.text.token_ids
                natural = rid in stopped or (ids and ids[-1] in self.eos_token_ids)
                reason = "stop" if natural else "length"
                self.completions.put(slot.memo, ids, reason, slot.text.sent)
                if slot.info is not None:
                    slot.info["completion_tokens"] = len(ids)
                    slot.info["finish_reason"] = reason
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

    def _prompt_ids(self, rid: str) -> list[int]:
        req = self.scheduler.get(rid)
        return list(req.prompt_ids) if req is not None else [self.pad_token_id]
