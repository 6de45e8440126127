"""``kefu policy`` sub-commands: train the learned dialogue policy and compare it with the FSM rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Train and evaluate the deep-RL dialogue policy against the user simulator.", no_args_is_help=True)


def _noise(text: str) -> list[float]:
    try:
        levels = [float(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise typer.BadParameter(f"--noise takes comma-separated numbers, got {text!r}") from exc
    if not levels or any(not 0.0 <= x <= 1.0 for x in levels):
        raise typer.BadParameter("--noise levels must be in [0, 1]")
    return levels


@app.command()
def train(
    bot: Annotated[Path, typer.Option(help="bot folder")] = Path("examples/shop"),
    out: Annotated[Path | None, typer.Option(help="output dir (default: <bot>/models/policy)")] = None,
    episodes: Annotated[int, typer.Option(help="training dialogues")] = 30_000,
    seed: Annotated[int, typer.Option()] = 0,
    max_minutes: Annotated[float, typer.Option(help="stop after this long (0 = no limit)")] = 9.0,
) -> None:
    """Train a double-DQN policy (masked by the bot's flows) against simulated users."""
    from policy.train import TrainConfig
    from policy.train import train as run

    report = run(bot, out or bot / "models" / "policy", TrainConfig(episodes=episodes, seed=seed, max_minutes=max_minutes))
    last = report["history"][-1]
    typer.echo(json.dumps({"train_seconds": report["train_seconds"], "best_episode": report["best_episode"],
                           "valid": last["valid"], "fsm_valid": report["fsm_valid"]}))


@app.command()
def evaluate(
    bot: Annotated[Path, typer.Option(help="bot folder")] = Path("examples/shop"),
    policy_dir: Annotated[
        Path | None, typer.Option("--policy", help="learned policy dir (default: <bot>/models/policy)")
    ] = None,
    episodes: Annotated[int, typer.Option()] = 1000,
    noise: Annotated[str, typer.Option(help="semantic error rates, comma-separated")] = "0,0.15,0.3",
    seed: Annotated[int, typer.Option()] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print only the JSON result")] = False,
) -> None:
    """Success rate, average turns and reward of the learned policy and the FSM rule on the same users."""
    from policy.evaluate import evaluate as run

    result = run(bot, policy_dir, episodes=episodes, noise=_noise(noise), seed=seed, progress=not as_json)
    if as_json:
        typer.echo(json.dumps(result))
        return
    for row in result["levels"]:
        for name in ("learned", "fsm"):
            m = row[name]
            typer.echo(f"noise {row['noise']:<5g} {name:<8} success {m['success_rate']:.3f}  "
                       f"turns {m['avg_turns']:.2f}  reward {m['avg_reward']:.2f}")


@app.command()
def calibrate(bot: Annotated[Path, typer.Option(help="bot folder")] = Path("examples/shop")) -> None:
    """Measure the bot's NLU on its held-out split (the numbers behind the simulator's noise channel)."""
    from policy.calibrate import measure_nlu

    typer.echo(json.dumps(measure_nlu(bot)))


if __name__ == "__main__":
    app()
