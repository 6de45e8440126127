"""The settings of one ops server (:class:`OpsOptions`), read by the server and by every group of handlers."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from channels import auth

OPS_STATIC_DIR = Path(__file__).resolve().parent.parent / "static" / "ops"


@dataclass(frozen=True)
class OpsOptions:
    """Settings of one ops server.

    ``origins``: the console's public origin(s) (e.g. ``("https://ops.shop.example",)`` behind a TLS proxy); POSTs
    must come from one of them, and their host names are answered besides the loopback ones. ``None``: the
    loopback origins with the console's port (and the listening address when it is one specific IP): never the
    request's own Host, which a DNS-rebinding page chooses. ``secure_cookie``: ``None`` sets ``Secure`` when the
    request is https or the configured origin is. ``session_ttl``: idle timeout (sliding). ``session_max_age``:
    absolute lifetime. ``login_limit``: login attempts allowed per address, and per account and address, in the
    window (shared by every worker through the database). ``password_workers`` / ``password_queue``: threads that
    hash passwords and how many checks may wait for them (more: 503 at once). ``header_timeout``: seconds for a
    request head (from the connection's start or its previous response; also the keep-alive idle timeout).
    ``body_timeout``: seconds for a request body. ``public_metrics``: serve ``/metrics`` without a session (for a
    scraper on the private network the console listens on). ``plot_cache_seconds``: how long dashboard numbers
    and PNGs are reused. ``dashboard_days``: the default and largest window. ``reuse_port``: SO_REUSEPORT, for
    several worker processes on one port. ``trainer``: the command that retrains the bot's NLU and publishes it
    (``POST /api/training`` runs it with ``--progress FILE`` appended; ``None``: retraining is not offered);
    ``training_dir``: where the runs' lock, state, progress and log files are kept (the bot's ``models`` folder,
    shared by every worker).
    """

    origins: tuple[str, ...] | None = None
    secure_cookie: bool | None = None
    session_ttl: dt.timedelta = auth.SESSION_TTL
    session_max_age: dt.timedelta = auth.SESSION_MAX_AGE
    login_limit: auth.RateLimit = field(default_factory=auth.RateLimit)
    plot_cache_seconds: float = 60.0
    max_body_bytes: int = 64 * 1024
    queue_limit: int = 100
    dashboard_days: tuple[int, int] = (30, 366)
    static_dir: Path = OPS_STATIC_DIR
    reuse_port: bool = False
    password_workers: int = 1
    password_queue: int = 8
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    public_metrics: bool = False
    trainer: tuple[str, ...] | None = None
    training_dir: Path | None = None
