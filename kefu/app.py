"""The composition root: build a running bot (engine + its parts) from a bot folder, and train it.

Nothing here holds logic of its own; it wires the packages together the way ``bot.yml`` says.
Heavy imports (torch, transformers) happen inside the functions, so ``kefu --help`` stays instant.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kefu.config import Bot

log = logging.getLogger("kefu")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BOT = ROOT / "examples" / "shop"


def shared_data() -> Path:
    """The public datasets: ``$KEFU_SHARED_DATA``, else ``../shared/data`` beside the checkout."""
    return Path(os.environ.get("KEFU_SHARED_DATA", ROOT.parent / "shared" / "data")).resolve()


@contextmanager
def bot_dir_env(root: Path) -> Iterator[None]:
    """Point in-process rasa-sdk actions at ``root`` (they read ``KEFU_BOT_DIR`` when they run) for the duration, then
    restore what was there: a process that trains or runs a second bot for a while (the tests do) must not leave the
    first bot's actions reading the second one's data."""
    previous = os.environ.get("KEFU_BOT_DIR")
    os.environ["KEFU_BOT_DIR"] = str(root)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("KEFU_BOT_DIR", None)
        else:
            os.environ["KEFU_BOT_DIR"] = previous


@contextmanager
def _exclusive(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (a shared model folder) across processes while building into it."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class MissingModel(Exception):
    """A model the bot needs has not been built yet: run ``kefu train``."""



def settle_heap() -> None:
    """Collect once, then freeze what survives (``gc.freeze``): for a server process, once its models are loaded.

    Why: a loaded bot is about 470,000 Python objects (torch modules, tokenizers, transformers, SQLAlchemy), and a
    full (generation-2) collection walks all of them: about 220 ms on this project's 2-core machine, in the middle
    of whatever turns are running. CPython runs one when the objects that survived since the last one exceed a
    quarter of the long-lived ones, which start-up does several times and a long-running worker's caches can do
    again. Frozen objects are left out of every collection (a full one then takes about 0.1 ms); they are still
    freed by reference counting when dropped (a swapped-out NLU model), only a cycle among them would stay. The
    benchmarks of this project saw no full collection after start-up either way, so none of their figures moved."""
    import gc

    gc.collect()
    gc.freeze()


def offline() -> None:
    """Nothing may download at run time: make the Hugging Face libraries fail fast instead of hanging."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@dataclass
class Running:
    """A built bot: the engine the channels drive, and what must be closed on shutdown."""

    engine: Any  # dialogue.engine.DialogueEngine, set once everything is open
    bot: Bot
    closers: list[Callable[[], object]]
    nlu_folder: Path | None = None  # the NLU model the engine was started with (kefu.models_watch swaps others in)

    async def aclose(self) -> None:
        for close in reversed(self.closers):
            result = close()
            if asyncio.iscoroutine(result):
                await result


def action_names(bot: Bot) -> list[str] | None:
    """The actions the bot's in-process module defines (None when they run in an action server we cannot list)."""
    from dialogue.actions import action_runner

    cfg = bot.config
    if cfg.action_endpoint or not cfg.actions:
        return None
    names: list[str] | None = getattr(action_runner(bot.root, actions=cfg.actions), "action_names", None)
    return names


def bot_dialogue(bot: Bot, action_names: list[str] | None) -> tuple[Any, Any]:
    """The bot's domain and flows: ``dialogue.yml`` compiled (checked against the domain and ``action_names``; None
    when actions run in a server we cannot list), or the Python flows module. A definition's ``from_text`` slots
    join the domain's, so the engine fills them as it fills those written in ``domain.yml``; the definition marks the
    small talk and hand-off intents of both as changing the subject only when the NLU is sure of them."""
    import dataclasses

    from dialogue.definition import load_definition
    from dialogue.domain import Domain
    from dialogue.flows import load_flows

    domain = Domain.load(bot.path(bot.config.domain))
    if bot.config.rasa is not None:  # an imported Rasa project: its loops are the FSM (dialogue.rasa)
        from dialogue.rasa.turn import loop_flows

        return domain, loop_flows(rasa_dialogue(bot).project)
    if bot.config.dialogue is None:
        return domain, load_flows(bot.path(bot.config.flows))
    definition = load_definition(bot.path(bot.config.dialogue), domain, action_names)
    domain = dataclasses.replace(domain, from_text=definition.unsure_subjects(domain.from_text + definition.from_text()))
    return domain, definition.flows()


def _require(path: Path, what: str) -> None:
    if not path.exists():
        raise MissingModel(f"{what} not found at {path}: run `kefu train --bot {path.parents[1]}` first")


