"""``kefu runtime ...``: train the embedded generator, try a reply, serve a model over HTTP."""

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
    held_out: Annotated[
        bool, typer.Option("--held-out/--no-held-out", help="also score BLEU / slot error rate on held-out variants")
    ] = True,
) -> None:
    """Train the act -> reply generator on every response variant of DOMAIN; writes OUT/."""
    from runtime.model import GeneratorConfig
    from runtime.templates import Templates
    from runtime.train import train_generator

    result = train_generator(
        Templates.from_file(domain), out, GeneratorConfig(steps=steps, seed=seed), held_out=held_out
    )
    held = result.report["held_out"] or {}
    typer.echo(
        json.dumps(
            {
                "out": str(result.out_dir),
                "final_train_loss": round(result.final_loss, 5),
                "train_variant_match": result.train_variant_match,
                "train_slot_valid": result.report["train_slot_valid"],
                "held_out_bleu": held.get("bleu"),
                "held_out_slot_error_rate": held.get("slot_error_rate"),
                "reply_tokens_mean": result.report["reply_tokens_mean"],
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


@app.command()
def serve(
    model: Annotated[
        Path,
        typer.Option("--model", exists=True, file_okay=False, help="causal LM folder (config, weights, tokenizer)"),
    ],
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8000,
    name: Annotated[str | None, typer.Option("--name", help="served model id (default: the folder name)")] = None,
    max_batch: Annotated[int, typer.Option("--max-batch", help="requests decoded together")] = 16,
    max_queue: Annotated[int, typer.Option("--max-queue", help="waiting requests before HTTP 429")] = 256,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:0 ...")] = "cpu",
) -> None:
    """Serve MODEL with an OpenAI-compatible API: /v1/models, /v1/completions, /v1/chat/completions."""
    from runtime.errors import ModelLoadError
    from runtime.openai_api import serve as run_server

    try:
        run_server(
            model, host=host, port=port, model_name=name, max_batch=max_batch, max_queue=max_queue, device=device
        )
    except ModelLoadError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


if __name__ == "__main__":
    app()
