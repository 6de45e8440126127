"""The settings and limits of one chat server (:class:`ServerOptions`), checked when they are made.

A frozen dataclass and its defaults, no I/O: ``kefu serve`` builds one from its flags (and reports a bad value
before anything starts), :class:`channels.server.Server` reads it. The limits it sets are enforced by the pure
core (:mod:`channels.limits`, :mod:`channels.admission`, :class:`channels.protocol.ConnectionState`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from channels.admission import DEFAULT_RETRY_AFTER, Admission
from channels.frames import MAX_FRAME_BYTES
from channels.limits import DEFAULT_BURST, DEFAULT_RATE, TokenBucket, parse_networks
from channels.protocol import DEFAULT_MAX_PENDING

DEFAULT_CONVERSATION_RATE = 0.5  # new conversations per second and client address, on average (30 a minute)
DEFAULT_CONVERSATION_BURST = 10
DEFAULT_CONVERSATIONS_PER_CONNECTION = 3  # a widget creates one (two when an old id could not be resumed)
DEFAULT_CONNECTIONS_PER_ADDRESS = 64  # open sockets from one address: a shop's office NAT has fewer tabs open
DEFAULT_TURNS_PER_ADDRESS = 2  # turns of one address running at once in a worker; its others wait their turn
DEFAULT_REFUSAL_DELAY = 1.0  # seconds before a new conversation over a limit is answered rate_limited


@dataclass(frozen=True)
class ServerOptions:
    """Limits of one server.

    ``max_frame_bytes``: largest incoming frame; larger ones close the connection with 1009 (websockets'
    ``max_size``). ``max_pending``: turns queued or running per connection before ``busy``.
    ``write_limit``: (high, low) watermarks of websockets' outgoing buffer: ``send`` waits (back-pressure reaching
    the backend's token stream) while more than ``high`` bytes are unsent, until below ``low``.
    ``max_queue``: (high, low) watermarks of websockets' incoming frame queue: reading from the socket pauses
    above ``high``. ``turn_timeout``: seconds a turn may take (``None``: no limit) before ``timeout``.
    ``push_interval``: seconds between two polls for agent messages to push (``None``: no pushing).
    ``origins``: allowed ``Origin`` headers for ``/ws`` (``None``: any origin, since the widget is embedded in
    other sites' pages). ``close_grace``: seconds ``close()`` lets running turns finish before cancelling them.
    ``rate``/``burst``: each connection's token bucket (frames per second, bucket size; ``rate=None``: no limit);
    a frame over it gets ``rate_limited`` and is dropped. ``max_connections``: open WebSocket connections beyond
    which a new handshake is refused with HTTP 503 (``None``: no limit). ``reuse_port``: bind with SO_REUSEPORT so
    several worker processes share one port (the kernel spreads new connections over them).
    ``conversation_rate``/``conversation_burst``: new conversations per client address (a token bucket per
    address: per second, bucket size; ``None``: no limit), ``conversations_per_connection``: new conversations
    one connection may create (``None``: no limit); a first message over either gets ``rate_limited`` and creates
    nothing. Each worker process counts on its own (N workers admit N times the rate). ``trusted_proxies``: IP
    addresses or networks of the reverse proxies in front of the server; only for a peer among them is the client
    address read from ``X-Forwarded-For`` (behind a proxy, set it, or every customer shares the proxy's bucket).
    ``connections_per_address``: open WebSocket connections one client address may hold; a handshake beyond it
    is refused with HTTP 429 before any WebSocket work (a flood of sockets from one address costs an HTTP parse
    each, not a connection; ``None``: no limit). ``turns_per_address``: turns of one client address that run at once
    in this worker; its others wait for one of them to end (:class:`channels.limits.AddressTurns`: a burst of
    conversations from one address cannot slow everyone else's turns down; ``None``: no limit). ``refusal_delay``:
    seconds (at least; up to twice as long, at random) a first message refused by a limit on new conversations waits
    before its ``rate_limited`` answer (a
    tarpit: a client that keeps opening conversations gets one answer per connection and second, and each costs
    this worker a timer, not a round of frames; a widget opens one conversation and never meets it; 0: at once).
    ``public_metrics``: serve ``GET /metrics`` on this (public) port.
    ``compression``: negotiate permessage-deflate (off by default: chat frames are small, and compressing a frame
    with the resume secret in the same context as later text is the CRIME pattern; it also costs a zlib context per
    connection and CPU per frame under a flood).
    ``admission_budget``: seconds of estimated queueing delay (:mod:`channels.admission`) above which a new customer
    message is answered ``busy`` instead of being queued, and ``GET /ready`` answers 503 (``None`` or 0: never shed,
    always ready). ``admission_retry_after``: (lowest, highest) seconds a shed client is told to wait.
    """

    max_frame_bytes: int = MAX_FRAME_BYTES
    max_pending: int = DEFAULT_MAX_PENDING
    write_limit: tuple[int, int] = (64 * 1024, 16 * 1024)
    max_queue: tuple[int, int] = (16, 4)
    turn_timeout: float | None = 120.0
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    origins: tuple[str | None, ...] | None = None
    close_grace: float = 5.0
    push_interval: float | None = 0.5
    extra_headers: dict[str, str] = field(default_factory=dict)
    rate: float | None = DEFAULT_RATE
    burst: int = DEFAULT_BURST
    max_connections: int | None = 10_000
    connections_per_address: int | None = DEFAULT_CONNECTIONS_PER_ADDRESS
    turns_per_address: int | None = DEFAULT_TURNS_PER_ADDRESS
    refusal_delay: float = DEFAULT_REFUSAL_DELAY
    reuse_port: bool = False
    conversation_rate: float | None = DEFAULT_CONVERSATION_RATE
    conversation_burst: int = DEFAULT_CONVERSATION_BURST
    conversations_per_connection: int | None = DEFAULT_CONVERSATIONS_PER_CONNECTION
    trusted_proxies: tuple[str, ...] = ()
    public_metrics: bool = False
    compression: bool = False
    admission_budget: float | None = None
    admission_retry_after: tuple[float, float] = DEFAULT_RETRY_AFTER

    def __post_init__(self) -> None:
        """Refuse bad limits when the options are made (``kefu serve`` reports them), not at the first customer."""
        parse_networks(self.trusted_proxies)  # ValueError names the entry
        if self.conversation_rate is not None:
            TokenBucket(self.conversation_rate, self.conversation_burst)
        if self.conversations_per_connection is not None and self.conversations_per_connection < 1:
            raise ValueError("conversations_per_connection must be >= 1 or None")
        if self.connections_per_address is not None and self.connections_per_address < 1:
            raise ValueError("connections_per_address must be >= 1 or None")
        if not 0.0 <= self.refusal_delay <= 60.0:
            raise ValueError("refusal_delay must be between 0 and 60 seconds")
        if self.turns_per_address is not None and self.turns_per_address < 1:
            raise ValueError("turns_per_address must be >= 1 or None")
        Admission(self.admission_budget, retry_after=self.admission_retry_after)  # ValueError names the field
