"""Attachments both ways in headless Chromium: the customer attaches a PNG with the widget's paper clip, the agent
sees it in the console and sends a PDF back, the customer gets the link; refused files are explained in the
customer's language and store nothing. One real store, the chat and console servers as ``kefu serve`` runs them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.async_api import expect

from channels.ops import OpsServer
from channels.server import Server
from tests.channels.conftest import ConsoleEnv
from tests.channels.test_attachments_uploads import PDF, PNG
from tests.channels.test_console_browser import login
from tests.channels.test_widget_browser import FINAL_BOT, new_page, open_chat, send

pytestmark = [pytest.mark.browser]


async def test_a_png_from_the_customer_and_a_pdf_back_from_the_agent(
    browser: Any, servers: tuple[Server, OpsServer], console_env: ConsoleEnv
) -> None:
    chat, ops = servers
    customer_ctx, customer, customer_problems, cid = await open_chat(browser, chat)
    clip = customer.get_by_role("button", name="Attach an image or PDF")
    await expect(clip).to_be_visible()

    # The customer attaches a screenshot: it shows as a thumbnail, loaded from the chat server with its token.
    await customer.set_input_files("#kefu-file", files=[
        {"name": "screenshot.png", "mimeType": "image/png", "buffer": PNG}])
    thumb = customer.locator(".kefu-msg.kefu-user.kefu-final img.kefu-thumb")
    await expect(thumb).to_be_visible(timeout=5_000)
    await expect(thumb).to_have_attribute("alt", "screenshot.png")
    await expect(thumb).to_have_js_property("naturalWidth", 40)  # the bytes arrived and decoded
    assert len(await console_env.store.list_attachments(cid)) == 1

    # The agent sees it in the conversation, takes over and sends a PDF back.
    agent_ctx, agent, agent_problems = await login(browser, ops, "agent", f"/console/c/{cid}")
    staff_thumb = agent.locator(".ops-msg-file img.ops-thumb")
    await expect(staff_thumb).to_be_visible(timeout=5_000)
    await expect(staff_thumb).to_have_js_property("naturalWidth", 40)
    await expect(agent.locator(".ops-msg-file .ops-file-name").first).to_have_text("screenshot.png")
    await agent.get_by_role("button", name="Take over").click()
    await expect(agent.locator("#conv-agent-note")).to_have_text("You are talking to the customer; the bot is paused.")
    await agent.get_by_label("Attach an image or PDF for the customer").set_input_files(files=[
        {"name": "return-label.pdf", "mimeType": "application/pdf", "buffer": PDF}])
    await expect(agent.locator("#conv-action-status")).to_have_text("File sent.", timeout=5_000)
    await expect(agent.locator(".ops-msg-agent.ops-msg-file .ops-file-name")).to_have_text("return-label.pdf",
                                                                                          timeout=5_000)

    # The customer gets the agent's PDF as a download link, named by the agent's card.
    bubble = customer.locator(".kefu-msg.kefu-agent.kefu-with-file")
    await expect(bubble.locator(".kefu-file-name")).to_have_text("return-label.pdf", timeout=5_000)
    await expect(bubble.locator(".kefu-sender")).to_have_text("agent")
    link = bubble.locator("a.kefu-file")
    await expect(link).to_have_attribute("download", "return-label.pdf")
    href = await link.get_attribute("href")
    assert href is not None and href.startswith(chat.url + "/attachments/")
    async with httpx.AsyncClient() as http:
        res = await http.get(href)
    assert res.status_code == 200 and res.content == PDF
    assert res.headers["content-disposition"].startswith("attachment;")

    # After a reload both files are in the history.
    await customer.reload()
    await expect(customer.locator(".kefu-history img.kefu-thumb")).to_have_js_property("naturalWidth", 40,
                                                                                     timeout=5_000)
    await expect(customer.locator(".kefu-history.kefu-agent .kefu-file-name")).to_have_text("return-label.pdf")

    assert customer_problems == [] and agent_problems == []
    await customer_ctx.close()
    await agent_ctx.close()


async def test_refused_files_are_explained_and_store_nothing(
    browser: Any, servers: tuple[Server, OpsServer], console_env: ConsoleEnv
) -> None:
    chat, _ = servers
    context, page, problems = await new_page(browser, locale="zh-CN")
    await page.goto(chat.url + "/")
    await page.click("#kefu-launcher")
    await send(page, "你好")
    await expect(page.locator(FINAL_BOT)).to_have_count(1, timeout=10_000)
    cid = await page.evaluate("window.KefuWidget.conversationId()")
    errors = page.locator(".kefu-note-error")

    # An HTML page: refused by the widget before anything is sent.
    await page.set_input_files("#kefu-file", files=[
        {"name": "invoice.html", "mimeType": "text/html", "buffer": b"<script>alert(1)</script>"}])
    await expect(errors.last).to_have_text("只能发送图片（PNG、JPEG、GIF、WebP）和 PDF 文件。")
    # A truncated PNG and HTML disguised as one: refused by the server after reading the bytes.
    await page.set_input_files("#kefu-file", files=[
        {"name": "broken.png", "mimeType": "image/png", "buffer": PNG[:-10]}])
    await expect(errors.last).to_have_text("文件已损坏或不完整。", timeout=5_000)
    await expect(page.locator(".kefu-msg.kefu-failed")).to_have_count(1)
    await page.set_input_files("#kefu-file", files=[
        {"name": "photo.png", "mimeType": "image/png", "buffer": b"<!doctype html><script>alert(1)</script>"}])
    await expect(errors).to_have_count(3, timeout=5_000)
    await expect(errors.last).to_have_text("只能发送图片（PNG、JPEG、GIF、WebP）和 PDF 文件。")
    # Too large for the widget (5 MB): refused at once.
    await page.set_input_files("#kefu-file", files=[
        {"name": "huge.png", "mimeType": "image/png", "buffer": PNG + b"\x00" * (5 * 1024 * 1024)}])
    await expect(errors.last).to_have_text("文件太大了（最大 5 MB）。")

    assert await console_env.store.list_attachments(cid) == []
    assert problems == []
    await context.close()
