"""The console in Chinese, in headless Chromium: an agent switches the language in the header, every page (list, a
conversation, queue, dashboard, users and canned replies) then shows no English interface text, and the choice is
remembered with the account (a reload, and a new browser, keep it). Screenshots of the list, a conversation and the
dashboard in Chinese go to docs/screenshots/ with ``KEFU_SCREENSHOTS=1``, like test_console_browser.py's.

"No English" is checked on what is visible: every visible text node (and placeholder) of the page, outside elements
marked ``data-raw`` (values from the data: usernames, intents, customer text, ids), must hold no run of three or
more ASCII letters except the product's and a metric's name (:data:`ALLOWED`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

from channels.ops import OpsServer
from channels.server import Server
from tests.channels.conftest import PASSWORDS, ConsoleEnv
from tests.channels.test_console_browser import shots  # noqa: F401 - fixture
from tests.channels.test_widget_browser import new_page

pytestmark = [pytest.mark.browser]

ALLOWED = {"Kefu", "CSAT"}  # the product's name, and the name support teams use for the satisfaction score

# Visible interface text of the page: text nodes whose element renders (and, for a <select>, its chosen option
# only), placeholders of visible fields; anything inside [data-raw] is data and skipped.
VISIBLE_TEXT = """() => {
  const out = [];
  const shown = (e) => e.checkVisibility({ checkOpacity: true, checkVisibilityCSS: true });
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const p = n.parentElement;
    if (!p || !n.textContent.trim() || p.closest("[data-raw], script, style")) continue;
    const option = p.closest("option");
    if (option ? !option.selected || !shown(option.parentElement) : !shown(p)) continue;
    out.push(n.textContent.trim());
  }
  document.querySelectorAll("[placeholder]").forEach((e) => {
    if (shown(e) && !e.closest("[data-raw]")) out.push(e.getAttribute("placeholder"));
  });
  return out;
}"""


async def english_left(page: Any) -> list[str]:
    texts: list[str] = await page.evaluate(VISIBLE_TEXT)
    return [t for t in texts if any(w not in ALLOWED for w in re.findall(r"[A-Za-z]{3,}", t))]


async def test_console_in_chinese_everywhere_and_remembered(
    browser: Any, servers: tuple[Server, OpsServer], console_env: ConsoleEnv, shots: Path  # noqa: F811
) -> None:
    _, ops = servers
    for texts in (["hello", "where is my order 10234", "thank you"], ["I want to return order 10234"]):
        await console_env.chat(*texts)
    cid = await console_env.chat("hello", "I want to complain about the delay")
    context, page, problems = await new_page(browser)  # an English browser: the login page is English
    await page.goto(ops.url + "/console")
    await expect(page.get_by_role("button", name="Log in")).to_be_visible()
    await page.get_by_label("Username").fill("admin")
    await page.get_by_label("Password").fill(PASSWORDS["admin"])
    await page.get_by_role("button", name="Log in").click()
    await expect(page.locator("#list-rows tr")).to_have_count(3)
    await expect(page.locator("#list-title")).to_have_text("Conversations")
    assert "Find conversations" in await english_left(page)  # the check sees English where there is some

    await page.locator("#ops-locale button[data-locale='zh']").click()
    await expect(page.locator("#list-title")).to_have_text("会话")
    await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    assert (await console_env.store.get_user("admin")).locale == "zh"
    await expect(page.locator("#list-rows tr")).to_have_count(3)
    await expect(page.locator("#list-status")).to_have_text("共 3 个会话")
    await expect(page.locator(f"#list-rows tr[data-id='{cid}']")).to_contain_text("等待人工")
    assert await english_left(page) == []
    await page.screenshot(path=str(shots / "console_zh.png"))

    await page.goto(ops.url + f"/console/c/{cid}")
    await expect(page.locator(".ops-turn")).to_have_count(2)
    await expect(page.locator("#conv-agent-note")).to_have_text("客户正在等待人工客服。")
    await page.locator("#conv-takeover").click()
    await expect(page.locator("#conv-agent-note")).to_have_text("你正在与客户对话，机器人已暂停。")
    await page.get_by_label("回复客户").fill("您好，我是客服小王。")
    await page.get_by_role("button", name="发送").click()
    await expect(page.locator(".ops-msg-agent .ops-who-label")).to_have_text("客服 admin")
    await page.get_by_label("内部备注").fill("客户很着急")
    await page.get_by_role("button", name="添加备注").click()
    await expect(page.locator(".ops-msg-note .ops-who-label")).to_have_text("admin 的内部备注")
    await page.locator("#conv-resolve").click()
    await expect(page.locator("#conv-resolution")).to_contain_text("已于")
    assert await english_left(page) == []
    await page.screenshot(path=str(shots / "conversation_zh.png"))

    await page.goto(ops.url + "/console/queue")
    await expect(page.locator("#queue-title")).to_have_text("转人工队列")
    await expect(page.locator("#queue-status")).not_to_be_empty()
    assert await english_left(page) == []

    await page.goto(ops.url + "/console/dashboard")
    await expect(page.locator(".ops-kpi")).to_have_count(10)
    await expect(page.locator(".ops-kpi").nth(6)).to_contain_text("CSAT")
    for plot in ("conversations", "rates", "intents"):  # the charts are drawn in Chinese too, and load
        chart = page.locator(f"#plot-{plot}")
        await expect(chart).to_have_attribute("src", re.compile(r"[?&]lang=zh(&|$)"))
        await expect(chart).to_have_js_property("naturalWidth", 640)
    assert await english_left(page) == []
    await page.screenshot(path=str(shots / "dashboard_zh.png"))  # the charts' own labels are Chinese too

    await page.goto(ops.url + "/console/users")
    await expect(page.locator("#users-rows tr")).to_have_count(3)
    await expect(page.locator("#canned-status")).to_have_text("还没有快捷回复。")
    assert await english_left(page) == []

    # Remembered: a reload, and a fresh browser (nothing kept in it) after logging in again.
    await page.reload()
    await expect(page.locator("#users-title")).to_have_text("员工账号")
    other_ctx, other, other_problems = await new_page(browser)
    await other.goto(ops.url + "/console")
    await other.get_by_label("Username").fill("admin")
    await other.get_by_label("Password").fill(PASSWORDS["admin"])
    await other.get_by_role("button", name="Log in").click()
    await expect(other.locator("#list-title")).to_have_text("会话")
    assert await english_left(other) == []

    # Back to English: every page reads English again (the other tests rely on it as the default).
    await other.locator("#ops-locale button[data-locale='en']").click()
    await expect(other.locator("#list-title")).to_have_text("Conversations")
    assert (await console_env.store.get_user("admin")).locale == "en"
    assert problems == [] and other_problems == []
    await context.close()
    await other_ctx.close()


async def test_login_page_follows_the_browser_language(browser: Any, servers: tuple[Server, OpsServer]) -> None:
    _, ops = servers
    context, page, problems = await new_page(browser, locale="zh-CN")
    await page.goto(ops.url + "/login")
    await expect(page.get_by_role("button", name="登录")).to_be_visible()
    await expect(page).to_have_title("登录 · Kefu 客服工作台")
    await page.get_by_role("button", name="登录").click()
    await expect(page.locator("#login-status")).to_have_text("请输入用户名和密码。")
    assert await english_left(page) == []
    assert problems == []
    await context.close()
