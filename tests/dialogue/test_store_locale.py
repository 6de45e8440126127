"""A staff account's console language (migration 0010): set, read back by every way the store returns an account
(including the session lookup each console request makes), cleared, validated; on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest

from dialogue.errors import StoreError, UserNotFound
from dialogue.store import Store
from tests.stores import StoreTarget


async def test_locale_is_remembered_per_account(store: Store, store_target: StoreTarget) -> None:
    alice = await store.add_user("alice", "hash-a", "agent")
    await store.add_user("bob", "hash-b", "viewer")
    assert alice.locale is None and (await store.get_user("alice")).locale is None  # type: ignore[union-attr]
    updated = await store.set_locale("alice", "zh")
    assert updated.locale == "zh" and updated.role == "agent"
    assert (await store.get_user("alice")).locale == "zh"  # type: ignore[union-attr]
    assert (await store.get_user_by_id(alice.id)).locale == "zh"  # type: ignore[union-attr]
    assert {u.username: u.locale for u in await store.list_users()} == {"alice": "zh", "bob": None}
    # The session lookup (every console request) carries it, and changing it ends no session.
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    await store.create_session("a" * 64, alice.id, "csrf", expires)
    await store.set_locale("alice", "en")
    found = await store.get_session("a" * 64, dt.datetime.now(dt.UTC))
    assert found is not None and found[1].locale == "en"
    # Another process sees it (it is in the database, not in memory).
    other = await store_target.open()
    try:
        assert (await other.get_user("alice")).locale == "en"  # type: ignore[union-attr]
    finally:
        await other.close()
    assert (await store.set_locale("alice", None)).locale is None


@pytest.mark.parametrize("locale", ["fr", "", "ZH", "zh-CN"])
async def test_unknown_locales_and_accounts_are_refused(store: Store, locale: str) -> None:
    await store.add_user("alice", "hash-a", "agent")
    with pytest.raises(StoreError):
        await store.set_locale("alice", locale)
    assert (await store.get_user("alice")).locale is None  # type: ignore[union-attr]
    with pytest.raises(UserNotFound):
        await store.set_locale("nobody", "zh")
