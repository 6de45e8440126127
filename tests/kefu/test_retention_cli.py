"""``kefu conversations delete --user`` / ``expire --days`` on a SQLite store (no models needed)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

import sqlalchemy as sa
from typer.testing import CliRunner

from dialogue.store import Store, conversations
from kefu.cli import app


async def _seed(url: str) -> dict[str, str]:
    store = await Store.open(url)
    try:
        ids = {
            "alice1": (await store.create_conversation("en", sender="alice")).id,
            "alice2": (await store.create_conversation("zh", sender="alice")).id,
            "bob_old": (await store.create_conversation("en", sender="bob")).id,
            "bob_new": (await store.create_conversation("en", sender="bob")).id,
        }
        async with store._write("test") as conn:
            await conn.execute(
                conversations.update()
                .where(conversations.c.id == ids["bob_old"])
                .values(updated_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=100))
            )
        return ids
    finally:
        await store.close()


async def _senders(url: str) -> list[str | None]:
    store = await Store.open(url)
    try:
        async with store._read("test") as conn:
            rows = (await conn.execute(sa.select(conversations.c.sender).order_by(conversations.c.sender))).all()
        return [r[0] for r in rows]
    finally:
        await store.close()


def test_delete_user_and_expire_from_the_command_line(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'kefu.db'}"
    asyncio.run(_seed(url))
    runner = CliRunner()

    result = runner.invoke(app, ["conversations", "delete", "--user", "alice", "--store", url, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["conversations"] == 2 and report["rows"]["conversations"] == 2
    assert asyncio.run(_senders(url)) == ["bob", "bob"]

    result = runner.invoke(app, ["conversations", "expire", "--days", "30", "--store", url])
    assert result.exit_code == 0, result.output
    assert "deleted 1 conversations" in result.stdout
    assert asyncio.run(_senders(url)) == ["bob"]

    result = runner.invoke(app, ["conversations", "expire", "--days", "-1", "--store", url])
    assert result.exit_code != 0
