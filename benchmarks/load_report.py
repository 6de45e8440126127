"""The load harness's report: what a run's turns and the store say, as figures (pure: no sockets, no processes).

:mod:`benchmarks.load` generates the load (workers, PostgreSQL, simulated customers, faults) and records each turn in a
:class:`Turn` and the run's error frames in :class:`Stats`; this module turns those records and the store's rows into
the report's figures: latency percentiles, admission counts, what a killed worker or a restarted PostgreSQL cost, and
the transcripts checked against the store (``lost``, ``duplicated``, ``reordered``, ``mismatched``...). Kept apart so
the statistics can be read, and tested, without the machinery that produces the load.
"""

from __future__ import annotations

import bisect
import collections
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summary_ms(seconds: list[float]) -> dict[str, float | None]:
    def r(v: float | None) -> float | None:
        return None if v is None else round(v * 1000.0, 1)

    return {
        "p50": r(percentile(seconds, 50)),
        "p95": r(percentile(seconds, 95)),
        "p99": r(percentile(seconds, 99)),
        "max": r(max(seconds) if seconds else None),
        "mean": r(sum(seconds) / len(seconds) if seconds else None),
        "n": len(seconds),
    }


def longest_increasing(positions: list[int]) -> int:
    """Length of the longest strictly increasing subsequence (patience sorting)."""
    tails: list[int] = []
    for p in positions:
        i = bisect.bisect_left(tails, p)
        if i == len(tails):
            tails.append(p)
        else:
            tails[i] = p
    return len(tails)


@dataclass
class Turn:
    message_id: str
    text: str
    first_sent: float = 0.0
    last_sent: float = 0.0
    done_at: float | None = None
    reply: str | None = None
    replayed: bool = False
    attempts: int = 0
    busy: int = 0  # busy frames (admission control) that answered this turn's sends
    first_token_at: float | None = None  # the first streamed piece of the reply (a ``token`` frame) arrived

    @property
    def latency(self) -> float | None:
        return None if self.done_at is None else self.done_at - self.first_sent

    @property
    def first_token(self) -> float | None:
        """First send to the first streamed piece of the reply (what the customer sees start to appear)."""
        return None if self.first_token_at is None else self.first_token_at - self.first_sent


@dataclass
class Stats:
    """Shared by every customer: error frames and their times (for the fault timelines)."""

    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    error_times: list[tuple[float, str]] = field(default_factory=list)
    reconnects: int = 0
    connect_failures: int = 0
    conversation_changed: int = 0
    http_refusals: int = 0
    busy: collections.Counter[str] = field(default_factory=collections.Counter)  # busy frames by reason
    retry_after: list[float] = field(default_factory=list)  # their retry_after_ms, in seconds

    def error(self, code: str) -> None:
        self.errors[code] += 1
        self.error_times.append((time.monotonic(), code))


def admission_counts(turns: list[Turn], stats: Stats) -> dict[str, Any]:
    """How admission control treated the run's turns: admitted at once vs answered ``busy`` (then retried)."""
    answered = [t for t in turns if t.done_at is not None]
    shed = [t for t in turns if t.busy]
    return {
        "turns_admitted": sum(1 for t in answered if not t.busy),
        "turns_shed": len(shed),
        "turns_shed_then_answered": sum(1 for t in shed if t.done_at is not None),
        # the customer's wait, first send to final reply: turns admitted at once, and shed ones (retries included)
        "latency_ms_admitted": summary_ms([t.latency for t in answered if not t.busy and t.latency is not None]),
        "latency_ms_shed": summary_ms([t.latency for t in answered if t.busy and t.latency is not None]),
        "busy_frames": sum(stats.busy.values()),
        "busy_by_reason": dict(stats.busy),
        "busy_retry_after_ms": summary_ms(stats.retry_after),
    }


def in_flight(done: list[Turn], moments: list[float]) -> list[Turn]:
    """The turns sent before and answered after one of ``moments`` (each turn once)."""
    return [t for t in done if any(t.first_sent <= m <= (t.done_at or 0) for m in moments)]


def kill_report(done: list[Turn], t0: float, fault: dict[str, Any]) -> dict[str, Any]:
    """``fault`` (``killed_worker_at_s``, seconds after ``t0``) with what the kill cost the turns in flight then."""
    resent = in_flight(done, [t0 + fault["killed_worker_at_s"]])
    fault["turns_in_flight_at_kill"] = len(resent)
    fault["max_latency_across_kill_ms"] = round(max((t.latency or 0) for t in resent) * 1000, 1) if resent else None
    return fault


