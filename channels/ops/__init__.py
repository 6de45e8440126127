"""The staff-only ops server (aiohttp): login, the console pages and their JSON API, on a port of its own.

Why a second server: the chat server's HTTP layer (websockets) is GET-only, while staff surfaces need POST, cookies
and CSRF protection; and a port of its own lets a shop keep the console off the public interface (default
``127.0.0.1:8001``) while the widget is served to the world. Both run in one process on one ``DialogueEngine``.

Security model
--------------
* Login (``POST /api/login``) checks an argon2id hash and sets ``kefu_session`` (HttpOnly, SameSite=Strict,
  Path=/, Secure when the console's origin is https; a browser-session cookie). The database keeps only the
  token's SHA-256. A session ends after ``session_ttl`` (8 h) without a request, and ``session_max_age`` (24 h)
  after login whatever happens; logging out, a password change or disabling the account ends it at once.
* Login throttling (429 + ``Retry-After``): an attempt is counted in the database when it *starts*, atomically with
  the check, before any password is looked at (:mod:`dialogue.staff_throttle`), so concurrent guesses cannot
  slip through together and every worker process shares the count. It counts per client address and per account
  *and* address (:func:`channels.auth.throttle_keys`): nobody can lock a staff member out from elsewhere by
  failing on purpose. Only a known account's name is ever logged ("?" otherwise: people type passwords there).
* Password hashing runs on a pool of its own (:class:`PasswordPool`: ``password_workers`` threads and at most
  ``password_queue`` waiting; beyond that, 503 + ``Retry-After`` at once), never on the default executor where
  customers' turns run their NLU: a login flood waits in its own queue.
* Only Host names the console was configured for are answered (400 ``bad_host`` otherwise): by default the
  loopback names with the console's port (``127.0.0.1``, ``localhost``, ``[::1]``) and the address it listens
  on when that is one specific IP; ``origins`` (``--console-origin``) adds the public origin behind a proxy. This
  keeps DNS-rebinding pages out even when their Origin and Host agree.
* Slow clients: a request head must arrive within ``header_timeout`` seconds of the connection opening (or of
  the previous response), a body within ``body_timeout`` (408); idle keep-alive connections close after
  ``header_timeout`` too.
* Every route declares the least role it needs (:data:`ROUTES`; ``None`` = public): ``viewer`` reads,
  ``agent`` reviews, corrects and talks to customers, ``admin`` manages accounts. Unknown or expired sessions
  get 401 (pages redirect to ``/login``), too small a role gets 403.
* Every POST (and DELETE) needs the session's CSRF token in ``X-CSRF-Token`` *and* an ``Origin`` (or
  ``Referer``) of the console itself (``options.origins``, default: the loopback origins above; never derived
  from the request's Host); login needs the origin. JSON bodies only (``Content-Type: application/json``), at most
  ``max_body_bytes``.
* Every response: a strict, constant Content-Security-Policy (:data:`CSP`: no inline code, nothing from
  elsewhere; no request header goes into it), ``X-Content-Type-Options: nosniff``,
  ``Referrer-Policy: same-origin``, no framing, ``Cache-Control: no-store``. JSON escapes ``<``, ``>`` and
  ``&``; the pages insert every string with ``textContent``.
* ``GET /metrics`` (role viewer, or public with ``public_metrics``): the Prometheus metrics of this process (the
  :class:`channels.metrics.Metrics` the chat server fills), here rather than on the customer port.
* Logs carry methods, paths (control characters escaped: a request cannot forge a log line), route names,
  statuses, known usernames and ids: never message text, search queries or passwords.

Usage::

    async with run_ops_server(console_backend, port=0) as ops:
        print(ops.url)

Modules
-------
* :mod:`~channels.ops.api`: the HTTP contract, pure: :data:`ROUTES` and their roles, errors and statuses, headers,
  the JSON of rows. :mod:`~channels.ops.parsing`: query and body validation, pure.
* :mod:`~channels.ops.access`: sessions, the route guard, origins, login and logout.
  :mod:`~channels.ops.passwords`: the password pool.
* The route handlers by area: :mod:`~channels.ops.pages`, :mod:`~channels.ops.conversations` (review and
  corrections), :mod:`~channels.ops.desk` (the hand-off desk, notes, canned replies),
  :mod:`~channels.ops.dashboard` (with :mod:`~channels.ops.plots`), :mod:`~channels.ops.admin` and
  :mod:`~channels.ops.profile` (the caller's display name and picture); their shared base is
  :mod:`~channels.ops.handlers`.
* :mod:`~channels.ops.server`: start-up and wiring (:class:`OpsServer`, :func:`run_ops_server`);
  :mod:`~channels.ops.options`: :class:`OpsOptions`.
"""

from __future__ import annotations

from channels.ops.api import CSP, PAGES, ROUTES, ApiError
from channels.ops.options import OPS_STATIC_DIR, OpsOptions
from channels.ops.pages import load_ops_static
from channels.ops.parsing import parse_conversation_query
from channels.ops.passwords import PasswordPool, PasswordPoolFull
from channels.ops.server import OpsServer, run_ops_server

__all__ = [
    "CSP",
    "OPS_STATIC_DIR",
    "PAGES",
    "ROUTES",
    "ApiError",
    "OpsOptions",
    "OpsServer",
    "PasswordPool",
    "PasswordPoolFull",
    "load_ops_static",
    "parse_conversation_query",
    "run_ops_server",
]
