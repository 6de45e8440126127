"""Prometheus metrics of one chat-server process, served as ``GET /metrics`` (text exposition format).

Each :class:`Metrics` owns its own ``CollectorRegistry`` (not the process-global one), so several servers in one
process (tests) never collide, and a worker exposes only what it measured itself. Labels are fixed, small sets
(stages, wire error codes, outcomes): never conversation ids or text.

**Several workers, one view.** A scrape of a port that several ``kefu serve --reuse-port`` workers share reaches
one random worker. With ``PROMETHEUS_MULTIPROC_DIR`` set (``kefu serve --metrics-dir DIR`` sets it), every worker
writes its values to files in that shared directory (prometheus-client's multiprocess mode) and
:meth:`Metrics.render` serves the aggregate of all of them (``MultiProcessCollector``): counters and histograms
are summed; the gauges say how: ``kefu_pending_turns`` and ``kefu_open_connections`` are the sum over live
workers (``livesum``), ``kefu_queue_delay_seconds`` and ``kefu_admission_budget_seconds`` the largest value of a
live worker (``livemax``: the most loaded worker is the one that sheds). The variable must be set before
``prometheus_client`` is imported (it picks its value class once), so :class:`Metrics` refuses a late one. A
worker's live gauges are dropped when it exits (``mark_process_dead``), and a new worker drops those of workers
that died without exiting (``kill -9``). Keep one :class:`Metrics` per process in this mode (two would write
the same file entries). Without the variable nothing changes: one registry per process.

==========================================  ========  ===================================================
metric                                      type      meaning
==========================================  ========  ===================================================
``kefu_turn_latency_seconds{stage}``        histogram ``total``: the whole turn as the server saw it; the
                                                      engine's stages (``safety_in``, ``nlu``, ``policy``,
                                                      ``action``, ``generation``, ``safety_out``) from the
                                                      ``latency_ms`` of each stored ``bot_message`` event
``kefu_turns_total{outcome}``               counter   answered turns: ``ok``, ``replayed`` or ``error``
``kefu_errors_total{code}``                 counter   error frames sent, by wire code (``rate_limited``...)
``kefu_pending_turns``                      gauge     turns queued or running, all connections together
``kefu_open_connections``                   gauge     open WebSocket connections
``kefu_connections_refused_total{reason}``  counter   handshakes refused (``max_connections``, ``connections_per_address``)
``kefu_generated_tokens_total``             counter   streamed reply fragments (``rate()`` = tokens/s)
``kefu_safety_blocks_total{kind}``          counter   ``input`` (message blocked by the input filter) or
                                                      ``output`` (toxic reply replaced)
``kefu_handoffs_total``                     counter   conversations handed to a human
``kefu_messages_received_total``            counter   client frames read (before validation)
``kefu_shed_turns_total{reason}``           counter   messages answered ``busy`` by admission control, not
                                                      queued: ``overloaded`` (estimated queueing delay over
                                                      the budget) or ``held`` (behind a shed message of the
                                                      same connection); a retry that is admitted counts as a
                                                      turn as usual
``kefu_queue_delay_seconds``                gauge     the worker's estimated queueing delay for a new turn
                                                      (:mod:`channels.admission`), read at scrape time (in
                                                      multiprocess mode: written at each turn's end and
                                                      at each scrape of that worker)
``kefu_admission_budget_seconds``           gauge     the budget it is compared with (0: never shed)
==========================================  ========  ===================================================
"""

from __future__ import annotations

import atexit
import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import values as prometheus_values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from dialogue.types import BOT_MESSAGE, HANDOFF, SAFETY_INPUT, SAFETY_OUTPUT

