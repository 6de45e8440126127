"""Who may call what on the console: sessions, the route guard (session, CSRF token + origin, least role), the Host
and origin sets, and the login, logout and account-preference routes.

Kept together because they are one security decision: a session is created here (login), looked up and extended
here (every guarded request), and ended here (logout); the origins a login must come from are the ones a POST
must come from. The security model itself is described in :mod:`channels.ops`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import math
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from aiohttp import web

from channels import auth
from channels.backend import ConsoleBackend
from channels.ops.api import PAGES, ApiError, json_response, user_json
from channels.ops.handlers import SESSION, USER, Clock, Handler, Handlers, logger
from channels.ops.options import OpsOptions
from channels.ops.passwords import PasswordPool, PasswordPoolFull, PasswordSlot
from channels.ops.profile import profile_json
from dialogue.types import CONSOLE_LOCALES, User

SAFE_METHODS = frozenset({"GET", "HEAD"})  # what the guard lets through without a CSRF token and origin check
PRESENCE_BEAT = 15.0  # seconds: a worker records an agent's console as seen at most this often (dialogue.handoff)


def is_specific_ip(host: str) -> bool:
    """Whether the console listens on one IP literal (not a name, not ``0.0.0.0``): such an address cannot be
    rebound by DNS, so its origin is safe to answer."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return not address.is_unspecified


