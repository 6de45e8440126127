"""Pure batching scheduler (no torch, no asyncio): which requests prefill, which decode, which finish.

Continuous batching: every step the scheduler admits waiting requests into free slots (up to
``max_batch`` running, and with ``max_prefill_tokens`` at most that many prompt tokens per step, at least
one request: a burst of arrivals is prefilled over several steps, interleaved with decoding, so the
first ones start streaming sooner); the engine prefills the newly admitted ones and decodes the running ones in the
same step, then merges them into one batch. With ``allow_join=False`` new requests are admitted only
when the batch is empty (static batching: requests that arrive together are prefilled together).

Admission order is shortest prompt first, not arrival order: in a burst the short prompts' first tokens come
after a fraction of the burst's prefill instead of after whatever long prompts arrived before them (shortest job
first minimises the mean wait), and the prompts admitted in one step have similar lengths, so the engine prefills
them in few, large, little-padded forwards. A request that has waited ``max_wait_steps`` steps goes before every
shorter one (in arrival order), so a steady stream of short prompts cannot starve a long one.

Life of a request: ``add`` -> waiting -> (``schedule``: prefill) -> running -> (``update``: one token
per step) -> finished (EOS token, ``max_tokens`` reached, or flagged by the engine, e.g. a stop string).
``cancel`` removes a waiting request at once; a running one is listed in the next plan's ``release`` so
the engine frees its batch row, and its slot is reusable in that same plan.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from runtime.errors import QueueFull


@dataclass
class Request:
    """A generation request as the scheduler sees it (token ids only, no text)."""

    request_id: str
    prompt_ids: list[int]
    max_tokens: int
    eos_token_ids: frozenset[int] = frozenset()
    output_ids: list[int] = field(default_factory=list)

    def __repr__(self) -> str:  # prompt ids may encode customer text
        return f"Request(id={self.request_id!r}, prompt_len={len(self.prompt_ids)}, out={len(self.output_ids)})"


@dataclass(frozen=True)
class StepPlan:
    """What the engine runs in one step."""

    prefill: tuple[str, ...] = ()  # newly admitted: run the prompt, sample the first token
    decode: tuple[str, ...] = ()  # already running: feed the last token, sample the next
    release: tuple[str, ...] = ()  # cancelled while running: drop their batch rows before this step

    @property
    def empty(self) -> bool:
        return not (self.prefill or self.decode)

    @property
    def scheduled(self) -> tuple[str, ...]:
        return self.decode + self.prefill


@dataclass(frozen=True)
class StepOutputs:
    """Result of one step: one new token per scheduled request, plus requests the engine ended itself."""

    tokens: dict[str, int]
    finished: frozenset[str] = frozenset()


class Scheduler:
    """Admission, bounded queue, cancellation and finishing for a batched decoder."""

    def __init__(
        self,
        max_batch: int,
        max_queue: int,
        allow_join: bool = True,
        max_prefill_tokens: int | None = None,
        max_wait_steps: int = 16,
    ) -> None:
        """``max_wait_steps``: after this many steps in the queue a request is admitted before shorter ones (see
        the module docstring)."""
        if max_batch < 1 or max_queue < 0:
            raise ValueError("max_batch must be >= 1 and max_queue >= 0")
        if max_prefill_tokens is not None and max_prefill_tokens < 1:
            raise ValueError("max_prefill_tokens must be >= 1")
        if max_wait_steps < 0:
            raise ValueError("max_wait_steps must be >= 0")
        self.max_batch = max_batch
        self.max_prefill_tokens = max_prefill_tokens
        self.max_wait_steps = max_wait_steps
        self._steps = 0  # schedule() calls so far: the clock that ``max_wait_steps`` counts in
        self._since: dict[str, int] = {}  # waiting request -> the step count when it was added
        self.max_queue = max_queue
        self.allow_join = allow_join
        self._waiting: OrderedDict[str, Request] = OrderedDict()
        self._running: OrderedDict[str, Request] = OrderedDict()
        self._release: list[str] = []
        self._in_flight: StepPlan | None = None

    # ------------------------------------------------------------------ state
    @property
    def waiting(self) -> tuple[str, ...]:
        return tuple(self._waiting)

    @property
    def running(self) -> tuple[str, ...]:
        return tuple(self._running)

    def get(self, request_id: str) -> Request | None:
        return self._running.get(request_id) or self._waiting.get(request_id)

    def has_work(self) -> bool:
        return bool(self._waiting or self._running or self._release)

    def __len__(self) -> int:
        return len(self._waiting) + len(self._running)

    # ------------------------------------------------------------------ API
    def add(self, request: Request) -> None:
        """Queue a request; raises :class:`QueueFull` when ``max_queue`` requests already wait."""
        if request.request_id in self._waiting or request.request_id in self._running:
            raise ValueError(f"duplicate request id {request.request_id!r}")
        if request.max_tokens < 1:
            raise ValueError("max_tokens must be >= 1")
        if len(self._waiting) >= self.max_queue:
            raise QueueFull(self.max_queue)
        self._waiting[request.request_id] = request
        self._since[request.request_id] = self._steps

    def cancel(self, request_id: str) -> bool:
        """Forget a request; returns False if it is unknown or already finished."""
        if self._waiting.pop(request_id, None) is not None:
            del self._since[request_id]
            return True
        if self._running.pop(request_id, None) is not None:
            self._release.append(request_id)
            return True
        return False

    def schedule(self) -> StepPlan:
        """Plan the next step: release cancelled rows, decode running requests, admit waiting ones."""
        if self._in_flight is not None:
            raise RuntimeError("schedule() called twice without update()")
        release, self._release = tuple(self._release), []
        decode = tuple(self._running)
        prefill: list[str] = []
        budget = self.max_prefill_tokens
        if (self.allow_join or not self._running) and self._waiting and len(self._running) < self.max_batch:
            for req in self._admission_order():
                if len(self._running) >= self.max_batch:
                    break
                if budget is not None and prefill and len(req.prompt_ids) > budget:
                    break
                rid = req.request_id
                del self._waiting[rid], self._since[rid]
                if budget is not None:
                    budget -= len(req.prompt_ids)
                self._running[rid] = req
                prefill.append(rid)
        self._steps += 1
        plan = StepPlan(prefill=tuple(prefill), decode=decode, release=release)
        self._in_flight = None if plan.empty else plan
        return plan

    def _admission_order(self) -> list[Request]:
        """Waiting requests in the order they are admitted: those that waited ``max_wait_steps`` steps first, in
        arrival order, then the others shortest prompt first (arrival order among equal lengths)."""
        due = self._steps - self.max_wait_steps
        old = [r for r in self._waiting.values() if self._since[r.request_id] <= due]
        young = [r for r in self._waiting.values() if self._since[r.request_id] > due]
        return old + sorted(young, key=lambda r: len(r.prompt_ids))

    def update(self, outputs: StepOutputs) -> list[str]:
        """Apply one step's tokens; returns the ids that finished (their rows must be freed)."""
        plan, self._in_flight = self._in_flight, None
        if plan is None:
            raise RuntimeError("update() without a scheduled step")
        finished: list[str] = []
        for rid in plan.scheduled:
            req = self._running.get(rid)
            if req is None:  # cancelled while the step ran; its row is already queued for release
                continue
            if rid not in outputs.tokens:
                raise ValueError(f"no token for scheduled request {rid!r}")
            tok = outputs.tokens[rid]
            req.output_ids.append(tok)
            if tok in req.eos_token_ids or len(req.output_ids) >= req.max_tokens or rid in outputs.finished:
                del self._running[rid]
                finished.append(rid)
        return finished

    def abort_all(self) -> list[str]:
        """Drop every waiting and running request (e.g. after an engine error); returns their ids."""
        ids = list(self._running) + list(self._waiting)
        self._running.clear()
        self._waiting.clear()
        self._since.clear()
        self._release.clear()
        self._in_flight = None
        return ids