def rasa_dialogue(bot: Bot) -> Any:
    """An imported Rasa bot's dialogue (:class:`dialogue.rasa.turn.RasaDialogue`), built from its ``rasa:`` folder."""
    from dialogue.rasa.entities import RegexEntities
    from dialogue.rasa.policy import load_policy
    from dialogue.rasa.turn import RasaDialogue, action_server_domain

    assert bot.config.rasa is not None
    policy = load_policy(bot.path(bot.config.rasa))
    return RasaDialogue(policy, action_server_domain(policy.project), frozenset(policy.project.actions),
                        RegexEntities.from_project(policy.project))


@asynccontextmanager
async def running_bot(
    bot_dir: Path, *, store_url: str | None = None, generation: str | None = None, toxicity: bool = True
) -> AsyncIterator[Running]:
    """Open the store, load the models and yield a ready ``DialogueEngine``; close everything after."""
    offline()
    from dialogue.actions import action_runner
    from dialogue.engine import BotParts, DialogueEngine
    from dialogue.handoff import staffing_probe
    from dialogue.store import Store
    from kefu.models_watch import served_nlu
    from nlu.predict import NLUModel
    from policy import FSMPolicy
    from runtime.nlg import NLG
    from runtime.templates import Templates
    from safety.filters import InputFilter
    from safety.injection import InjectionDetector
    from safety.suites import DEFAULT_BANNED_TERMS
    from safety.toxicity import ToxicityRouter

    bot = Bot.load(bot_dir)
    cfg = bot.config
    nlu_folder = served_nlu(bot.models)  # the console's last published retrain, else models/nlu
    _require(nlu_folder, "the NLU model")
    running = Running(engine=None, bot=bot, closers=[], nlu_folder=nlu_folder)
    with bot_dir_env(bot.root):  # in-process rasa-sdk actions find data/ and models/ here
        try:  # whatever opened before a failure (e.g. a dead database) is closed again
            actions = action_runner(bot.root, actions=cfg.actions, action_endpoint=cfg.action_endpoint)
            running.closers.append(actions.aclose)
            domain, flows = bot_dialogue(bot, getattr(actions, "action_names", None))
            nlu = await asyncio.to_thread(NLUModel.load, nlu_folder)
            await asyncio.to_thread(nlu.warm)  # the first customer does not wait for lazily loaded vectors
            _require(bot.injection_model, "the prompt-injection detector")
            injection = await asyncio.to_thread(InjectionDetector.load, bot.injection_model)
            output_filter = None
            if toxicity:
                for language in cfg.languages:
                    _require(bot.toxicity_model / language, f"the {language} toxicity model")
                output_filter = await asyncio.to_thread(
                    lambda: ToxicityRouter.load(bot.toxicity_model, cfg.toxicity_threshold,
                                                default_language=cfg.languages[0], eager=True, quantize=True)
                )
            mode = generation or cfg.generation
            templates = Templates.from_domain(domain.raw)
            if mode.startswith(("http://", "https://")):  # any OpenAI-compatible server (ours, vLLM...)
                nlg = NLG.from_url(templates, mode)
            elif mode == "embedded":
                _require(bot.generator_model, "the reply generator")
                nlg = await asyncio.to_thread(NLG.load, templates, bot.generator_model)
            else:
                nlg = NLG(templates, None, mode="template")
            running.closers.append(nlg.aclose)
            store = await Store.open(bot.store_url(store_url))
            running.closers.append(store.close)
            knowledge = None
            if cfg.knowledge and cfg.knowledge_action:
                knowledge = await asyncio.to_thread(bot.load_knowledge)
                await asyncio.to_thread(knowledge.warm)
            parts = BotParts(
                domain=domain,
                flows=flows,
                policy=await asyncio.to_thread(choose_policy, bot, flows, FSMPolicy(flows.default_policy)),
                nlu=nlu,
                actions=actions,
                input_filter=InputFilter(banned_terms=cfg.banned_terms or DEFAULT_BANNED_TERMS, block_injection=True,
                                         mask_banned=True, injection_model=injection),
                output_filter=output_filter,
                confidence_threshold=cfg.confidence_threshold,
                default_language=cfg.languages[0],
                staffing=staffing_probe(store.count_agents_online, cfg.hours()),
                handoff_timeout=dt.timedelta(minutes=cfg.handoff_timeout_minutes),
                knowledge=knowledge,
                knowledge_action=cfg.knowledge_action,
                knowledge_threshold=cfg.knowledge_threshold,
                rasa=await asyncio.to_thread(rasa_dialogue, bot) if cfg.rasa else None,
            )
            running.engine = DialogueEngine(parts, store, nlg)
            yield running
        finally:
            await running.aclose()


