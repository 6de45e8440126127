"""The staff console in headless Chromium (Debian's /usr/bin/chromium), next to the customer's widget.

Both servers run as ``kefu serve`` runs them: the public chat server and the ops server, on one real store and one
(model-free, see ``console_env``) engine. Screenshots go to a temporary folder, or to ``docs/screenshots/`` when
``KEFU_SCREENSHOTS=1`` (how the README's pictures are made).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

from channels.ops import OpsServer
from channels.server import Server
from tests.channels.conftest import PASSWORDS, ConsoleEnv
from tests.channels.test_widget_browser import FINAL_BOT, new_page, send

pytestmark = [pytest.mark.browser]

XSS = "<img src=x onerror=alert(1)> where is my order 10234?"
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    if os.environ.get("KEFU_SCREENSHOTS") == "1":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        return DOCS_SCREENSHOTS
    return tmp_path


async def login(browser: Any, ops: OpsServer, role: str, start: str = "/console", *,
                username: str | None = None) -> tuple[Any, Any, list[str]]:
    """A fresh browser signed in on ``start`` (through the login form it is sent to) as ``username`` (default: the
    account named after ``role``) with ``role``'s password."""
    username = username or role
    context, page, problems = await new_page(browser)
    await page.goto(ops.url + start)
    await expect(page).to_have_url(ops.url + "/login?next=" + start.replace("?", "%3F"))
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(PASSWORDS[role])
    await page.get_by_role("button", name="Log in").click()
    await expect(page).to_have_url(ops.url + start)
    await expect(page.locator("#ops-user")).to_have_text(username)
    return context, page, problems


async def test_customer_agent_story(browser: Any, servers: tuple[Server, OpsServer], console_env: ConsoleEnv,
                                   shots: Path) -> None:
    chat, ops = servers
    await console_env.chat("hello", "where is my order 10235")  # some other traffic for the list
    # The customer: an unrecognised greeting, a message with markup, then a complaint (queued for a human).
    customer_ctx, customer, customer_problems = await new_page(browser)
    await customer.goto(chat.url + "/")
    await customer.click("#kefu-launcher")
    await send(customer, "hi there")
    await expect(customer.locator(FINAL_BOT)).to_have_count(1, timeout=10_000)
    await send(customer, XSS)
    await expect(customer.locator(FINAL_BOT)).to_have_count(2, timeout=10_000)
    await send(customer, "I want to complain about the delay")
    await expect(customer.locator(".kefu-note-handoff")).to_have_text("You are being connected to a human agent.")
    cid = await customer.evaluate("window.KefuWidget.conversationId()")

    # The agent logs in and finds it with a filter.
    agent_ctx, agent, agent_problems = await login(browser, ops, "agent")
    await expect(agent.locator("#list-rows tr")).to_have_count(2)
    await agent.get_by_label("Handoff").select_option("waiting")
    await agent.get_by_role("button", name="Apply").click()
    await expect(agent.locator("#list-rows tr")).to_have_count(1)
    row = agent.locator(f"#list-rows tr[data-id='{cid}']")
    await expect(row).to_contain_text("waiting for agent")
    await expect(agent).to_have_url(ops.url + "/console?handoff=waiting")
    await agent.screenshot(path=str(shots / "console.png"))
    await row.get_by_role("link").click()
    await expect(agent).to_have_url(ops.url + f"/console/c/{cid}")

    # It shows each turn's parse, action and allowed set; the markup is text.
    turns = agent.locator(".ops-turn")
    await expect(turns).to_have_count(3)
    await expect(turns.nth(0).locator(".ops-parse")).to_contain_text("out_of_scope 31.0%")
    await expect(turns.nth(1).locator(".ops-msg-user .ops-msg-text")).to_have_text(XSS)
    assert await agent.locator(".ops-turn img").count() == 0
    await expect(turns.nth(1).locator(".ops-parse")).to_contain_text("order_status 93.0%")
    await expect(turns.nth(1).locator(".ops-entities")).to_have_text("order_id = 10234")
    await expect(turns.nth(1).locator(".ops-action")).to_contain_text("action_order_status")
    await expect(turns.nth(1).locator(".ops-allowed")).to_contain_text("utter_ask_order_id")
    await expect(turns.nth(1).locator(".ops-latency")).to_contain_text("nlu")
    await expect(turns.nth(2).locator(".ops-system").first).to_contain_text("Bot handed off (complaint)")

    # Correct the first turn's intent: it becomes a training example.
    await turns.nth(0).get_by_role("button", name="Correct the parse").click()
    await turns.nth(0).get_by_label("Intent").select_option("greet")
    await turns.nth(0).get_by_role("button", name="Save as training example").click()
    await expect(agent.locator("#conv-action-status")).to_have_text("Correction saved: it is now a training example.")
    await expect(turns.nth(0).locator(".ops-correction")).to_contain_text("agent corrected")
    assert "- hi there" in console_env.nlu_files["en"].read_text(encoding="utf-8")
    await expect(agent.locator(".ops-reviewed")).to_have_text("yes")

    # Take over and answer: the customer's widget shows it live.
    await agent.get_by_role("button", name="Take over").click()
    await expect(agent.locator("#conv-agent-note")).to_have_text("You are talking to the customer; the bot is paused.")
    await agent.get_by_label("Reply to the customer").fill("Hello, this is Amy from support. <b>Sorry</b>!")
    await agent.get_by_role("button", name="Send").click()
    await expect(agent.locator(".ops-msg-agent .ops-msg-text")).to_have_text(
        "Hello, this is Amy from support. <b>Sorry</b>!")
    pushed = customer.locator(".kefu-msg.kefu-agent .kefu-text")
    await expect(pushed).to_have_text("Hello, this is Amy from support. <b>Sorry</b>!", timeout=5_000)
    await expect(customer.locator(".kefu-note-handoff").last).to_have_text("A human agent joined the chat.")
    assert await customer.locator(".kefu-msg b").count() == 0

    # The customer answers; the bot stays quiet, the agent sees it.
    await send(customer, "thanks Amy, it is order 10234")
    await expect(customer.locator(".kefu-msg.kefu-user.kefu-pending")).to_have_count(0)
    await expect(agent.locator(".ops-msg-user .ops-msg-text").last).to_have_text("thanks Amy, it is order 10234",
                                                                              timeout=5_000)
    assert await customer.locator(FINAL_BOT + ":not(.kefu-agent)").count() == 3  # no new bot bubble
    await customer.screenshot(path=str(shots / "widget.png"))
    await turns.nth(2).scroll_into_view_if_needed()
    await agent.screenshot(path=str(shots / "conversation.png"))

    await agent.get_by_role("button", name="Hand back to the bot").click()
    await expect(customer.locator(".kefu-note-handoff").last).to_have_text(
        "The agent left the chat; the assistant is back.", timeout=5_000)
    await send(customer, "hello again")
    await expect(customer.locator(FINAL_BOT + ":not(.kefu-agent)")).to_have_count(4, timeout=10_000)

    assert customer_problems == [] and agent_problems == []
    await customer_ctx.close()
    await agent_ctx.close()