#: Seconds; covers a template reply on an idle machine (ms) up to a slow generator or action (tens of seconds).
LATENCY_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0
)
TOTAL_STAGE: Final = "total"
#: The engine's stage names (``dialogue.engine``); others found in events are counted as ``other``.
ENGINE_STAGES: Final = frozenset({"safety_in", "nlu", "policy", "action", "generation", "safety_out"})
#: The variable prometheus-client reads (once, at import) to switch to multiprocess mode.
MULTIPROCESS_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
#: A live gauge's file (``gauge_livesum_1234.db``): what a dead worker leaves that would still count.
_LIVE_GAUGE_FILE: Final = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")
_exit_hooked = False


def multiprocess_directory() -> str | None:
    """The shared metrics directory when prometheus-client is in multiprocess mode, else ``None``.

    Read from the environment, as prometheus-client does (its deprecated lower-case name included)."""
    return os.environ.get(MULTIPROCESS_ENV) or os.environ.get(MULTIPROCESS_ENV.lower()) or None


def render_multiprocess(directory: str | os.PathLike[str]) -> tuple[bytes, str]:
    """The aggregate of every process that wrote to ``directory``: exposition-format body and content type.

    A fresh registry per call, as prometheus-client prescribes: the collector reads the files at each scrape."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=os.fspath(directory))
    return generate_latest(registry), CONTENT_TYPE_LATEST


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def drop_dead_workers(directory: str | os.PathLike[str]) -> list[int]:
    """Mark dead the workers whose live gauges are still in ``directory`` but whose process is gone (killed
    without exiting), so that ``kefu_open_connections`` and ``kefu_pending_turns`` stop counting them."""
    dead: set[int] = set()
    for path in Path(directory).iterdir():
        found = _LIVE_GAUGE_FILE.match(path.name)
        if found is not None and int(found.group(1)) != os.getpid() and not _pid_alive(int(found.group(1))):
            dead.add(int(found.group(1)))
    for pid in sorted(dead):
        mark_process_dead(pid, os.fspath(directory))
    return sorted(dead)


def _start_multiprocess(directory: str) -> None:
    """Checks and bookkeeping of this process's first multiprocess :class:`Metrics`."""
    global _exit_hooked
    if prometheus_values.ValueClass is prometheus_values.MutexValue:
        raise RuntimeError(
            f"{MULTIPROCESS_ENV} was set after prometheus_client was imported: set it before (kefu serve --metrics-dir)"
        )
    if not os.path.isdir(directory):
        raise RuntimeError(f"{MULTIPROCESS_ENV} is not a directory: {directory}")
    if _exit_hooked:
        return
    _exit_hooked = True
    drop_dead_workers(directory)
    pid = os.getpid()
    atexit.register(mark_process_dead, pid, directory)  # this worker's connections and pending turns stop counting


class _SampledGauge(Gauge):
    """A gauge read from a function at scrape time (``set_function``). In multiprocess mode the aggregate is read
    from the files, never by calling the function, so :meth:`refresh` writes the function's current value there."""

    _function: Callable[[], float] | None = None

    def set_function(self, f: Callable[[], float]) -> None:
        self._function = f
        super().set_function(f)

    def refresh(self) -> None:
        if self._function is not None:
            self.set(self._function())


class _EventLike(Protocol):
    @property
    def type(self) -> str: ...

    @property
    def data(self) -> dict[str, Any]: ...


