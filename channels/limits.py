"""Abuse limits of the chat port, without I/O: token buckets (frames per connection, new conversations per client
address), the client address they count, and the open-connection slots per server and per address.

Nothing here reads a clock or a socket: callers pass monotonic ``now`` seconds, the peer and ``X-Forwarded-For``
as strings, and a ``closed(connection)`` predicate, so every limit can be tested by stepping time by hand. The
asyncio shell (:mod:`channels.server`) owns the instances; the wire side of a refusal (``rate_limited``) is the
error built here.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Final, Generic, TypeVar

from channels.error_codes import RATE_LIMITED
from channels.errors import ProtocolError
from channels.frames import ClientFrame, UserMessage

# ----------------------------------------------------------------------------------------------- token buckets
DEFAULT_RATE: Final = 10.0
DEFAULT_BURST: Final = 20


class TokenBucket:
    """A token bucket (no I/O, no clock of its own: the caller passes monotonic ``now`` seconds).

    It holds at most ``burst`` tokens and gains ``rate`` tokens per second; :meth:`take` spends one token and says
    whether there was one. The server keeps one per connection: every incoming frame costs a token, and a frame
    that finds the bucket empty is answered with ``rate_limited`` and dropped.
    """

    def __init__(self, rate: float = DEFAULT_RATE, burst: int = DEFAULT_BURST, *, now: float = 0.0) -> None:
        if not rate > 0:
            raise ValueError("rate must be > 0")
        if burst < 1:
            raise ValueError("burst must be >= 1")
        self.rate = float(rate)
        self.burst = int(burst)
        self.tokens = float(burst)
        self._last = now

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self.rate}, burst={self.burst}, tokens={self.tokens:.2f})"

    def full(self, now: float) -> bool:
        """Whether the bucket will have refilled completely at ``now`` (then it is the same as a new one)."""
        return self.tokens + max(0.0, now - self._last) * self.rate >= self.burst

    def take(self, now: float) -> bool:
        """Spend one token at time ``now``; ``False`` (nothing spent) when the bucket is empty."""
        if now > self._last:
            self.tokens = min(float(self.burst), self.tokens + (now - self._last) * self.rate)
            self._last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def rate_limited(frame: ClientFrame | None) -> ProtocolError:
    """The ``rate_limited`` error for a dropped frame (``reply_to`` is the message id when it could be read)."""
    reply_to = frame.message_id if isinstance(frame, UserMessage) else None
    return ProtocolError(RATE_LIMITED, "rate limit exceeded; resend later", reply_to=reply_to)


def new_conversations_limited(scope: str, reply_to: str | None) -> ProtocolError:
    """The ``rate_limited`` error of a first message over a limit on new conversations (``scope`` names it)."""
    return ProtocolError(RATE_LIMITED, f"too many new conversations {scope}; resend later", reply_to=reply_to)


class AddressLimiter:
    """One :class:`TokenBucket` per client address (new conversations per address), bounded in memory.

    Buckets live in least-recently-used order; a bucket that has refilled completely is the same as no bucket,
    so :meth:`take` forgets those at the old end, and beyond ``max_addresses`` it forgets the least recently used
    one (its address starts again with a full bucket: harmless, since an attacker with that many addresses is
    not slowed by a per-address limit anyway).
    """

    def __init__(self, rate: float, burst: int, *, max_addresses: int = 100_000) -> None:
        TokenBucket(rate, burst)  # validates rate and burst
        if max_addresses < 1:
            raise ValueError("max_addresses must be >= 1")
        self.rate = float(rate)
        self.burst = int(burst)
        self.max_addresses = max_addresses
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def __repr__(self) -> str:
        return f"AddressLimiter(rate={self.rate}, burst={self.burst}, addresses={len(self._buckets)})"

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, address: str, now: float) -> bool:
        """Spend one token of ``address``'s bucket at monotonic time ``now``; ``False`` when it is empty."""
        bucket = self._buckets.pop(address, None)
        if bucket is None:
            bucket = TokenBucket(self.rate, self.burst, now=now)
        allowed = bucket.take(now)
        self._buckets[address] = bucket
        while self._buckets:
            oldest = next(iter(self._buckets.values()))
            if len(self._buckets) <= self.max_addresses and not oldest.full(now):
                break
            self._buckets.popitem(last=False)
        return allowed


