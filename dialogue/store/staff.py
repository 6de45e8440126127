"""Staff accounts and their console login sessions.

The ops console authenticates against the same database the bot writes, so ``users`` and ``sessions`` live in
the store. A session is keyed by the sha256 of its cookie token (never the token itself); the store never sees a
password, only the hash ``channels.auth`` made. Changing a password or disabling an account ends its sessions.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from dialogue.errors import StoreError, UserExists, UserNotFound
from dialogue.store.database import Database, log
from dialogue.store.rows import _aware, _now, _row_to_user
from dialogue.store.rules import _check_role
from dialogue.store.schema import sessions, users
from dialogue.types import CONSOLE_LOCALES, Session, User


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
            row = (await conn.execute(users.select().where(users.c.username == username))).first()
        return _row_to_user(row) if row is not None else None

    async def get_user_by_id(self, user_id: int) -> User | None:
        async with self._read("get_user_by_id") as conn:
            row = (await conn.execute(users.select().where(users.c.id == user_id))).first()
        return _row_to_user(row) if row is not None else None

    async def list_users(self) -> list[User]:
        async with self._read("list_users") as conn:
            rows = (await conn.execute(users.select().order_by(users.c.username))).all()
        return [_row_to_user(r) for r in rows]

    async def _update_user(self, username: str, operation: str, *, end_sessions: bool, **values: Any) -> User:
        async with self._write(operation) as conn:
            row = (
                await conn.execute(
                    users.update().where(users.c.username == username).values(**values).returning(*users.c)
                )
            ).first()
            if row is None:
                raise UserNotFound(username, operation=operation)
            if end_sessions:
                await conn.execute(sessions.delete().where(sessions.c.user_id == row.id))
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
        return session

    async def get_session(self, token_hash: str, now: dt.datetime) -> tuple[Session, User] | None:
        """The session and its user, or ``None`` when unknown, expired at ``now``, or the user is disabled."""
        query = (
            sa.select(sessions, users)
            .join(users, users.c.id == sessions.c.user_id)
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

    async def count_agents_online(self, now: dt.datetime) -> int:
        """Staff who can answer customers now: enabled agents and admins with a console session alive at ``now``
        (signed in and not idle past the session time-out). What the hand-off decision asks before queueing."""
        query = (
            sa.select(sa.func.count(sa.distinct(users.c.id)))
            .select_from(sessions.join(users, users.c.id == sessions.c.user_id))
            .where(sessions.c.expires_at > _aware(now), users.c.disabled.is_(False), users.c.role.in_(("agent", "admin")))
        )
        async with self._read("count_agents_online") as conn:
            return int((await conn.execute(query)).scalar_one())

    async def purge_sessions(self, now: dt.datetime) -> int:
        """Delete the sessions expired at ``now``; returns how many."""
        async with self._write("purge_sessions") as conn:
            result = await conn.execute(sessions.delete().where(sessions.c.expires_at <= _aware(now)))
        return int(result.rowcount or 0)
