"""``kefu users ...``: staff accounts of the ops console, on a bot's store (no models are loaded).

The first administrator can only be created here (the console's user admin needs an admin to log in)::

    kefu users add alice --role admin            # asks for the password twice
    printf '%s\\n' "$PASSWORD" | kefu users add bob --role agent --password-stdin
    kefu users list
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from kefu.app import DEFAULT_BOT
from kefu.config import Bot, ConfigError

app = typer.Typer(help="Staff accounts of the ops console (roles: viewer, agent, admin).", no_args_is_help=True)
console = Console(stderr=True)
BotOption = Annotated[Path, typer.Option("--bot", help="The bot folder (holds bot.yml).")]
StoreOption = Annotated[str | None, typer.Option(help="SQLAlchemy async URL; overrides bot.yml.")]


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(2)


def _run(bot: Path, store_url: str | None, job: Callable[[Any], Awaitable[Any]]) -> Any:
    from dialogue.errors import DialogueError
    from dialogue.store import Store

    async def main() -> Any:
        store = await Store.open(Bot.load(bot).store_url(store_url))  # relative SQLite paths: as `kefu serve`
        try:
            return await job(store)
        finally:
            await store.close()

    try:
        return asyncio.run(main())
    except (ConfigError, DialogueError) as exc:
        raise _fail(f"{type(exc).__name__}: {exc}") from exc


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise _fail("no terminal to ask for the password: use --password-stdin")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Repeat it: "):
        raise _fail("the passwords differ")
    return first


@app.command("add")
def add(
    username: Annotated[str, typer.Argument(help="2-64 characters: letters, digits, _ . @ -")],
    role: Annotated[str, typer.Option(help="viewer (read only) | agent (review, correct, talk to customers) | admin.")]
    = "agent",
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from standard input.")]
    = False,
    bot: BotOption = DEFAULT_BOT,
    store: StoreOption = None,
) -> None:
    """Create a console account."""
    from channels.auth import AuthError, check_password, check_role, check_username, hash_password

    try:
        check_username(username)
        check_role(role)
        password = _read_password(password_stdin)
        check_password(password)
    except AuthError as exc:
        raise _fail(str(exc)) from exc
    password_hash = hash_password(password)

    async def job(s: Any) -> Any:
        return await s.add_user(username, password_hash, role)

    user = _run(bot, store, job)
    console.print(f"added {user.username} ({user.role})")


@app.command("list")
def list_users(bot: BotOption = DEFAULT_BOT, store: StoreOption = None) -> None:
    """List the console accounts."""

    async def job(s: Any) -> Any:
        return await s.list_users()

    users = _run(bot, store, job)
    if not users:
        console.print("no accounts yet: kefu users add NAME --role admin")
    for user in users:
        state = "disabled" if user.disabled else "active"
        print(f"{user.username}\t{user.role}\t{state}\t{user.created_at:%Y-%m-%d}")


@app.command("disable")
def disable(
    username: str,
    enable: Annotated[bool, typer.Option("--enable", help="Enable the account again instead.")] = False,
    bot: BotOption = DEFAULT_BOT,
    store: StoreOption = None,
) -> None:
    """Disable an account (its sessions end at once), or enable it again."""

    async def job(s: Any) -> Any:
        return await s.disable_user(username, not enable)

    user = _run(bot, store, job)
    console.print(f"{user.username}: {'disabled' if user.disabled else 'enabled'}")


@app.command("set-password")
def set_password(
    username: str,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from standard input.")]
    = False,
    bot: BotOption = DEFAULT_BOT,
    store: StoreOption = None,
) -> None:
    """Set a new password (the account's sessions end at once)."""
    from channels.auth import AuthError, check_password, hash_password

    try:
        password = check_password(_read_password(password_stdin))
    except AuthError as exc:
        raise _fail(str(exc)) from exc
    password_hash = hash_password(password)

    async def job(s: Any) -> Any:
        return await s.set_password(username, password_hash)

    user = _run(bot, store, job)
    console.print(f"{user.username}: password changed")
