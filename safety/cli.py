"""``kefu safety ...``: train and evaluate the toxicity classifier."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Safety filters: toxicity classifier training and evaluation.", no_args_is_help=True)


def _default_train_data() -> Path:
    return Path(os.environ.get("KEFU_DATA_DIR", "/work/shared/data")) / "toxicity_en" / "train.jsonl"


@app.command()
def train(
    out: Annotated[Path, typer.Option(help="output model directory")],
    data: Annotated[
        Path | None, typer.Option(help="training JSONL {text,label}; default $KEFU_DATA_DIR/toxicity_en/train.jsonl")
    ] = None,
    dev: Annotated[Path | None, typer.Option(help="dev JSONL; default dev.jsonl next to --data")] = None,
    max_examples: Annotated[int, typer.Option(help="training examples (balanced by label)")] = 3000,
    epochs: Annotated[int, typer.Option()] = 1,
    max_len: Annotated[int, typer.Option(help="tokens per training example")] = 64,
    seed: Annotated[int, typer.Option()] = 13,
    threads: Annotated[int | None, typer.Option(help="torch threads (1 is faster on a busy machine)")] = None,
) -> None:
    """Fine-tune MiniLM as a toxicity classifier; writes the model, report.json and curves.png to OUT."""
    from safety.errors import SafetyError
    from safety.train import TrainConfig
    from safety.train import train as run_train

    cfg = TrainConfig(max_examples=max_examples, epochs=epochs, max_len=max_len, seed=seed, threads=threads)
    try:
        report = run_train(cfg, data or _default_train_data(), out, dev=dev)
    except SafetyError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps({"out": str(out), "dev": report["dev"], "train_seconds": report["train_seconds"]}, indent=2))


@app.command()
def evaluate(
    model: Annotated[Path, typer.Option(help="trained toxicity model directory")],
    data: Annotated[Path, typer.Option(help="JSONL {text,label}")],
    lang: Annotated[str, typer.Option(help="language of the data: en or zh")] = "en",
    threshold: Annotated[float | None, typer.Option(help="override the model threshold")] = None,
    max_examples: Annotated[int | None, typer.Option(help="seeded random subset")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON only")] = False,
) -> None:
    """Score DATA with MODEL and print ROC-AUC, recall@1%FPR, accuracy, F1 at the threshold."""
    from safety.errors import SafetyError
    from safety.evaluate import evaluate_model

    if lang not in ("en", "zh"):
        raise typer.BadParameter("--lang must be en or zh")
    try:
        result = evaluate_model(model, data, language=lang, threshold=threshold, max_examples=max_examples)
    except SafetyError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            typer.echo(f"{key:>22}: {value}")
