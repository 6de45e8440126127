"""The widget in headless Chromium (Debian's /usr/bin/chromium) against a real server + echo backend.

The staff console's browser tests (login, review, takeover...) are in test_console_browser.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from playwright.async_api import expect

from channels import protocol as p
from channels.server import Server, ServerOptions, run_server
from tests.channels.conftest import EchoBackend, free_port

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="session")]

FINAL_BOT = ".kefu-msg.kefu-bot.kefu-final"


async def new_page(browser: Any, locale: str = "en-US") -> tuple[Any, Any, list[str]]:
    context = await browser.new_context(locale=locale, viewport={"width": 1100, "height": 760})
    page = await context.new_page()
    problems: list[str] = []  # CSP violations, JS errors: the pages must run clean under their strict CSP
    # (which also forbids page.wait_for_function: it evals; use expect()/locators)
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    return context, page, problems


async def send(page: Any, text: str) -> None:
    await page.fill("#kefu-input", text)
    await page.press("#kefu-input", "Enter")


async def open_chat(browser: Any, chat: Server, text: str = "hello") -> tuple[Any, Any, list[str], str]:
    """A customer on the chat server's page: the widget opened, ``text`` sent and its reply shown; returns the
    context, the page, its problems (see :func:`new_page`) and the conversation id the widget keeps."""
    context, page, problems = await new_page(browser)
    await page.goto(chat.url + "/")
    await page.click("#kefu-launcher")
    await send(page, text)
    await expect(page.locator(FINAL_BOT)).to_have_count(1, timeout=10_000)
    return context, page, problems, await page.evaluate("window.KefuWidget.conversationId()")


async def test_widget_chat_and_persistence_across_reload(browser: Any, server: Server, backend: EchoBackend) -> None:
    backend.token_delay = 0.05
    context, page, problems = await new_page(browser)
    await page.goto(server.url + "/")
    launcher = page.locator("#kefu-launcher")
    assert await launcher.get_attribute("aria-expanded") == "false"
    assert await launcher.get_attribute("aria-label") == "Open customer service chat"
    await launcher.click()
    assert await launcher.get_attribute("aria-expanded") == "true"
    assert await page.locator("#kefu-messages").get_attribute("role") == "log"
    assert await page.locator("#kefu-messages").get_attribute("aria-live") == "polite"
    assert await page.evaluate("document.activeElement.id") == "kefu-input"

    await send(page, "where is my order 10234")
    # Streaming: the bot bubble fills token by token before the final message replaces it.
    await page.wait_for_selector(".kefu-msg.kefu-bot.kefu-streaming", timeout=5000)
    await page.wait_for_selector(FINAL_BOT, timeout=5000)
    assert await page.locator(FINAL_BOT).inner_text() == "WHERE IS MY ORDER 10234"
    assert await page.locator(".kefu-msg.kefu-user").inner_text() == "where is my order 10234"
    assert await page.locator("#kefu-input").input_value() == ""
    await expect(page.locator(".kefu-msg.kefu-user.kefu-pending")).to_have_count(0)
    assert await page.locator("#kefu-typing").is_hidden()

    # Markup in messages is shown as text, never parsed.
    await send(page, "<img src=x onerror=alert(1)> help")
    await expect(page.locator(FINAL_BOT)).to_have_count(2)
    assert await page.locator(".kefu-msg img").count() == 0
    assert await page.locator(FINAL_BOT).nth(1).inner_text() == "<IMG SRC=X ONERROR=ALERT(1)> HELP"
    assert await page.locator(".kefu-quick-reply").inner_text() == "thanks"  # quick replies become buttons

    conversation_id = await page.evaluate("window.KefuWidget.conversationId()")
    assert conversation_id in backend.conversations and len(backend.conversations) == 1

    # Reload: the conversation id survives (localStorage), the chat reopens and shows the history.
    await page.reload()
    if await page.locator("#kefu-panel").is_hidden():
        await page.click("#kefu-launcher")
    await page.wait_for_selector(".kefu-msg.kefu-history.kefu-bot", timeout=5000)
    assert await page.evaluate("window.KefuWidget.conversationId()") == conversation_id
    assert await page.locator(".kefu-msg.kefu-user").all_inner_texts() == [
        "where is my order 10234",
        "<img src=x onerror=alert(1)> help",
    ]
    assert (await page.locator(".kefu-msg.kefu-bot").all_inner_texts())[0] == "WHERE IS MY ORDER 10234"
    assert len(backend.conversations) == 1  # resumed, not a new conversation

    # Keyboard: Escape closes the panel and gives focus back to the launcher.
    await page.focus("#kefu-input")
    await page.keyboard.press("Escape")
    assert await page.locator("#kefu-panel").is_hidden()
    assert await page.evaluate("document.activeElement.id") == "kefu-launcher"
    assert problems == []
    await context.close()


async def test_widget_chinese_ui(browser: Any, server: Server) -> None:
    context, page, problems = await new_page(browser, locale="zh-CN")
    await page.goto(server.url + "/")
    await page.click("#kefu-launcher")
    assert await page.locator("#kefu-input").get_attribute("placeholder") == "请输入消息…"
    assert await page.locator("#kefu-send").inner_text() == "发送"
    await send(page, "我的订单在哪里 help")
    await page.wait_for_selector(FINAL_BOT, timeout=5000)
    assert await page.locator(FINAL_BOT).inner_text() == "我的订单在哪里 HELP"
    assert problems == []
    await context.close()


async def test_widget_reconnects_and_resends_unanswered_messages(browser: Any) -> None:
    backend = EchoBackend()
    port = free_port()
    context, page, _ = await new_page(browser)
    async with run_server(backend, port=port) as srv:
        await page.goto(srv.url + "/")
        await page.click("#kefu-launcher")
        await send(page, "first")
        await page.wait_for_selector(FINAL_BOT, timeout=5000)
    # The server is gone: a message typed now waits, pending, for the reconnect.
    await page.wait_for_selector("#kefu-status[data-state=offline]", timeout=5000)
    await send(page, "second")
    await asyncio.sleep(0.3)
    assert await page.locator(".kefu-msg.kefu-user.kefu-pending").count() == 1
    async with run_server(backend, port=port, options=ServerOptions()):
        await expect(page.locator(FINAL_BOT)).to_have_count(2, timeout=20000)
        assert (await page.locator(FINAL_BOT).all_inner_texts()) == ["FIRST", "SECOND"]
    assert len(backend.conversations) == 1  # the same conversation, resumed with hello
    assert len(backend.started) == 2  # each message ran once
    await context.close()


async def test_widget_retries_when_the_store_is_down_at_hello(
    browser: Any, server: Server, backend: EchoBackend
) -> None:
    from dialogue.errors import StoreUnavailable

    context, page, _ = await new_page(browser)
    await page.goto(server.url + "/")
    await page.click("#kefu-launcher")
    await send(page, "first")
    await expect(page.locator(FINAL_BOT)).to_have_text("FIRST", timeout=5000)

    real_get = backend.get_conversation
    failures = [StoreUnavailable("sqlite:///down.db")]

    async def flaky_get(conversation_id: str) -> Any:
        if failures:
            raise failures.pop()
        return await real_get(conversation_id)

    backend.get_conversation = flaky_get  # type: ignore[method-assign]
    await page.reload()  # the resume (hello with id + secret) reads the store, which is down once
    if await page.locator("#kefu-panel").is_hidden():
        await page.click("#kefu-launcher")
    await expect(page.locator(".kefu-note-error")).to_have_text(
        "The service is temporarily unavailable. Please retry in a moment."
    )
    await send(page, "anyone there")  # queued until the reconnect's session
    await expect(page.locator(FINAL_BOT).last).to_have_text("ANYONE THERE", timeout=10000)
    assert await page.locator("#kefu-status").get_attribute("data-state") == "online"
    assert len(backend.conversations) == 1  # resumed after the retry, not a new conversation
    await context.close()


async def test_widget_keeps_the_secret_and_starts_over_when_resume_is_denied(
    browser: Any, server: Server, backend: EchoBackend
) -> None:
    context, page, problems = await new_page(browser)
    await page.goto(server.url + "/")
    await page.click("#kefu-launcher")
    await send(page, "my address is 1 Main St")
    await expect(page.locator(FINAL_BOT)).to_have_text("MY ADDRESS IS 1 MAIN ST", timeout=5000)
    first = await page.evaluate("window.KefuWidget.conversationId()")
    stored = await page.evaluate(
        "Object.keys(localStorage).sort().map(function (k) { return [k, localStorage.getItem(k)]; })"
    )
    keys = {key.split(":")[1]: value for key, value in stored}
    assert keys["conversation"] == first and len(keys["secret"]) >= 16  # the secret is kept beside the id
    assert backend.conversations[first]["secret_hash"] == p.secret_hash(keys["secret"])

    # A stale secret (another device's id pasted in, storage restored from elsewhere): the server refuses to
    # resume, the widget shows no one's history, says so, and the next message starts a new conversation.
    await page.evaluate(
        "Object.keys(localStorage).forEach(function (k) {"
        " if (k.indexOf('kefu:secret:') === 0) localStorage.setItem(k, 'not-the-secret-0123456789'); })"
    )
    await page.reload()
    if await page.locator("#kefu-panel").is_hidden():
        await page.click("#kefu-launcher")
    await expect(page.locator(".kefu-note-restarted")).to_have_count(1, timeout=5000)
    assert await page.locator(".kefu-msg.kefu-history").count() == 0
    await send(page, "hello again")
    await expect(page.locator(FINAL_BOT)).to_have_text("HELLO AGAIN", timeout=5000)
    second = await page.evaluate("window.KefuWidget.conversationId()")
    assert second != first and set(backend.conversations) == {first, second}
    assert [e.data["text"] for e in backend.conversations[first]["events"] if e.type == "user_message"] == [
        "my address is 1 Main St"
    ]
    assert problems == []
    await context.close()
