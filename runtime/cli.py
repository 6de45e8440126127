"""``kefu runtime ...``: train the embedded generator, try a reply."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Reply generation: train the embedded generator, realise acts.", no_args_is_help=True)


@app.command()
def train(
    domain: Annotated[Path, typer.Option("--domain", exists=True, dir_okay=False, help="domain.yml with responses:")],
    out: Annotated[Path, typer.Option("--out", file_okay=False, help="output folder (model, tokenizer, report)")],
    steps: Annotated[int, typer.Option(help="optimiser steps")] = 400,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
) -> None:
    """Train the act -> reply generator on every response variant of DOMAIN; writes OUT/."""
    from runtime.model import GeneratorConfig
    from runtime.templates import Templates
    from runtime.train import train_generator

    result = train_generator(Templates.from_file(domain), out, GeneratorConfig(steps=steps, seed=seed))
    typer.echo(
        json.dumps(
            {
                "out": str(result.out_dir),
                "final_train_loss": round(result.final_loss, 5),
                "train_variant_match": result.train_variant_match,
                "train_slot_valid": result.report["train_slot_valid"],
                "seconds": result.seconds,
                "pairs": result.report["pairs"],
            }
        )
    )


@app.command()
def say(
    domain: Annotated[Path, typer.Option("--domain", exists=True, dir_okay=False)],
    act: Annotated[str, typer.Argument(help="response key, e.g. utter_order_status")],
    model: Annotated[Path | None, typer.Option("--model", help="generator folder; omit for template mode")] = None,
    slot: Annotated[list[str] | None, typer.Option("--slot", help="slot=value, repeatable")] = None,
    language: Annotated[str, typer.Option("--language")] = "en",
) -> None:
    """Realise one act and print the reply and its source."""
    from runtime.nlg import NLG
    from runtime.templates import Templates
    from runtime.types import Act

    templates = Templates.from_file(domain)
    slots = dict(s.split("=", 1) for s in slot or [])
    nlg = NLG.load(templates, model) if model else NLG(templates, mode="template")

    async def run() -> None:
        real = await nlg.realise(Act(act, slots, language))
        await nlg.aclose()
        typer.echo(
            json.dumps(
                {"text": real.text, "source": real.source, "slot_errors": list(real.slot_errors)}, ensure_ascii=False
            )
        )

    asyncio.run(run())


if __name__ == "__main__":
    app()
