"""Attachments in the store (migration 0012), on SQLite and PostgreSQL (the ``store`` fixture): a file and its
``attachment`` event in one transaction, the bytes only in ``attachments``, idempotent uploads, the agent's hold,
the store's own limits, erasure, and the migration both ways."""

from __future__ import annotations

import hashlib

import pytest
import sqlalchemy as sa

from dialogue.errors import ConversationNotFound, HandoffConflict, InvalidQuery
from dialogue.retention import delete_user
from dialogue.store import ATTACHMENT, MIGRATIONS_DIR, Store, attachments, conversations, events
from dialogue.types import ACTION, BOT_MESSAGE, NLU_PARSE, USER_MESSAGE, Conversation, NewEvent, TurnUpdate
from tests.dialogue.test_store import _migrate_to
from tests.stores import StoreTarget

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100  # the store does not read formats (channels.uploads does)
PDF = b"%PDF-1.7\n" + b"x" * 300 + b"\n%%EOF\n"


def chat_turn(conv: Conversation, message_id: str) -> TurnUpdate:
    new = [
        NewEvent(USER_MESSAGE, {"text": "hello", "message_id": message_id}, message_id),
        NewEvent(NLU_PARSE, {"intent": "greet", "confidence": 0.9}),
        NewEvent(ACTION, {"name": "utter_greet"}),
        NewEvent(BOT_MESSAGE, {"text": "Hi", "reply_to": message_id}, f"bot-{message_id}"),
    ]
    return TurnUpdate(conv.id, conv.version, "idle", {}, conv.language, False, tuple(new), last_intent="greet")


async def _conv(store: Store, sender: str | None = None) -> Conversation:
    conv = await store.create_conversation("en", sender=sender, state="idle")
    await store.commit_turn(chat_turn(conv, "m1"))
    got = await store.get(conv.id)
    assert got is not None
    return got


async def _count(store: Store, table: sa.Table) -> int:
    async with store.transaction("test", write=False) as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one())


async def test_a_customer_file_is_stored_with_its_event_and_no_bytes_in_the_log(store: Store) -> None:
    conv = await _conv(store)
    attachment, event = await store.add_attachment(
        conv.id, direction="customer", filename="shot.png", content_type="image/png", data=PNG, message_id="up-1"
    )
    assert attachment.conversation_id == conv.id and attachment.size == len(PNG)
    assert attachment.sha256 == hashlib.sha256(PNG).hexdigest() and len(attachment.id) == 32
    assert attachment.uploader is None and attachment.image and "shot" not in repr(attachment)
    assert event.type == ATTACHMENT and event.message_id == "up-1" and event.seq == 5
    assert event.data == {"id": attachment.id, "filename": "shot.png", "content_type": "image/png",
                          "size": len(PNG), "direction": "customer"}
    assert (await store.events(conv.id))[-1] == event
    found = await store.get_attachment(attachment.id)
    assert found == (attachment, PNG)
    assert await store.get_attachment(attachment.id, conv.id) == (attachment, PNG)
    assert await store.list_attachments(conv.id) == [attachment]
    # The bytes are in the attachments table only: not in the log, not in the snapshot row.
    async with store.transaction("test", write=False) as conn:
        logged = (await conn.execute(sa.select(events.c.data).where(events.c.conversation_id == conv.id))).all()
        row = (await conn.execute(conversations.select().where(conversations.c.id == conv.id))).one()
    assert all("data" not in d[0] for d in logged) and PNG.hex() not in str(row)
    # Like a customer message: a new version, the inbox preview, unread for the assignee.
    after = await store.get(conv.id)
    assert after is not None and after.version == conv.version + 1
    summary = await store.summary(conv.id)
    assert summary is not None and summary.preview == "\N{PAPERCLIP} shot.png" and summary.preview_by == "customer"


async def test_a_resent_upload_is_stored_once(store: Store) -> None:
    conv = await _conv(store)
    first = await store.add_attachment(
        conv.id, direction="customer", filename="a.pdf", content_type="application/pdf", data=PDF, message_id="up-9"
    )
    again = await store.add_attachment(
        conv.id, direction="customer", filename="a.pdf", content_type="application/pdf", data=PDF, message_id="up-9"
    )
    assert again == first
    assert await _count(store, attachments) == 1
    assert [e.type for e in await store.events(conv.id)].count(ATTACHMENT) == 1


