"""Typing presence, both ways: who is typing, in memory only, and the limits on the customer's ``typing`` frames.

Presence is not conversation data: nothing here touches the store (see :class:`TypingBoard` for why and for what
several worker processes see). No I/O and no clock of its own; the chat server and the ops console of one process
share :data:`TYPING_BOARD`.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final

from channels.error_codes import RATE_LIMITED
from channels.errors import ProtocolError
from channels.frames import ShownAgent, agent_typing_frame

TYPING_TTL: Final = 6.0  # seconds a customer's or agent's "typing" lasts without a refresh
TYPING_RATE: Final = 1.0  # typing frames per second and connection, on average
TYPING_BURST: Final = 5


def typing_rate_limited() -> ProtocolError:
    """The ``rate_limited`` error of a typing frame over the connection's typing bucket (it is dropped)."""
    return ProtocolError(RATE_LIMITED, f"more than {TYPING_RATE:g} typing frames per second; slow down")


TypingListener = Callable[[str, dict[str, Any]], None]


class TypingBoard:
    """Who is typing, in memory only (no I/O, no clock of its own: callers pass monotonic ``now`` seconds).

    Typing is ephemeral presence, not conversation data: it is never written to the store (no event, no text; only
    "since when"), so nothing of it survives a restart or reaches an export. The chat server records the customer's
    ``typing`` frames here (:meth:`customer`) and the console reads them (:meth:`customer_typing`, expired after
    ``ttl``); the console records its agent's typing (:meth:`agent`), and every subscribed chat server pushes the
    ``agent_typing`` frame to the conversation's proven connections. Both servers of one ``kefu serve`` process
    share :data:`TYPING_BOARD`; separate worker processes do not share it (a console sees the typing of customers
    connected to its own worker, and its agents' typing reaches those only; messages still reach everyone, through
    the store). At most ``max_conversations`` entries of each kind are kept (the least recently updated go first).
    Repeats of an agent's state within ``min_interval`` seconds are not pushed again (a flood of console requests
    does not become a flood of frames).
    """

    def __init__(
        self, ttl: float = TYPING_TTL, *, max_conversations: int = 100_000, min_interval: float = 1.0
    ) -> None:
        if not ttl > 0:
            raise ValueError("ttl must be > 0")
        if max_conversations < 1:
            raise ValueError("max_conversations must be >= 1")
        self.ttl = float(ttl)
        self.max_conversations = max_conversations
        self.min_interval = float(min_interval)
        self._customers: OrderedDict[str, float] = OrderedDict()  # conversation id -> when "typing" was last said
        # conversation id -> the last pushed (agent, state, at)
        self._agents: OrderedDict[str, tuple[str | ShownAgent, bool, float]] = OrderedDict()
        self._listeners: list[TypingListener] = []

    def __repr__(self) -> str:
        return f"TypingBoard(customers={len(self._customers)}, agents={len(self._agents)})"

    def _bound(self, table: OrderedDict[str, Any]) -> None:
        while len(table) > self.max_conversations:
            table.popitem(last=False)

    def customer(self, conversation_id: str, state: bool, now: float) -> None:
        """The customer of ``conversation_id`` is typing (``state``) or stopped, at ``now``."""
        self._customers.pop(conversation_id, None)
        if state:
            self._customers[conversation_id] = now
            self._bound(self._customers)

    def customer_typing(self, conversation_id: str, now: float) -> bool:
        """Whether the customer said "typing" less than ``ttl`` seconds before ``now`` (and not "stopped" since)."""
        since = self._customers.get(conversation_id)
        if since is None:
            return False
        if now - since >= self.ttl:
            del self._customers[conversation_id]
            return False
        return True

    def agent(self, conversation_id: str, agent: str | ShownAgent, state: bool, now: float) -> bool:
        """The agent ``agent`` holding ``conversation_id`` is typing (``state``) or stopped: tell the listeners
        (``agent_typing`` frame, naming them as ``agent`` says: a username, or their display name and picture),
        unless it repeats the last state within ``min_interval``. ``True`` when told."""
        last = self._agents.get(conversation_id)
        if last is not None and last[0] == agent and last[1] == state and now - last[2] < self.min_interval:
            return False
        self._agents.pop(conversation_id, None)
        self._agents[conversation_id] = (agent, state, now)
        self._bound(self._agents)
        frame = agent_typing_frame(state, agent)
        for listener in list(self._listeners):
            listener(conversation_id, frame)
        return True

    def subscribe(self, listener: TypingListener) -> Callable[[], None]:
        """Call ``listener(conversation_id, frame)`` for each agent typing change; returns the unsubscribe call."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return unsubscribe


#: The board of this process: the chat server and the console of one ``kefu serve`` share it (unless given another).
TYPING_BOARD: Final = TypingBoard()
