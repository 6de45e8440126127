"""Staff authentication for the ops console: password hashes, session tokens, CSRF tokens, login throttling, roles.

Pure-ish: no I/O and no asyncio here (the argon2 work is CPU-bound; :mod:`channels.ops` runs it on a small pool
of its own), so every rule can be unit-tested with an injected clock.

* Passwords: argon2id (argon2-cffi's defaults, RFC 9106 low-memory profile). :func:`verify_password` never raises
  on a wrong or malformed hash; :data:`DUMMY_HASH` lets a login for an unknown user cost the same as a real one,
  so response times do not reveal which usernames exist.
* Sessions: the browser holds a random 256-bit token (cookie ``kefu_session``); the database stores only its
  SHA-256 (:func:`token_hash`), so a leaked ``sessions`` table cannot be replayed. A session expires after
  :data:`SESSION_TTL` without use (sliding, see :func:`extended_expiry`) and at most :data:`SESSION_MAX_AGE`
  after login.
* CSRF: each session has its own random token, sent back by the console in ``X-CSRF-Token`` and compared in
  constant time (:func:`same_token`); :func:`origin_allowed` adds the Origin/Referer check, and
  :func:`host_allowed` refuses Host names the console was not configured for (DNS rebinding).
* Login throttling: the rule is here (:class:`RateLimit`, :func:`throttle_keys`: per client address, and per
  account *and* address, never per account alone); the counting lives in the database
  (:mod:`dialogue.staff_throttle`), where every worker process shares it and an attempt counts from its start.
* Roles: ``viewer`` < ``agent`` < ``admin`` (:func:`role_allows`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from channels.errors import ChannelError

VIEWER: Final = "viewer"
AGENT: Final = "agent"
ADMIN: Final = "admin"
ROLES: Final = (VIEWER, AGENT, ADMIN)  # in increasing order of power
_RANK: Final = {role: rank for rank, role in enumerate(ROLES)}

SESSION_COOKIE: Final = "kefu_session"
CSRF_HEADER: Final = "X-CSRF-Token"
SESSION_TTL: Final = dt.timedelta(hours=8)  # idle timeout
SESSION_MAX_AGE: Final = dt.timedelta(hours=24)  # absolute lifetime
SESSION_TOUCH_EVERY: Final = dt.timedelta(minutes=5)  # how stale an idle deadline may get before it is rewritten

USERNAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{1,63}")
MIN_PASSWORD_CHARS: Final = 10
MAX_PASSWORD_CHARS: Final = 1024  # argon2 hashes any length; this only bounds the work a request can ask for
_TOKEN_RE: Final = re.compile(r"[A-Za-z0-9_-]{20,100}")

_hasher = PasswordHasher()


class AuthError(ChannelError):
    """An account rule was broken (bad username, weak password, unknown role). The message names the rule only."""


# ------------------------------------------------------------------------------------------------------ roles
def check_role(role: str) -> str:
    """``role`` if it is one of :data:`ROLES`, else :class:`AuthError`."""
    if role not in _RANK:
        raise AuthError(f"role must be one of {', '.join(ROLES)}")
    return role


def role_allows(role: str, required: str) -> bool:
    """Whether a user with ``role`` may do what needs ``required`` (unknown roles may do nothing)."""
    return role in _RANK and _RANK[role] >= _RANK[required]


# -------------------------------------------------------------------------------------------------- passwords
def check_username(username: str) -> str:
    """A username: 2-64 characters of letters, digits and ``_ . @ -``, starting with a letter or digit."""
    if not isinstance(username, str) or not USERNAME_RE.fullmatch(username):
        raise AuthError("username must be 2-64 characters of letters, digits, '_', '.', '@' or '-'")
    return username


def check_password(password: str) -> str:
    """A new password: at least :data:`MIN_PASSWORD_CHARS` characters, not only white space."""
    if not isinstance(password, str) or len(password.strip()) < MIN_PASSWORD_CHARS:
        raise AuthError(f"password must have at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise AuthError(f"password must have at most {MAX_PASSWORD_CHARS} characters")
    return password


def hash_password(password: str) -> str:
    """The argon2id hash (PHC string, salt included) of a password that passed :func:`check_password`."""
    return _hasher.hash(check_password(password))


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches; ``False`` (never an exception) for a mismatch or a malformed hash."""
    if not isinstance(password, str) or len(password) > MAX_PASSWORD_CHARS:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether a stored hash uses older parameters than the current defaults (rehash it after a login)."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except (InvalidHashError, ValueError):
        return True


#: A real hash of a random password: verified against when the username is unknown, so that costs the same.
DUMMY_HASH: Final = _hasher.hash(secrets.token_urlsafe(24))


