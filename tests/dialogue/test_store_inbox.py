"""The inbox in the store (migration 0009), on SQLite and PostgreSQL: the last message preview and its author kept by
every write, claim / assign with their conflicts and account checks, the mine / unassigned views of the list and
the queue, the unread marker, and the migration's backfill of existing conversations."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from dialogue.errors import HandoffConflict, InvalidQuery
from dialogue.store import PREVIEW_CHARS, Store, conversations
from dialogue.types import ConversationFilter
from tests.dialogue.test_store import _migrate_to, _reload, console_turn

StoreTarget = Any


async def _queued(store: Store, sender: str | None = None, text: str = "I want to complain") -> str:
    conv = await store.create_conversation("en", sender)
    await store.commit_turn(console_turn(conv, f"m-{conv.id[:8]}", intent="complaint", text=text, handoff=True))
    return conv.id


async def _staff(store: Store) -> None:
    for name, role in (("ann", "agent"), ("bob", "agent"), ("boss", "admin"), ("vic", "viewer"), ("gone", "agent")):
        await store.add_user(name, "x" * 20, role)
    await store.disable_user("gone")


async def test_preview_sender_and_author_follow_every_message(store: Store) -> None:
    cid = await _queued(store, sender="alice@shop", text="my parcel is late " + "very " * 60)
    s = await store.summary(cid)
    assert s is not None
    assert s.sender == "alice@shop" and s.preview_by == "bot" and s.preview == "Hi! How can I help?"
    assert "alice" not in repr(s) and "parcel" not in repr(s)  # customer data stays out of logs
    await store.take_over(cid, "ann")
    await store.append_agent_message(cid, "ann", "Sorry about that", "a1")
    s = await store.summary(cid)
    assert s is not None and (s.preview, s.preview_by) == ("Sorry about that", "agent")
    conv = await _reload(store, cid)
    long = "x" * (PREVIEW_CHARS + 50)
    update = console_turn(conv, "m2", text=long)
    update = type(update)(**{**update.__dict__, "events": update.events[:2]})  # the customer only (bot paused)
    await store.commit_turn(update)
    s = await store.summary(cid)
    assert s is not None and s.preview == long[:PREVIEW_CHARS] and s.preview_by == "customer"


async def test_claim_assign_and_conflicts(store: Store) -> None:
    await _staff(store)
    first, second = await _queued(store), await _queued(store)
    claimed = await store.claim(first, "ann")
    assert claimed.assignee == "ann" and claimed.assigned_at is not None and claimed.handoff_status == "waiting"
    assert claimed.agent is None  # claiming is not a take-over: the bot is not paused by it
    assert (await store.claim(first, "ann")).assignee == "ann"  # idempotent
    with pytest.raises(HandoffConflict) as conflict:
        await store.claim(first, "bob")
    assert conflict.value.holder == "ann"
    # Assignment to colleagues: agents and admins only, enabled ones.
    for bad in ("nobody", "vic", "gone"):
        with pytest.raises(InvalidQuery):
            await store.assign(second, bad, by="boss")
    assert (await store.assign(second, "bob", by="boss")).assignee == "bob"
    assert (await store.assign(second, "ann", by="bob")).assignee == "ann"  # reassigned
    assert (await store.assign(second, None, by="boss")).assignee is None
    # Held after a take-over: only the holder may be assigned, nobody may claim it.
    await store.take_over(second, "bob")
    held = await store.summary(second)
    assert held is not None and held.assignee == "bob"  # a take-over assigns
    with pytest.raises(HandoffConflict):
        await store.assign(second, "ann", by="boss")
    with pytest.raises(HandoffConflict):
        await store.claim(second, "ann")
    # Hand-back and resolution end the assignment.
    await store.hand_back(second, "bob", "start")
    back = await store.summary(second)
    assert back is not None and back.assignee is None
    await store.resolve(first, "ann")
    done = await store.summary(first)
    assert done is not None and done.assignee is None


async def test_views_in_list_and_queue(store: Store) -> None:
    await _staff(store)
    mine, theirs, nobody = await _queued(store), await _queued(store), await _queued(store)
    quiet = await store.create_conversation("en")
    await store.commit_turn(console_turn(quiet, "q"))
    await store.claim(mine, "ann")
    await store.assign(theirs, "bob", by="boss")

    async def listed(**kw: Any) -> set[str]:
        return {s.id for s in (await store.list_conversations(ConversationFilter(**kw))).items}

    assert await listed(assignee="ann") == {mine}
    assert await listed(assigned=False) == {nobody, quiet.id}
    assert await listed(assigned=True) == {mine, theirs}
    assert await listed() == {mine, theirs, nobody, quiet.id}
    queue = await store.handoff_queue(100, ConversationFilter(assigned=False))
    assert [s.id for s in queue] == [nobody]  # the quiet one is not in the queue at all
    assert [s.id for s in await store.handoff_queue(100, ConversationFilter(assignee="bob"))] == [theirs]
    assert [s.id for s in await store.handoff_queue()] == [mine, theirs, nobody]
    assert await store.count_conversations(ConversationFilter(assignee="ann")) == 1


async def test_unread_until_the_assignee_has_seen_it(store: Store) -> None:
    await _staff(store)
    cid = await _queued(store)
    s = await store.summary(cid)
    assert s is not None and s.unread  # nobody has seen the customer's message yet
    await store.claim(cid, "ann")
    events = await store.events(cid)
    assert not await store.mark_seen(cid, "bob", events[-1].seq)  # not bob's to read
    s = await store.summary(cid)
    assert s is not None and s.unread
    assert await store.mark_seen(cid, "ann", events[-1].seq)
    assert not await store.mark_seen(cid, "ann", events[-1].seq)  # nothing more to change
    s = await store.summary(cid)
    assert s is not None and not s.unread
    # A new customer message makes it unread again; a bot or agent message does not.
    await store.commit_turn(console_turn(await _reload(store, cid), "again", text="hello?"))
    s = await store.summary(cid)
    assert s is not None and s.unread and s.preview_by == "bot"
    await store.mark_seen(cid, "ann", (await store.events(cid))[-1].seq)
    await store.take_over(cid, "ann")
    await store.append_agent_message(cid, "ann", "here", "a1")
    s = await store.summary(cid)
    assert s is not None and not s.unread
    # Reassigned: the new assignee has read nothing of it.
    await store.hand_back(cid, "ann", "start")
    await store.assign(cid, "bob", by="boss")
    s = await store.summary(cid)
    assert s is not None and s.assignee == "bob" and s.unread


async def test_migration_0009_backfills_previews(store_target: StoreTarget, store: Store) -> None:
    cid = await _queued(store, text="old message")
    await store.take_over(cid, "ann")
    await store.append_agent_message(cid, "ann", "agent answer", "a1")
    await _migrate_to(store_target, store, "0008_workspace", down=True)
    await _migrate_to(store_target, store, "head", down=False)
    c = conversations.c
    async with store.transaction("check", write=False) as conn:
        row = (await conn.execute(
            sa.select(c.last_message, c.last_message_by, c.last_customer_seq, c.assignee_seen_seq, c.assignee)
            .where(c.id == cid)
        )).one()
    assert (row.last_message, row.last_message_by, row.assignee) == ("agent answer", "agent", "ann")
    assert row.last_customer_seq > 0 and row.assignee_seen_seq == row.last_customer_seq  # old = seen
