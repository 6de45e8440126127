"""``kefu conversations ...``: data retention on a bot's store (no models are loaded)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from kefu.app import DEFAULT_BOT
from kefu.config import Bot, ConfigError

app = typer.Typer(help="Data retention: erase a customer's conversations, expire old ones.", no_args_is_help=True)
console = Console(stderr=True)
BotOption = Annotated[Path, typer.Option("--bot", help="The bot folder (holds bot.yml).")]
StoreOption = Annotated[str | None, typer.Option(help="SQLAlchemy async URL; overrides bot.yml.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the report as JSON.")]


def _run(bot: Path, store_url: str | None, job: Callable[[Any], Awaitable[Any]], as_json: bool, what: str) -> None:
    from dialogue.errors import DialogueError
    from dialogue.store import Store

    async def main() -> Any:
        url = Bot.load(bot).store_url(store_url)  # as `kefu serve`: relative SQLite paths resolve in the bot
        store = await Store.open(url)
        try:
            return await job(store)
        finally:
            await store.close()

    try:
        report = asyncio.run(main())
    except (ConfigError, DialogueError) as exc:
        console.print(f"[red]error:[/red] {type(exc).__name__}: {exc}")
        raise typer.Exit(2) from exc
    if as_json:
        print(json.dumps({"conversations": report.conversations, "rows": report.rows}, sort_keys=True))
        return
    rows = ", ".join(f"{table} {count}" for table, count in sorted(report.rows.items())) or "none"
    print(f"{what}: deleted {report.conversations} conversations (rows: {rows})")


@app.command("delete")
def delete(
    user: Annotated[str, typer.Option("--user", help="The customer id (the widget's `user`, stored as sender).")],
    bot: BotOption = DEFAULT_BOT,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Erase every conversation of one customer, from every table."""
    from dialogue.retention import delete_user

    _run(bot, store, lambda s: delete_user(s, user), as_json, "delete")


@app.command("expire")
def expire(
    days: Annotated[float, typer.Option("--days", min=0, help="Delete conversations idle for more than N days.")],
    bot: BotOption = DEFAULT_BOT,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Erase every conversation whose last activity is older than --days (run it from cron)."""
    from dialogue.retention import expire as expire_conversations

    _run(bot, store, lambda s: expire_conversations(s, days), as_json, "expire")
