"""Staff profiles in the store (migration 0013), on SQLite and PostgreSQL (the ``store`` fixture): the display name
and the picture of an account, read back with every account read, a picture found by its digest, what an agent's
message and file record of their profile when sent (so a history replays it), the store's own limits, the
migration both ways, and ``dialogue/store/schema.py`` against what the migrations build."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import pytest
import sqlalchemy as sa

from dialogue.errors import InvalidQuery, UserNotFound
from dialogue.store import MIGRATIONS_DIR, Store, user_avatars, users
from dialogue.store.schema import _metadata as SCHEMA
from dialogue.types import AGENT_MESSAGE, MAX_AVATAR_BYTES, clean_display_name
from tests.dialogue.test_store import _migrate_to
from tests.stores import StoreTarget

PNG = b"\x89PNG\r\n\x1a\n" + b"\x01" * 200  # the store does not read formats (channels.uploads does)
WEBP = b"RIFF" + b"\x00" * 4 + b"WEBP" + b"\x02" * 100
HOUR = dt.timedelta(hours=1)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def _agent(store: Store, name: str = "amy") -> None:
    await store.add_user(name, "x" * 20, "agent")


async def _held(store: Store, agent: str = "amy") -> str:
    conv = await store.create_conversation("en", state="idle")
    await store.take_over(conv.id, agent)
    return conv.id


# ------------------------------------------------------------------------------------------------ display name
def test_display_names_are_trimmed_bounded_and_free_of_hidden_characters() -> None:
    assert clean_display_name("  Amy Lee  ") == "Amy Lee"
    assert clean_display_name("王小明") == "王小明"
    assert clean_display_name(None) is None and clean_display_name("   ") is None  # blank: the username again
    assert clean_display_name("x" * 64) == "x" * 64
    for bad in ("x" * 65, "Amy\nLee", "Amy\x00", "Amy\u202eeeL", "Amy\u200b", "a\u2028b", 42, ["Amy"]):
        with pytest.raises(ValueError):
            clean_display_name(bad)


async def test_display_name_is_set_read_back_and_cleared(store: Store) -> None:
    await _agent(store)
    user = await store.set_display_name("amy", "  Amy Lee ")
    assert user.display_name == "Amy Lee" and user.shown_name == "Amy Lee" and user.avatar is None
    assert (await store.get_user("amy")).display_name == "Amy Lee"  # type: ignore[union-attr]
    assert [u.display_name for u in await store.list_users()] == ["Amy Lee"]
    assert (await store.get_user_by_id(user.id)).display_name == "Amy Lee"  # type: ignore[union-attr]
    cleared = await store.set_display_name("amy", "")
    assert cleared.display_name is None and cleared.shown_name == "amy"
    with pytest.raises(InvalidQuery):
        await store.set_display_name("amy", "a\tb")
    with pytest.raises(InvalidQuery):
        await store.set_display_name("amy", "x" * 65)
    with pytest.raises(UserNotFound):
        await store.set_display_name("nobody", "Nobody")


# ----------------------------------------------------------------------------------------------------- picture
async def test_a_picture_is_set_replaced_found_by_digest_and_removed(store: Store) -> None:
    await _agent(store)
    user = await store.set_avatar("amy", "image/png", PNG)
    assert user.avatar == digest(PNG)
    assert await store.get_avatar(digest(PNG)) == ("image/png", PNG)
    assert (await store.get_user("amy")).avatar == digest(PNG)  # type: ignore[union-attr]
    token = "a" * 64
    await store.create_session(token, user.id, "csrf", dt.datetime.now(dt.UTC) + HOUR)
    found = await store.get_session(token, dt.datetime.now(dt.UTC))
    assert found is not None and found[1].avatar == digest(PNG)  # what every console request sees
    assert (await store.set_role("amy", "admin")).avatar == digest(PNG)  # other updates keep it

    replaced = await store.set_avatar("amy", "image/webp", WEBP)  # one picture per account: the old one is gone
    assert replaced.avatar == digest(WEBP)
    assert await store.get_avatar(digest(PNG)) is None
    assert await store.get_avatar(digest(WEBP)) == ("image/webp", WEBP)
    async with store.transaction("test", write=False) as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(user_avatars))).scalar_one() == 1

    assert (await store.clear_avatar("amy")).avatar is None
    assert await store.get_avatar(digest(WEBP)) is None
    assert (await store.clear_avatar("amy")).avatar is None  # nothing to remove: still fine
    with pytest.raises(UserNotFound):
        await store.set_avatar("nobody", "image/png", PNG)
    with pytest.raises(UserNotFound):
        await store.clear_avatar("nobody")


async def test_two_accounts_may_have_the_same_picture(store: Store) -> None:
    await _agent(store, "amy")
    await _agent(store, "bob")
    await store.set_avatar("amy", "image/png", PNG)
    await store.set_avatar("bob", "image/png", PNG)
    await store.clear_avatar("amy")
    assert await store.get_avatar(digest(PNG)) == ("image/png", PNG)  # still bob's
    assert (await store.get_user("bob")).avatar == digest(PNG)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("content_type", "data"),
    [("image/gif", PNG), ("application/pdf", PNG), ("image/svg+xml", PNG), ("image/png", b""),
     ("image/png", b"\x89PNG" + b"\x00" * MAX_AVATAR_BYTES)],
)
async def test_the_store_takes_small_png_jpeg_and_webp_only(store: Store, content_type: str, data: bytes) -> None:
    await _agent(store)
    with pytest.raises(InvalidQuery):
        await store.set_avatar("amy", content_type, data)
    assert (await store.get_user("amy")).avatar is None  # type: ignore[union-attr]


@pytest.mark.parametrize("asked", ["", "A" * 64, "0" * 63, "g" * 64, "../" + "0" * 61, "0" * 65, None])
async def test_a_malformed_digest_finds_nothing(store: Store, asked: Any) -> None:
    await _agent(store)
    await store.set_avatar("amy", "image/png", PNG)
    assert await store.get_avatar(asked) is None
    assert await store.get_avatar(digest(PNG).upper()) is None  # digests are lower-case hex


# -------------------------------------------------------------------------------------- what events record
async def test_an_agent_message_records_the_profile_it_was_sent_with(store: Store) -> None:
    await _agent(store)
    cid = await _held(store)
    plain = await store.append_agent_message(cid, "amy", "Hello", "a-1")
    assert plain.data == {"text": "Hello", "agent": "amy", "message_id": "a-1"}  # no profile: the username shows

    await store.set_display_name("amy", "Amy Lee")
    await store.set_avatar("amy", "image/png", PNG)
    named = await store.append_agent_message(cid, "amy", "Your parcel left today", "a-2")
    assert named.data["agent"] == "amy"  # the account (the console, the inbox and the rules read it)
    assert named.data["agent_name"] == "Amy Lee" and named.data["agent_avatar"] == digest(PNG)

    # A later profile change leaves what was sent alone: the history replays what the customer saw.
    await store.set_display_name("amy", "A. Lee")
    await store.clear_avatar("amy")
    stored = [e for e in await store.events(cid) if e.type == AGENT_MESSAGE]
    assert [(e.data.get("agent_name"), e.data.get("agent_avatar")) for e in stored] == [
        (None, None), ("Amy Lee", digest(PNG))]


async def test_an_agents_file_records_the_profile_too(store: Store) -> None:
    await _agent(store)
    await store.set_display_name("amy", "Amy Lee")
    await store.set_avatar("amy", "image/webp", WEBP)
    cid = await _held(store)
    _, event = await store.add_attachment(cid, direction="agent", filename="label.png", content_type="image/png",
                                          data=PNG, uploader="amy", message_id="f-1")
    assert event.data["agent"] == "amy" and event.data["agent_name"] == "Amy Lee"
    assert event.data["agent_avatar"] == digest(WEBP)
    conv = await store.create_conversation("en", state="idle")
    _, customer = await store.add_attachment(conv.id, direction="customer", filename="a.png",
                                             content_type="image/png", data=PNG)
    assert not {"agent", "agent_name", "agent_avatar"} & set(customer.data)  # a customer's file names no agent


# ----------------------------------------------------------------------------------------------- migration
async def test_migration_0013_adds_the_profile_and_drops_it(store_target: StoreTarget) -> None:
    store = await store_target.open()

    async def shape() -> tuple[set[str], set[str]]:
        async with store.transaction("test", write=False) as conn:
            return await conn.run_sync(lambda c: (set(sa.inspect(c).get_table_names()),
                                                  {col["name"] for col in sa.inspect(c).get_columns("users")}))

    try:
        await _agent(store)
        await store.set_display_name("amy", "Amy Lee")
        await store.set_avatar("amy", "image/png", PNG)
        tables, columns = await shape()
        assert "user_avatars" in tables and "display_name" in columns
        await _migrate_to(store_target, store, "0012_attachments", down=True)
        assert await store.schema_version() == "0012_attachments"
        tables, columns = await shape()
        assert "user_avatars" not in tables and "display_name" not in columns
        async with store.transaction("test", write=False) as conn:  # the account itself is untouched
            assert (await conn.execute(sa.text("SELECT username FROM users"))).scalar_one() == "amy"
        await _migrate_to(store_target, store, "head", down=False)
        user = await store.get_user("amy")
        assert user is not None and user.display_name is None and user.avatar is None
    finally:
        await store.close()


def _reflected(sync_conn: sa.Connection) -> dict[str, dict[str, Any]]:
    insp = sa.inspect(sync_conn)
    return {
        name: {
            "columns": {c["name"]: c for c in insp.get_columns(name)},
            "pk": set(insp.get_pk_constraint(name)["constrained_columns"]),
            "indexes": {i["name"] for i in insp.get_indexes(name)},
            "fks": {(tuple(fk["constrained_columns"]), fk["referred_table"]) for fk in insp.get_foreign_keys(name)},
        }
        for name in insp.get_table_names()
    }


async def test_schema_py_mirrors_what_the_migrations_build(store: Store) -> None:
    """Every table, column (its nullability and type family), primary key, foreign key and named index of
    ``dialogue/store/schema.py`` is what the migrations created: the queries name columns from schema.py, so a
    column added to one and not the other fails here rather than in production."""
    async with store.transaction("test", write=False) as conn:
        found = await conn.run_sync(_reflected)
    assert set(SCHEMA.tables) <= set(found)
    for name, table in SCHEMA.tables.items():
        db = found[name]
        assert set(table.columns.keys()) == set(db["columns"]), name
        for column in table.columns:
            reflected = db["columns"][column.name]
            assert bool(reflected["nullable"]) == bool(column.nullable) or column.primary_key, (name, column.name)
            wanted = column.type.as_generic() if not isinstance(column.type, sa.JSON) else column.type
            assert isinstance(reflected["type"].as_generic() if hasattr(reflected["type"], "as_generic") else
                              reflected["type"], _family(wanted)), (name, column.name, reflected["type"])
        assert {c.name for c in table.primary_key} == db["pk"], name
        assert {(tuple(fk.parent.name for fk in c.elements), c.referred_table.name)
                for c in table.foreign_key_constraints} == db["fks"], name
        assert {i.name for i in table.indexes} <= db["indexes"], name
    assert found["user_avatars"]["pk"] == {"user_id"}
    assert "ix_user_avatars_sha256" in found["user_avatars"]["indexes"]
    assert users.c.display_name.type.length == 64  # type: ignore[attr-defined]


def _family(wanted: sa.types.TypeEngine[Any]) -> type | tuple[type, ...]:
    """The generic types a reflected column of ``wanted``'s type may come back as (SQLite reflects JSON as JSON or
    TEXT-ish, PostgreSQL's JSONB as JSON; integers of any width are integers)."""
    if isinstance(wanted, sa.JSON):
        return (sa.JSON, sa.Text, sa.String, sa.types.NullType)
    if isinstance(wanted, sa.Integer):
        return sa.Integer
    if isinstance(wanted, sa.String):
        return sa.String
    if isinstance(wanted, sa.LargeBinary):
        return sa.LargeBinary
    if isinstance(wanted, sa.Boolean):
        return (sa.Boolean, sa.Integer)
    if isinstance(wanted, sa.DateTime):
        return sa.DateTime
    if isinstance(wanted, sa.Float):
        return (sa.Float, sa.Numeric)
    return type(wanted)


def test_the_migration_follows_0012_on_one_line_of_history() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    script = ScriptDirectory.from_config(cfg)
    assert len(script.get_heads()) == 1  # never two migrations on the same parent
    assert script.get_revision("0013_profile").down_revision == "0012_attachments"  # type: ignore[union-attr]
