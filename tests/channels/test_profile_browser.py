"""The agent's display name and picture, in headless Chromium: an agent sets both in the console header's profile
menu, takes a conversation over and writes; the customer's widget shows the name and the picture (an <img> from the
chat port's ``/avatars/<sha256>``) on the typing indicator, the message, and the history after a reload. Both pages
run under their strict CSPs with no error."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import pytest
from playwright.async_api import expect

from channels.ops import OpsServer
from channels.server import Server
from tests.channels.conftest import ConsoleEnv
from tests.channels.test_attachments_uploads import image
from tests.channels.test_console_browser import login
from tests.channels.test_widget_browser import open_chat

pytestmark = [pytest.mark.browser]

PICTURE = image("PNG", (64, 64))
SHA = hashlib.sha256(PICTURE).hexdigest()


async def loaded_picture(chat: Server, locator: Any) -> None:
    """The agent head's <img> is this server's /avatars/ picture, decorative (alt ""), and actually decoded."""
    img = locator.locator(".kefu-avatar img")
    await expect(img).to_have_count(1)
    await expect(img).to_have_attribute("src", f"{chat.url}/avatars/{SHA}")
    await expect(img).to_have_attribute("alt", "")
    for _ in range(50):  # no expect.poll in Playwright for Python; the page's CSP forbids wait_for_function
        if await img.evaluate("i => i.complete && i.naturalWidth") == 64:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the agent's picture did not load")


async def test_the_customer_sees_the_agents_display_name_and_picture(
    browser: Any, servers: tuple[Server, OpsServer], console_env: ConsoleEnv
) -> None:
    chat, ops = servers
    customer_ctx, customer, customer_problems, cid = await open_chat(browser, chat)

    # The agent sets a display name and a picture in the header's profile menu.
    agent_ctx, agent, agent_problems = await login(browser, ops, "agent", f"/console/c/{cid}")
    await agent.locator("#ops-profile summary").click()
    await expect(agent.locator("#ops-avatar-remove")).to_be_hidden()  # nothing to remove yet
    await agent.get_by_label("Display name").fill("  Amy Lee ")
    await agent.get_by_role("button", name="Save name").click()
    await expect(agent.locator("#ops-profile-status")).to_have_text("Display name saved.")
    await agent.locator("#ops-avatar-file").set_input_files(
        {"name": "me.png", "mimeType": "image/png", "buffer": PICTURE})
    await expect(agent.locator("#ops-profile-status")).to_have_text("Picture saved.")
    await expect(agent.locator("#ops-avatar-preview img")).to_have_attribute("src", f"/api/me/avatar?v={SHA}")
    await expect(agent.locator("#ops-avatar-remove")).to_be_visible()
    user = await console_env.store.get_user("agent")
    assert user is not None and user.display_name == "Amy Lee" and user.avatar == SHA
    # A picture of another type is refused in the page, before any upload.
    await agent.locator("#ops-avatar-file").set_input_files(
        {"name": "me.gif", "mimeType": "image/gif", "buffer": image("GIF")})
    await expect(agent.locator("#ops-profile-status")).to_have_text(
        "Could not change the picture (A picture must be a PNG, JPEG or WebP image.)")
    await agent.locator("#ops-profile summary").click()  # close the menu
    await expect(agent.locator("#ops-display-name")).to_be_hidden()
    await expect(agent.locator("#ops-user")).to_have_text("agent")  # the console still names the account

    # Take over and write: typing, then the message, carry the name and the picture.
    await agent.get_by_role("button", name="Take over").click()
    await expect(agent.locator("#conv-agent-note")).to_have_text("You are talking to the customer; the bot is paused.")
    agent_typing = customer.locator("#kefu-agent-typing")
    await agent.get_by_label("Reply to the customer").press_sequentially("Hello, I am Amy", delay=40)
    await expect(agent_typing).to_contain_text("Amy Lee is typing…", timeout=3_000)
    await loaded_picture(chat, agent_typing)
    await agent.get_by_role("button", name="Send").click()
    bubble = customer.locator(".kefu-msg.kefu-agent").last
    await expect(bubble.locator(".kefu-text")).to_have_text("Hello, I am Amy", timeout=5_000)
    await expect(bubble.locator(".kefu-sender")).to_have_text("Amy Lee")
    await loaded_picture(chat, bubble)

    # After a reload the history shows the same name and picture.
    await customer.reload()
    history = customer.locator(".kefu-msg.kefu-agent.kefu-history")
    await expect(history.locator(".kefu-sender")).to_have_text("Amy Lee", timeout=5_000)
    await loaded_picture(chat, history)

    assert customer_problems == [] and agent_problems == []
    await customer_ctx.close()
    await agent_ctx.close()
