"""Resolution and the customer's rating in headless Chromium: two staff contexts (agent A, admin B) and the customer's
widget, on one real store as ``kefu serve`` runs them. A takes over, answers and resolves; the widget asks for a
rating, and asks again after a reload (the resume sends ``resolved`` again); the rating and its redacted comment
reach A's page live, B's list and dashboard after a reload; the customer's next message reopens it on B's page."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import expect

from channels.ops import OpsServer
from channels.server import Server
from tests.channels.conftest import ConsoleEnv
from tests.channels.test_console_browser import login
from tests.channels.test_widget_browser import FINAL_BOT, new_page, send

pytestmark = [pytest.mark.browser]

COMMENT = "Quick and kind. Please e-mail the invoice to jane.doe@example.com"
REDACTED = "Quick and kind. Please e-mail the invoice to [EMAIL]"


async def test_resolve_rate_after_reload_and_reopen(browser: Any, servers: tuple[Server, OpsServer],
                                                   console_env: ConsoleEnv) -> None:
    chat, ops = servers
    # The customer chats until the bot hands the conversation to a human.
    customer_ctx, customer, customer_problems = await new_page(browser)
    await customer.goto(chat.url + "/")
    await customer.click("#kefu-launcher")
    await send(customer, "hi there")
    await expect(customer.locator(FINAL_BOT)).to_have_count(1, timeout=10_000)
    await send(customer, "I want to complain about the delay")
    await expect(customer.locator(".kefu-note-handoff")).to_have_text("You are being connected to a human agent.")
    cid = await customer.evaluate("window.KefuWidget.conversationId()")

    # Agent A takes over and answers; admin B has the conversation list open meanwhile.
    a_ctx, a, a_problems = await login(browser, ops, "agent", f"/console/c/{cid}")
    b_ctx, b, b_problems = await login(browser, ops, "admin", "/console")
    b_row = b.locator(f"#list-rows tr[data-id='{cid}']")
    await expect(b_row).to_contain_text("waiting for agent")
    await a.get_by_role("button", name="Take over").click()
    await expect(a.locator("#conv-agent-note")).to_have_text("You are talking to the customer; the bot is paused.")
    await a.get_by_label("Reply to the customer").fill("Sorry about that: your parcel leaves today.")
    await a.get_by_role("button", name="Send").click()
    agent_bubble = customer.locator(".kefu-msg.kefu-agent .kefu-text")
    await expect(agent_bubble).to_have_text("Sorry about that: your parcel leaves today.", timeout=5_000)

    # A resolves: the widget asks for a rating at once (the live ``resolved`` frame).
    await expect(a.locator("#conv-resolution")).to_have_text("Open.")
    await a.get_by_role("button", name="Resolve").click()
    await expect(a.locator("#conv-action-status")).to_have_text("Resolved: the customer is asked for a rating.")
    await expect(a.locator("#conv-resolution")).to_contain_text("; the customer may rate it.")
    await expect(a.get_by_role("button", name="Reopen")).to_be_visible()
    rating = customer.locator("#kefu-rating")
    await expect(rating).to_be_visible(timeout=5_000)
    await expect(rating.locator(".kefu-rating-prompt")).to_have_text("Was this helpful? Rate us")

    # The customer reloads before rating: the history comes back and so does the prompt (once).
    await customer.reload()
    await expect(customer.locator(".kefu-msg.kefu-agent.kefu-history .kefu-text")).to_have_text(
        "Sorry about that: your parcel leaves today.", timeout=5_000)
    await expect(rating).to_be_visible(timeout=5_000)
    await expect(customer.locator(".kefu-rating")).to_have_count(1)
    send_rating = rating.get_by_role("button", name="Send rating")
    await expect(send_rating).to_be_disabled()
    await rating.get_by_role("button", name="Rate 4 of 5").click()
    await expect(rating.get_by_role("button", name="Rate 4 of 5")).to_have_attribute("aria-pressed", "true")
    await rating.get_by_label("Anything to add? (optional)").fill(COMMENT)
    await send_rating.click()
    await expect(customer.locator(".kefu-rating-rated")).to_have_text("Thank you for your feedback!", timeout=5_000)

    # A's page shows the rating and the comment, the address redacted, without a reload (the 1.5 s poll).
    await expect(a.locator(".ops-rating-fact")).to_have_text("4/5", timeout=5_000)
    await expect(a.locator(".ops-system.ops-rating")).to_have_text("Customer rated 4/5: " + REDACTED)
    await expect(a.locator("#conv-resolution")).to_contain_text("; rated 4/5.")
    assert "jane.doe" not in await a.locator("#main").inner_text()
    summary = await console_env.store.summary(cid)
    assert summary.rating == 4 and summary.resolved_at is not None

    # B, after a reload: resolved and rated in the list, and the CSAT on the dashboard.
    await b.reload()
    await expect(b_row.locator(".ops-badge", has_text="resolved")).to_have_count(1)
    await expect(b_row.locator(".ops-badge", has_text="rated 4/5")).to_have_count(1)
    await expect(b_row).not_to_contain_text("waiting for agent")
    await b.get_by_role("link", name="Dashboard").click()
    csat = b.locator(".ops-kpi", has_text="CSAT")
    await expect(csat).to_have_text("4.0 / 5CSAT (1 rating)")
    await expect(b.locator(".ops-kpi", has_text="of ratings 4 or 5").locator("strong")).to_have_text("100.0%")

    # B opens the conversation; the customer writes again: B's page shows it reopened (the 1.5 s poll).
    await b.goto(ops.url + f"/console/c/{cid}")
    await expect(b.locator("#conv-resolution")).to_contain_text("; rated 4/5.")
    await send(customer, "One more thing: can I change the address?")
    await expect(customer.locator(FINAL_BOT + ":not(.kefu-agent):not(.kefu-history)")).to_have_count(1,
                                                                                             timeout=10_000)
    await expect(b.locator("#conv-resolution")).to_have_text("Open.", timeout=5_000)
    await expect(b.locator(".ops-resolution")).to_have_text("open")
    await expect(b.locator(".ops-system", has_text="The customer wrote again: reopened")).to_have_count(1)
    await expect(b.get_by_role("button", name="Resolve")).to_be_visible()
    await b.goto(ops.url + "/console")
    await expect(b_row.locator(".ops-badge", has_text="resolved")).to_have_count(0)
    assert (await console_env.store.summary(cid)).resolved_at is None

    assert customer_problems == [] and a_problems == [] and b_problems == []
    for context in (customer_ctx, a_ctx, b_ctx):
        await context.close()
