"""``kefu flows ...``: look at a bot's dialogue, the FSM its ``dialogue.yml`` (or Python flows module) compiles to.

Nothing is trained or served: the bot's definition is loaded and checked exactly as ``kefu train`` and ``kefu serve``
check it (against its domain and the actions its actions module defines), so a definition this command draws is one
those commands accept, and one they refuse is refused here with the same message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from kefu.app import DEFAULT_BOT, bot_dialogue, bot_dir_env
from kefu.config import Bot, ConfigError

app = typer.Typer(help="Look at a bot's dialogue: the FSM its dialogue.yml compiles to.", no_args_is_help=True)
console = Console(stderr=True)
BotOption = Annotated[Path, typer.Option("--bot", help="The bot folder (holds bot.yml).")]
OutOption = Annotated[
    Path | None, typer.Option("--out", help="Where to draw it: a .svg or .png file (default: BOT/models/flows.svg).")
]


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


def _action_names(bot: Bot) -> list[str] | None:
    """The actions the bot's in-process actions module defines; None when they run in an action server (not
    listed, so not checked: as ``kefu serve`` does)."""
    cfg = bot.config
    if cfg.action_endpoint or not cfg.actions:
        return None
    from dialogue.actions import action_runner

    with bot_dir_env(bot.root):  # importing the module must not leave KEFU_BOT_DIR pointing at this bot
        runner = action_runner(bot.root, actions=cfg.actions)
    names = getattr(runner, "action_names", None)
    return list(names) if names is not None else None


@app.command("show")
def show(bot: BotOption = DEFAULT_BOT, out: OutOption = None) -> None:
    """Print the bot's states and, per state, the actions allowed and where they lead; draw the FSM (SVG or PNG)."""
    from dialogue.definition import DefinitionError
    from dialogue.diagram import FORMATS, describe, graph_of, layout, render
    from dialogue.errors import DialogueError

    if out is not None and out.suffix.lower() not in FORMATS:
        raise _fail(f"--out must end in {' or '.join(FORMATS)}, not {out.name!r}")
    try:
        loaded = Bot.load(bot)
        _, flows = bot_dialogue(loaded, _action_names(loaded))
    except DefinitionError as exc:  # one line per problem, each naming its file and line (no header to skip)
        for problem in exc.problems[:-1]:
            console.print(f"[red]error:[/red] DefinitionError: {problem}", highlight=False, soft_wrap=True)
        raise _fail(f"DefinitionError: {exc.problems[-1]}") from exc
    except (ConfigError, DialogueError) as exc:
        raise _fail(f"{type(exc).__name__}: {exc}") from exc
    cfg = loaded.config
    source = cfg.dialogue if cfg.dialogue is not None else cfg.flows
    graph = graph_of(flows)
    print(f"{cfg.name}: the FSM of {source}")
    print(describe(graph))
    target = out if out is not None else loaded.models / "flows.svg"
    try:
        render(layout(graph, f"{cfg.name}: the FSM of {source}"), target)
    except OSError as exc:
        raise _fail(f"cannot write {target}: {exc}") from exc
    console.print(f"drew {len(graph.states)} states to {target}", highlight=False, soft_wrap=True)
