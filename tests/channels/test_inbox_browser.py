"""The inbox in headless Chromium with two agents and an admin in three browser contexts: a queued customer appears
on an open queue page without a reload (with the new-arrival alert), one agent claims it and the other agent's
views follow, and an admin's assignment lands in the second agent's "mine"."""

from __future__ import annotations

import time
from typing import Any

import pytest
from playwright.async_api import expect

from channels.ops import OpsServer
from channels.server import Server
from tests.channels.conftest import PASSWORDS, ConsoleEnv, password_hashes
from tests.channels.test_widget_browser import new_page

pytestmark = [pytest.mark.browser]

# Records notifications instead of showing them (and grants the permission), so the test can see the alert fire.
FAKE_NOTIFICATION = """
window.__notes = [];
window.Notification = function (title, options) { window.__notes.push([title, options && options.body]); };
window.Notification.permission = "granted";
window.Notification.requestPermission = function () { return Promise.resolve("granted"); };
"""


async def staff_page(browser: Any, ops: OpsServer, username: str, password: str, start: str) -> tuple[Any, Any]:
    context, page, _ = await new_page(browser)
    await context.add_init_script(FAKE_NOTIFICATION)
    await page.goto(ops.url + start)
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()
    await expect(page).to_have_url(ops.url + start)
    await expect(page.locator("#ops-user")).to_have_text(username)
    return context, page


async def queued(console_env: ConsoleEnv, sender: str, text: str) -> str:
    conv = await console_env.store.create_conversation(
        "en", sender, state=console_env.engine.parts.flows.initial_state)
    return await console_env.chat(text, conversation_id=conv.id)


async def test_two_agents_claim_and_assign(browser: Any, servers: tuple[Server, OpsServer],
                                           console_env: ConsoleEnv) -> None:
    _, ops = servers
    await console_env.store.add_user("bea", password_hashes()["agent"], "agent")
    a_ctx, a = await staff_page(browser, ops, "agent", PASSWORDS["agent"], "/console/queue")
    b_ctx, b = await staff_page(browser, ops, "bea", PASSWORDS["agent"], "/console/queue?view=unassigned")
    await expect(a.locator("#queue-status")).to_have_text("Nobody is waiting for an agent.")
    await expect(b.locator(".ops-tab[aria-selected='true']")).to_have_text("Unassigned")

    # A customer is queued while both pages are open: it shows up without a reload, at the inbox pulse's
    # "kefu:inbox" event (the table's own poll is every 10 s).
    cid = await queued(console_env, "Alice Wong", "I want to complain about my broken kettle")
    started = time.monotonic()
    row = a.locator(f"#queue-rows tr[data-id='{cid}']")
    await expect(row).to_be_visible(timeout=2_500)
    assert time.monotonic() - started < 2.5
    await expect(row.locator(".ops-customer-name")).to_have_text("Alice Wong")
    reply = await _bot_reply(console_env, cid)
    assert len(reply) > 80  # the preview is cut at 80 characters
    await expect(row.locator(".ops-preview")).to_have_text("Bot: " + reply[:79] + "…")
    await expect(row.locator(".ops-waiting")).to_contain_text(" s")
    await expect(row.locator(".ops-assignee-name")).to_have_text("unassigned")
    await expect(row.locator(".ops-unread")).to_have_text("new")
    assert await a.evaluate("window.KefuInbox.alerts") == 1
    assert await a.evaluate("window.__notes") == [["Kefu: a customer is waiting", "Alice Wong"]]
    b_row = b.locator(f"#queue-rows tr[data-id='{cid}']")
    await expect(b_row).to_be_visible(timeout=2_500)

    # Agent A claims it: B's "unassigned" view drops it at the next pulse, B's "all" view names A.
    await row.get_by_role("button", name=f"Claim conversation {cid}").click()
    await expect(a.locator("#queue-action-status")).to_have_text("Claimed: it is in your inbox.")
    await expect(row.locator(".ops-assignee-name")).to_have_text("agent")
    await expect(b_row).to_have_count(0, timeout=2_500)
    await b.get_by_role("tab", name="All").click()
    await expect(b).to_have_url(ops.url + "/console/queue")
    await expect(b_row.locator(".ops-assignee-name")).to_have_text("agent")
    await expect(b_row.get_by_role("button", name=f"Claim conversation {cid}")).to_have_count(0)
    await a.get_by_role("tab", name="Mine").click()
    await expect(a.locator("#queue-rows tr")).to_have_count(1)

    # An admin assigns another conversation to B from the conversation list; it appears in B's "mine".
    other = await queued(console_env, "", "I want to complain, order 10234 never came")
    admin_ctx, admin = await staff_page(browser, ops, "admin", PASSWORDS["admin"], "/console")
    admin_row = admin.locator(f"#list-rows tr[data-id='{other}']")
    await expect(admin_row.locator(".ops-customer-name")).to_have_text("Visitor " + other[:6])
    await admin_row.get_by_label(f"Assign conversation {other}").select_option("bea")
    await expect(admin.locator("#list-action-status")).to_have_text("Assigned to bea.")
    await expect(admin_row.locator(".ops-assignee-name")).to_have_text("bea")
    await b.get_by_role("tab", name="Mine").click()
    await expect(b).to_have_url(ops.url + "/console/queue?view=mine")
    await expect(b.locator("#queue-rows tr")).to_have_count(1)
    await expect(b.locator(f"#queue-rows tr[data-id='{other}'] .ops-unread")).to_have_text("new")
    # B opens it: read, so the marker is gone when B comes back to the queue.
    await b.locator(f"#queue-rows tr[data-id='{other}'] .ops-customer-name").click()
    await expect(b).to_have_url(ops.url + f"/console/c/{other}")
    await expect(b.locator(".ops-turn")).to_have_count(1)
    await b.goto(ops.url + "/console/queue?view=mine")
    await expect(b.locator(f"#queue-rows tr[data-id='{other}']")).to_be_visible()
    await expect(b.locator(f"#queue-rows tr[data-id='{other}'] .ops-unread")).to_have_count(0)
    for context in (a_ctx, b_ctx, admin_ctx):
        await context.close()


async def _bot_reply(console_env: ConsoleEnv, cid: str) -> str:
    events = await console_env.store.events(cid)
    return str([e for e in events if e.type == "bot_message"][-1].data["text"])
