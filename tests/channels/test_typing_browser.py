"""Typing indicators both ways in headless Chromium: the customer's widget and the agent's console page, on one real
store and one typing board (as ``kefu serve`` runs both servers in one process)."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import expect

from channels.ops import OpsServer
from channels.server import Server
from tests.channels.test_console_browser import login
from tests.channels.test_widget_browser import open_chat

pytestmark = [pytest.mark.browser]


async def test_typing_both_ways_and_the_agents_name(browser: Any, servers: tuple[Server, OpsServer]) -> None:
    chat, ops = servers
    customer_ctx, customer, customer_problems, cid = await open_chat(browser, chat)

    agent_ctx, agent, agent_problems = await login(browser, ops, "agent", f"/console/c/{cid}")
    await agent.get_by_role("button", name="Take over").click()
    await expect(agent.locator("#conv-agent-note")).to_have_text("You are talking to the customer; the bot is paused.")
    indicator = agent.locator("#conv-customer-typing")
    await expect(indicator).to_be_hidden()

    # The customer types: the agent sees it within about 2 s (a 1.5 s poll), and it goes when the message is sent.
    await customer.locator("#kefu-input").press_sequentially("where is my", delay=40)
    await expect(indicator).to_be_visible(timeout=2_500)
    await expect(indicator).to_have_text("Customer is typing…")
    await customer.locator("#kefu-input").press("Enter")
    await expect(indicator).to_be_hidden(timeout=2_500)
    await expect(agent.locator(".ops-msg-user .ops-msg-text").last).to_have_text("where is my", timeout=5_000)

    # The agent types: the widget names them, with their initials.
    agent_typing = customer.locator("#kefu-agent-typing")
    await expect(agent_typing).to_be_hidden()
    await agent.get_by_label("Reply to the customer").press_sequentially("Hello, your parcel", delay=40)
    await expect(agent_typing).to_be_visible(timeout=2_000)
    await expect(agent_typing).to_contain_text("agent is typing…")
    await expect(agent_typing.locator(".kefu-avatar")).to_have_text("A")

    # The agent's message shows their name and avatar, and ends the typing indicator.
    await agent.get_by_role("button", name="Send").click()
    bubble = customer.locator(".kefu-msg.kefu-agent").last
    await expect(bubble.locator(".kefu-text")).to_have_text("Hello, your parcel", timeout=5_000)
    await expect(bubble.locator(".kefu-sender")).to_have_text("agent")
    await expect(bubble.locator(".kefu-avatar")).to_have_text("A")
    await expect(agent_typing).to_be_hidden()

    # After a reload the history keeps the name.
    await customer.reload()
    history = customer.locator(".kefu-msg.kefu-agent.kefu-history")
    await expect(history.locator(".kefu-sender")).to_have_text("agent", timeout=5_000)

    assert customer_problems == [] and agent_problems == []
    await customer_ctx.close()
    await agent_ctx.close()
