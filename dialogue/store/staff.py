"""Staff accounts, their console login sessions, and their presence.

The ops console authenticates against the same database the bot writes, so ``users`` and ``sessions`` live in
the store. A session is keyed by the sha256 of its cookie token (never the token itself); the store never sees a
password, only the hash ``channels.auth`` made. Changing a password or disabling an account ends its sessions.

Profiles (migration 0013): the display name customers see is a column of ``users``; the picture's bytes are a row
of ``user_avatars`` (read by its digest, for the chat port's ``/avatars/<sha256>``), joined into every read of an
account as ``User.avatar``. :func:`shown_agent` is what an agent's message or file records of them when it is sent.

Presence (migration 0011) is kept on the account too, because every worker process must agree on it: the status
an agent chose (``online`` / ``away`` / ``offline``), when their console was last seen, and when auto-assignment
last gave them a conversation. :func:`online_agents` is the one definition of "can answer a customer now", shared
by the bot's staffing question (:meth:`StaffAccounts.count_agents_online`) and by auto-assignment
(:meth:`dialogue.store.workspace.Workspace.auto_assign`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from dialogue.errors import InvalidQuery, StoreError, UserExists, UserNotFound
from dialogue.handoff import AGENT_STATUSES, ONLINE, PRESENCE_TIMEOUT, AgentPresence
from dialogue.store.database import Database, log
from dialogue.store.rows import _aware, _now, _row_to_user
from dialogue.store.rules import ASSIGNABLE_ROLES, _check_role
from dialogue.store.schema import sessions, user_avatars, users
from dialogue.types import (
    AVATAR_DIGEST_RE,
    AVATAR_TYPES,
    CONSOLE_LOCALES,
    MAX_AVATAR_BYTES,
    Session,
    User,
    clean_display_name,
)

#: Every read of an account: the ``users`` row and the digest of its picture (``avatar``, NULL without one).
_USERS: Final = sa.select(users, user_avatars.c.sha256.label("avatar")).select_from(
    users.outerjoin(user_avatars, user_avatars.c.user_id == users.c.id)
)


async def shown_agent(conn: AsyncConnection, username: str) -> dict[str, str]:
    """What customers are shown of the agent ``username`` now, as event data beside its ``agent`` (the username):
    ``agent_name`` (their display name; absent without one: the username is what they are shown, and the event
    already names it) and ``agent_avatar`` (their picture's digest; absent without one). Read in the transaction
    that stores the agent's message or file, so the event records the profile as it was when it was sent."""
    query = (
        sa.select(users.c.display_name, user_avatars.c.sha256)
        .select_from(users.outerjoin(user_avatars, user_avatars.c.user_id == users.c.id))
        .where(users.c.username == username)
    )
    row = (await conn.execute(query)).first()
    shown: dict[str, str] = {}
    if row is not None and row.display_name:
        shown["agent_name"] = row.display_name
    if row is not None and row.sha256:
        shown["agent_avatar"] = row.sha256
    return shown


def online_agents(now: dt.datetime, seen_within: dt.timedelta = PRESENCE_TIMEOUT) -> sa.ColumnElement[bool]:
    """The ``users`` rows who can answer customers at ``now``: enabled agents and admins with a console session
    alive at ``now``, who chose ``online`` and whose console was seen within ``seen_within``."""
    u = users.c
    at = _aware(now)
    live = sa.exists().where(sessions.c.user_id == u.id, sessions.c.expires_at > at)
    return sa.and_(
        u.disabled.is_(False), u.role.in_(ASSIGNABLE_ROLES), u.status == ONLINE, u.last_seen_at >= at - seen_within,
        live,
    )


def _row_to_presence(row: sa.Row[Any, Any, Any, Any]) -> AgentPresence:
    m = row._mapping
    seen, assigned = m["last_seen_at"], m["last_assigned_at"]
    return AgentPresence(
        username=m["username"],
        status=m["status"],
        last_seen_at=_aware(seen) if seen is not None else None,
        last_assigned_at=_aware(assigned) if assigned is not None else None,
    )


_PRESENCE_COLUMNS = (users.c.username, users.c.status, users.c.last_seen_at, users.c.last_assigned_at)


class StaffAccounts(Database):
    """Staff users (roles, console locale) and their sessions."""

    async def add_user(self, username: str, password_hash: str, role: str) -> User:
        """Create a staff account (the hash comes from ``channels.auth``; the store never sees a password).
        Raises :class:`~dialogue.errors.UserExists` when the username is taken."""
        if not isinstance(username, str) or not 1 <= len(username) <= 64:
            raise StoreError("username must be 1..64 characters", operation="add_user")
        if not password_hash:
            raise StoreError("password hash is empty", operation="add_user")
        _check_role(role, "add_user")
        now = _now()
        async with self._write("add_user") as conn:
            try:
                result = await conn.execute(
                    users.insert().values(
                        username=username, password_hash=password_hash, role=role, disabled=False, created_at=now
                    )
                )
            except sa_exc.IntegrityError:
                raise UserExists(username) from None
            user_id = int(result.inserted_primary_key[0])  # type: ignore[index]
        log.info("user %s added with role %s", username, role)
        return User(user_id, username, password_hash, role, False, now)

    async def get_user(self, username: str) -> User | None:
        async with self._read("get_user") as conn:
            row = (await conn.execute(_USERS.where(users.c.username == username))).first()
        return _row_to_user(row) if row is not None else None

    async def get_user_by_id(self, user_id: int) -> User | None:
        async with self._read("get_user_by_id") as conn:
            row = (await conn.execute(_USERS.where(users.c.id == user_id))).first()
        return _row_to_user(row) if row is not None else None

    async def list_users(self) -> list[User]:
        async with self._read("list_users") as conn:
            rows = (await conn.execute(_USERS.order_by(users.c.username))).all()
        return [_row_to_user(r) for r in rows]

    async def _update_user(self, username: str, operation: str, *, end_sessions: bool, **values: Any) -> User:
        async with self._write(operation) as conn:
            found = (
                await conn.execute(
                    users.update().where(users.c.username == username).values(**values).returning(users.c.id)
                )
            ).first()
            if found is None:
                raise UserNotFound(username, operation=operation)
            if end_sessions:
                await conn.execute(sessions.delete().where(sessions.c.user_id == found.id))
            row = (await conn.execute(_USERS.where(users.c.id == found.id))).one()
        return _row_to_user(row)

    async def set_password(self, username: str, password_hash: str) -> User:
        """Replace the password hash and end every session of the user (a changed password logs out everywhere)."""
        if not password_hash:
            raise StoreError("password hash is empty", operation="set_password")
        return await self._update_user(username, "set_password", end_sessions=True, password_hash=password_hash)

    async def set_role(self, username: str, role: str) -> User:
        """Change the role; sessions continue (the ops server reads the role from the user row on each request)."""
        _check_role(role, "set_role")
        return await self._update_user(username, "set_role", end_sessions=False, role=role)

    async def disable_user(self, username: str, disabled: bool = True) -> User:
        """Disable (or re-enable) an account; disabling ends its sessions. Accounts are not deleted: events name
        their agents."""
        return await self._update_user(username, "disable_user", end_sessions=disabled, disabled=disabled)

    async def set_locale(self, username: str, locale: str | None) -> User:
        """Remember the console language a staff member chose (one of ``CONSOLE_LOCALES``), or forget it
        (``None``: the console follows the browser again). Sessions continue: every page reads it on load."""
        if locale is not None and locale not in CONSOLE_LOCALES:
            raise StoreError(f"locale must be one of {', '.join(CONSOLE_LOCALES)} or None", operation="set_locale")
        return await self._update_user(username, "set_locale", end_sessions=False, locale=locale)

    # ------------------------------------------------------------------ profile (migration 0013)

    async def set_display_name(self, username: str, display_name: str | None) -> User:
        """Set the name customers see (trimmed; ``None`` or blank: the username again). :class:`InvalidQuery` for
        a name :func:`~dialogue.types.clean_display_name` refuses; sessions continue. Messages already sent keep
        the name they were sent under (their events recorded it)."""
        try:
            name = clean_display_name(display_name)
        except ValueError as exc:
            raise InvalidQuery(str(exc), operation="set_display_name") from None
        return await self._update_user(username, "set_display_name", end_sessions=False, display_name=name)

    async def set_avatar(self, username: str, content_type: str, data: bytes) -> User:
        """Replace the account's picture (one per account; the old one is deleted, see migration 0013).

        The console checks the bytes first (``channels.uploads``: the type read from the bytes, the structure); the
        store checks what it can without reading formats: one of :data:`~dialogue.types.AVATAR_TYPES`, 1 to
        :data:`~dialogue.types.MAX_AVATAR_BYTES` bytes (:class:`InvalidQuery` otherwise)."""
        op = "set_avatar"
        if content_type not in AVATAR_TYPES:
            raise InvalidQuery(f"a picture is one of {', '.join(AVATAR_TYPES)}", operation=op)
        if not isinstance(data, bytes | bytearray) or not 0 < len(data) <= MAX_AVATAR_BYTES:
            raise InvalidQuery(f"a picture has 1..{MAX_AVATAR_BYTES} bytes", operation=op)
        async with self._write(op) as conn:
            user_id = await self._user_id(conn, username, op)
            await conn.execute(user_avatars.delete().where(user_avatars.c.user_id == user_id))
            await conn.execute(user_avatars.insert().values(
                user_id=user_id, sha256=hashlib.sha256(data).hexdigest(), content_type=content_type,
                size=len(data), created_at=_now(), data=bytes(data),
            ))
            row = (await conn.execute(_USERS.where(users.c.id == user_id))).one()
        log.info("picture of %s set (%s, %d bytes)", username, content_type, len(data))
        return _row_to_user(row)

    async def clear_avatar(self, username: str) -> User:
        """Remove the account's picture (deleted: its ``/avatars/`` URL answers 404 from now on and customers see
        the initials again, in old conversations too)."""
        async with self._write("clear_avatar") as conn:
            user_id = await self._user_id(conn, username, "clear_avatar")
            await conn.execute(user_avatars.delete().where(user_avatars.c.user_id == user_id))
            row = (await conn.execute(_USERS.where(users.c.id == user_id))).one()
        log.info("picture of %s removed", username)
        return _row_to_user(row)

    async def get_avatar(self, sha256: str) -> tuple[str, bytes] | None:
        """``(content_type, bytes)`` of a current picture by its sha256 hex digest, or ``None`` (unknown, replaced,
        removed, or not a digest at all: a malformed one is not looked up)."""
        if not isinstance(sha256, str) or not AVATAR_DIGEST_RE.fullmatch(sha256):
            return None
        query = (
            sa.select(user_avatars.c.content_type, user_avatars.c.data)
            .where(user_avatars.c.sha256 == sha256).order_by(user_avatars.c.user_id).limit(1)
        )
        async with self._read("get_avatar") as conn:
            row = (await conn.execute(query)).first()
        return (row.content_type, bytes(row.data)) if row is not None else None

    @staticmethod
    async def _user_id(conn: AsyncConnection, username: str, operation: str) -> int:
        found = (await conn.execute(sa.select(users.c.id).where(users.c.username == username))).first()
        if found is None:
            raise UserNotFound(username, operation=operation)
        return int(found.id)

    async def create_session(
        self, token_hash: str, user_id: int, csrf_token: str, expires_at: dt.datetime
    ) -> Session:
        """Store a login session keyed by the sha256 hex of its cookie token (never the token itself)."""
        if not isinstance(token_hash, str) or len(token_hash) != 64:
            raise StoreError("token hash must be 64 hex characters (sha256)", operation="create_session")
        now = _now()
        session = Session(token_hash, user_id, csrf_token, now, _aware(expires_at))
        async with self._write("create_session") as conn:
            try:
                await conn.execute(
                    sessions.insert().values(
                        token_hash=token_hash, user_id=user_id, csrf_token=csrf_token, created_at=now,
                        expires_at=session.expires_at,
                    )
                )
            except sa_exc.IntegrityError:
                raise StoreError("session token collision or unknown user", operation="create_session") from None
            # Signing in is being seen: a fresh login counts as present at once (presence, migration 0011).
            await conn.execute(users.update().where(users.c.id == user_id).values(last_seen_at=now))
        return session

    async def get_session(self, token_hash: str, now: dt.datetime) -> tuple[Session, User] | None:
        """The session and its user, or ``None`` when unknown, expired at ``now``, or the user is disabled."""
        query = (
            sa.select(sessions, users, user_avatars.c.sha256)
            .join(users, users.c.id == sessions.c.user_id)
            .outerjoin(user_avatars, user_avatars.c.user_id == users.c.id)
            .where(sessions.c.token_hash == token_hash, sessions.c.expires_at > _aware(now))
        )
        async with self._read("get_session") as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        m = row._mapping
        user = User(
            id=m[users.c.id],
            username=m[users.c.username],
            role=m[users.c.role],
            disabled=bool(m[users.c.disabled]),
            created_at=_aware(m[users.c.created_at]),
            password_hash=m[users.c.password_hash],
            locale=m[users.c.locale],
            display_name=m[users.c.display_name],
            avatar=m[user_avatars.c.sha256],
        )
        if user.disabled:
            return None
        session = Session(
            token_hash=m[sessions.c.token_hash],
            user_id=m[sessions.c.user_id],
            csrf_token=m[sessions.c.csrf_token],
            created_at=_aware(m[sessions.c.created_at]),
            expires_at=_aware(m[sessions.c.expires_at]),
        )
        return session, user

    async def touch_session(self, token_hash: str, expires_at: dt.datetime) -> bool:
        """Move a session's expiry (sliding idle timeout); ``False`` when it no longer exists."""
        async with self._write("touch_session") as conn:
            result = await conn.execute(
                sessions.update().where(sessions.c.token_hash == token_hash).values(expires_at=_aware(expires_at))
            )
        return bool(result.rowcount)

    async def delete_session(self, token_hash: str) -> bool:
        async with self._write("delete_session") as conn:
            result = await conn.execute(sessions.delete().where(sessions.c.token_hash == token_hash))
        return bool(result.rowcount)

    async def count_agents_online(self, now: dt.datetime, seen_within: dt.timedelta = PRESENCE_TIMEOUT) -> int:
        """Staff who can answer customers now (:func:`online_agents`): enabled agents and admins signed in to the
        console, with the status ``online``, whose console was seen within ``seen_within``. What the hand-off
        decision asks before queueing: when everyone is away, the bot says nobody is online instead."""
        query = sa.select(sa.func.count()).select_from(users).where(online_agents(now, seen_within))
        async with self._read("count_agents_online") as conn:
            return int((await conn.execute(query)).scalar_one())

    # ------------------------------------------------------------------ presence (migration 0011)

    async def set_agent_status(self, username: str, status: str) -> AgentPresence:
        """Remember the status an agent chose in the console (one of ``AGENT_STATUSES``); sessions continue. Only
        ``online`` counts as staffed and receives auto-assigned conversations."""
        if status not in AGENT_STATUSES:
            raise StoreError(f"status must be one of {', '.join(AGENT_STATUSES)}", operation="set_agent_status")
        async with self._write("set_agent_status") as conn:
            row = (
                await conn.execute(
                    users.update().where(users.c.username == username).values(status=status)
                    .returning(*_PRESENCE_COLUMNS)
                )
            ).first()
        if row is None:
            raise UserNotFound(username, operation="set_agent_status")
        log.info("status of %s set to %s", username, status)
        return _row_to_presence(row)

    async def touch_presence(self, username: str, now: dt.datetime) -> bool:
        """The agent's console was seen at ``now`` (a conditional UPDATE that never moves the clock back, so two
        workers recording out of order agree). The console calls it at most every few seconds per worker."""
        at = _aware(now)
        c = users.c
        query = (
            users.update()
            .where(c.username == username, sa.or_(c.last_seen_at.is_(None), c.last_seen_at < at))
            .values(last_seen_at=at)
        )
        async with self._write("touch_presence") as conn:
            result = await conn.execute(query)
        return bool(result.rowcount)

    async def agent_presence(self, username: str) -> AgentPresence | None:
        """One account's presence (its chosen status and console clock), or ``None`` for an unknown name."""
        async with self._read("agent_presence") as conn:
            row = (await conn.execute(sa.select(*_PRESENCE_COLUMNS).where(users.c.username == username))).first()
        return _row_to_presence(row) if row is not None else None

    async def team_presence(self) -> list[AgentPresence]:
        """The presence of every enabled agent and admin, by name (who a conversation can go to)."""
        query = (
            sa.select(*_PRESENCE_COLUMNS)
            .where(users.c.disabled.is_(False), users.c.role.in_(ASSIGNABLE_ROLES))
            .order_by(users.c.username)
        )
        async with self._read("team_presence") as conn:
            rows = (await conn.execute(query)).all()
        return [_row_to_presence(r) for r in rows]

    async def purge_sessions(self, now: dt.datetime) -> int:
        """Delete the sessions expired at ``now``; returns how many."""
        async with self._write("purge_sessions") as conn:
            result = await conn.execute(sessions.delete().where(sessions.c.expires_at <= _aware(now)))
        return int(result.rowcount or 0)
