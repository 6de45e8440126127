"""Admission control for one chat worker: estimate how long a new turn would wait, and shed it when that is over a
budget, before it is queued (pure: no I/O, no asyncio, no clock of its own; the caller passes monotonic ``now``).

Why shed at all: a worker that takes every turn under overload answers all of them late (every customer waits for
the whole backlog) and, past the WebSocket ping or the turn timeout, answers some of them not at all. Answering at
once with a ``busy`` frame (``retry_after_ms``, see :mod:`channels.protocol`) keeps the admitted turns fast, lets the
widget tell the customer and retry by itself, and lets a load balancer route new customers elsewhere
(``GET /ready``: 503 while the estimate is over the budget).

The estimate: Little's law with the worker's measured capacity
-------------------------------------------------------------------
:class:`QueueDelay` estimates the delay a turn admitted now would see before it is done with everything ahead of it::

    delay = turns in flight x busy seconds per completed turn

*Turns in flight* are the customer messages this worker admitted and has not finished (queued behind a connection's
earlier turn, or running). *Busy seconds per completed turn* is an exponentially weighted moving average over
completions of the time the worker had work in flight since the previous completion: the inverse of the worker's
throughput while it is busy (its capacity), so it needs no concurrency figure. On a two-core worker running ten
turns at once it is about a fifth of one turn's time; when a single turn runs alone it is that turn's time (and the
estimate with one turn in flight is that one turn: never more than the budget of a sane configuration). Idle time
is not counted, so a quiet worker does not look slow. And the figure used is what the average would become if a turn
completed now, when that is higher: a worker that completes nothing (a stalled database, a turn stuck on an action
server) sees its estimate grow while it is stuck instead of waiting for a completion to notice, and a worker that
has completed nothing yet (the first burst after start) is judged on how long it has been busy so far.

Why not the age of the oldest queued turn (the other usual signal): this server has no single queue. Every
connection runs its own turns, and all connections' turns run at once on the event loop and its threads, sharing the
CPU (processor sharing): a saturated worker shows as fewer completions per second, not as a turn waiting in a queue
whose age could be read. And an age is a lagging signal (the wait of a turn admitted long ago, not of one admitted
now), which makes shedding oscillate; the count in flight changes with every admission and completion.

Ordering: a connection whose message was shed holds every later message until the retry time it was given (see
:meth:`channels.protocol.ConnectionState.hold`), so a message pipelined behind a shed one cannot overtake it; the
widget resends its held messages in order after ``retry_after_ms``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

#: Reasons of a ``busy`` frame (a fixed set: metrics label them).
OVERLOADED: Final = "overloaded"  # the worker's estimated queueing delay is over its budget
HELD: Final = "held"  # an earlier message of this connection was shed and is not retried yet: keep the order
REASONS: Final = (OVERLOADED, HELD)

DEFAULT_ALPHA: Final = 0.2  # weight of the newest sample: about the last ten completions count
DEFAULT_RETRY_AFTER: Final = (0.25, 10.0)  # bounds of retry_after, seconds


class QueueDelay:
    """The queueing delay a new turn would see in this worker (see the module docstring for the model and why).

    The owner reports every admitted turn (:meth:`admitted`), every turn that ended, answered or failed
    (:meth:`finished`), and every admitted turn dropped unstarted (:meth:`dropped`, a connection that closed); all
    take monotonic ``now`` in seconds and never go back in time.
    """

    def __init__(self, *, alpha: float = DEFAULT_ALPHA, now: float = 0.0) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError("alpha must be in (0, 1]")
        self.alpha = alpha
        self.in_flight = 0
        self.per_turn: float | None = None  # EWMA of busy seconds per completed turn; None before a completion
        self.completed = 0
        self._busy = 0.0  # busy seconds since the last completion
        self._last = now

    def __repr__(self) -> str:
        per_turn = "None" if self.per_turn is None else f"{self.per_turn:.4f}"
        return f"QueueDelay(in_flight={self.in_flight}, per_turn={per_turn}, completed={self.completed})"

    def _advance(self, now: float) -> None:
        if now > self._last:
            if self.in_flight > 0:
                self._busy += now - self._last
            self._last = now

    def admitted(self, now: float) -> None:
        """A turn was admitted (queued or started)."""
        self._advance(now)
        self.in_flight += 1

    def finished(self, now: float) -> None:
        """An admitted turn ended (answered, replayed or failed): one completion, one sample."""
        self._advance(now)
        sample = self._busy
        self.per_turn = sample if self.per_turn is None else self.per_turn + self.alpha * (sample - self.per_turn)
        self._busy = 0.0
        self.completed += 1
        self.in_flight = max(0, self.in_flight - 1)

    def dropped(self, now: float) -> None:
        """An admitted turn will never run (its connection closed before it started): no sample."""
        self._advance(now)
        self.in_flight = max(0, self.in_flight - 1)
        if self.in_flight == 0:
            self._busy = 0.0

    def seconds_per_turn(self, now: float) -> float:
        """Busy seconds per completed turn: the average, or what it would be if a turn completed now when that is
        higher (the busy stretch since the last completion is longer than the average)."""
        self._advance(now)
        if self.per_turn is None:
            return self._busy
        if self._busy <= self.per_turn:
            return self.per_turn
        return self.per_turn + self.alpha * (self._busy - self.per_turn)

    def estimate(self, now: float) -> float:
        """Seconds a turn admitted at ``now`` would wait for the turns ahead of it (0 on an idle worker)."""
        if self.in_flight == 0:
            self._advance(now)
            return 0.0
        return self.in_flight * self.seconds_per_turn(now)


@dataclass(frozen=True)
class Shed:
    """A turn refused by admission control: answer ``busy`` with ``retry_after`` seconds and ``reason``."""

    retry_after: float
    reason: str

    @property
    def retry_after_ms(self) -> int:
        """Whole milliseconds, rounded up: a client that waits that long never comes back before the hold ends."""
        return max(1, math.ceil(self.retry_after * 1000.0))


class Admission:
    """The admission decision of one worker: its :class:`QueueDelay` and its budget.

    ``budget``: seconds of estimated queueing delay above which a new turn is shed (``None`` or 0: never shed; the
    delay is still estimated, for ``/metrics``). ``retry_after``: (lowest, highest) seconds a shed client is asked
    to wait; within them, the estimate itself: by then the turns ahead now have been served, and a sooner retry would
    only meet the same backlog (and add to it).
    """

    def __init__(
        self,
        budget: float | None,
        *,
        retry_after: tuple[float, float] = DEFAULT_RETRY_AFTER,
        alpha: float = DEFAULT_ALPHA,
        now: float = 0.0,
    ) -> None:
        if budget is not None and budget < 0:
            raise ValueError("budget must be >= 0 or None")
        low, high = retry_after
        if not 0 < low <= high:
            raise ValueError("retry_after must be (low, high) with 0 < low <= high")
        self.budget = budget or None
        self.retry_after = (float(low), float(high))
        self.delay = QueueDelay(alpha=alpha, now=now)

    def __repr__(self) -> str:
        return f"Admission(budget={self.budget}, delay={self.delay!r})"

    @property
    def enabled(self) -> bool:
        return self.budget is not None

    def ready(self, now: float) -> bool:
        """Whether a new turn would be admitted at ``now`` (what ``GET /ready`` answers)."""
        return self.budget is None or self.delay.estimate(now) <= self.budget

    def check(self, now: float, held: float = 0.0) -> Shed | None:
        """``None``: admit the message (then call :meth:`admitted`); else the :class:`Shed` to answer.

        ``held``: seconds left of its connection's hold (an earlier message of the connection was shed and may not
        be overtaken): the message is shed for that long, whatever the load.
        """
        if held > 0:
            return Shed(held, HELD)
        if self.budget is None:
            return None
        delay = self.delay.estimate(now)
        if delay <= self.budget:
            return None
        low, high = self.retry_after
        return Shed(min(high, max(low, delay)), OVERLOADED)

    def admitted(self, now: float) -> None:
        self.delay.admitted(now)

    def finished(self, now: float) -> None:
        self.delay.finished(now)

    def dropped(self, now: float) -> None:
        self.delay.dropped(now)
