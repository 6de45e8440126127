"""``kefu policy``: train, gate and evaluate the deep-RL dialogue policy of any bot; the policy package's composition
root.

The ``policy`` package knows nothing of bot folders (it never imports ``dialogue`` or ``kefu`` nor reads
``bot.yml``); this module builds what it needs from one:

- the simulator's view of the bot (:func:`sim_bot`): the compiled dialogue definition and its flows, the domain's
  intents, slots and ``from_text`` mappings, ``bot.yml``'s languages and confidence threshold, and values for every
  slot, read from the NLU data's entity annotations, its lookup tables, and the bot's own data files (any YAML file
  under the bot folder, beside the NLU data and the knowledge base, whose mappings have a key named like the slot:
  ``orders.yml``'s ``order_id`` values);
- the measured noise (:func:`measure_noise`): the bot's trained NLU (``models/nlu``) parses the held-out split its
  own training made (same fraction and seed, from its ``report.json``), ``policy.calibrate.measure`` summarises it,
  and ``noise.json`` beside the policy keeps it for training, the gate and ``evaluate``;
- the held-out users' noise: by default an honest substitute for a second NLU (which would cost another NLU training
  per bot, ~4 minutes for the demo shop): the *same* NLU on its held-out utterances rewritten by ``nlu.augment``
  with a seed training never used (other word orders, typos, colloquial particles, swapped values, spliced clauses),
  which shifts both the confusion matrix and the confidences. ``kefu policy calibrate --held-out-nlu-seed N`` measures
  the real thing instead: an NLU trained with seed N on the same data, on its own held-out split.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Iterable
from dataclasses import fields, replace
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from kefu.config import Bot
from kefu.errors import ConfigError, PolicySetupError

log = logging.getLogger("kefu.policy")

app = typer.Typer(help="Train, gate and evaluate the deep-RL dialogue policy against simulated users.",
                  no_args_is_help=True)

USERS = ("training", "held-out")


# -- the simulator's view of a bot -------------------------------------------------------------------------------


def _data_values(node: Any, slots: set[str], out: dict[str, set[str]]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in slots and isinstance(value, (str, int, float)) and not isinstance(value, bool):
                out.setdefault(str(key), set()).add(str(value))
            _data_values(value, slots, out)
    elif isinstance(node, list):
        for item in node:
            _data_values(item, slots, out)


def slot_values(bot: Bot, slots: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """Values a customer may give for each slot: the NLU data's annotations and lookup tables, and the bot's data."""
    from nlu.data import load_examples
    from nlu.patterns import Pattern

    wanted = set(slots)
    found: dict[str, set[str]] = {}
    patterns: list[Pattern] = []
    for example in load_examples(bot.nlu_files, {}, patterns):
        for entity in example.entities:
            if entity.entity in wanted:
                found.setdefault(entity.entity, set()).add(entity.value)
    for pattern in patterns:
        if pattern.kind == "lookup" and pattern.name in wanted:
            found.setdefault(pattern.name, set()).update(pattern.items)
    skip = {p.resolve() for p in bot.nlu_files}
    if bot.config.knowledge:
        skip.add(bot.path(bot.config.knowledge))
    for path in sorted(bot.root.rglob("*.yml")):
        rel = path.relative_to(bot.root).parts
        if path.resolve() in skip or rel[0] in ("models", "scenarios", ".kefu") or path.name in (
                "bot.yml", "domain.yml") or (bot.config.dialogue and path.resolve() == bot.path(bot.config.dialogue)):
            continue
        try:
            _data_values(yaml.safe_load(path.read_text(encoding="utf-8")), wanted, found)
        except (OSError, yaml.YAMLError):
            continue
    return {slot: tuple(sorted(v for v in found.get(slot, ()) if v.strip())) for slot in sorted(wanted)}


def sim_bot(bot: Bot) -> Any:
    """The :class:`policy.simulator.SimBot` of a bot folder with a dialogue definition."""
    from dialogue.definition import definition_of
    from dialogue.flows import FlowContext
    from kefu.app import bot_dialogue
    from nlu.predict import TOP_K
    from policy.simulator import SimBot

    domain, flows = bot_dialogue(bot, None)  # action names are not checked: the simulator never runs actions
    definition = definition_of(flows)
    if definition is None:
        raise PolicySetupError(f"{bot.root}: the learned policy's user simulator is derived from a dialogue "
                               "definition (bot.yml `dialogue: dialogue.yml`); this bot has a Python flows module")
    sim = SimBot(
        definition=definition, flows=flows, intents=tuple(domain.intents), slots=tuple(domain.slots),
        entities=tuple(e for e in domain.entities if e in domain.slots), values=slot_values(bot, domain.slots),
        from_text=tuple(domain.from_text), languages=tuple(bot.config.languages),
        confidence_threshold=bot.config.confidence_threshold, ranking_size=TOP_K, context=FlowContext,
    )
    sim.check()
    return sim


# -- the measured noise ------------------------------------------------------------------------------------------


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _measure_model(model_dir: Path, examples: list[Any], fraction: float, seed: int, augment_seed: int | None,
                   what: str) -> Any:
    """Noise of the NLU in ``model_dir`` on the held-out split (``fraction``, ``seed``) of ``examples``; with
    ``augment_seed``, on those utterances rewritten by ``nlu.augment``."""
    from nlu.augment import Augmenter
    from nlu.predict import NLUModel
    from nlu.train import split_dev
    from policy.calibrate import measure

    train, dev = split_dev(examples, fraction, seed)
    if augment_seed is not None:
        dev = Augmenter(train, augment_seed).generate(2 * len(dev), sources=dev, seed=augment_seed)
    model = NLUModel.load(model_dir)
    parses = model.parse_batch([ex.text for ex in dev])
    return measure(((ex.intent, [(e.entity, e.value) for e in ex.entities], p) for ex, p in zip(dev, parses,
                                                                                                strict=True)), what)


def measure_noise(bot: Bot, held_out_nlu_seed: int | None = None) -> dict[str, Any]:
    """``{"training": NoiseStats, "held_out": NoiseStats}`` of the bot's trained NLU (see the module's doc)."""
    from nlu.data import load_examples

    report_path = bot.nlu_model / "report.json"
    if not (bot.nlu_model / "model.safetensors").is_file() or not report_path.is_file():
        raise PolicySetupError(f"no trained NLU at {bot.nlu_model}: the policy's noise is measured on it "
                               f"(run `kefu train --bot {bot.root}`)")
    report = json.loads(report_path.read_text(encoding="utf-8"))
    tc = report.get("train_config", {})
    fraction, seed = float(tc.get("dev_fraction", 0.1)), int(tc.get("seed", 0))
    examples = load_examples(bot.nlu_files)
    digest = _digest(bot.nlu_model / "model.safetensors")
    training = _measure_model(bot.nlu_model, examples, fraction, seed, None,
                              f"models/nlu {digest} on its held-out {fraction:.0%} split (seed {seed})")
    if report.get("n_dev") not in (None, training.n):  # measured anyway: a stale NLU must not stop `kefu train`
        log.warning("%s held out %s utterances but %d are split now: the NLU data changed since it was trained, so "
                    "some measured utterances were trained on (retrain the NLU for an honest measurement)",
                    bot.nlu_model, report.get("n_dev"), training.n)
        training = replace(training, source=training.source + " (stale: the NLU data changed since it was trained)")
    if held_out_nlu_seed is None:
        held_out = _measure_model(bot.nlu_model, examples, fraction, seed, seed + 7919,
                                  f"models/nlu {digest} on its held-out split rewritten by nlu.augment (seed "
                                  f"{seed + 7919}): a substitute for an NLU trained with another seed")
    else:
        held_out = _second_nlu(bot, examples, held_out_nlu_seed, tc)
    return {"training": training, "held_out": held_out, "nlu": digest}


def _second_nlu(bot: Bot, examples: list[Any], seed: int, tc: dict[str, Any]) -> Any:
    """An NLU trained like the bot's with another seed, measured on its own held-out split (several minutes)."""
    from nlu.data import load_examples
    from nlu.patterns import Pattern
    from nlu.train import TrainConfig
    from nlu.train import train as train_nlu

    known = {f.name for f in fields(TrainConfig)}
    config = TrainConfig(**{**{k: v for k, v in tc.items() if k in known}, "seed": seed, "progress": False})
    synonyms: dict[str, str] = {}
    patterns: list[Pattern] = []
    data = load_examples(bot.nlu_files, synonyms, patterns)
    with tempfile.TemporaryDirectory() as tmp:
        train_nlu(data, tmp, data_files=list(bot.config.nlu_data), synonyms=synonyms, patterns=patterns,
                  train_config=config)
        return _measure_model(Path(tmp), examples, config.dev_fraction, seed, None,
                              f"an NLU trained with seed {seed}, on its own held-out {config.dev_fraction:.0%} split")