def restart_report(done: list[Turn], stats: Stats, t0: float, down: float, up: float) -> dict[str, Any]:
    """What a PostgreSQL restart (stopped at ``down``, accepting connections at ``up``) cost: errors, recovery."""
    window = [(ts, code) for ts, code in stats.error_times if ts >= down]
    after = [t for t in done if t.last_sent >= up]
    first_ok = min((t.done_at for t in after if t.done_at is not None), default=None)
    errors_after_up = [ts for ts, _ in window if ts >= up]
    return {
        "restart_at_s": round(down - t0, 2),
        "down_s": round(up - down, 2),
        "errors_by_code": dict(collections.Counter(code for _, code in window)),
        "first_turn_ok_after_ready_s": None if first_ok is None else round(first_ok - up, 2),
        "last_error_after_ready_s": round(max(errors_after_up) - up, 2) if errors_after_up else 0.0,
    }


def swap_report(done: list[Turn], stats: Stats, t0: float, published: float, swapped: list[float | None],
                source: str, training_s: float) -> dict[str, Any]:
    """What publishing a new NLU model (at ``published``) cost while customers talked: when each worker swapped it
    in (``None``: it never did), the turns in flight across each swap, and the error frames after the publish.
    Lost, duplicated and reordered turns are the store check's, for the whole run."""
    seen = [s for s in swapped if s is not None]
    across = in_flight(done, seen)
    return {
        "source": source,
        "training_s": round(training_s, 1),
        "published_at_s": round(published - t0, 2),
        "workers_swapped": len(seen),
        "swapped_after_publish_s": [None if s is None else round(s - published, 2) for s in swapped],
        "turns_after_publish": sum(t.first_sent >= published for t in done),
        "turns_after_all_swapped": sum(t.first_sent >= max(seen) for t in done) if seen else 0,
        "turns_in_flight_at_a_swap": len(across),
        "max_latency_across_swap_ms": round(max((t.latency or 0) for t in across) * 1000, 1) if across else None,
        "errors_after_publish": sum(1 for ts, _ in stats.error_times if ts >= published),
    }


class Transcript(Protocol):
    """What a simulated customer knows of its conversation (:class:`benchmarks.load.Customer` is one)."""

    conversation_id: str | None
    user: str
    turns: list[Turn]


def store_check(customers: Sequence[Transcript], rows: Sequence[Mapping[str, Any]],
                stage_rows: Sequence[Mapping[str, Any]], senders: Mapping[str, str]) -> dict[str, Any]:
    """Every customer's transcript against the store's rows: its user and bot messages (``rows``: conversation_id,
    type, message_id, reply_to, text, in order), the bot messages' stage latencies and each conversation's sender."""
    users: dict[str, list[str]] = collections.defaultdict(list)
    bots: dict[str, dict[str, list[str]]] = collections.defaultdict(lambda: collections.defaultdict(list))
    for r in rows:
        if r["type"] == "user_message":
            users[r["conversation_id"]].append(r["message_id"])
        else:
            bots[r["conversation_id"]][r["reply_to"] or ""].append(r["text"] or "")
    lost = duplicated = reordered = mismatched = wrong_sender = 0
    for c in customers:
        if c.conversation_id is None:
            continue
        stored = users.get(c.conversation_id, [])
        counts = collections.Counter(stored)
        duplicated += sum(n - 1 for n in counts.values() if n > 1)
        replies = bots.get(c.conversation_id, {})
        duplicated += sum(len(v) - 1 for v in replies.values() if len(v) > 1)
        answered = [t for t in c.turns if t.done_at is not None]
        for t in answered:
            if t.message_id not in counts or t.message_id not in replies:
                lost += 1
            elif t.reply is not None and replies[t.message_id][0] != t.reply:
                mismatched += 1
        order = {t.message_id: k for k, t in enumerate(c.turns)}
        positions = [order[m] for m in dict.fromkeys(stored) if m in order]
        reordered += len(positions) - longest_increasing(positions)
        if senders.get(c.conversation_id) != c.user:
            wrong_sender += 1
    stages: dict[str, list[float]] = collections.defaultdict(list)
    for r in stage_rows:
        latency = json.loads(r["latency"]) if isinstance(r["latency"], str) else r["latency"]
        for stage, ms in (latency or {}).items():
            if isinstance(ms, (int, float)):
                stages[stage].append(float(ms) / 1000.0)
    return {"lost": lost, "duplicated": duplicated, "reordered": reordered, "mismatched": mismatched,
            "wrong_sender": wrong_sender, "stored_user_messages": sum(len(v) for v in users.values()),
            "engine_stage_ms": {k: {q: v for q, v in summary_ms(x).items() if q in ("p50", "p99", "max")}
                                for k, x in sorted(stages.items())}}