class Access(Handlers):
    """The guard of every route and the session routes. ``forbidden_page``: what a page route answers a role
    that is too small. Nothing is answered until :meth:`bind` has set the origins (the port must be known)."""

    def __init__(
        self,
        backend: ConsoleBackend,
        options: OpsOptions,
        now: Clock,
        *,
        passwords: PasswordPool,
        forbidden_page: Callable[[], web.Response],
    ) -> None:
        super().__init__(backend, options, now)
        self.passwords = passwords
        self._forbidden_page = forbidden_page
        self.configured_origins = (
            frozenset(o for o in (auth.normalise_origin(x) for x in options.origins) if o) if options.origins else None
        )
        # The origins POSTs may come from, and those whose host names the console answers for.
        self.csrf_origins: frozenset[str] = frozenset()
        self.host_origins: frozenset[str] = frozenset()
        self._attempts_purged_at: dt.datetime | None = None
        self._seen_at: dict[str, float] = {}  # username -> time.monotonic() this worker last recorded presence

    # ------------------------------------------------------------------------------------------------ origins
    def bind(self, host: str, url: str, port: int) -> None:
        """Set the origin sets for a console listening on ``host`` (``url``, ``port``): see :class:`OpsOptions`."""
        own = set(auth.loopback_origins(port))
        if is_specific_ip(host):  # an IP literal cannot be rebound to another address
            bound = auth.normalise_origin(f"http://{url.split('://', 1)[1]}")
            if bound:
                own.add(bound)
        configured = self.configured_origins
        if configured is None:
            self.csrf_origins = self.host_origins = frozenset(own)
        else:
            self.csrf_origins, self.host_origins = configured, configured | own

    def host_ok(self, request: web.Request) -> bool:
        return auth.host_allowed(request.headers.get("Host"), self.host_origins)

    def _origin_ok(self, request: web.Request) -> bool:
        return auth.origin_allowed(request.headers.get("Origin"), request.headers.get("Referer"), self.csrf_origins)

    # -------------------------------------------------------------------------------------------------- guard
    def guard(self, role: str | None, name: str, handler: Handler) -> Handler:
        """Wrap a handler with its access rule: session, CSRF + origin for POSTs, least role."""
        page = name in PAGES and role is not None

        async def guarded(request: web.Request) -> web.StreamResponse:
            if role is None:
                if request.method not in SAFE_METHODS and not self._origin_ok(request):
                    raise ApiError("bad_origin")
                return await handler(request)
            found = await self._session(request)
            if found is None:
                if page:
                    target = request.path_qs if request.path.startswith("/console") else "/console"
                    return web.Response(status=302, headers={"Location": "/login?next=" + quote(target, safe="/")})
                raise ApiError("unauthorized")
            session, user = found
            if request.method not in SAFE_METHODS:  # POST, DELETE: a change needs the token and our origin
                if not self._origin_ok(request):
                    raise ApiError("bad_origin")
                if not auth.same_token(session.csrf_token, request.headers.get(auth.CSRF_HEADER)):
                    raise ApiError("csrf")
            if not auth.role_allows(user.role, role):
                if page:
                    return self._forbidden_page()
                raise ApiError("forbidden")
            request[USER] = user
            request[SESSION] = session
            return await handler(request)

        return guarded

    async def _session(self, request: web.Request) -> tuple[Any, User] | None:
        token = request.cookies.get(auth.SESSION_COOKIE)
        if not auth.well_formed_token(token):
            return None
        assert token is not None
        found = await self.backend.get_session(auth.token_hash(token), self._now())
        if found is None:
            return None
        session, user = found
        if user.disabled or user.role not in auth.ROLES:
            return None
        now = self._now()
        expires = auth.extended_expiry(
            session.created_at, session.expires_at, now, self.options.session_ttl, self.options.session_max_age
        )
        if expires is not None:  # sliding idle timeout, written at most every few minutes
            with contextlib.suppress(Exception):
                await self.backend.touch_session(session.token_hash, expires)
        if user.role in (auth.AGENT, auth.ADMIN):
            await self._seen(user.username, now)
        return session, user

    async def _seen(self, username: str, now: dt.datetime) -> None:
        """Presence: any request of an agent's console (every page polls the inbox pulse) means the console is
        open, recorded at most every :data:`PRESENCE_BEAT` seconds per worker. A console unseen for
        ``dialogue.handoff.PRESENCE_TIMEOUT`` counts as offline for the bot and for auto-assignment."""
        beat = time.monotonic()
        last = self._seen_at.get(username)
        if last is not None and 0 <= beat - last < PRESENCE_BEAT:
            return
        self._seen_at[username] = beat
        with contextlib.suppress(Exception):  # bookkeeping: never fails the request it rides on
            await self.backend.touch_presence(username, now)

    def _secure(self, request: web.Request) -> bool:
        if self.options.secure_cookie is not None:
            return self.options.secure_cookie
        if request.secure:
            return True
        configured = self.configured_origins
        return configured is not None and all(o.startswith("https://") for o in configured)

    # -------------------------------------------------------------------------------------------------- login
    async def _h_login(self, request: web.Request) -> web.StreamResponse:
        body = await self._json_body(request)
        username, password = body.get("username"), body.get("password")
        if not isinstance(username, str) or not isinstance(password, str) or len(username) > 64:
            raise ApiError("bad_request", "'username' and 'password' must be strings")
        username = username.strip()
        try:  # first: a login the pool cannot take is answered at once, before any database work
            slot = self.passwords.reserve()
        except PasswordPoolFull:
            raise ApiError("busy", headers={"Retry-After": "1"}) from None
        try:
            return await self._login(request, username, password, slot)
        finally:
            slot.release()

    async def _login(self, request: web.Request, username: str, password: str, slot: PasswordSlot) -> web.Response:
        user = await self.backend.get_user(username) if auth.USERNAME_RE.fullmatch(username) else None
        shown = user.username if user is not None else "?"  # never what was typed: people type passwords there
        keys = auth.throttle_keys(request.remote or "unknown", username)
        now = self._now()
        await self._purge_login_attempts(now)
        limit = self.options.login_limit
        admission = await self.backend.begin_login_attempt(keys, now, limit.max_failures, limit.window)
        if not admission.admitted:
            logger.warning("login throttled (user=%s)", shown)
            raise ApiError("rate_limited", headers={"Retry-After": str(max(1, math.ceil(admission.retry_after)))})
        outcome = "failed"  # what the attempt counts as if anything below raises
        try:
            stored = user.password_hash if user is not None else auth.DUMMY_HASH
            ok = await slot.run(auth.verify_password, stored, password)
            if ok and user is not None and not user.disabled:
                outcome = "ok"
        finally:
            await self.backend.finish_login_attempt(
                admission, failed=outcome == "failed", clear_keys=keys[1:] if outcome == "ok" else ()
            )
        if outcome != "ok" or user is None:
            logger.info("login failed (user=%s)", shown)
            raise ApiError("bad_credentials")
        if auth.needs_rehash(user.password_hash):
            with contextlib.suppress(PasswordPoolFull):  # a rehash can wait for a quieter login
                await self.backend.set_password(user.username, await self.passwords.run(auth.hash_password, password))
        old = request.cookies.get(auth.SESSION_COOKIE)
        if auth.well_formed_token(old):  # no session fixation: whatever session the browser had ends here
            assert old is not None
            await self.backend.delete_session(auth.token_hash(old))
        now = self._now()
        token, csrf = auth.new_token(), auth.new_token()
        expires = auth.session_expiry(now, self.options.session_ttl)
        await self.backend.create_session(auth.token_hash(token), user.id, csrf, expires)
        with contextlib.suppress(Exception):  # housekeeping only
            await self.backend.purge_sessions(now)
        logger.info("login ok (user=%s, role=%s)", user.username, user.role)
        response = json_response({"user": user_json(user), "csrf_token": csrf, "expires_at": expires.isoformat()})
        response.set_cookie(  # no max_age: the cookie dies with the browser session; the server enforces expiry
            auth.SESSION_COOKIE,
            token,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=self._secure(request),
        )
        return response

    async def _purge_login_attempts(self, now: dt.datetime) -> None:
        """Housekeeping: drop attempts older than the throttle window, at most once a minute per process."""
        last = self._attempts_purged_at
        if last is not None and dt.timedelta(0) <= now - last < dt.timedelta(minutes=1):
            return
        self._attempts_purged_at = now
        with contextlib.suppress(Exception):
            await self.backend.purge_login_attempts(now - dt.timedelta(seconds=self.options.login_limit.window))

    async def _h_logout(self, request: web.Request) -> web.StreamResponse:
        await self.backend.delete_session(request[SESSION].token_hash)
        response = json_response({"ok": True})
        response.del_cookie(auth.SESSION_COOKIE, path="/")
        return response

    async def _h_me(self, request: web.Request) -> web.StreamResponse:
        session = request[SESSION]
        return json_response(
            {
                "user": user_json(request[USER]),
                "csrf_token": session.csrf_token,
                "expires_at": session.expires_at.isoformat(),
                "locale": request[USER].locale,  # the console language chosen; null: the browser's
                "profile": profile_json(request[USER]),  # the display name and picture customers see
            }
        )

    async def _h_set_locale(self, request: web.Request) -> web.StreamResponse:
        """The console's language switch: remembered with the account (every role may choose its own language;
        ``null`` forgets the choice and the pages follow the browser again). Only the caller's own account."""
        body = await self._json_body(request)
        if "locale" not in body:
            raise ApiError("bad_request", "'locale' must be one of en, zh or null")
        locale = body["locale"]
        if locale is not None and (not isinstance(locale, str) or locale not in CONSOLE_LOCALES):
            raise ApiError("bad_request", "'locale' must be one of en, zh or null")
        user = await self.backend.set_locale(request[USER].username, locale)
        logger.info("locale of %s set to %s", request[USER].username, locale or "browser")
        return json_response({"locale": user.locale})