def noise_for(bot: Bot, policy_dir: Path) -> dict[str, Any]:
    """The measured noise in ``policy_dir/noise.json`` when it was measured on the bot's current NLU, else measured
    now and saved there."""
    from policy.noise import NOISE_FILE, read_noise, write_noise

    path = policy_dir / NOISE_FILE
    weights = bot.nlu_model / "model.safetensors"
    if path.is_file() and weights.is_file():
        stored = read_noise(path)
        if "training" in stored and "held_out" in stored and _digest(weights) in stored["training"].source:
            return {"training": stored["training"], "held_out": stored["held_out"]}
    measured = measure_noise(bot)
    write_noise(path, {"training": measured["training"], "held_out": measured["held_out"]})
    return measured


def users(noise: dict[str, Any], population: str) -> Any:
    from policy.simulator import SimConfig, Users

    if population == "training":
        return Users(SimConfig(), noise["training"], "training")
    if population == "held-out":
        return Users(SimConfig.held_out(), noise["held_out"], "held-out")
    raise typer.BadParameter(f"--users is one of {', '.join(USERS)}, got {population!r}")


# -- what kefu.app and the commands call -------------------------------------------------------------------------


def train_policy(bot_dir: Path, out: Path | None = None, config: Any = None,
                 noise: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train a bot's learned policy (``kefu train`` calls this): measure the NLU's noise, train against the
    simulated users, gate the result; everything lands in ``out`` (default ``models/policy``). ``noise``
    (``{"training", "held_out"}`` NoiseStats) replaces the measurement, for a bot without a trained NLU."""
    from policy.noise import NOISE_FILE, write_noise
    from policy.train import train

    bot = Bot.load(bot_dir)
    out = out or bot.policy_model
    config = config if config is not None else policy_config(bot)
    simulated = sim_bot(bot)
    if noise is None:
        noise = noise_for(bot, out)
    else:
        write_noise(out / NOISE_FILE, {k: noise[k] for k in ("training", "held_out")})
    report = train(simulated, users(noise, "training"), out, config)
    gate = report["gate"]
    if gate["passed"]:
        log.info("learned policy of %s passed its gate", bot.config.name)
    else:
        log.warning("learned policy of %s failed its gate: %s", bot.config.name, "; ".join(gate["reasons"]))
    return report


def policy_config(bot: Bot, **overrides: Any) -> Any:
    """The bot's policy TrainConfig: ``bot.yml`` ``policy_training`` over the defaults, then ``overrides`` (the
    command line's). An unknown setting is a :class:`ConfigError` naming it and the known ones."""
    from policy.train import TrainConfig

    settings = {**bot.config.policy_training, **{k: v for k, v in overrides.items() if v is not None}}
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ConfigError(f"{bot.root / 'bot.yml'}: policy_training: unknown setting(s) {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(known))}")
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}  # YAML lists
    return TrainConfig(**values)


