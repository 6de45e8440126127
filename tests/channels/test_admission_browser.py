"""The widget under admission control, in headless Chromium against a real server whose turns are held on the echo
backend's gate by other customers (real websocket clients): it tells the customer, resends by itself in order, and
gives up with a clear error and a Retry button after a bounded number of ``busy`` answers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from playwright.async_api import expect
from websockets.asyncio.client import ClientConnection

from channels.admission import HELD, OVERLOADED
from channels.metrics import Metrics
from channels.server import Server, ServerOptions, run_server
from tests.channels.conftest import EchoBackend
from tests.channels.test_admission import hold_turns, shed_counts
from tests.channels.test_widget_browser import FINAL_BOT, new_page, send

pytestmark = [pytest.mark.browser]


async def saturate(server: Server, count: int = 4) -> list[ClientConnection]:
    """``count`` other customers' turns held by the backend until ``GET /ready`` says the worker is saturated."""
    holders = await hold_turns(server, count)
    deadline = time.monotonic() + 10.0
    async with httpx.AsyncClient() as http:
        while (await http.get(server.url + "/ready")).status_code != 503:
            assert time.monotonic() < deadline, "the worker never looked saturated"
            await asyncio.sleep(0.02)
    return holders


async def test_widget_tells_the_customer_and_resends_in_order_when_busy(browser: Any) -> None:
    backend = EchoBackend()
    backend.gate = asyncio.Event()
    metrics = Metrics()
    options = ServerOptions(admission_budget=1.0, admission_retry_after=(0.25, 2.0))
    async with run_server(backend, port=0, options=options, metrics=metrics) as server:
        context, page, problems = await new_page(browser)
        await page.goto(server.url + "/")
        await page.click("#kefu-launcher")
        await page.wait_for_selector("#kefu-status[data-state=online]", timeout=5000)
        holders = await saturate(server)

        await send(page, "first")
        await send(page, "second")  # typed while the first waits: it must not overtake it
        await expect(page.locator(".kefu-note-busy")).to_have_text(
            "Many customers are writing to us right now. Your message will be sent again in a moment."
        )
        await expect(page.locator(".kefu-msg.kefu-user.kefu-busy")).to_have_count(2)
        assert await page.locator(".kefu-note-busy").count() == 1  # said once, not per busy answer
        assert await page.evaluate("window.KefuWidget.conversationId()") not in backend.conversations  # none stored
        assert shed_counts(metrics)[OVERLOADED] >= 1  # the first; the second held (by the server or the widget)

        backend.gate.set()  # the other customers' turns complete; the widget's retry gets through
        await expect(page.locator(FINAL_BOT)).to_have_text(["FIRST", "SECOND"], timeout=15000)
        await expect(page.locator(".kefu-msg.kefu-user.kefu-busy")).to_have_count(0)
        await expect(page.locator(".kefu-msg.kefu-user.kefu-pending")).to_have_count(0)
        assert await page.locator(".kefu-msg.kefu-user.kefu-failed").count() == 0
        conversation_id = await page.evaluate("window.KefuWidget.conversationId()")
        events = backend.conversations[conversation_id]["events"]
        assert [e.data["text"] for e in events if e.type == "user_message"] == ["first", "second"]  # once, in order
        assert problems == []
        for holder in holders:
            await holder.close()
        await context.close()


async def test_widget_gives_up_after_bounded_retries_in_chinese_then_retry_works(browser: Any) -> None:
    backend = EchoBackend()
    backend.gate = asyncio.Event()
    metrics = Metrics()
    # Short retry times: the widget's five retries take about a second.
    options = ServerOptions(admission_budget=1.0, admission_retry_after=(0.1, 0.15))
    async with run_server(backend, port=0, options=options, metrics=metrics) as server:
        context, page, problems = await new_page(browser, locale="zh-CN")
        await page.goto(server.url + "/")
        await page.click("#kefu-launcher")
        await page.wait_for_selector("#kefu-status[data-state=online]", timeout=5000)
        holders = await saturate(server)

        await send(page, "你好")
        await expect(page.locator(".kefu-note-busy")).to_have_text("当前咨询人数较多，您的消息将在片刻后自动重新发送。")
        failed = page.locator(".kefu-msg.kefu-user.kefu-failed")
        await expect(failed).to_have_count(1, timeout=15000)
        await expect(page.locator(".kefu-note-error")).to_have_text("当前咨询人数过多，消息未能送达，请稍后重试。")
        assert sum(shed_counts(metrics).values()) == 6  # the first answer and five retries, then no more
        await asyncio.sleep(0.5)  # nothing is resent once it gave up (a retry would come within 0.23 s)
        assert sum(shed_counts(metrics).values()) == 6 and shed_counts(metrics)[HELD] == 0

        backend.gate.set()
        for holder in holders:
            await holder.close()
        await page.locator(".kefu-retry").click()  # the customer retries: same message id, answered once
        await expect(page.locator(FINAL_BOT)).to_have_text(["你好"], timeout=15000)
        conversation_id = await page.evaluate("window.KefuWidget.conversationId()")
        events = backend.conversations[conversation_id]["events"]
        assert [e.data["text"] for e in events if e.type == "user_message"] == ["你好"]
        assert problems == []
        await context.close()