async def test_viewer_reads_but_cannot_take_over(browser: Any, servers: tuple[Server, OpsServer],
                                                 console_env: ConsoleEnv) -> None:
    _, ops = servers
    cid = await console_env.chat("I want to complain")
    context, page, problems = await login(browser, ops, "viewer", f"/console/c/{cid}")
    await expect(page.locator(".ops-turn")).to_have_count(1)
    await expect(page.locator("#conv-agent-note")).to_have_text("The customer is waiting for an agent.")
    for button in ("#conv-takeover", "#conv-reviewed", "#conv-flag", ".ops-correct-open"):
        await expect(page.locator(button)).to_have_count(1 if button.startswith("#") else 0)
        if button.startswith("#"):
            await expect(page.locator(button)).to_be_hidden()
    await expect(page.locator("#ops-nav-users")).to_be_hidden()
    # Even a hand-made request with the right CSRF token and origin is refused.
    me = await context.request.get(ops.url + "/api/me")
    csrf = (await me.json())["csrf_token"]
    res = await context.request.post(ops.url + f"/api/conversations/{cid}/takeover", data="{}", headers={
        "Content-Type": "application/json", "X-CSRF-Token": csrf, "Origin": ops.url})
    assert res.status == 403 and (await res.json())["error"]["code"] == "forbidden"
    users = await page.goto(ops.url + "/console/users")
    assert users is not None and users.status == 403
    assert (await console_env.store.summary(cid)).handoff_status == "waiting"
    assert [p for p in problems if "403" not in p] == []  # Chromium logs the forbidden page load itself
    await context.close()


async def test_queue_dashboard_users_and_logout(browser: Any, servers: tuple[Server, OpsServer],
                                                console_env: ConsoleEnv, shots: Path) -> None:
    _, ops = servers
    for texts in (["hello", "where is my order 10234", "thank you"], ["I want a return for order 10234"],
                  ["I want to return something", "blah", "blah blah"], ["I want to complain"], ["hello"]):
        await console_env.chat(*texts)
    context, page, problems = await login(browser, ops, "admin", "/console/queue")
    await expect(page.locator("#queue-rows tr")).to_have_count(2)
    await expect(page.locator("#queue-status")).to_have_text("2 waiting, 0 with an agent")
    await page.get_by_role("link", name="Dashboard").click()
    await expect(page.locator(".ops-kpi").first).to_contain_text("5")
    for plot in ("conversations", "rates", "intents"):
        img = page.locator(f"#plot-{plot}")
        await expect(img).to_have_attribute("src", f"/api/dashboard/{plot}.png?days=30&lang=en")
        for _ in range(150):  # the PNG is rendered by matplotlib in a worker thread
            if await img.evaluate("i => i.complete ? i.naturalWidth : 0") > 100:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"plot {plot} did not load")
    await page.screenshot(path=str(shots / "dashboard.png"))

    await page.get_by_role("link", name="Users").click()
    await expect(page.locator("#users-rows tr")).to_have_count(3)
    await page.get_by_label("Username").fill("dora")
    await page.get_by_label("Password (10+ characters)").fill("short")
    await page.get_by_role("button", name="Add", exact=True).click()
    await expect(page.locator("#user-form-status")).to_contain_text("Not added")
    await page.get_by_label("Password (10+ characters)").fill("dora-password-1")
    await page.get_by_role("button", name="Add", exact=True).click()
    await expect(page.locator("#users-rows tr")).to_have_count(4)
    await page.get_by_label("Role of dora").select_option("viewer")
    await expect(page.locator("#users-status")).to_have_text("Saved dora.")
    assert (await console_env.store.get_user("dora")).role == "viewer"

    await page.get_by_role("button", name="Log out").click()
    await expect(page).to_have_url(ops.url + "/login")
    await page.goto(ops.url + "/console")
    await expect(page).to_have_url(ops.url + "/login?next=/console")
    await page.get_by_label("Username").fill("admin")
    await page.get_by_label("Password").fill("not-the-password")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.locator("#login-status")).to_have_text("Wrong username or password.")
    # Chromium logs the refused requests made on purpose above (400 weak password, 401 wrong login) itself.
    assert [p for p in problems if "responded with a status of 40" not in p] == []
    await context.close()
