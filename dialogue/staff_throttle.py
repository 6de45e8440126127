"""Login throttling for the staff console, kept in the conversation store so that every worker process shares it.

Why in the database: ``kefu serve`` may run several workers on one port (``--reuse-port``); a counter in each
process let an attacker multiply the allowance by the number of workers. Why counted when an attempt *starts*:
the password check (argon2) takes a tenth of a second, and an attempt recorded only after it failed let a burst of
concurrent attempts all pass the check before the first failure was written (100 concurrent guesses were all
verified). Here an attempt is admitted or refused before any password is looked at, atomically with counting it.

The table ``login_attempts`` (migration ``0006_login_attempts``) holds one row per admitted attempt and per key
(an attempt has two keys, see :func:`channels.auth.throttle_keys`): ``key`` is the SHA-256 of the key text (the
table never holds an address, nor whatever was typed into the user-name field, passwords included), ``started_at``,
and ``failed`` (set when the password turned out wrong). :func:`begin_attempt` is one write transaction that

1. serialises the attempts on the same key: on PostgreSQL a transaction-scoped advisory lock per key (taken in a
   fixed order, so two attempts never wait for each other crosswise); on SQLite the store's write transactions
   are ``BEGIN IMMEDIATE``, which already lets one writer in at a time;
2. counts, per key, the rows started within the window (under ``READ COMMITTED`` the statement sees every attempt
   committed by whoever held the lock before);
3. refuses (writing nothing) when a key already holds ``max_attempts``, with the seconds until enough of them age
   out (:func:`wait_seconds`); otherwise inserts the attempt's rows, and the commit releases the locks.

So the count is exact: of a burst of concurrent guesses, on one worker or on many, exactly ``max_attempts`` per key
and window are admitted, however they interleave (an insert-then-count without the lock would be safe too, but a
burst would then see itself and refuse more than it has to, telling a person to wait minutes for nothing).

After the password check :func:`finish_attempt` marks the rows failed (they keep counting until they age out) or,
for a success or an attempt that never reached the check, deletes them; a success also clears the failures of the
keys it is given (the account-and-address key: the person proved who they are from that address).
:func:`purge` removes rows older than the window (the ops server calls it now and then).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa

#: Mirrors migrations/versions/0006_login_attempts.py (the migration owns the schema; this is for queries).
_metadata: Final = sa.MetaData()
login_attempts: Final = sa.Table(
    "login_attempts",
    _metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(64), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("failed", sa.Boolean(), nullable=False, server_default=sa.false()),
)


#: The first half of PostgreSQL's two-key advisory locks taken here (a space of its own: two-key and one-key
#: advisory locks do not overlap, and no other two-key lock of Kefu uses this number).
_LOCK_SPACE: Final = int.from_bytes(hashlib.sha256(b"kefu.login_attempts").digest()[:4], "big", signed=True)


@dataclass(frozen=True)
class LoginAdmission:
    """The answer to :func:`begin_attempt`: ``retry_after`` seconds (``0.0``: admitted) and the rows recorded for
    an admitted attempt (empty when refused), which :func:`finish_attempt` settles."""

    retry_after: float
    row_ids: tuple[int, ...] = ()

    @property
    def admitted(self) -> bool:
        return self.retry_after <= 0.0


def key_digest(key: str) -> str:
    """What the table stores for a throttle key: its SHA-256, hex."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _utc(value: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes; everything written here is UTC."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def wait_seconds(others: Sequence[dt.datetime], now: dt.datetime, max_attempts: int, window: float) -> float:
    """Seconds until a new attempt on a key would be admitted, given the start times of the attempts it already
    holds within the window (``others``): once all but ``max_attempts - 1`` of them have aged out. ``0.0`` when
    there is room now; never more than ``window``."""
    if len(others) < max_attempts:
        return 0.0
    ordered = sorted(_utc(t) for t in others)
    must_expire = ordered[len(ordered) - max_attempts]  # the newest of those that have to age out
    wait = (must_expire + dt.timedelta(seconds=window) - _utc(now)).total_seconds()
    return min(max(wait, 0.0), window)


async def begin_attempt(
    store: Any, keys: Sequence[str], now: dt.datetime, *, max_attempts: int, window: float
) -> LoginAdmission:
    """Admit an attempt and record it under every key, unless a key already holds ``max_attempts`` started within
    ``window`` seconds (see the module docstring). ``store`` is a :class:`dialogue.store.Store` (or a proxy of
    one): only its public :meth:`~dialogue.store.Store.transaction` is used."""
    if max_attempts < 1 or window <= 0:
        raise ValueError("max_attempts must be >= 1 and window > 0")
    digests = sorted({key_digest(k) for k in keys})  # sorted: the order locks are taken in
    started = _utc(now)
    cutoff = started - dt.timedelta(seconds=window)
    t = login_attempts.c
    async with store.transaction("login_attempt") as conn:
        if conn.dialect.name == "postgresql":
            for digest in digests:
                await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_LOCK_SPACE, _lock_id(digest))))
        rows = (
            await conn.execute(sa.select(t.key, t.started_at).where(t.key.in_(digests), t.started_at > cutoff))
        ).all()
        wait = 0.0
        for digest in digests:
            held = [r.started_at for r in rows if r.key == digest]
            if len(held) >= max_attempts:
                wait = max(wait, wait_seconds(held, started, max_attempts, window), 1e-3)
        if wait > 0.0:
            return LoginAdmission(wait)  # refused: nothing written
        ids = []
        for digest in digests:
            result = await conn.execute(login_attempts.insert().values(key=digest, started_at=started, failed=False))
            ids.append(int(result.inserted_primary_key[0]))
    return LoginAdmission(0.0, tuple(ids))


def _lock_id(digest: str) -> int:
    """A signed 32-bit advisory lock id from a key's digest (collisions only make two keys wait for each other)."""
    return int.from_bytes(bytes.fromhex(digest[:8]), "big", signed=True)


async def finish_attempt(
    store: Any, admission: LoginAdmission, *, failed: bool, clear_keys: Sequence[str] = ()
) -> None:
    """Settle an admitted attempt: ``failed`` keeps its rows (marked failed) until they age out; otherwise they are
    deleted, together with the failed rows of ``clear_keys`` (a success clears its account-and-address key).
    Rows of attempts still being checked are left alone, so a success cannot open the gate to a burst."""
    if not admission.row_ids:
        return
    t = login_attempts.c
    async with store.transaction("login_attempt") as conn:
        if failed:
            await conn.execute(login_attempts.update().where(t.id.in_(admission.row_ids)).values(failed=True))
            return
        await conn.execute(login_attempts.delete().where(t.id.in_(admission.row_ids)))
        if clear_keys:
            digests = [key_digest(k) for k in clear_keys]
            await conn.execute(login_attempts.delete().where(t.key.in_(digests), t.failed.is_(True)))


async def purge(store: Any, before: dt.datetime) -> int:
    """Delete the rows of attempts started at or before ``before`` (they no longer count); returns how many."""
    async with store.transaction("login_attempt_purge") as conn:
        result = await conn.execute(login_attempts.delete().where(login_attempts.c.started_at <= _utc(before)))
    return int(result.rowcount or 0)