def evaluate_policy(bot_dir: Path, policy_dir: Path | None = None, *, episodes: int = 1000,
                    noise: tuple[float, ...] = (0.0, 0.15, 0.3), population: str = "training", seed: int = 0,
                    progress: bool = True, details: bool = False) -> dict[str, Any]:
    from policy.evaluate import evaluate
    from policy.fsm import FSMPolicy
    from policy.learned import LearnedPolicy
    from policy.noise import NOISE_FILE, read_noise

    bot = Bot.load(bot_dir)
    policy_dir = policy_dir or bot.policy_model
    path = policy_dir / NOISE_FILE
    if not path.is_file():
        raise PolicySetupError(f"no measured NLU noise at {path}: run `kefu policy train --bot {bot_dir}` (or "
                               "`kefu policy calibrate`) first")
    stored = read_noise(path)
    measured = {"training": stored["training"], "held_out": stored["held_out"]}
    simulated = sim_bot(bot)
    learned = LearnedPolicy.load(policy_dir, rules=FSMPolicy(simulated.flows.default_policy))
    return evaluate(simulated, learned, users(measured, population), episodes=episodes,
                    noise=noise, seed=seed, progress=progress, details=details)


def _noise(text: str) -> tuple[float, ...]:
    try:
        levels = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError as exc:
        raise typer.BadParameter(f"--noise takes comma-separated numbers, got {text!r}") from exc
    if not levels or any(not 0.0 <= x <= 1.0 for x in levels):
        raise typer.BadParameter("--noise levels must be in [0, 1]")
    return levels


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(2)


