"""The store's internal notes and canned replies (SQLite and PostgreSQL: the ``store`` fixture)."""

from __future__ import annotations

import pytest

from dialogue.canned import CannedReplyExists, CannedReplyInvalid, CannedReplyNotFound
from dialogue.errors import ConversationNotFound, InvalidQuery
from dialogue.store import MAX_NOTE_CHARS, Store
from dialogue.types import AGENT_MESSAGE, BOT_MESSAGE, NOTE, USER_MESSAGE, ConversationFilter, NewEvent, TurnUpdate

LANGUAGES = ("en", "zh")


async def _chatted(store: Store) -> str:
    conv = await store.create_conversation("en", state="idle")
    await store.commit_turn(TurnUpdate(
        conv.id, conv.version, "idle", {"order_id": "10234"}, "en", False,
        (NewEvent(USER_MESSAGE, {"text": "where is my order", "message_id": "m1"}, "m1"),
         NewEvent(BOT_MESSAGE, {"text": "ok", "reply_to": "m1"}, "bot-m1")),
    ))
    return conv.id


async def test_a_note_is_a_redacted_event_that_changes_nothing_the_customer_sees(store: Store) -> None:
    cid = await _chatted(store)
    before = await store.get(cid)
    summary_before = await store.summary(cid)
    assert before is not None and summary_before is not None

    note = await store.add_note(cid, "ann", "  Customer called: 13800138000, mail li@example.com  ")
    assert note.type == NOTE and note.message_id is None
    assert note.data == {"agent": "ann", "text": "Customer called: [PHONE], mail [EMAIL]"}
    assert [e.type for e in await store.events(cid)][-1] == NOTE

    after = await store.get(cid)
    assert after is not None
    # Bookkeeping: no version bump (no customer turn retries), no reordering of the list, no turn counted.
    assert (after.version, after.updated_at, after.turn_count) == (before.version, before.updated_at,
                                                                  before.turn_count)
    assert await store.summary(cid) == summary_before
    found = await store.list_conversations(ConversationFilter(query="called"))
    assert found.items == []  # notes are not message text: not searched as the customer's conversation


async def test_notes_are_checked(store: Store) -> None:
    cid = await _chatted(store)
    for text in ("", "   ", "x" * (MAX_NOTE_CHARS + 1)):
        with pytest.raises(InvalidQuery):
            await store.add_note(cid, "ann", text)
    assert (await store.add_note(cid, "ann", "x" * MAX_NOTE_CHARS)).data["text"] == "x" * MAX_NOTE_CHARS
    with pytest.raises(ConversationNotFound):
        await store.add_note("ghost", "ann", "hello")
    assert not any(e.type == AGENT_MESSAGE for e in await store.events(cid))


async def test_canned_replies_crud_per_language(store: Store) -> None:
    shipped = await store.add_canned_reply("en", " Shipped ", "Order {order_id} has shipped.", "admin",
                                           languages=LANGUAGES)
    assert (shipped.language, shipped.title, shipped.text, shipped.created_by) == (
        "en", "Shipped", "Order {order_id} has shipped.", "admin")
    zh = await store.add_canned_reply("zh", "Shipped", "订单 {order_id} 已发货。", "admin", languages=LANGUAGES)
    apology = await store.add_canned_reply("en", "Apology", "Sorry for the wait.", "admin", languages=LANGUAGES)

    assert [r.title for r in await store.list_canned_replies("en")] == ["Apology", "Shipped"]
    assert [r.id for r in await store.list_canned_replies("zh")] == [zh.id]
    assert [r.id for r in await store.list_canned_replies()] == [apology.id, shipped.id, zh.id]
    assert await store.get_canned_reply(shipped.id) == shipped

    with pytest.raises(CannedReplyExists):  # (language, title) is unique ...
        await store.add_canned_reply("en", "Shipped", "again", "bob", languages=LANGUAGES)
    with pytest.raises(CannedReplyExists):  # ... also when an edit would collide
        await store.update_canned_reply(apology.id, "en", "Shipped", "x", languages=LANGUAGES)

    edited = await store.update_canned_reply(apology.id, "en", "Apology", "Sorry, {name}.", languages=LANGUAGES)
    assert (edited.text, edited.created_by, edited.created_at) == ("Sorry, {name}.", "admin", apology.created_at)
    with pytest.raises(CannedReplyNotFound):
        await store.update_canned_reply(99999, "en", "Nope", "x", languages=LANGUAGES)

    assert await store.delete_canned_reply(apology.id) is True
    assert await store.delete_canned_reply(apology.id) is False
    assert await store.get_canned_reply(apology.id) is None
    assert [r.title for r in await store.list_canned_replies("en")] == ["Shipped"]


async def test_canned_replies_are_validated_and_redacted(store: Store) -> None:
    reply = await store.add_canned_reply("en", "Call us", "Call 13800138000 or mail help@shop.example about "
                                         "{order_id}", "admin", languages=LANGUAGES)
    assert reply.text == "Call [PHONE] or mail [EMAIL] about {order_id}"
    assert (await store.get_canned_reply(reply.id)) == reply
    for language, title, text in (("fr", "t", "x"), ("en", "", "x"), ("en", "t" * 65, "x"), ("en", "t", ""),
                                  ("en", "t", "x" * 2001)):
        with pytest.raises(CannedReplyInvalid):
            await store.add_canned_reply(language, title, text, "admin", languages=LANGUAGES)
    assert len(await store.list_canned_replies()) == 1