class Metrics:
    """The metrics of one server process. Thread-safe (``prometheus_client`` locks), cheap to update."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        #: The shared directory of all workers (multiprocess mode: :meth:`render` serves their aggregate) or None.
        self.multiprocess_dir = multiprocess_directory()
        if self.multiprocess_dir is not None:
            _start_multiprocess(self.multiprocess_dir)
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.turn_latency = Histogram(
            "kefu_turn_latency_seconds", "Turn latency by stage (total = the whole turn as the server saw it).",
            ["stage"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.turns = Counter("kefu_turns", "Answered turns by outcome (ok, replayed, error).", ["outcome"], registry=r)
        self.errors = Counter("kefu_errors", "Error frames sent, by wire error code.", ["code"], registry=r)
        self.pending = Gauge(
            "kefu_pending_turns", "Turns queued or running, all connections together.", registry=r,
            multiprocess_mode="livesum",
        )
        self.connections = Gauge(
            "kefu_open_connections", "Open WebSocket connections.", registry=r, multiprocess_mode="livesum"
        )
        self.refused = Counter(
            "kefu_connections_refused", "WebSocket handshakes refused, by reason.", ["reason"], registry=r
        )
        self.tokens = Counter("kefu_generated_tokens", "Streamed reply fragments (tokens).", registry=r)
        self.safety_blocks = Counter(
            "kefu_safety_blocks", "Safety interventions: input (blocked message), output (toxic reply replaced).",
            ["kind"], registry=r,
        )
        self.handoffs = Counter("kefu_handoffs", "Conversations handed off to a human agent.", registry=r)
        self.messages = Counter("kefu_messages_received", "Client frames read, before validation.", registry=r)
        self.shed = Counter(
            "kefu_shed_turns", "Messages answered busy by admission control (not queued, not stored), by reason.",
            ["reason"], registry=r,
        )
        self.queue_delay = _SampledGauge(
            "kefu_queue_delay_seconds", "Estimated queueing delay of a new turn in this worker.", registry=r,
            multiprocess_mode="livemax",
        )
        self.admission_budget = Gauge(
            "kefu_admission_budget_seconds", "Queueing delay above which new turns are shed (0: never).", registry=r,
            multiprocess_mode="livemax",
        )

    def __repr__(self) -> str:
        return "Metrics()"

    # ------------------------------------------------------------------------------------------------ updates
    def error(self, code: str) -> None:
        self.errors.labels(code).inc()

    def turn_done(self, outcome: str, seconds: float | None = None) -> None:
        """A turn ended: ``ok``/``replayed``/``error``; ``seconds`` feeds the ``total`` stage."""
        self.turns.labels(outcome).inc()
        if seconds is not None:
            self.turn_latency.labels(TOTAL_STAGE).observe(max(0.0, seconds))
        if self.multiprocess_dir is not None:
            self.queue_delay.refresh()

    def observe_stages(self, latency_ms: Mapping[str, Any]) -> None:
        """The engine's per-stage latencies of one turn (milliseconds, as stored in ``bot_message``)."""
        for stage, value in latency_ms.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                continue
            label = stage if stage in ENGINE_STAGES else "other"
            self.turn_latency.labels(label).observe(float(value) / 1000.0)

    def observe_turn_events(self, events: Iterable[_EventLike]) -> None:
        """Everything a committed turn's events say: stage latencies, safety blocks, a handoff."""
        for event in events:
            data = event.data if isinstance(event.data, dict) else {}
            if event.type == BOT_MESSAGE:
                latency = data.get("latency_ms")
                if isinstance(latency, dict):
                    self.observe_stages(latency)
            elif event.type == SAFETY_INPUT and data.get("blocked") is True:
                self.safety_blocks.labels("input").inc()
            elif event.type == SAFETY_OUTPUT and data.get("replaced") is True:
                self.safety_blocks.labels("output").inc()
            elif event.type == HANDOFF:
                self.handoffs.inc()

    # ------------------------------------------------------------------------------------------------ reading
    def render(self) -> tuple[bytes, str]:
        """The exposition-format body and its content type: this process's registry, or in multiprocess mode the
        aggregate of every worker sharing the directory (whichever worker a scrape reaches, it sees them all)."""
        if self.multiprocess_dir is not None:
            self.queue_delay.refresh()
            return render_multiprocess(self.multiprocess_dir)
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def value(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """One sample's current value in this process (``0.0`` if absent), e.g.
        ``value("kefu_errors_total", {"code": "busy"})``; in multiprocess mode too (not the aggregate)."""
        found = self.registry.get_sample_value(name, dict(labels or {}))
        return float(found) if found is not None else 0.0