def _errors() -> tuple[type[Exception], ...]:
    from dialogue.errors import DialogueError
    from kefu.config import ConfigError
    from nlu.errors import NLUError
    from policy.errors import PolicyError

    return (PolicySetupError, ConfigError, DialogueError, NLUError, PolicyError)


BotOption = Annotated[Path, typer.Option("--bot", help="The bot folder (holds bot.yml).")]


@app.command("train")
def train_command(
    bot: BotOption = Path("examples/shop"),
    out: Annotated[Path | None, typer.Option(help="output folder (default: <bot>/models/policy)")] = None,
    steps: Annotated[int | None, typer.Option(help="training steps (bot turns); default: TrainConfig's")] = None,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Train a double-DQN policy (masked by the bot's FSM) against simulated users, then gate it."""
    try:
        report = train_policy(bot, out, policy_config(Bot.load(bot), seed=seed, steps=steps))
    except _errors() as exc:
        raise _fail(exc) from exc
    typer.echo(json.dumps({"train_seconds": report["train_seconds"], "env_steps": report["env_steps"],
                           "best_env_steps": report["best_env_steps"], "gate": {k: report["gate"][k] for k in (
                               "passed", "reasons", "levels")}}))


@app.command("evaluate")
def evaluate_command(
    bot: BotOption = Path("examples/shop"),
    policy_dir: Annotated[Path | None, typer.Option("--policy", help="learned policy (default: <bot>/models/policy)")
                          ] = None,
    episodes: Annotated[int, typer.Option()] = 1000,
    noise: Annotated[str, typer.Option(help="semantic error rates, comma-separated")] = "0,0.15,0.3",
    seed: Annotated[int, typer.Option()] = 0,
    population: Annotated[str, typer.Option("--users", help="training | held-out (habits and NLU noise no "
                                                            "training used)")] = "training",
    details: Annotated[bool, typer.Option("--details", help="failures by cause")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print only the JSON result")] = False,
) -> None:
    """Success rate, average turns and reward of the learned policy and the FSM policy on the same users."""
    try:
        result = evaluate_policy(bot, policy_dir, episodes=episodes, noise=_noise(noise), population=population,
                                 seed=seed, progress=not as_json, details=details)
    except _errors() as exc:
        raise _fail(exc) from exc
    if as_json:
        typer.echo(json.dumps(result))
        return
    for row in result["levels"]:
        for name in ("learned", "fsm"):
            m = row[name]
            typer.echo(f"noise {row['noise']:<5g} {name:<8} success {m['success_rate']:.3f}  "
                       f"turns {m['avg_turns']:.2f}  reward {m['avg_reward']:.2f}"
                       + (f"  failures {m['failures']}" if details else ""))


@app.command("calibrate")
def calibrate_command(
    bot: BotOption = Path("examples/shop"),
    held_out_nlu_seed: Annotated[int | None, typer.Option(
        help="measure the held-out users' noise on an NLU trained with this seed (minutes) instead of the "
             "rewritten held-out split")] = None,
    out: Annotated[Path | None, typer.Option(help="policy folder for noise.json (default: <bot>/models/policy)")
                   ] = None,
) -> None:
    """Measure the bot's NLU on its held-out split (the simulator's noise channel) and save it as noise.json."""
    from policy.calibrate import summary
    from policy.noise import NOISE_FILE, write_noise

    try:
        b = Bot.load(bot)
        measured = measure_noise(b, held_out_nlu_seed)
    except _errors() as exc:
        raise _fail(exc) from exc
    write_noise((out or b.policy_model) / NOISE_FILE, {"training": measured["training"],
                                                       "held_out": measured["held_out"]})
    typer.echo(json.dumps({k: summary(measured[k]) for k in ("training", "held_out")}, ensure_ascii=False))


if __name__ == "__main__":  # before `kefu policy` mounts this app: python -m kefu.policy_cli train|evaluate|calibrate
    app()
