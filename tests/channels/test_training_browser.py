"""Retrain from the console, in headless Chromium with two admins on the dashboard at once: one starts the retrain
and follows its progress, the other is refused a second one (and told why) and follows the same run, both see how it
ended (published, then a failed run), and an agent is offered no retrain at all.

The trainer is test_ops_training.py's stub (waits for a "go" file beside its progress file, reports 2 of 4 epochs,
exits with go's code): no real training. The page polls the state every 2 s while a run goes on.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import expect

from channels.ops import OpsServer, run_ops_server
from tests.channels.conftest import ConsoleEnv, password_hashes
from tests.channels.test_console_browser import login
from tests.channels.test_ops_training import trainer_options

pytestmark = [pytest.mark.browser]

DASHBOARD = "/console/dashboard"
RUNNING = "Training: epoch 2 of at most 4"  # what the stub reports
BUSY = "Another training is already running; a new one can start when it ends."
PUBLISHED = re.compile(r"^The new model was published .+; every worker switches to it within seconds\.$")
FAILED = re.compile(r"^The last training failed \(.+\); the previous model keeps serving\.$")
SLOW = 10_000  # ms: a poll every 2 s, on a busy machine


@pytest_asyncio.fixture(loop_scope="session")
async def trained(console_env: ConsoleEnv, tmp_path: Path) -> AsyncIterator[OpsServer]:
    """The console with the stub trainer, and a second admin ("ada") beside the suite's "admin"."""
    await console_env.store.add_user("ada", password_hashes()["admin"], "admin")
    async with run_ops_server(console_env.console, port=0, options=trainer_options(tmp_path / "models")) as server:
        yield server


async def shows(page: Any, text: str | re.Pattern[str], *, running: bool, error: bool = False) -> None:
    """The page's retrain control reads ``text``; its button is refused while a run goes on."""
    status = page.locator("#train-status")
    await expect(status).to_have_text(text, timeout=SLOW)
    button = page.get_by_role("button", name="Retrain now")
    await (expect(button).to_be_disabled() if running else expect(button).to_be_enabled())
    await (expect(status).to_have_class(re.compile(r"\bops-error\b")) if error
           else expect(status).not_to_have_class(re.compile(r"\bops-error\b")))


async def test_two_admins_one_retrain_then_a_failed_one(browser: Any, trained: OpsServer, tmp_path: Path) -> None:
    go = tmp_path / "models" / "go"
    a_ctx, a, a_problems = await login(browser, trained, "admin", DASHBOARD)
    b_ctx, b, b_problems = await login(browser, trained, "admin", DASHBOARD, username="ada")
    for page in (a, b):
        await expect(page.get_by_role("heading", name="Retrain the bot")).to_be_visible()
        await shows(page, "", running=False)
        await expect(page.locator("#train-progress")).to_be_hidden()

    # A starts it: the progress the trainer reports, on a bar and in words.
    await a.get_by_role("button", name="Retrain now").click()
    await shows(a, RUNNING, running=True)
    await expect(a.locator("#train-progress")).to_be_visible()
    await expect(a.locator("#train-progress")).to_have_js_property("value", 0.5)

    # B's page, opened before, does not poll while nothing runs: it still offers the button. B's start is refused
    # (409) and says so, beside the run it collided with, which B's page now follows.
    await expect(b.get_by_role("button", name="Retrain now")).to_be_enabled()
    await b.get_by_role("button", name="Retrain now").click()
    await shows(b, f"{BUSY} {RUNNING}", running=True)
    await expect(b.locator("#train-progress")).to_have_js_property("value", 0.5)

    # The run ends well: both pages see it published, without a reload.
    go.write_text("0")
    for page in (a, b):
        await shows(page, PUBLISHED, running=False)
        await expect(page.locator("#train-progress")).to_have_js_property("value", 1)

    # A second run fails. B, loading the page while it runs, sees it running and gets no button to press.
    go.unlink()
    await a.get_by_role("button", name="Retrain now").click()
    await shows(a, RUNNING, running=True)
    await b.reload()
    await shows(b, RUNNING, running=True)
    go.write_text("1")
    for page in (a, b):
        await shows(page, FAILED, running=False, error=True)
        await expect(page.locator("#train-progress")).to_be_hidden()

    assert a_problems == []
    assert [p for p in b_problems if "409" not in p] == []  # Chromium logs the refused start itself
    assert len(b_problems) == 1
    await a_ctx.close()
    await b_ctx.close()


async def test_an_agent_is_offered_no_retrain(browser: Any, trained: OpsServer) -> None:
    context, page, problems = await login(browser, trained, "agent", DASHBOARD)
    await expect(page.locator(".ops-kpi").first).to_be_visible()  # the page has loaded what it shows
    await expect(page.locator("#train-section")).to_be_hidden()
    await expect(page.get_by_role("button", name="Retrain now")).to_have_count(0)
    assert problems == []  # nor did it ask for the training state (a 403 would be logged)
    await context.close()