# -------------------------------------------------------------------------------------------- client address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """``("10.0.0.1", "10.1.0.0/16", "::1")`` as networks (a bare address is a /32 or /128); raises
    :class:`ValueError` naming the value that is neither."""
    networks: list[IPNetwork] = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or network: {value!r}") from None
    return tuple(networks)


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_address(peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[IPNetwork]) -> str:
    """The key the per-address limits count: the client's IPv4 address, or its IPv6 /64 network.

    The client is the TCP peer, unless the peer is a trusted proxy (``trusted``, e.g. the load balancer in front
    of the workers): then ``X-Forwarded-For`` (``forwarded_for``: the header's values, in order) is read from
    the right, skipping trusted proxies, and its first other entry is the client. Entries left of it are the
    client's own claims and are never believed, and without ``trusted`` the header is ignored altogether (any
    client can send it). IPv6 counts per /64 because one customer line usually holds a whole /64.
    """
    address = _ip(peer) if peer else None
    if address is not None and any(address in network for network in trusted):
        hops = [hop for value in forwarded_for for hop in value.split(",") if hop.strip()]
        for hop in reversed(hops):
            hop_address = _ip(hop)
            if hop_address is None:
                break  # a malformed chain: count the proxy itself (conservative: its clients share a bucket)
            if not any(hop_address in network for network in trusted):
                address = hop_address
                break
    if address is None:
        return peer or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


# --------------------------------------------------------------------------------------------- connection slots
MAX_CONNECTIONS: Final = "max_connections"
CONNECTIONS_PER_ADDRESS: Final = "connections_per_address"

C = TypeVar("C", bound=Hashable)


class ConnectionSlots(Generic[C]):
    """The open connections of one server, counted against ``max_connections`` (all of them) and ``per_address``
    (those of one client address); ``None``: no such limit.

    A connection is anything hashable (the server's sockets); ``closed(connection)`` says whether it has ended. A
    handshake can fail after it was admitted, without :meth:`forget` being called, so when a limit is reached the
    closed connections it counts are dropped first: a failed handshake never holds a slot for good.
    """

    def __init__(self, max_connections: int | None, per_address: int | None, closed: Callable[[C], bool]) -> None:
        self.max_connections = max_connections
        self.per_address = per_address
        self._closed = closed
        self._admitted: set[C] = set()  # handshakes let through, not yet forgotten
        self._by_address: dict[str, set[C]] = {}
        self._address: dict[C, str] = {}

    def __repr__(self) -> str:  # counts only: addresses are the customers'
        return f"ConnectionSlots(open={len(self._admitted)}, addresses={len(self._by_address)})"

    def __len__(self) -> int:
        return len(self._admitted)

    def admit(self, connection: C, address: Callable[[], str]) -> str | None:
        """Count ``connection`` in; ``None`` when admitted, else the limit it is over (:data:`MAX_CONNECTIONS`:
        answer 503; :data:`CONNECTIONS_PER_ADDRESS`: answer 429), and nothing is counted. ``address()`` is its
        client address, asked only with a per-address limit."""
        limit = self.max_connections
        admitted = self._admitted
        if limit is not None and len(admitted) >= limit:  # forget handshakes that failed after being admitted
            admitted.difference_update([c for c in admitted if self._closed(c)])
        if limit is not None and len(admitted) >= limit:
            return MAX_CONNECTIONS
        per_address = self.per_address
        if per_address is not None:
            key = address()
            mine = self._by_address.setdefault(key, set())
            if len(mine) >= per_address:  # forget handshakes that failed after being admitted
                for closed in [c for c in mine if self._closed(c)]:
                    mine.discard(closed)
                    self._address.pop(closed, None)
            if len(mine) >= per_address:
                return CONNECTIONS_PER_ADDRESS
            mine.add(connection)
            self._address[connection] = key
        admitted.add(connection)
        return None

    def address(self, connection: C) -> str | None:
        """The client address ``connection`` was admitted under (``None``: not counted per address)."""
        return self._address.get(connection)

    def forget(self, connection: C) -> None:
        """``connection`` ended: it no longer counts against the limits."""
        self._admitted.discard(connection)
        address = self._address.pop(connection, None)
        if address is None:
            return
        mine = self._by_address.get(address)
        if mine is not None:
            mine.discard(connection)
            if not mine:
                del self._by_address[address]


# ------------------------------------------------------------------------------------------- turns per address
W = TypeVar("W")


class AddressTurns(Generic[W]):
    """At most ``per_address`` turns of one client address run at once in this worker; its others wait, first come
    first served, until one of its own turns ends (``None``: no limit).

    Why: a worker runs every admitted turn at once on its event loop and threads, sharing the CPU (see
    :mod:`channels.admission`), so a turn takes as long as everything running beside it. One address that opens its
    burst of new conversations at once (``conversation_burst``, ten by default) would put ten turns beside every
    other customer's, and each of those would take ten turns' time. Queued per address, a flood waits behind its own
    turns, and another customer's turn shares the CPU with at most ``per_address`` of them. Nothing is refused or
    reordered within a connection (its turns run one at a time anyway); a shop's office behind one NAT address sees
    its simultaneous turns served ``per_address`` at a time, each a fraction of a second.

    The waiters are the caller's (``W``: the asyncio shell's futures); this class only counts and queues them:
    :meth:`enter` runs a turn now or queues its waiter, :meth:`leave` ends one and hands its place to the next
    waiter (returned, already counted as running: the caller wakes it), :meth:`cancel` withdraws a waiter that
    gave up (its connection closed).
    """

    def __init__(self, per_address: int | None) -> None:
        if per_address is not None and per_address < 1:
            raise ValueError("turns per address must be >= 1 or None")
        self.per_address = per_address
        self._running: dict[str, int] = {}
        self._waiting: dict[str, list[W]] = {}

    def __repr__(self) -> str:  # counts only: addresses are the customers'
        waiting = sum(len(w) for w in self._waiting.values())
        return f"AddressTurns(per_address={self.per_address}, running={sum(self._running.values())}, waiting={waiting})"

    def enter(self, address: str, waiter: W) -> bool:
        """A turn of ``address`` wants to run: ``True`` when it may now (it is counted), ``False`` when ``waiter``
        was queued behind the address's running turns."""
        running = self._running.get(address, 0)
        if self.per_address is None or running < self.per_address:
            self._running[address] = running + 1
            return True
        self._waiting.setdefault(address, []).append(waiter)
        return False

    def leave(self, address: str) -> W | None:
        """A running turn of ``address`` ended: the waiter that runs in its place (counted already), or ``None``."""
        queue = self._waiting.get(address)
        if queue:
            waiter = queue.pop(0)
            if not queue:
                del self._waiting[address]
            return waiter
        running = self._running.get(address, 0) - 1
        if running > 0:
            self._running[address] = running
        else:
            self._running.pop(address, None)
        return None

    def cancel(self, address: str, waiter: W) -> bool:
        """Withdraw a queued ``waiter``; ``False`` when it is not queued (it was handed a place: the caller must
        :meth:`leave` that place)."""
        queue = self._waiting.get(address)
        if not queue or waiter not in queue:
            return False
        queue.remove(waiter)
        if not queue:
            del self._waiting[address]
        return True

    def running(self, address: str) -> int:
        return self._running.get(address, 0)

    def waiting(self, address: str) -> int:
        return len(self._waiting.get(address, ()))
