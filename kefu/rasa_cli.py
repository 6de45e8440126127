"""``kefu import rasa`` and ``kefu test stories``: bring a Rasa project over and check it with its own test stories.

The composition root of :mod:`dialogue.rasa`: it reads folders, loads the bot's trained NLU, prints and writes
reports; the import, the policy and the replay themselves are pure functions of that package.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from kefu.app import DEFAULT_BOT
from kefu.config import Bot, ConfigError

if TYPE_CHECKING:
    from dialogue.rasa.evaluate import Parse
    from dialogue.rasa.turn import RasaDialogue

import_app = typer.Typer(help="Bring a bot over from another framework.", no_args_is_help=True)
test_app = typer.Typer(help="Test a bot against conversations written for it.", no_args_is_help=True)
console = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


@import_app.command("rasa")
def import_rasa(
    project: Annotated[Path, typer.Argument(help="The Rasa project folder (holds domain.yml or domain/).")],
    out: Annotated[Path, typer.Option("--out", help="The Kefu bot folder to write.")],
    name: Annotated[str | None, typer.Option(help="The bot's name (default: the project folder's name).")] = None,
    action_endpoint: Annotated[str | None, typer.Option(
        help="Where the project's action server listens (default: its endpoints.yml, else Rasa's localhost:5055).")
    ] = None,
) -> None:
    """Write a Kefu bot folder from a Rasa 2.x / 3.x project; list what Kefu does not support (docs/rasa.md)."""
    from dialogue.errors import DialogueError
    from dialogue.rasa.importer import REPORT, import_project

    try:
        report = import_project(project, out, name=name, action_endpoint=action_endpoint)
    except DialogueError as exc:
        raise _fail(f"{type(exc).__name__}: {exc}") from None
    counts = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in report.counts.items())
    console.print(f"imported {report.project} (Rasa {report.version or '?'}, {report.language}) into {report.bot}: "
                  f"{counts}", highlight=False, soft_wrap=True)
    if report.unsupported:  # one line each, file: key: why (greppable, never folded)
        console.print(f"not supported ({len(report.unsupported)}; also in {out / REPORT}):", highlight=False)
        for item in report.unsupported:
            console.print(f"  {item.file}: {item.key}: {item.why}", highlight=False, soft_wrap=True, markup=False)
    console.print(f"next: kefu train --bot {out}", highlight=False)


def _nlu_parser(bot: Bot, dialogue: RasaDialogue) -> Parse:
    """The bot's trained NLU, reading a story's text as the served bot reads a message (:meth:`RasaDialogue.read`)."""
    from dialogue.rasa.entities import entity_values
    from dialogue.rasa.evaluate import ParsedText
    from kefu.app import MissingModel
    from nlu.predict import NLUModel

    if not (bot.nlu_model / "model.safetensors").exists():
        raise MissingModel(f"no NLU model in {bot.nlu_model}: run `kefu train --bot {bot.root}` first")
    model = NLUModel.load(bot.nlu_model)

    def parse(text: str) -> ParsedText:
        result = model.parse(text.strip())
        found = entity_values((e.entity, e.value) for e in result.entities)
        return ParsedText(*dialogue.read(text, result.intent, result.confidence, result.ranking, found))

    return parse


@test_app.command("stories")
def test_stories(
    files: Annotated[list[Path] | None, typer.Argument(help="Test story files (default: the project's tests/).")] = None,
    bot: Annotated[Path, typer.Option("--bot", help="The imported bot folder (holds bot.yml).")] = DEFAULT_BOT,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
    no_nlu: Annotated[bool, typer.Option("--no-nlu", help="Take the stories' intents as given (dialogue only).")] = False,
) -> None:
    """Replay Rasa end-to-end test stories; report conversation, action and intent accuracy as `rasa test` does."""
    from dialogue.errors import DialogueError
    from dialogue.rasa.evaluate import evaluate
    from dialogue.rasa.stories import load_stories
    from kefu.app import MissingModel, rasa_dialogue

    try:
        loaded = Bot.load(bot)
        if not loaded.config.rasa:
            raise ConfigError(f"{bot / 'bot.yml'} has no `rasa:` folder: not an imported Rasa bot")
        dialogue = rasa_dialogue(loaded)
        policy = dialogue.policy
        stories = load_stories(tuple(files) if files else policy.project.test_files, "test")
        parse = None if no_nlu else _nlu_parser(loaded, dialogue)
    except (ConfigError, DialogueError, MissingModel) as exc:
        raise _fail(f"{type(exc).__name__}: {exc}") from None
    summary = evaluate(policy, stories, parse).summary()
    if as_json:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        _print_summary(summary)
    if summary["failed"]:
        raise typer.Exit(1)


def _print_summary(summary: dict[str, object]) -> None:
    failed = summary["failed"]
    assert isinstance(failed, list)
    for story in failed:
        table = Table(title=f"failed: {story['story']} ({story['source']})")
        for column in ("step", "expected", "predicted", "why"):
            table.add_column(column, overflow="fold")
        for step in story["steps"]:
            mark = "" if step["ok"] else "[red]✗[/red] "
            table.add_row(step["kind"], step["expected"], mark + step["predicted"], step["why"])
        console.print(table)
    for key in ("stories", "conversation_accuracy", "actions", "action_accuracy", "action_f1", "intents",
                "intent_accuracy", "entity_accuracy"):
        console.print(f"{key}: {summary[key]}", highlight=False)
