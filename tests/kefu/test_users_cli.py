"""`kefu users ...` on a throw-away store, and `kefu serve --help` naming the console options."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from channels.auth import verify_password
from kefu.cli import app

runner = CliRunner()
SHOP = Path(__file__).resolve().parents[2] / "examples" / "shop"


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'users.db'}"


def users(store_url: str, *args: str, stdin: str | None = None) -> tuple[int, str]:
    result = runner.invoke(app, ["users", *args, "--bot", str(SHOP), "--store", store_url], input=stdin)
    return result.exit_code, result.output


def stored_user(store_url: str, username: str) -> Any:
    from dialogue.store import Store

    async def main() -> Any:
        store = await Store.open(store_url)
        try:
            return await store.get_user(username)
        finally:
            await store.close()

    return asyncio.run(main())


def test_add_list_disable_and_set_password(store_url: str) -> None:
    code, out = users(store_url, "list")
    assert code == 0 and "no accounts yet" in out
    code, out = users(store_url, "add", "alice", "--role", "admin", "--password-stdin", stdin="alice-password-1\n")
    assert code == 0 and "added alice (admin)" in out
    user = stored_user(store_url, "alice")
    assert user is not None and verify_password(user.password_hash, "alice-password-1")
    assert "alice-password-1" not in out
    code, out = users(store_url, "add", "bob", "--password-stdin", stdin="bob-password-1\n")
    assert code == 0 and "(agent)" in out  # agent is the default role
    code, out = users(store_url, "list")
    assert code == 0 and "alice\tadmin\tactive" in out and "bob\tagent\tactive" in out
    code, out = users(store_url, "disable", "bob")
    assert code == 0 and "disabled" in out
    assert "bob\tagent\tdisabled" in users(store_url, "list")[1]
    code, _ = users(store_url, "set-password", "alice", "--password-stdin", stdin="another-password-2\n")
    assert code == 0
    assert verify_password(stored_user(store_url, "alice").password_hash, "another-password-2")


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["add", "x y", "--password-stdin"], "long-enough-password\n", "username"),
        (["add", "carol", "--role", "root", "--password-stdin"], "long-enough-password\n", "role"),
        (["add", "carol", "--password-stdin"], "short\n", "password"),
    ],
)
def test_bad_input_is_a_clear_error(store_url: str, args: list[str], stdin: str, message: str) -> None:
    code, out = users(store_url, *args, stdin=stdin)
    assert code == 2 and "error" in out and message in out


def test_duplicate_username(store_url: str) -> None:
    assert users(store_url, "add", "dave", "--password-stdin", stdin="dave-password-1\n")[0] == 0
    code, out = users(store_url, "add", "dave", "--password-stdin", stdin="dave-password-2\n")
    assert code == 2 and "UserExists" in out


def test_serve_help_names_the_console() -> None:
    result = runner.invoke(app, ["serve", "--help"], terminal_width=200)
    assert result.exit_code == 0
    for option in ("--console-port", "--console-host", "--console-origin", "--no-console"):
        assert option in result.output
    assert runner.invoke(app, ["users", "--help"]).exit_code == 0
