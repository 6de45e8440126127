"""``kefu init DIR``: write a small working bot to start from (kefu/scaffold.py holds the how)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from kefu.scaffold import ScaffoldError, scaffold

console = Console(stderr=True)


def init(
    directory: Annotated[Path, typer.Argument(help="The new bot's folder (created; if it exists it must be empty).")],
    language: Annotated[
        list[str] | None, typer.Option("--language", "-l", help="en | zh; repeat for both (default: en).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="The bot's name (default: the folder's name).")] = None,
) -> None:
    """Write a small working bot (a task, small talk, knowledge, fallback, hand-off, scenarios) to start from."""
    try:
        written = scaffold(directory, name=name, languages=language or ["en"])
    except (ScaffoldError, OSError) as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from exc
    for path in written:
        print(path)
    console.print(f"\nA new bot in {directory}: read {directory / 'README.md'} for what to edit next. Run it with\n"
                  f"  kefu train --bot {directory} && kefu serve --bot {directory}", highlight=False, soft_wrap=True)
