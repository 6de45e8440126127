"""Prometheus metrics of one chat-server process, served as ``GET /metrics`` (text exposition format).

Each :class:`Metrics` owns its own ``CollectorRegistry`` (not the process-global one), so several servers in one
process (tests) never collide, and a worker exposes only what it measured itself: with several ``kefu serve``
workers, scrape each one (see ``docs/deploy.md``). Labels are fixed, small sets (stages, wire error codes,
outcomes): never conversation ids or text.

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
                                                      (:mod:`channels.admission`), read at scrape time
``kefu_admission_budget_seconds``           gauge     the budget it is compared with (0: never shed)
==========================================  ========  ===================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from dialogue.types import BOT_MESSAGE, HANDOFF, SAFETY_INPUT, SAFETY_OUTPUT

#: Seconds; covers a template reply on an idle machine (ms) up to a slow generator or action (tens of seconds).
LATENCY_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0
)
TOTAL_STAGE: Final = "total"
#: The engine's stage names (``dialogue.engine``); others found in events are counted as ``other``.
ENGINE_STAGES: Final = frozenset({"safety_in", "nlu", "policy", "action", "generation", "safety_out"})


class _EventLike(Protocol):
    @property
    def type(self) -> str: ...

    @property
    def data(self) -> dict[str, Any]: ...


class Metrics:
    """The metrics of one server process. Thread-safe (``prometheus_client`` locks), cheap to update."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.turn_latency = Histogram(
            "kefu_turn_latency_seconds", "Turn latency by stage (total = the whole turn as the server saw it).",
            ["stage"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.turns = Counter("kefu_turns", "Answered turns by outcome (ok, replayed, error).", ["outcome"], registry=r)
        self.errors = Counter("kefu_errors", "Error frames sent, by wire error code.", ["code"], registry=r)
        self.pending = Gauge("kefu_pending_turns", "Turns queued or running, all connections together.", registry=r)
        self.connections = Gauge("kefu_open_connections", "Open WebSocket connections.", registry=r)
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
        self.queue_delay = Gauge(
            "kefu_queue_delay_seconds", "Estimated queueing delay of a new turn in this worker.", registry=r
        )
        self.admission_budget = Gauge(
            "kefu_admission_budget_seconds", "Queueing delay above which new turns are shed (0: never).", registry=r
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
        """The exposition-format body and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def value(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """One sample's current value (``0.0`` if absent), e.g. ``value("kefu_errors_total", {"code": "busy"})``."""
        found = self.registry.get_sample_value(name, dict(labels or {}))
        return float(found) if found is not None else 0.0
