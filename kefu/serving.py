"""The chat server's backend over the dialogue engine, for one of possibly several ``kefu serve`` worker processes.

:class:`ServingBackend` wraps a :class:`dialogue.engine.DialogueEngine` (it stays the single source of the turn
logic) and adds what serving many customers from several processes needs:

* **customers**: ``open_conversation(..., user=ID)`` has the engine create the conversation with ``sender = ID``
  (the ``user`` of the widget's ``hello`` frame), which is what ``kefu conversations delete --user ID`` erases;
* **turn serialisation**: turns of one conversation run one at a time in this process (an ``asyncio.Lock`` per
  conversation), and across processes the store's row lock + version check decides; a turn that keeps losing
  that race (the engine gives up after its own few attempts with :class:`~dialogue.errors.TurnContention`) is
  retried here with jittered back-off until ``retry_for`` seconds have passed, so contention between workers never
  reaches a customer as an error. Retries are safe: the engine answers an already-committed client ``message_id``
  from the store. (A database that is restarting needs nothing here: the store raises
  :class:`~dialogue.errors.StoreUnavailable` for it, which customers see as ``store_unavailable``, "retry later".)
* **metrics**: every turn the engine ran feeds :class:`channels.metrics.Metrics` from the reply it returns (its
  stage timings and what the turn counted as: a safety block, a hand-off); a replayed reply ran nothing and counts
  nothing.

Anything else (new engine methods the channels call) is delegated to the engine unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from channels.metrics import Metrics
from dialogue.errors import ConcurrentUpdate, TurnContention
from dialogue.types import Event, NewConversation, TurnReply
from runtime import OnToken

log = logging.getLogger("kefu.serving")


class _ConversationLocks:
    """One ``asyncio.Lock`` per conversation id, forgotten when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        return len(self._locks)

    @asynccontextmanager
    async def hold(self, key: str | None) -> AsyncIterator[None]:
        if key is None:
            yield
            return
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class ServingBackend:
    """:class:`channels.backend.Backend` over a ``DialogueEngine`` (see the module docstring)."""

    def __init__(
        self,
        engine: Any,
        metrics: Metrics | None = None,
        *,
        retry_for: float = 30.0,
        max_backoff: float = 0.25,
        rng: random.Random | None = None,
    ) -> None:
        self.engine = engine
        self.metrics = metrics
        self.retry_for = retry_for
        self.max_backoff = max_backoff
        self._rng = rng or random.Random()
        self._locks = _ConversationLocks()
        self.retries = 0  # turns re-run here after the engine gave up on a race (for tests and logs)

    def __repr__(self) -> str:
        return f"ServingBackend({self.engine!r})"

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes this class does not define: new engine methods the channels call.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.engine, name)

    # -------------------------------------------------------------------------------------------- conversations
    async def open_conversation(
        self, conversation_id: str | None, language: str | None = None, user: str | None = None
    ) -> str:
        """``conversation_id`` when it exists; else a new conversation whose ``sender`` is ``user``."""
        return str(await self.engine.open_conversation(conversation_id, language, sender=user))

    async def conversation_events(self, conversation_id: str) -> list[Event]:
        return list(await self.engine.conversation_events(conversation_id))

    async def events_after(self, conversation_id: str, seq: int) -> list[Event]:
        return list(await self.engine.events_after(conversation_id, seq))

    async def handoff_statuses(self, conversation_ids: Sequence[str]) -> dict[str, str]:
        return dict(await self.engine.handoff_statuses(conversation_ids))

    # --------------------------------------------------------------------------------------------------- turns
    async def handle_message(
        self,
        conversation_id: str | None,
        message_id: str,
        text: str,
        on_token: OnToken | None = None,
        *,
        create: NewConversation | None = None,
    ) -> TurnReply:
        if create is not None and conversation_id is None:
            conversation_id = create.id  # the lock serialises the first messages of a pending conversation too
        async with self._locks.hold(conversation_id):
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.retry_for
            attempt = 0
            while True:
                try:
                    reply: TurnReply = await self.engine.handle_message(
                        conversation_id, message_id, text, on_token if attempt == 0 else None, create=create
                    )
                    self._observe(reply)
                    return reply
                except (TurnContention, ConcurrentUpdate):
                    # The engine gave up after its own attempts (ConcurrentUpdate only from an engine that lets it
                    # escape). Every other error (store down...) is final and propagates as it is.
                    if loop.time() >= deadline:
                        log.warning("turn still racing after %.0f s: giving up", self.retry_for,
                                    extra={"conversation_id": conversation_id, "message_id": message_id})
                        raise
                attempt += 1
                self.retries += 1
                log.info("turn raced another worker, retrying", extra={"conversation_id": conversation_id,
                                                                        "attempt": attempt})
                await asyncio.sleep(self._rng.uniform(0.0, min(self.max_backoff, 0.005 * 2**attempt)))

    def _observe(self, reply: TurnReply) -> None:
        """Record a turn the engine ran (and committed) in the metrics: its stages, a blocked message or replaced
        reply, a hand-off. A replayed reply (``facts`` is ``None``) ran nothing this time."""
        metrics, facts = self.metrics, reply.facts
        if metrics is None or facts is None or reply.replayed:
            return
        if reply.stages:
            metrics.observe_stages(reply.stages)
        if facts.input_blocked:
            metrics.safety_blocks.labels("input").inc()
        if facts.reply_replaced:
            metrics.safety_blocks.labels("output").inc()
        if facts.handoff:
            metrics.handoffs.inc()
