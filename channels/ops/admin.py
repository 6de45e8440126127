"""The admin's routes: staff accounts (add, change role or password, disable) and erasing a customer's data.

Apart from the other routes because every one of them needs the admin role and changes who can do what or what is
kept; passwords are hashed on the console's own pool (:class:`~channels.ops.passwords.PasswordPool`).
"""

from __future__ import annotations

from aiohttp import web

from channels import auth
from channels.backend import ConsoleBackend
from channels.ops.api import ApiError, json_response, user_json
from channels.ops.handlers import USER, Clock, Handlers, logger
from channels.ops.options import OpsOptions
from channels.ops.parsing import optional_bool
from channels.ops.passwords import PasswordPool


class Admin(Handlers):
    """Accounts and retention."""

    def __init__(
        self, backend: ConsoleBackend, options: OpsOptions, now: Clock, *, passwords: PasswordPool
    ) -> None:
        super().__init__(backend, options, now)
        self.passwords = passwords

    # -------------------------------------------------------------------------------------------------- users
    async def _h_users(self, request: web.Request) -> web.StreamResponse:
        users = await self.backend.list_users()
        return json_response({"items": [user_json(u) for u in users]})

    async def _h_add_user(self, request: web.Request) -> web.StreamResponse:
        body = await self._json_body(request)
        username = auth.check_username(str(body.get("username", "")))
        role = auth.check_role(str(body.get("role", "")))
        password = body.get("password")
        if not isinstance(password, str):
            raise ApiError("bad_request", "'password' must be a string")
        auth.check_password(password)
        if await self.backend.get_user(username) is not None:
            raise ApiError("conflict", "that username is taken")
        password_hash = await self.passwords.run(auth.hash_password, password)
        user = await self.backend.add_user(username, password_hash, role)
        logger.info("user %s (%s) added by %s", username, role, request[USER].username)
        return json_response({"user": user_json(user)}, status=201)

    async def _h_update_user(self, request: web.Request) -> web.StreamResponse:
        username = request.match_info["username"]
        body = await self._json_body(request)
        user = await self.backend.get_user(username) if auth.USERNAME_RE.fullmatch(username) else None
        if user is None:
            raise ApiError("not_found", "no such user")
        me = request[USER]
        role, disabled, password = body.get("role"), optional_bool(body, "disabled"), body.get("password")
        if role is not None:
            auth.check_role(str(role))
        if password is not None:
            if not isinstance(password, str):
                raise ApiError("bad_request", "'password' must be a string")
            auth.check_password(password)
        if user.username == me.username and (disabled or (role is not None and role != auth.ADMIN)):
            raise ApiError("bad_request", "you cannot disable or demote yourself")
        if role is not None:
            await self.backend.set_role(username, str(role))
        if disabled is not None:
            await self.backend.disable_user(username, disabled)
        if password is not None:
            await self.backend.set_password(username, await self.passwords.run(auth.hash_password, password))
        logger.info("user %s updated by %s", username, me.username)
        updated = await self.backend.get_user(username)
        assert updated is not None
        return json_response({"user": user_json(updated)})

    # ---------------------------------------------------------------------------------------------- retention
    async def _h_erase_customer(self, request: web.Request) -> web.StreamResponse:
        """Erase every conversation of one customer (the widget's ``user``), from every table: a data-subject
        request handled by an admin, the API twin of ``kefu conversations delete --user``."""
        body = await self._json_body(request)
        user = body.get("user")
        if not isinstance(user, str) or not user.strip() or len(user) > 255:
            raise ApiError("bad_request", "'user' must be a customer id (1-255 characters)")
        report = await self.backend.erase_customer(user)
        logger.info("%d conversations erased by %s", report.conversations, request[USER].username)
        return json_response({"conversations": report.conversations, "rows": report.rows})
