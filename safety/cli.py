"""``kefu safety ...``: train and evaluate the toxicity classifiers and the prompt-injection detector."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(help="Safety filters: toxicity classifier training and evaluation.", no_args_is_help=True)


def _data_root() -> Path:
    from safety.shared_data import shared_data_dir

    return shared_data_dir()


@app.command()
def train(
    out: Annotated[Path, typer.Option(help="output model directory (e.g. models/toxicity/zh)")],
    lang: Annotated[str, typer.Option(help="en: fine-tune MiniLM; zh: train a small Chinese BERT from scratch")] = "en",
    data: Annotated[
        Path | None,
        typer.Option(help="training JSONL {text,label}; default $KEFU_SHARED_DATA/toxicity_<lang>/train.jsonl"),
    ] = None,
    dev: Annotated[Path | None, typer.Option(help="dev JSONL; default dev.jsonl next to --data")] = None,
    max_examples: Annotated[int | None, typer.Option(help="training examples (default: the language recipe)")] = None,
    epochs: Annotated[int | None, typer.Option(help="default: the language recipe")] = None,
    max_len: Annotated[int | None, typer.Option(help="tokens per training example")] = None,
    seed: Annotated[int, typer.Option()] = 13,
    threads: Annotated[int | None, typer.Option(help="torch threads (1 is faster on a busy machine)")] = None,
    clean_data: Annotated[
        Path | None,
        typer.Option(
            help="clean service dialogue mixed in as label 0; zh default: $KEFU_SHARED_DATA/crosswoz/val.jsonl"
        ),
    ] = None,
) -> None:
    """Train the toxicity classifier of LANG; writes the model, report.json and curves.png to OUT."""
    from safety.errors import SafetyError
    from safety.train import TrainConfig
    from safety.train import train as run_train

    if lang not in ("en", "zh"):
        raise typer.BadParameter("--lang must be en or zh")
    overrides: dict[str, object] = {"seed": seed, "threads": threads}
    for key, value in (
        ("max_examples", max_examples),
        ("epochs", epochs),
        ("max_len", max_len),
    ):
        if value is not None:
            overrides[key] = value
    data = data or _data_root() / f"toxicity_{lang}" / "train.jsonl"
    if clean_data is None and lang == "zh" and (_data_root() / "crosswoz" / "val.jsonl").is_file():
        clean_data = _data_root() / "crosswoz" / "val.jsonl"
    if clean_data is not None:
        overrides["clean_data"] = str(clean_data)
    try:
        cfg = TrainConfig.for_language(lang, **overrides)
        report = run_train(cfg, data, out, dev=dev)
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
    quantize: Annotated[bool, typer.Option(help="score with dynamic int8 Linear layers (as served quantized)")] = False,
) -> None:
    """Score DATA with MODEL and print ROC-AUC, recall@1%FPR, accuracy, F1 at the threshold."""
    from safety.evaluate import evaluate_model

    if lang not in ("en", "zh"):
        raise typer.BadParameter("--lang must be en or zh")
    _report(
        lambda: evaluate_model(
            model, data, language=lang, threshold=threshold, max_examples=max_examples, quantize=quantize
        ),
        as_json,
    )


def _report(compute: Callable[[], dict[str, Any]], as_json: bool) -> None:
    """Run an evaluation and print its metrics (JSON or aligned lines); a SafetyError exits 1 with its message."""
    from safety.errors import SafetyError

    try:
        result = compute()
    except SafetyError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            typer.echo(f"{key:>22}: {value}")


@app.command("train-injection")
def train_injection(
    out: Annotated[Path, typer.Option(help="output directory (e.g. examples/shop/models/injection)")],
    data_dir: Annotated[
        Path | None, typer.Option(help="public data root with snips/clinc150/cais/toxicity_* (default $KEFU_SHARED_DATA)")
    ] = None,
    epochs: Annotated[int | None, typer.Option()] = None,
    seed: Annotated[int, typer.Option()] = 0,
    extra_benign: Annotated[
        Path | None, typer.Option(help="a UTF-8 text file, one customer message per line, added to the negatives "
                                       "(`kefu train` adds the bot's NLU examples this way)")
    ] = None,
) -> None:
    """Train the learned prompt-injection detector; writes the model, report.json and curves.png to OUT."""
    from safety.injection import InjectionConfig
    from safety.injection import train as run_train

    cfg = InjectionConfig(seed=seed)
    if epochs is not None:
        cfg.epochs = epochs
    extra: list[str] = []
    if extra_benign is not None:
        extra = [line.strip() for line in extra_benign.read_text(encoding="utf-8").splitlines() if line.strip()]
    report = run_train(out, data_dir or _data_root(), cfg, extra_benign=extra)
    typer.echo(json.dumps({k: v for k, v in report.items() if k != "history"}, indent=2))


@app.command("evaluate-injection")
def evaluate_injection(
    data: Annotated[Path, typer.Option(help='JSONL lines {"text", "label"} (1 = attack)')],
    model: Annotated[Path | None, typer.Option(help="trained detector directory; none: the rules alone")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON only")] = False,
) -> None:
    """Flag DATA with the input filter (rules, plus MODEL when given): recall, false-positive rate, n."""
    from safety.evaluate import evaluate_injection as run_eval

    _report(lambda: run_eval(data, model), as_json)


if __name__ == "__main__":
    app()