# --------------------------------------------------------------------------------------------------- tokens
def new_token() -> str:
    """A random URL-safe token (256 bits): session cookies and CSRF tokens."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """SHA-256 (hex) of a session token: what the database stores and looks up."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def well_formed_token(token: str | None) -> bool:
    """Cheap shape check before hashing a cookie value and asking the database about it."""
    return token is not None and bool(_TOKEN_RE.fullmatch(token))


def same_token(expected: str, given: str | None) -> bool:
    """Constant-time comparison of a CSRF token."""
    if not given or not expected:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))


def session_expiry(now: dt.datetime, ttl: dt.timedelta = SESSION_TTL) -> dt.datetime:
    return now + ttl


def extended_expiry(
    created_at: dt.datetime,
    expires_at: dt.datetime,
    now: dt.datetime,
    ttl: dt.timedelta = SESSION_TTL,
    max_age: dt.timedelta = SESSION_MAX_AGE,
    touch_every: dt.timedelta = SESSION_TOUCH_EVERY,
) -> dt.datetime | None:
    """The new deadline of a session used at ``now`` (idle timeout ``ttl``, never past ``created_at + max_age``),
    or ``None`` when it need not be written yet (it was extended less than ``touch_every`` ago): one write per
    few minutes per session, not one per request."""
    wanted = min(now + ttl, created_at + max_age)
    if wanted - expires_at < touch_every:
        return None
    return wanted


# --------------------------------------------------------------------------------------------------- origins
def normalise_origin(value: str) -> str | None:
    """``scheme://host[:port]`` in lower case with default ports dropped, or ``None`` if it is not an origin."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    default = 443 if parts.scheme == "https" else 80
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


def origin_allowed(origin: str | None, referer: str | None, allowed: frozenset[str]) -> bool:
    """The CSRF origin check for a state-changing request.

    The ``Origin`` header decides when present (browsers send it on every cross-origin request and on same-origin
    POSTs; ``"null"`` is refused); without it the origin of ``Referer`` must match. A request carrying neither is
    refused: the console's own pages always send ``Origin`` on their POSTs.
    """
    if origin is not None and origin.strip():
        normal = normalise_origin(origin)
        return normal is not None and normal in allowed
    if referer:
        normal = normalise_origin(referer)
        return normal is not None and normal in allowed
    return False


# ------------------------------------------------------------------------------------------- login throttle
@dataclass(frozen=True)
class RateLimit:
    """At most ``max_failures`` login attempts per throttle key within ``window`` seconds (see :func:`throttle_keys`).

    An attempt counts from the moment it starts (before its password is checked); a success or an attempt that was
    never checked stops counting at once, a failure keeps counting until it is ``window`` seconds old."""

    max_failures: int = 5
    window: float = 300.0


def throttle_keys(address: str, username: str) -> tuple[str, str]:
    """The keys a login attempt counts under: the client address (whatever account it tries), and the account
    name *together with* the address. There is deliberately no key for the account alone: 5 wrong passwords from
    anywhere would then lock a staff member out from everywhere (anyone could shut the console's users out).
    The price: a guesser who controls many addresses gets ``max_failures`` guesses per address per window, which
    argon2, the 10-character minimum and the hashing pool's bounded throughput keep useless. The name is
    case-folded (``Agent`` and ``agent`` share a counter); the store hashes both keys before keeping them."""
    return f"addr:{address}", f"account:{username.strip().casefold()}@{address}"


# --------------------------------------------------------------------------------------------------- hosts
LOOPBACK_HOSTS: Final = ("127.0.0.1", "localhost", "[::1]")
_HOST_RE: Final = re.compile(r"(\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9.-]{1,253})(:[0-9]{1,5})?")


def loopback_origins(port: int) -> frozenset[str]:
    """``http://127.0.0.1:PORT``, ``http://localhost:PORT`` and ``http://[::1]:PORT``: the console's own origins
    when it is reached on the machine it runs on (the default, with no ``--console-origin``)."""
    return frozenset(o for o in (normalise_origin(f"http://{h}:{port}") for h in LOOPBACK_HOSTS) if o)


def host_allowed(host: str | None, allowed_origins: frozenset[str]) -> bool:
    """Whether a request's ``Host`` header names one of ``allowed_origins`` (host and port; the scheme is the
    origin's). A DNS-rebinding page (its own name resolved to the console's address) sends *its* name as Host, so
    refusing unknown Host values keeps it out even when its Origin and Host agree. Only plain ``host[:port]`` is
    considered: user-info, paths and the like are refused before parsing."""
    if not host or not _HOST_RE.fullmatch(host):
        return False
    for origin in allowed_origins:
        scheme = origin.split("://", 1)[0]
        if normalise_origin(f"{scheme}://{host}") == origin:
            return True
    return False