async def test_an_agent_file_needs_the_agent_to_hold_the_conversation(store: Store) -> None:
    conv = await _conv(store)
    with pytest.raises(HandoffConflict):
        await store.add_attachment(conv.id, direction="agent", filename="label.pdf", content_type="application/pdf",
                                   data=PDF, uploader="amy")
    await store.take_over(conv.id, "bob")
    with pytest.raises(HandoffConflict):  # a colleague holds it
        await store.add_attachment(conv.id, direction="agent", filename="label.pdf", content_type="application/pdf",
                                   data=PDF, uploader="amy")
    assert await _count(store, attachments) == 0
    attachment, event = await store.add_attachment(
        conv.id, direction="agent", filename="label.pdf", content_type="application/pdf", data=PDF, uploader="bob",
        message_id="agent-file-1",
    )
    assert attachment.uploader == "bob" and not attachment.image
    assert event.data["agent"] == "bob" and event.data["direction"] == "agent"
    summary = await store.summary(conv.id)
    assert summary is not None and summary.preview_by == "agent"


@pytest.mark.parametrize(("changes", "why"), [
    ({"content_type": "text/html"}, "type"),
    ({"content_type": "image/svg+xml"}, "type"),
    ({"data": b""}, "bytes"),
    ({"direction": "system"}, "direction"),
    ({"filename": ""}, "name"),
    ({"filename": "x" * 300}, "name"),
])
async def test_what_the_store_does_not_take_stores_nothing(store: Store, changes: dict[str, object], why: str) -> None:
    conv = await _conv(store)
    fields: dict[str, object] = {"direction": "customer", "filename": "a.png", "content_type": "image/png",
                                 "data": PNG, **changes}
    with pytest.raises(InvalidQuery):
        await store.add_attachment(conv.id, **fields)  # type: ignore[arg-type]
    assert await _count(store, attachments) == 0, why
    assert ATTACHMENT not in [e.type for e in await store.events(conv.id)]


async def test_a_file_for_no_conversation_stores_nothing(store: Store) -> None:
    with pytest.raises(ConversationNotFound):
        await store.add_attachment("no-such-conversation", direction="customer", filename="a.png",
                                   content_type="image/png", data=PNG)
    assert await _count(store, attachments) == 0


async def test_files_are_read_only_within_their_conversation(store: Store) -> None:
    mine, other = await _conv(store), await _conv(store)
    attachment, _ = await store.add_attachment(mine.id, direction="customer", filename="a.png",
                                               content_type="image/png", data=PNG)
    assert await store.get_attachment(attachment.id, other.id) is None
    assert await store.get_attachment("0" * 32) is None
    assert await store.list_attachments(other.id) == []


async def test_names_are_redacted_keeping_their_extension(store: Store) -> None:
    conv = await _conv(store)
    phone, _ = await store.add_attachment(conv.id, direction="customer", filename="passport 13800138000.jpg",
                                          content_type="image/jpeg", data=b"\xff\xd8\xff" + b"\x00" * 10)
    email, _ = await store.add_attachment(conv.id, direction="customer", filename="amy@shop.example.pdf",
                                          content_type="application/pdf", data=PDF)
    assert phone.filename == "passport [PHONE].jpg" and "13800138000" not in str(await store.events(conv.id))
    assert email.filename.endswith(".pdf") and "amy@" not in email.filename


async def test_erasing_a_conversation_or_a_customer_erases_their_files(store: Store) -> None:
    kept, gone, erased = await _conv(store), await _conv(store), await _conv(store, sender="cust-7")
    for conv in (kept, gone, erased):
        await store.add_attachment(conv.id, direction="customer", filename="a.png", content_type="image/png",
                                   data=PNG)
    assert await store.delete_conversation(gone.id)
    report = await delete_user(store, "cust-7")
    assert report.conversations == 1 and report.rows.get("attachments") == 1
    assert [a.conversation_id for a in await store.list_attachments(kept.id)] == [kept.id]
    assert await _count(store, attachments) == 1


async def test_migration_0012_creates_and_drops_the_table(store_target: StoreTarget) -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    def revisions() -> tuple[str, str | None]:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        script = ScriptDirectory.from_config(cfg).get_revision("0012_attachments")
        assert script is not None
        return script.revision, script.down_revision  # type: ignore[return-value]

    mine, below = revisions()
    store = await store_target.open()

    async def tables() -> set[str]:
        async with store.transaction("test", write=False) as conn:
            return set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))

    try:
        conv = await _conv(store)
        await store.add_attachment(conv.id, direction="customer", filename="a.png", content_type="image/png",
                                   data=PNG)
        assert "attachments" in await tables()
        assert below is not None
        await _migrate_to(store_target, store, below, down=True)
        assert "attachments" not in await tables()
        assert await store.get(conv.id) is not None  # the conversation is untouched
        await _migrate_to(store_target, store, mine, down=False)
        assert "attachments" in await tables() and await store.list_attachments(conv.id) == []
        await _migrate_to(store_target, store, "head", down=False)
    finally:
        await store.close()
