"""The console's login under attack (issue 19): a burst of concurrent guesses, and customers' turns during a flood.

One process, like ``kefu serve``: the chat server and the staff console on one engine and one store (a fresh
SQLite file, or ``--store``), with the console's default settings (5 attempts per address and per account at an
address in 5 minutes; one password thread, 8 waiting). The engine is the demo shop bot with its real models
(``--worker kefu``, template replies unless ``--generation``) or the model-free engine of the channel tests
(``--worker lite``, the default: it runs before ``kefu train``). Two measurements:

1. **race** (``--rounds`` times, each from a fresh loopback address): ``--guesses`` wrong passwords for one account
   plus the right one, all sent at once; the password checks that really ran (``channels.auth.verify_password``
   calls, counted) and the statuses; then the right password alone, which must be refused while throttled.
2. **flood**: ``--customers`` customers chat over WebSocket (``benchmarks/load.py``'s ``Customer``), ``--turns``
   turns each with ``--think-time`` between them, first alone (``baseline``), then while the console receives a
   wave of ``--flood`` simultaneous logins every ``--flood-interval`` seconds (``--flood-waves`` of them, while
   the customers last), every login from its own fresh loopback address (the throttle lets each through: the
   worst case for password hashing). Turn latency (p50/p95/p99) and the logins' outcomes. With ``--compare``
   the flood runs once more with password checks on the default executor, as the console did before
   (``asyncio.to_thread``, no bound): the before/after figure on the same machine.

The flood's clients are raw sockets on the same event loop as the servers (cheap next to 60 argon2 checks, and
they can only make the customers' figures worse). Usage::

    python benchmarks/security_login.py --json
    python benchmarks/security_login.py --worker kefu --compare --json

``--json`` prints one JSON object: ``worker, race {rounds, verify_calls, max_verify_calls, statuses,
right_after}, flood {baseline, pool, default_executor?} (latency_ms {p50, p95, p99, max, mean, n}, logins,
waves), loadavg``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import importlib.util
import json
import logging
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

LOAD = Path(__file__).resolve().parent / "load.py"  # its customers and statistics are reused
_spec = importlib.util.spec_from_file_location("kefu_load_harness", LOAD)
assert _spec is not None and _spec.loader is not None
harness = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = harness
_spec.loader.exec_module(harness)  # also puts the repository (not this folder) first on sys.path

from channels import auth

ACCOUNT, PASSWORD = "agent", "agent-password-benchmark"


class VerifyCounter:
    """Wraps ``channels.auth.verify_password`` (the console looks it up at each call): counts the real checks."""

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()
        self._real: Callable[[str, str], bool] = auth.verify_password

    def __call__(self, password_hash: str, password: str) -> bool:
        with self._lock:
            self.calls += 1
        return self._real(password_hash, password)


@dataclasses.dataclass
class Stack:
    chat_url: str
    ops: Any
    engine: Any


@contextlib.asynccontextmanager
async def serving(args: argparse.Namespace) -> AsyncIterator[Stack]:
    """The chat server and the console on one engine, as ``kefu serve`` runs them."""
    from channels.metrics import Metrics
    from channels.ops import run_ops_server
    from channels.server import ServerOptions, run_server
    from kefu.console import Console
    from kefu.serving import ServingBackend

    folder = Path(tempfile.mkdtemp(prefix="kefu-login-"))
    store_url = args.store or f"sqlite+aiosqlite:///{folder / 'kefu.db'}"
    async with contextlib.AsyncExitStack() as stack:
        if args.worker == "kefu":
            from kefu.app import DEFAULT_BOT, running_bot

            running = await stack.enter_async_context(
                running_bot(DEFAULT_BOT, store_url=store_url, generation=args.generation)
            )
            engine = running.engine
        else:
            from dialogue.store import Store
            from tests.channels.conftest import light_engine  # the channel tests' model-free engine

            store = await Store.open(store_url)
            stack.push_async_callback(store.close)
            engine = light_engine(store)
        await engine.store.add_user(ACCOUNT, await asyncio.to_thread(auth.hash_password, PASSWORD), "agent")
        metrics = Metrics()
        fields = {f.name for f in dataclasses.fields(ServerOptions)}
        chat_options: dict[str, Any] = {"turn_timeout": 60.0}  # the customers all come from 127.0.0.1:
        chat_options.update({k: None for k in ("conversation_rate", "turns_per_address") if k in fields})
        chat = await stack.enter_async_context(
            run_server(ServingBackend(engine, metrics), port=0, metrics=metrics, options=ServerOptions(**chat_options))
        )
        ops = await stack.enter_async_context(run_ops_server(Console(engine), port=0, metrics=metrics))
        from kefu.app import settle_heap

        settle_heap()  # as kefu serve does once it is up
        yield Stack(f"ws://127.0.0.1:{chat.port}/ws", ops, engine)


async def login(port: int, address: str, password: str) -> int:
    """One login over a raw socket from ``address``; the HTTP status (0: the connection failed)."""
    body = json.dumps({"username": ACCOUNT, "password": password}).encode()
    head = (
        f"POST /api/login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(address, 0))
    except OSError:
        return 0
    try:
        writer.write(head + body)
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 120)
        return int(status.split()[1]) if status.startswith(b"HTTP/") else 0
    except (OSError, TimeoutError, ValueError, IndexError):
        return 0
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


# --------------------------------------------------------------------------------------------------- race
async def race(stack: Stack, counter: VerifyCounter, rounds: int, guesses: int) -> dict[str, Any]:
    port = stack.ops.port
    verify_calls: list[int] = []
    statuses: collections.Counter[str] = collections.Counter()
    right_after: list[int] = []
    for r in range(rounds):
        address = f"127.0.{10 + r}.1"
        before = counter.calls
        passwords = [f"wrong-password-{i:03d}" for i in range(guesses)] + [PASSWORD]
        results = await asyncio.gather(*(login(port, address, pw) for pw in passwords))
        verify_calls.append(counter.calls - before)
        statuses.update(str(s) for s in results[:-1])
        statuses.update(f"right:{results[-1]}" for _ in [0])
        right_after.append(await login(port, address, PASSWORD))
    return {
        "rounds": rounds,
        "attempts_per_round": guesses + 1,
        "verify_calls": verify_calls,
        "max_verify_calls": max(verify_calls),
        "statuses": dict(sorted(statuses.items())),
        "right_after": dict(collections.Counter(str(s) for s in right_after)),
    }


# -------------------------------------------------------------------------------------------------- flood
async def customers(stack: Stack, args: argparse.Namespace, tag: str) -> list[float]:
    """``--customers`` simulated customers, ``--turns`` each; the latencies (s) of their answered turns."""
    scripts = harness.load_scripts()
    stats = harness.Stats()
    rng = random.Random(7)
    deadline = time.monotonic() + args.time_limit
    people = []
    for i in range(args.customers):
        language, texts = harness.script_for(scripts, i, args.turns)
        people.append(harness.Customer(i, stack.chat_url, language, texts, f"{tag}{os.getpid()}", args.think_time,
                                       rng, stats, deadline))
    await asyncio.gather(*(c.run(0.05 * i) for i, c in enumerate(people)))
    return [t.latency for c in people for t in c.turns if t.latency is not None]


async def flood(stack: Stack, args: argparse.Namespace, tag: str) -> dict[str, Any]:
    """Customers chat while a wave of ``--flood`` logins (each from a fresh address) hits the console every
    ``--flood-interval`` seconds, whether the previous wave was answered or not (at most ``--flood-waves``)."""
    outcomes: collections.Counter[str] = collections.Counter()
    logins: list[asyncio.Task[int]] = []

    async def waves() -> None:
        for w in range(min(args.flood_waves, 250 * 250)):
            addresses = [f"127.{100 + w // 250}.{w % 250}.{i + 1}" for i in range(args.flood)]
            logins.extend(asyncio.create_task(login(stack.ops.port, a, "wrong-password-flood")) for a in addresses)
            await asyncio.sleep(args.flood_interval)

    flooder = asyncio.create_task(waves())
    try:
        latencies = await customers(stack, args, tag)
    finally:
        flooder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flooder
    outcomes.update(str(s) for s in await asyncio.gather(*logins))
    return {"latency_ms": harness.summary_ms(latencies), "logins": dict(sorted(outcomes.items())),
            "waves": len(logins) // max(1, args.flood)}


class _DefaultExecutorSlot:
    """A password "slot" that runs on ``asyncio.to_thread``, never refuses: the console before the fix."""

    def release(self) -> None:
        pass

    async def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)


def use_default_executor(ops: Any) -> None:
    """The console as it was before the fix, for ``--compare``: checks on ``asyncio.to_thread``, unbounded."""
    ops.passwords.reserve = _DefaultExecutorSlot


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    counter = VerifyCounter()
    auth.verify_password = counter  # type: ignore[assignment]
    async with serving(args) as stack:
        result: dict[str, Any] = {"worker": args.worker, "generation": args.generation}
        harness.note("race: concurrent guesses")
        result["race"] = await race(stack, counter, args.rounds, args.guesses)
        harness.note("flood: baseline")
        flood_results: dict[str, Any] = {
            "baseline": {"latency_ms": harness.summary_ms(await customers(stack, args, "b"))}
        }
        harness.note("flood: with the password pool")
        flood_results["pool"] = await flood(stack, args, "p")
        if args.compare:
            harness.note("flood: password checks on the default executor (before the fix)")
            use_default_executor(stack.ops)
            flood_results["default_executor"] = await flood(stack, args, "d")
        result["flood"] = flood_results
        result["verify_calls_total"] = counter.calls
    result["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", choices=["lite", "kefu"], default="lite")
    ap.add_argument("--generation", default="template", help="kefu worker: embedded | template | a URL")
    ap.add_argument("--store", default=None, help="SQLAlchemy async URL (default: a fresh SQLite file)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--guesses", type=int, default=40)
    ap.add_argument("--flood", type=int, default=60, help="simultaneous logins per wave")
    ap.add_argument("--flood-interval", type=float, default=1.0, help="seconds between two waves")
    ap.add_argument("--flood-waves", type=int, default=5, help="at most this many waves")
    ap.add_argument("--customers", type=int, default=4)
    ap.add_argument("--turns", type=int, default=30)
    ap.add_argument("--think-time", type=float, default=0.05)
    ap.add_argument("--time-limit", type=float, default=300.0)
    ap.add_argument("--compare", action="store_true", help="also flood with checks on the default executor")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    logging.getLogger("kefu").setLevel(logging.ERROR)  # one "login throttled" line per refused guess otherwise
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    result = asyncio.run(measure(args))
    if args.json:
        print(json.dumps(result))
    else:
        race_ = result["race"]
        print(f"race: {race_['attempts_per_round']} logins at once, password checks per round "
              f"{race_['verify_calls']}, right password afterwards {race_['right_after']}")
        for name, part in result["flood"].items():
            print(f"{name:>16}: turn latency {part['latency_ms']}, logins {part.get('logins', {})}")
        print(f"load average {result['loadavg']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
