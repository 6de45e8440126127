"""``kefu nlu`` commands: train and evaluate joint intent/slot models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from nlu.errors import NLUError

app = typer.Typer(help="Train and evaluate the joint BiLSTM-CRF intent + slot model.", no_args_is_help=True)


@app.command()
def train(
    data: Annotated[list[Path], typer.Option("--data", help="training file (.yml Rasa nlu or .jsonl); repeatable")],
    out: Annotated[Path, typer.Option("--out", help="output model directory")],
    dev: Annotated[Path | None, typer.Option("--dev", help="dev file for early stopping and calibration")] = None,
    epochs: Annotated[int, typer.Option("--epochs", min=1)] = 20,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", min=0, help="0 = auto (16 if < 5,000 examples, else 32)")] = 0,
    patience: Annotated[int, typer.Option("--patience", min=1)] = 4,
    max_minutes: Annotated[float, typer.Option("--max-minutes", help="time budget (0 = none)")] = 0.0,
    hidden: Annotated[int, typer.Option("--hidden", help="BiLSTM output size")] = 300,
    threads: Annotated[int, typer.Option("--threads", help="torch threads (0 = all cores)")] = 1,
) -> None:
    """Train a model on one or more data files and write it (with report.json and curves.png) to OUT."""
    from nlu.data import load_examples
    from nlu.model import NLUConfig
    from nlu.train import TrainConfig
    from nlu.train import train as run_training

    try:
        synonyms: dict[str, str] = {}
        examples = load_examples(data, synonyms)
        dev_examples = load_examples([dev]) if dev else None
        tc = TrainConfig(epochs=epochs, seed=seed, batch_size=batch_size, patience=patience,
                         max_minutes=max_minutes, threads=threads)
        run_training(examples, out, dev_examples, NLUConfig(hidden=hidden), tc, [str(p) for p in data], synonyms)
    except NLUError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    summary = {k: report[k] for k in ("n_train", "n_dev", "epochs_run", "best_epoch", "train_seconds", "temperature")}
    summary["dev"] = report["dev"]
    typer.echo(json.dumps(summary, indent=2))


@app.command()
def evaluate(
    model: Annotated[Path, typer.Option("--model", help="model directory")],
    data: Annotated[Path, typer.Option("--data", help="evaluation file (.yml or .jsonl)")],
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    threads: Annotated[int, typer.Option("--threads", help="torch threads (0 = all cores)")] = 1,
) -> None:
    """Evaluate a trained model: intent accuracy, slot F1, sentence accuracy, OOS metrics, speed."""
    import os

    import torch

    from nlu.data import load_examples
    from nlu.evaluate import evaluate as run_evaluation
    from nlu.predict import NLUModel

    torch.set_num_threads(threads or os.cpu_count() or 1)
    try:
        nlu_model = NLUModel.load(model)
        metrics = run_evaluation(nlu_model, load_examples([data]))
    except NLUError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(metrics))
        return
    for key, value in metrics.items():
        typer.echo(f"{key:>24}: {value:.4f}" if isinstance(value, float) else f"{key:>24}: {value}")


if __name__ == "__main__":
    app()
