"""Password hashing and checking for the console's logins, on threads of their own with a bounded queue.

Apart from the handlers because it is about the process's CPU, not about HTTP: argon2 costs ~0.1 s of CPU a check,
and where it runs decides whether a login flood slows down customers' turns (see :class:`PasswordPool`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from channels.errors import ChannelError

_P = ParamSpec("_P")
_T = TypeVar("_T")


def _lower_priority(nice: int) -> None:
    """Make the calling thread ``nice`` steps nicer (Linux: per thread; elsewhere this may fail and is skipped)."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    with contextlib.suppress(OSError):
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))


class PasswordPoolFull(ChannelError):
    """Every password thread is busy and the wait queue is full: the login is answered 503 at once."""


class PasswordPool:
    """Password hashing and checking (argon2: ~0.1 s of CPU each) on threads of its own, with a bounded queue.

    Why not ``asyncio.to_thread``: that is the default executor, where customers' turns run their NLU. Sixty
    simultaneous logins queued sixty hashes there, and a customer's turn waited behind all of them (6 s instead of
    0.07 s). Here at most ``workers`` hashes run and ``queue`` wait; :meth:`reserve` (and :meth:`run`) refuses
    more at once (:class:`PasswordPoolFull`). A login reserves its slot before anything else, so a refused one
    costs no database work either. A slot is held until its hash has really finished (or was dropped before it
    started), also when the request that asked for it went away. On Linux the pool's threads (and the lane
    threads argon2 starts from them) also run ``nice`` steps nicer than the rest of the process, 19 (the lowest
    priority) by default: scheduling priority is per thread there, so a flood of logins gets the CPU that
    customers' turns leave and not a share of theirs (the demo bot's median turn during a login flood: 1.6 times
    as long at nice 10, unchanged at 19; ``benchmarks/security_login.py``). Logins are slower on a busy machine:
    staff can wait."""

    def __init__(self, workers: int = 1, queue: int = 8, *, nice: int = 19) -> None:
        if workers < 1 or queue < 0:
            raise ValueError("a password pool needs at least one worker and a queue of zero or more")
        self.workers = workers
        self.capacity = workers + queue
        self._executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="kefu-password", initializer=_lower_priority, initargs=(nice,)
        )
        self._lock = threading.Lock()  # the count is released from worker threads
        self._held = 0

    def __repr__(self) -> str:
        return f"PasswordPool(workers={self.workers}, capacity={self.capacity}, held={self._held})"

    @property
    def full(self) -> bool:
        return self._held >= self.capacity

    def _release(self, _future: Future[Any] | None = None) -> None:
        with self._lock:
            self._held -= 1

    def reserve(self) -> PasswordSlot:
        """A place in the pool (running or waiting), or :class:`PasswordPoolFull` at once."""
        with self._lock:
            if self._held >= self.capacity:
                raise PasswordPoolFull("password pool full")
            self._held += 1
        return PasswordSlot(self)

    async def run(self, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """``fn(*args, **kwargs)`` on the pool (reserve, run, release)."""
        slot = self.reserve()
        try:
            return await slot.run(fn, *args, **kwargs)
        finally:
            slot.release()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class PasswordSlot:
    """One reserved place in a :class:`PasswordPool`: :meth:`run` uses it once (the slot is then released when the
    work ends); :meth:`release` gives it back unused (a no-op after :meth:`run`)."""

    def __init__(self, pool: PasswordPool) -> None:
        self._pool: PasswordPool | None = pool

    def release(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool._release()

    async def run(self, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        pool = self._pool
        if pool is None:
            raise RuntimeError("this password slot was already used or released")
        future = pool._executor.submit(fn, *args, **kwargs)  # raises before taking the slot over: release() frees
        self._pool = None
        future.add_done_callback(pool._release)
        return await asyncio.wrap_future(future)
