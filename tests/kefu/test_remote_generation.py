"""The bot writes its replies through an OpenAI-compatible server (our own `kefu runtime serve` app)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from runtime.engine import Engine
from runtime.openai_api import create_app, start


@pytest_asyncio.fixture(loop_scope="session")
async def openai_url(shop_bot: Path) -> AsyncIterator[str]:
    engine = Engine.load(shop_bot / "models" / "generator")
    runner, port = await start(create_app(engine, "shop-generator"), "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()
        await engine.aclose()


async def test_bot_generates_through_an_openai_compatible_endpoint(
    shop_bot: Path, openai_url: str, tmp_path: Path
) -> None:
    from kefu.app import running_bot

    async with running_bot(shop_bot, store_url=f"sqlite+aiosqlite:///{tmp_path / 'r.db'}", generation=openai_url,
                           toxicity=False) as running:
        engine = running.engine
        first = await engine.handle_message(None, uuid.uuid4().hex, "where is my order 10234?")  # type: ignore[attr-defined]
        assert first.action == "action_order_status" and "10234" in first.text
        events = await engine.conversation_events(first.conversation_id)  # type: ignore[attr-defined]
        bot = next(e for e in events if e.type == "bot_message")
        assert bot.data["sources"] == ["model"]
