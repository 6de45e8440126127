"""The pieces under the console's login defences: the shared attempt counter on a real store (SQLite and
PostgreSQL), its Retry-After arithmetic, and the password pool's bound."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading

import pytest

from channels.ops import PasswordPool, PasswordPoolFull
from dialogue import staff_throttle
from dialogue.store import Store
from tests.stores import StoreTarget

T0 = dt.datetime(2027, 2, 1, 9, 0, tzinfo=dt.UTC)
KEYS = ("addr:10.0.0.1", "account:agent@10.0.0.1")


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("others", "wait"),
    [
        ([], 0.0),
        ([at(0), at(10)], 0.0),  # room for a third
        ([at(0), at(10), at(20)], 240.0),  # full: the oldest must age out (0 + 300 - 60)
        ([at(0), at(10), at(20), at(30)], 250.0),  # two must age out: the second oldest decides
    ],
)
def test_wait_seconds(others: list[dt.datetime], wait: float) -> None:
    assert staff_throttle.wait_seconds(others, at(60), 3, 300.0) == pytest.approx(wait)


async def test_a_concurrent_burst_admits_exactly_the_limit_across_stores(store_target: StoreTarget) -> None:
    stores = [await store_target.open() for _ in range(3)]  # three workers' connections to one database
    try:
        admissions = await asyncio.gather(*(
            staff_throttle.begin_attempt(stores[i % 3], KEYS, T0, max_attempts=5, window=300) for i in range(30)
        ))
        assert sum(a.admitted for a in admissions) == 5
        assert all(0 < a.retry_after <= 300 for a in admissions if not a.admitted)
        for admission in admissions:
            if admission.admitted:
                await staff_throttle.finish_attempt(stores[0], admission, failed=True)
        later = await staff_throttle.begin_attempt(stores[1], KEYS, at(301), max_attempts=5, window=300)
        assert later.admitted  # the failures aged out
        assert await staff_throttle.purge(stores[2], at(1)) == 10  # 5 attempts x 2 keys; the later one stays
    finally:
        for store in stores:
            await store.close()


async def test_a_success_clears_only_finished_failures_of_the_keys_it_names(store: Store) -> None:
    async def attempt(keys: tuple[str, ...], seconds: float, limit: int = 2) -> staff_throttle.LoginAdmission:
        return await staff_throttle.begin_attempt(store, keys, at(seconds), max_attempts=limit, window=300.0)

    failed = await attempt(KEYS, 0)
    await staff_throttle.finish_attempt(store, failed, failed=True)
    pending = await attempt(KEYS, 1)  # still being checked
    assert not (await attempt(KEYS, 2)).admitted
    ok = await attempt(KEYS[1:], 3, limit=3)
    await staff_throttle.finish_attempt(store, ok, failed=False, clear_keys=KEYS[1:])
    # The failure under KEYS[1] is gone, the pending attempt still counts, the address key was not touched.
    assert not (await attempt(KEYS, 4)).admitted
    await staff_throttle.finish_attempt(store, pending, failed=False)
    assert (await attempt(KEYS[1:], 5, limit=1)).admitted  # nothing left under KEYS[1]: the failure was cleared


async def test_the_password_pool_holds_a_slot_until_the_work_is_really_done() -> None:
    pool = PasswordPool(workers=1, queue=0)
    gate = threading.Event()
    try:
        task = asyncio.create_task(pool.run(gate.wait, 30))
        await asyncio.sleep(0.05)
        assert pool.full
        with pytest.raises(PasswordPoolFull):
            await pool.run(int, "1")
        task.cancel()  # the request went away, but its hash is still running on the thread
        await asyncio.sleep(0.05)
        assert pool.full
        gate.set()
        for _ in range(100):
            if not pool.full:
                break
            await asyncio.sleep(0.02)
        assert not pool.full and await pool.run(int, "7") == 7
    finally:
        gate.set()
        pool.close()


async def test_migration_0006_creates_the_table_and_downgrades_cleanly(store_target: StoreTarget) -> None:
    import sqlalchemy as sa

    from tests.dialogue.test_store import _migrate_to

    async def tables(store: Store) -> set[str]:
        async with store.transaction("test", write=False) as conn:
            return set(await conn.run_sync(lambda sync_conn: sa.inspect(sync_conn).get_table_names()))

    store = await store_target.open()
    try:
        assert "login_attempts" in await tables(store)
        await staff_throttle.begin_attempt(store, KEYS, T0, max_attempts=5, window=300)
        await _migrate_to(store_target, store, "0005_resume_secret", down=True)
        assert "login_attempts" not in await tables(store) and "users" in await tables(store)
        await _migrate_to(store_target, store, "head", down=False)
        assert (await staff_throttle.begin_attempt(store, KEYS, T0, max_attempts=1, window=300)).admitted
    finally:
        await store.close()