def choose_policy(bot: Bot, flows: Any, fallback: Any) -> Any:
    """The policy to serve. ``fsm``: the FSM's rules. ``learned``: the learned policy (it must exist and know the
    flows' actions). ``auto``: the learned policy only if it passed its gate at training time (``gate.json``: on
    unseen simulated users at least as good as the rules at every noise level, and every scripted scenario of the bot
    passes with it); otherwise the rules, and the log says why."""
    path = bot.policy_model
    mode = bot.config.policy
    if mode == "fsm":
        return fallback
    if not (path / "model.safetensors").exists():
        if mode == "learned":
            raise MissingModel(f"bot.yml asks for the learned policy but {path} has none: run `kefu train`")
        log.warning("serving the FSM's policy: no learned policy at %s (run kefu train)", path)
        return fallback
    if mode == "auto":
        from policy.gate import gate_status

        passed, why = gate_status(path)
        if not passed:
            log.warning("serving the FSM's policy: the learned policy at %s did not pass its gate (%s)", path, why)
            return fallback
    from policy.learned import LearnedPolicy

    try:
        learned = LearnedPolicy.load(path, rules=fallback)  # the rules its deviation margin falls back on
    except Exception as exc:  # a corrupt or partial checkpoint: name it, never a traceback
        if mode == "learned":
            raise MissingModel(f"the learned policy at {path} does not load ({type(exc).__name__}): run "
                               "`kefu train --force`") from exc
        log.warning("serving the FSM's policy: the learned policy at %s does not load (%s)", path, type(exc).__name__)
        return fallback
    if not learned.compatible(flows.actions):
        if mode == "learned":
            raise MissingModel(f"the learned policy at {path} was trained for other actions: run `kefu train --force`")
        log.warning("serving the FSM's policy: the learned policy at %s was trained for other actions", path)
        return fallback
    log.info("serving the learned policy from %s (it passed its gate)", path)
    return learned


