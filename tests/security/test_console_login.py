"""Attacks on the console's login (issue 19), each against a real ops server over real sockets and a real store.

* a burst of concurrent guesses, on one worker and split over two workers sharing a database: exactly the limit
  of passwords is checked (an attempt is counted when it starts, atomically with the check, in the database);
* someone failing on purpose for a staff member's name, from another address: the staff member still logs in;
* a password typed into the user-name field: never logged, never stored;
* a login flood: it waits in the password pool of its own, a customer's turn does not wait for it, and what
  does not fit in the pool's queue is answered 503 at once.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from channels import auth
from channels.ops import OpsOptions, OpsServer, run_ops_server
from dialogue.staff_throttle import login_attempts
from kefu.console import Console
from tests.channels.conftest import PASSWORDS, ConsoleEnv, light_engine, password_hashes
from tests.security.conftest import client_from
from tests.stores import StoreTarget

LIMIT = auth.RateLimit(max_failures=5, window=300)


async def login(client: httpx.AsyncClient, ops: OpsServer, username: str, password: str) -> httpx.Response:
    """What the console's login page sends."""
    return await client.post(
        "/api/login",
        content=json.dumps({"username": username, "password": password}),
        headers={"Content-Type": "application/json", "Origin": ops.url},
    )


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every password check the console really runs (the real argon2 check, counted)."""
    calls: list[str] = []
    real = auth.verify_password

    def counted(password_hash: str, password: str) -> bool:
        calls.append(password)
        return real(password_hash, password)

    monkeypatch.setattr(auth, "verify_password", counted)
    yield calls


def guesses(n: int) -> list[str]:
    return [f"wrong-password-{i:03d}" for i in range(n)]


# ---------------------------------------------------------------------------------------------- the race
async def test_a_burst_of_concurrent_guesses_is_checked_at_most_limit_times(
    console_env: ConsoleEnv, verifications: list[str]
) -> None:
    options = OpsOptions(login_limit=LIMIT, password_queue=64)  # the queue is not what stops them here
    passwords = [*guesses(40), PASSWORDS["agent"]]
    async with run_ops_server(console_env.console, options=options) as ops, client_from("127.0.0.1", ops.url) as c:
        responses = await asyncio.gather(*(login(c, ops, "agent", pw) for pw in passwords))
    statuses = Counter(r.status_code for r in responses)
    # Exactly the limit of wrong guesses is checked; the right one is checked only if it came early enough, and
    # then its success frees the one slot it held (at most limit + 1 checks).
    assert statuses[401] == LIMIT.max_failures and statuses[200] <= 1, statuses
    assert len(verifications) == statuses[401] + statuses[200] <= LIMIT.max_failures + 1
    assert statuses[429] == len(passwords) - len(verifications)
    assert all(1 <= int(r.headers["retry-after"]) <= LIMIT.window for r in responses if r.status_code == 429)


async def test_the_right_password_is_refused_while_the_address_is_throttled(
    console_env: ConsoleEnv, verifications: list[str]
) -> None:
    options = OpsOptions(login_limit=LIMIT, password_queue=64)
    async with run_ops_server(console_env.console, options=options) as ops, client_from("127.0.0.1", ops.url) as c:
        burst = await asyncio.gather(*(login(c, ops, "agent", pw) for pw in guesses(40)))
        right = await login(c, ops, "agent", PASSWORDS["agent"])
    assert Counter(r.status_code for r in burst) == {401: LIMIT.max_failures, 429: 40 - LIMIT.max_failures}
    assert right.status_code == 429 and right.json()["error"]["code"] == "rate_limited"
    assert len(verifications) == LIMIT.max_failures  # the right one was not even checked


async def test_workers_sharing_a_database_share_the_count(
    store_target: StoreTarget, verifications: list[str]
) -> None:
    """Two ops servers (two ``kefu serve`` workers) on two connections to one database: a burst split between
    them is checked at most ``max_failures`` times in all, on SQLite and on PostgreSQL."""
    first, second = await store_target.open(), await store_target.open()
    try:
        for role, password_hash in password_hashes().items():
            await first.add_user(role, password_hash, role)
        options = OpsOptions(login_limit=LIMIT, password_queue=64)
        async with (
            run_ops_server(Console(light_engine(first)), options=options) as one,
            run_ops_server(Console(light_engine(second)), options=options) as two,
            client_from("127.0.0.1", one.url) as c1,
            client_from("127.0.0.1", two.url) as c2,
        ):
            pairs = [(c1, one) if i % 2 else (c2, two) for i in range(40)]
            responses = await asyncio.gather(
                *(login(c, ops, "agent", pw) for (c, ops), pw in zip(pairs, guesses(40), strict=True))
            )
            after = await login(c1, one, "agent", PASSWORDS["agent"])
    finally:
        await first.close()
        await second.close()
    assert Counter(r.status_code for r in responses) == {401: LIMIT.max_failures, 429: 40 - LIMIT.max_failures}
    assert len(verifications) == LIMIT.max_failures
    assert after.status_code == 429


# ----------------------------------------------------------------------------------------------- lock-out
async def test_failing_for_a_name_from_elsewhere_does_not_lock_its_owner_out(console_env: ConsoleEnv) -> None:
    options = OpsOptions(login_limit=LIMIT)
    async with (
        run_ops_server(console_env.console, options=options) as ops,
        client_from("127.0.0.2", ops.url) as attacker,
        client_from("127.0.0.3", ops.url) as owner,
    ):
        for password in guesses(LIMIT.max_failures):
            assert (await login(attacker, ops, "agent", password)).status_code == 401
        assert (await login(attacker, ops, "agent", PASSWORDS["agent"])).status_code == 429  # the attacker: out
        assert (await login(attacker, ops, "viewer", PASSWORDS["viewer"])).status_code == 429  # for every name
        ok = await login(owner, ops, "agent", PASSWORDS["agent"])  # the agent, from their own desk: in
        assert ok.status_code == 200 and ok.json()["user"]["username"] == "agent"


async def test_a_success_clears_the_accounts_failures_at_that_address_only(console_env: ConsoleEnv) -> None:
    limit = auth.RateLimit(max_failures=3, window=300)
    async with (
        run_ops_server(console_env.console, options=OpsOptions(login_limit=limit)) as ops,
        client_from("127.0.0.4", ops.url) as desk,
    ):
        for password in guesses(2):
            assert (await login(desk, ops, "agent", password)).status_code == 401
        assert (await login(desk, ops, "agent", PASSWORDS["agent"])).status_code == 200
        # The account's failures are cleared; the address keeps its own count (2 of 3).
        assert (await login(desk, ops, "agent", "wrong-password-again")).status_code == 401
        assert (await login(desk, ops, "agent", PASSWORDS["agent"])).status_code == 429


# ---------------------------------------------------------------------------------- passwords as user names
async def test_a_password_typed_as_the_user_name_is_never_logged_or_stored(
    console_env: ConsoleEnv, text_log: Any
) -> None:
    typed = PASSWORDS["admin"]  # a valid-looking user name: people type their password in the wrong field
    assert auth.USERNAME_RE.fullmatch(typed)
    async with (
        run_ops_server(console_env.console, options=OpsOptions(login_limit=LIMIT)) as ops,
        client_from("127.0.0.5", ops.url) as c,
    ):
        statuses = [(await login(c, ops, typed, "whatever-it-was")).status_code for _ in range(LIMIT.max_failures + 2)]
    assert statuses == [401] * LIMIT.max_failures + [429, 429]
    log = text_log.getvalue()
    assert "login throttled (user=?)" in log and "login failed (user=?)" in log
    assert typed not in log
    async with console_env.store.transaction("test", write=False) as conn:
        keys = (await conn.execute(sa.select(login_attempts.c.key))).scalars().all()
    assert keys and all(re.fullmatch(r"[0-9a-f]{64}", k) for k in keys)  # hashed: neither names nor addresses


async def test_a_known_accounts_name_is_logged(console_env: ConsoleEnv, text_log: Any) -> None:
    async with run_ops_server(console_env.console) as ops, client_from("127.0.0.6", ops.url) as c:
        assert (await login(c, ops, "agent", "wrong-password-1")).status_code == 401
    assert "login failed (user=agent)" in text_log.getvalue()


# ------------------------------------------------------------------------------------------ login flood
async def test_a_login_flood_waits_in_its_own_pool_and_never_delays_a_turn(
    console_env: ConsoleEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """60 logins at once from 60 addresses (the throttle lets each through). Password checks are held on a gate:
    before the fix they filled the default executor, and the customer's turn (its NLU runs there) never ran."""
    gate, running = threading.Event(), threading.Semaphore(0)
    real = auth.verify_password

    def held(password_hash: str, password: str) -> bool:
        running.release()
        gate.wait(60)
        return real(password_hash, password)

    monkeypatch.setattr(auth, "verify_password", held)
    options = OpsOptions(password_workers=1, password_queue=4)
    capacity = options.password_workers + options.password_queue
    async with run_ops_server(console_env.console, options=options) as ops:
        clients = [client_from(f"127.0.1.{i + 1}", ops.url) for i in range(60)]
        try:
            tasks = [asyncio.create_task(login(c, ops, "agent", "wrong-password-1")) for c in clients]
            answered = await _until(lambda: sum(t.done() for t in tasks) >= len(tasks) - capacity, tasks)
            assert answered, "the logins beyond the pool's queue were not answered while the pool was busy"
            refused = [t.result() for t in tasks if t.done()]
            assert all(r.status_code == 503 and r.json()["error"]["code"] == "busy" for r in refused)
            assert all(r.headers["retry-after"] == "1" for r in refused)
            assert await asyncio.to_thread(running.acquire, True, 10)  # one check is running, held on the gate
            assert not running.acquire(False)  # and no second one: one worker
            # Meanwhile a customer's turn runs its NLU on the default executor: not behind the logins.
            conversation = await asyncio.wait_for(console_env.chat("hello", "where is my order 10234"), 30)
            assert conversation
        finally:
            gate.set()
        rest = await asyncio.gather(*tasks)
        for client in clients:
            await client.aclose()
    assert Counter(r.status_code for r in rest) == {503: len(tasks) - capacity, 401: capacity}


async def _until(condition: Callable[[], bool], tasks: list[asyncio.Task[Any]], limit: float = 30.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not condition():
        if loop.time() > deadline or all(t.done() for t in tasks):
            return condition()
        await asyncio.sleep(0.02)
    return True
