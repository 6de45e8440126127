"""The workspace in headless Chromium: an admin and an agent in two browser contexts, the customer's widget in a
third. The admin saves a canned reply naming {order_id}; the agent inserts it (filled from the conversation's
slots), sends it, and the customer receives the filled text; the agent's internal note is seen by the admin after a
reload and never by the customer (live or after the widget reloads and resumes)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from playwright.async_api import expect

from channels.ops import OpsServer
from channels.server import Server
from tests.channels.conftest import ConsoleEnv
from tests.channels.test_console_browser import login
from tests.channels.test_widget_browser import open_chat, send

pytestmark = [pytest.mark.browser]

FILLED = "Your order 10234 is on its way, sorry for the wait."
NOTE = "Refund approved by Bo; do not promise a date."


async def test_canned_reply_and_note_between_two_staff_and_a_customer(
    browser: Any, servers: tuple[Server, OpsServer], console_env: ConsoleEnv
) -> None:
    chat, ops = servers
    # The customer asks about an order (the slot order_id is set), then complains: queued for a human.
    customer_ctx, customer, customer_problems, cid = await open_chat(browser, chat, "where is my order 10234")
    await send(customer, "I want to complain about the delay")
    await expect(customer.locator(".kefu-note-handoff")).to_have_text("You are being connected to a human agent.")
    conversation = await console_env.store.get(cid)
    assert conversation is not None and conversation.slots.get("order_id") == "10234"

    # The admin saves a canned reply for English on the admin page.
    admin_ctx, admin, admin_problems = await login(browser, ops, "admin", "/console/users")
    await admin.get_by_label("Language").select_option("en")
    await admin.get_by_label("Title").fill("Order on its way")
    await admin.get_by_label("Reply text").fill("Your order {order_id} is on its way, sorry for the wait.")
    await admin.get_by_role("button", name="Save canned reply").click()
    await expect(admin.locator("#canned-rows tr")).to_have_count(1)
    await expect(admin.locator("#canned-status")).to_have_text("Saved Order on its way.")
    # A duplicate title in the same language is refused with a clear message.
    await admin.get_by_label("Title").fill("Order on its way")
    await admin.get_by_label("Reply text").fill("Again")
    await admin.get_by_role("button", name="Save canned reply").click()
    await expect(admin.locator("#canned-form-status")).to_have_text(
        "Not saved (A canned reply with this title already exists in that language.)")

    # The agent, in another context, takes the conversation over and inserts the reply, filled.
    agent_ctx, agent, agent_problems = await login(browser, ops, "agent", f"/console/c/{cid}")
    await agent.get_by_role("button", name="Take over").click()
    await expect(agent.locator("#conv-agent-note")).to_have_text("You are talking to the customer; the bot is paused.")
    await expect(agent.locator("#conv-canned option")).to_have_count(2)
    await agent.get_by_label("Canned reply").select_option(label="Order on its way")
    await agent.get_by_role("button", name="Insert").click()
    box = agent.get_by_label("Reply to the customer")
    await expect(box).to_have_value(FILLED)
    await expect(agent.locator("#conv-canned-status")).to_have_text("")
    await agent.get_by_role("button", name="Send").click()
    await expect(agent.locator(".ops-msg-agent .ops-msg-text")).to_have_text(FILLED)
    await expect(customer.locator(".kefu-msg.kefu-agent .kefu-text")).to_have_text(FILLED, timeout=5_000)

    # The agent writes an internal note: shown apart in the console, never to the customer.
    await agent.get_by_label("Internal note").fill(NOTE)
    await agent.get_by_role("button", name="Add note").click()
    await expect(agent.locator("#conv-action-status")).to_have_text("Note added (staff only).")
    note = agent.locator(".ops-msg-note")
    await expect(note).to_have_count(1)
    await expect(note.locator(".ops-who-label")).to_have_text("Internal note by agent")
    await expect(note.locator(".ops-msg-text")).to_have_text(NOTE)

    await admin.goto(ops.url + f"/console/c/{cid}")  # the admin's other page, loaded afresh
    await expect(admin.locator(".ops-msg-note .ops-msg-text")).to_have_text(NOTE)
    await expect(admin.locator(".ops-msg-note .ops-who-label")).to_have_text("Internal note by agent")

    await asyncio.sleep(1.0)  # several push intervals: the note would have arrived by now
    await expect(customer.locator(".kefu-msg.kefu-agent")).to_have_count(1)
    assert NOTE not in await customer.locator("body").inner_text()
    await customer.reload()  # the widget resumes the conversation and replays its history
    await expect(customer.locator(".kefu-msg.kefu-agent .kefu-text")).to_have_text(FILLED, timeout=10_000)
    assert NOTE not in await customer.locator("body").inner_text()

    assert customer_problems == [] and agent_problems == []
    assert [p for p in admin_problems if "409" not in p] == []  # Chromium logs the refused duplicate itself
    for context in (customer_ctx, agent_ctx, admin_ctx):
        await context.close()