def scenario_gate(bot: Bot) -> dict[str, Any]:
    """Replay the bot's scripted scenarios (the files directly in its ``scenarios`` folder) with the learned policy
    and add the result to its gate: a policy that fails a scenario is not served by ``policy: auto``."""
    from dialogue.scenarios import Scenario, run_scenario
    from policy import FSMPolicy
    from policy.gate import GATE_FILE
    from policy.learned import LearnedPolicy

    folder = bot.path(bot.config.scenarios)
    files = sorted(p for p in folder.glob("*.y*ml") if p.suffix in {".yml", ".yaml"}) if folder.is_dir() else []
    failed: list[str] = []

    async def replay() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            async with running_bot(bot.root, store_url=f"sqlite+aiosqlite:///{tmp}/gate.db") as running:
                rules = FSMPolicy(running.engine.parts.flows.default_policy)
                running.engine.parts.policy = LearnedPolicy.load(bot.policy_model, rules=rules)
                for path in files:
                    result = await run_scenario(running.engine, Scenario.load(path))
                    if not result.passed:
                        failed.append(path.name)

    asyncio.run(replay())
    gate_path = bot.policy_model / GATE_FILE
    try:
        gate = json.loads(gate_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        gate = {"passed": False, "reasons": ["the simulator gate was not run"]}
    gate.setdefault("simulator_passed", bool(gate.get("passed")))  # the simulator's verdict, kept across re-runs
    gate["scenarios"] = {"folder": str(folder), "run": len(files), "failed": failed}
    reasons = [r for r in gate.get("reasons", []) if not str(r).startswith("scenarios:")]
    if failed:
        reasons.append(f"scenarios: {len(failed)} of {len(files)} fail with the learned policy: {', '.join(failed)}")
    elif not files:
        reasons.append(f"scenarios: none found in {folder}")
    gate["reasons"] = reasons
    gate["passed"] = bool(gate["simulator_passed"]) and not failed and bool(files)
    gate_path.write_text(json.dumps(gate, indent=2, ensure_ascii=False), encoding="utf-8")
    return gate


def train_bot(bot_dir: Path, *, force: bool = False, only: set[str] | None = None) -> dict[str, float]:
    """Train every model of a bot that is missing (or all with ``force``); returns seconds per part."""
    offline()
    bot = Bot.load(bot_dir)
    with bot_dir_env(bot.root):  # policy training runs the bot's actions in-process
        return _train_parts(bot, force, only)


def train_nlu_model(bot: Bot, out_dir: Path) -> None:
    """Train the bot's NLU from its training files into ``out_dir`` (``kefu train`` and the console's retrain,
    which trains into a new folder: :mod:`kefu.models_watch`)."""
    from nlu.data import load_examples
    from nlu.train import TrainConfig as NLUTrainConfig
    from nlu.train import train as train_nlu

    synonyms: dict[str, str] = {}
    patterns: list = []  # Rasa lookup: / regex: blocks (nlu.patterns.Pattern)
    examples = load_examples(bot.nlu_files, synonyms, patterns)
    train_nlu(examples, out_dir, data_files=list(bot.config.nlu_data), synonyms=synonyms, patterns=patterns,
              train_config=NLUTrainConfig(**bot.config.nlu_training))  # type: ignore[arg-type]


def _train_parts(bot: Bot, force: bool, only: set[str] | None) -> dict[str, float]:
    cfg = bot.config
    timings: dict[str, float] = {}
    if cfg.dialogue is not None or cfg.rasa is not None:  # an invalid dialogue is refused before minutes of training
        bot_dialogue(bot, action_names(bot))

    def wanted(part: str, path: Path, loads: Callable[[], object] | None = None) -> bool:
        """A part is (re)built when asked, missing, or when its saved model no longer loads."""
        if only is not None and part not in only:
            return False
        if force or not path.exists():
            return True
        if loads is None:
            return False
        try:
            loads()
        except Exception as exc:  # noqa: BLE001 - a model saved by an older version, or a corrupt file: rebuild it
            log.warning("%s model at %s does not load (%s): retraining", part, path, type(exc).__name__)
            return True
        return False

    def nlu_loads() -> object:
        from nlu.predict import NLUModel

        return NLUModel.load(bot.nlu_model)

    if wanted("nlu", bot.nlu_model / "model.safetensors", nlu_loads):
        from kefu.models_watch import unpublish_nlu

        t = time.perf_counter()
        train_nlu_model(bot, bot.nlu_model)
        unpublish_nlu(bot.models)  # the model just built is newer than any the console published
        timings["nlu"] = time.perf_counter() - t

    def generator_loads() -> object:  # an older Kefu's character-level generator fails here: retrained
        from runtime.nlg import NLG
        from runtime.templates import Templates

        return NLG.load(Templates.from_file(bot.path(cfg.domain)), bot.generator_model)

    if cfg.generation == "embedded" and wanted("generator", bot.generator_model / "config.json", generator_loads):
        from runtime.templates import Templates
        from runtime.train import train_generator

        t = time.perf_counter()
        train_generator(Templates.from_file(bot.path(cfg.domain)), bot.generator_model)
        timings["generator"] = time.perf_counter() - t

    for language in cfg.languages:  # one output classifier per reply language, shared by every bot
        if not wanted("toxicity", bot.toxicity_model / language / "model.safetensors"):
            continue
        with _exclusive(bot.toxicity_model):  # two bots trained at once build it once
            if (bot.toxicity_model / language / "model.safetensors").exists() and not force:
                continue
            from safety.train import train_language

            t = time.perf_counter()
            if not (shared_data() / f"toxicity_{language}").is_dir():
                raise MissingModel(f"toxicity_{language} training data not found in {shared_data()} "
                                   "(set KEFU_SHARED_DATA)")
            train_language(language, shared_data(), bot.toxicity_model / language)
            timings[f"toxicity_{language}"] = time.perf_counter() - t

    def injection_loads() -> object:
        from safety.injection import InjectionDetector

        return InjectionDetector.load(bot.injection_model)

    if wanted("injection", bot.injection_model / "model.safetensors", injection_loads):
        from safety.injection import train as train_injection

        t = time.perf_counter()
        if not (shared_data() / "snips").is_dir():
            raise MissingModel(f"the public intent data (snips, clinc150, cais) was not found in {shared_data()}: "
                               "the injection detector learns its benign messages from it (set KEFU_SHARED_DATA)")
        train_injection(bot.injection_model, shared_data(), extra_benign=bot.utterances())
        timings["injection"] = time.perf_counter() - t

    if cfg.dialogue is None and (only is None or "policy" in only):
        log.info("no learned policy for %s: its users are simulated from a dialogue.yml, and it has Python flows",
                 cfg.name)
    elif wanted("policy", bot.policy_model / "model.safetensors"):
        from kefu.policy_cli import train_policy

        t = time.perf_counter()
        train_policy(bot.root, bot.policy_model)  # simulated users derived from the bot, the NLU's measured noise
        timings["policy"] = time.perf_counter() - t

    if cfg.knowledge and (only is None or "knowledge" in only):
        t = time.perf_counter()
        bot.load_knowledge()  # encodes only when kb.yml or the NLU data changed
        timings["knowledge"] = time.perf_counter() - t

    if "policy" in timings and cfg.policy == "auto":  # a new policy: its gate needs the whole bot, built above
        t = time.perf_counter()
        gate = scenario_gate(bot)
        timings["policy_gate"] = time.perf_counter() - t
        log.info("learned policy gate: %s", "passed" if gate["passed"] else "; ".join(gate["reasons"]))
    return timings
