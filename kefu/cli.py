"""The ``kefu`` command line (typer). Sub-commands import their heavy dependencies lazily."""

from __future__ import annotations

import asyncio
import signal
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from kefu.app import DEFAULT_BOT, MissingModel, running_bot, settle_heap, train_bot
from kefu.errors import KefuError
from kefu.flows_cli import app as flows_app
from kefu.init_cli import init as init_command
from kefu.policy_cli import app as policy_app
from kefu.rasa_cli import import_app, test_app
from kefu.retention_cli import app as conversations_app
from kefu.users_cli import app as users_app


def _startup_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean the bot cannot start (bad config, missing/corrupt model, dead database): one clear line."""
    from dialogue.errors import DialogueError
    from nlu.errors import NLUError
    from policy.errors import PolicyError
    from runtime.errors import GenerationError
    from safety.errors import SafetyError

    return (MissingModel, KefuError, DialogueError, NLUError, GenerationError, SafetyError, PolicyError)
from nlu.cli import app as nlu_app
from runtime.cli import app as runtime_app
from safety.cli import app as safety_app

app = typer.Typer(help="Kefu: multi-turn customer-service chatbots.", no_args_is_help=True)
app.add_typer(nlu_app, name="nlu", help="Train and evaluate the joint BiLSTM-CRF NLU model.")
app.add_typer(safety_app, name="safety", help="Train and evaluate the toxicity classifier.")
app.add_typer(runtime_app, name="runtime", help="Train, serve and benchmark the reply generator.")
app.add_typer(policy_app, name="policy", help="Train and evaluate the deep-RL dialogue policy.")
scenarios_app = typer.Typer(help="Replay scripted conversations (YAML).", no_args_is_help=True)
app.add_typer(scenarios_app, name="scenarios")
app.add_typer(conversations_app, name="conversations")
app.add_typer(users_app, name="users")
app.add_typer(flows_app, name="flows")
app.add_typer(import_app, name="import")
app.add_typer(test_app, name="test")
app.command("init")(init_command)

console = Console(stderr=True)
BotOption = Annotated[Path, typer.Option("--bot", help="The bot folder (holds bot.yml).")]


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(2)


@app.command()
def serve(
    bot: BotOption = DEFAULT_BOT,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    store: Annotated[str | None, typer.Option(help="SQLAlchemy async URL; overrides bot.yml.")] = None,
    generation: Annotated[str | None, typer.Option(help="embedded | template | an OpenAI-compatible URL; overrides bot.yml.")] = None,
    reuse_port: Annotated[bool, typer.Option("--reuse-port", help="SO_REUSEPORT: several `kefu serve` workers share --port.")] = False,
    log_format: Annotated[str, typer.Option("--log-format", help="text | json (one JSON object per line).")] = "text",
    max_connections: Annotated[int, typer.Option(help="Open WebSocket connections before new ones get HTTP 503.")] = 10_000,
    console_host: Annotated[str, typer.Option(help="Interface of the staff console (keep it private).")] = "127.0.0.1",
    console_port: Annotated[int, typer.Option(help="TCP port of the staff console.")] = 8001,
    console_origin: Annotated[list[str] | None, typer.Option(help="The console's public origin behind a proxy, e.g. https://ops.shop.example (repeatable).")] = None,
    no_console: Annotated[bool, typer.Option("--no-console", help="Do not serve the console (e.g. extra workers).")] = False,
    public_metrics: Annotated[bool, typer.Option("--public-metrics", help="Also serve /metrics on the public chat port (off: the business's counters are not the public's).")] = False,
    conversation_rate: Annotated[float | None, typer.Option(help="New chat conversations per second and client address (token bucket; 0: no limit) [default: 0.5].")] = None,
    conversation_burst: Annotated[int | None, typer.Option(help="Bucket size of --conversation-rate [default: 10].")] = None,
    conversations_per_connection: Annotated[int | None, typer.Option(help="New chat conversations one WebSocket connection may create (0: no limit) [default: 3].")] = None,
    connections_per_address: Annotated[int | None, typer.Option(help="Open WebSocket connections one client address may hold before HTTP 429 (0: no limit) [default: 64].")] = None,
    turns_per_address: Annotated[int | None, typer.Option(help="Chat turns of one client address running at once in a worker; its others wait their turn (0: no limit) [default: 2].")] = None,
    trusted_proxy: Annotated[list[str] | None, typer.Option(help="IP/network of a reverse proxy whose X-Forwarded-For names the chat client (repeatable).")] = None,
    admission_budget_ms: Annotated[float | None, typer.Option(min=0, help="Answer a new chat message `busy` (retry later) when it would wait longer than this many ms in this worker; GET /ready says 503 meanwhile (0: never) [default: bot.yml's admission_budget_ms].")] = None,
    metrics_dir: Annotated[Path | None, typer.Option("--metrics-dir", help="Directory shared by the workers of one port: /metrics serves all of them together (prometheus-client multiprocess mode; sets PROMETHEUS_MULTIPROC_DIR; empty it before starting the workers).")] = None,
) -> None:
    """Serve the chat widget and WebSocket endpoint, and the staff console on its own port."""
    from kefu.logs import FORMATS, configure, console_to_log

    if log_format not in FORMATS:
        raise _fail(f"--log-format must be one of {', '.join(FORMATS)}")
    configure(log_format)
    say = console.print if log_format == "text" else console_to_log  # JSON mode: every stderr line is JSON
    if metrics_dir is not None:  # before prometheus_client is imported: it picks its mode once, from this variable
        import os

        metrics_dir.mkdir(parents=True, exist_ok=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir.resolve())
    from channels.metrics import Metrics
    from channels.server import ServerOptions, run_server
    from kefu.serving import ServingBackend

    try:
        metrics = Metrics()
    except RuntimeError as exc:  # PROMETHEUS_MULTIPROC_DIR not a directory, or set too late
        raise _fail(str(exc)) from exc
    limits: dict[str, Any] = {}  # only what was given: ServerOptions holds the defaults
    if conversation_rate is not None:
        limits["conversation_rate"] = conversation_rate if conversation_rate > 0 else None
    if conversation_burst is not None:
        limits["conversation_burst"] = conversation_burst
    if conversations_per_connection is not None:
        limits["conversations_per_connection"] = conversations_per_connection or None
    if connections_per_address is not None:
        limits["connections_per_address"] = connections_per_address or None
    if turns_per_address is not None:
        limits["turns_per_address"] = turns_per_address or None
    try:
        options = ServerOptions(
            reuse_port=reuse_port, max_connections=max_connections, public_metrics=public_metrics,
            trusted_proxies=tuple(trusted_proxy or ()), **limits,
        )
    except ValueError as exc:
        raise _fail(f"invalid chat limits: {exc}") from exc

    async def main() -> None:
        import dataclasses
        from contextlib import AsyncExitStack

        from channels.ops import OpsOptions, run_ops_server
        from kefu.console import Console as ConsoleBackend
        from kefu.console import nlu_files

        async with AsyncExitStack() as stack:
            running = await stack.enter_async_context(running_bot(bot, store_url=store, generation=generation))
            budget_ms = running.bot.config.admission_budget_ms if admission_budget_ms is None else admission_budget_ms
            chat_options = dataclasses.replace(options, admission_budget=budget_ms / 1000.0 if budget_ms else None)
            server = await stack.enter_async_context(run_server(
                ServingBackend(running.engine, metrics), host=host, port=port, options=chat_options, metrics=metrics
            ))
            say(f"Kefu is serving [bold]{running.bot.config.name}[/bold] on http://{host}:{server.port}/")
            settle_heap()  # the models are loaded: out of the collector's full passes (see settle_heap)
            from kefu.models_watch import NLUWatcher, watching_nlu
            from nlu.predict import NLUModel

            await stack.enter_async_context(watching_nlu(NLUWatcher(  # the console's retrains, swapped in
                running.engine, running.bot.models, NLUModel.load, running.nlu_folder or running.bot.nlu_model)))
            if not no_console:
                ops = await stack.enter_async_context(run_ops_server(
                    ConsoleBackend(running.engine, nlu_files(running.bot),
                                   auto_assign=running.bot.config.handoff.auto_assign),
                    host=console_host, port=console_port,
                    options=OpsOptions(origins=tuple(console_origin) if console_origin else None, reuse_port=reuse_port,
                                       trainer=(sys.executable, "-m", "kefu.cli", "retrain-nlu", "--bot",
                                                str(running.bot.root)),
                                       training_dir=running.bot.models),
                    metrics=metrics,  # the chat server's counters, for staff: GET /metrics on the console port
                ))
                say(f"Staff console on {ops.url}/console")
                if not await running.engine.store.list_users():
                    say("  no console accounts yet: [bold]kefu users add NAME --role admin[/bold]")
            days = running.bot.config.retention_days
            if days is not None:
                from dialogue.retention import expire_every

                expiry = asyncio.create_task(expire_every(running.engine.store, days))
                stack.callback(expiry.cancel)
                say(f"  conversations idle for more than {days:g} days are erased hourly")
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()

    try:
        asyncio.run(main())
    except _startup_errors() as exc:
        raise _fail(f"{type(exc).__name__}: {exc}") from exc


@app.command()
def train(
    bot: BotOption = DEFAULT_BOT,
    force: Annotated[bool, typer.Option(help="Retrain models that already exist.")] = False,
) -> None:
    """Train every model of a bot that is missing: NLU, reply generator, toxicity classifiers, policy, KB index."""
    try:
        timings = train_bot(bot, force=force)
    except _startup_errors() as exc:
        raise _fail(f"{type(exc).__name__}: {exc}") from exc
    if not timings:
        console.print("all models are up to date")
    for part, seconds in timings.items():
        console.print(f"{part}: {seconds:.1f} s")


@app.command("retrain-nlu")
def retrain_nlu_command(
    bot: BotOption = DEFAULT_BOT,
    progress: Annotated[Path | None, typer.Option(help="A JSON file rewritten after every epoch (the console reads it).")] = None,
) -> None:
    """Retrain the NLU into a new folder and publish it: running `kefu serve` workers swap it in (the console's
    retrain runs this)."""
    from kefu.models_watch import retrain_nlu

    try:
        folder = retrain_nlu(bot, progress)
    except _startup_errors() as exc:
        raise _fail(f"{type(exc).__name__}: {exc}") from exc
    console.print(f"published {folder.name}")


@scenarios_app.command("run")
def scenarios_run(
    paths: Annotated[list[Path], typer.Argument(help="Scenario files or folders.")],
    bot: BotOption = DEFAULT_BOT,
    generation: Annotated[str | None, typer.Option(help="embedded | template | an OpenAI-compatible URL; overrides bot.yml.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show passing scenarios' turns too.")] = False,
) -> None:
    """Replay scenarios against the bot (on a throw-away SQLite store); exit 1 if any fails."""
    from dialogue.scenarios import Scenario, ScenarioError, discover, run_scenario

    async def main() -> list[bool]:
        files = discover(paths)
        scenarios = [Scenario.load(p) for p in files]
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite+aiosqlite:///{tmp}/scenarios.db"
            async with running_bot(bot, store_url=url, generation=generation) as running:
                results = []
                for scenario in scenarios:
                    result = await run_scenario(running.engine, scenario)  # type: ignore[arg-type]
                    if verbose or not result.passed:
                        print(result.describe())
                    else:
                        print(f"PASS  {scenario.name}")
                    results.append(result.passed)
                return results

    try:
        results = asyncio.run(main())
    except (ScenarioError, *_startup_errors()) as exc:  # type: ignore[misc]
        raise _fail(f"{type(exc).__name__}: {exc}") from exc
    failed = results.count(False)
    print(f"\n{len(results) - failed} passed, {failed} failed")
    raise typer.Exit(1 if failed else 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
