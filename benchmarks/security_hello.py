"""The "hello flood" of issue 19: one address opens conversations as fast as it can while customers chat.

One run starts one chat worker (``kefu serve`` with the demo bot and template replies, or ``--worker lite``: the
model-free stand-in of ``benchmarks/load.py``) on a fresh store, then, at the same time:

* **the flood**: ``--sockets`` connections from 127.0.0.1, each sending ``--per-socket`` times ``hello`` with a
  null conversation id followed by a message (``hello`` alone creates nothing any more), waiting for each
  answer: 250 x 8 = 2,000 by default, the issue's figure. It runs in a process of its own, so its clients do not
  delay the customers' event loop (the three processes still share the machine's CPUs);
* **customers**: ``--customers`` connections from other loopback addresses (127.0.0.2, ...), each one
  conversation with a turn every ``--think-time`` seconds; a turn's latency is from its send to its final reply.

It reports how many conversations the flood created (counted in the store) against the bound the limits allow
(``burst + rate x duration`` per address, at most ``per-connection`` per socket), how many attempts were refused
(``rate_limited``), and the customers' turn latency before and during the flood. ``--no-limits`` turns the
limits off (the behaviour before the fix, for comparison). Usage::

    python benchmarks/security_hello.py --json
    python benchmarks/security_hello.py --worker lite --json
    python benchmarks/security_hello.py --no-limits --json

``--json`` prints one JSON object: ``attempts, created, bound, refused, flood_s, latency_ms {before, during}
({p50, p95, p99, max, mean, n}), loadavg``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOAD = Path(__file__).resolve().parent / "load.py"  # its worker, store and statistics helpers are reused
_spec = importlib.util.spec_from_file_location("kefu_load_harness", LOAD)
assert _spec is not None and _spec.loader is not None
harness = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = harness
_spec.loader.exec_module(harness)  # also puts the repository (not this folder) first on sys.path

FLOOD_NICE = 10
DEFAULT_RATE, DEFAULT_BURST, DEFAULT_PER_CONNECTION = 0.5, 10, 3  # channels.server's defaults (checked at start)


@dataclass
class Limits:
    rate: float | None
    burst: int
    per_connection: int | None
    per_address: int | None = 64  # open connections per address (channels.server's default)

    def kefu_args(self) -> list[str]:
        return ["--conversation-rate", str(self.rate or 0), "--conversation-burst", str(self.burst),
                "--conversations-per-connection", str(self.per_connection or 0),
                "--connections-per-address", str(self.per_address or 0)]

    def options(self) -> dict[str, Any]:
        return {"conversation_rate": self.rate, "conversation_burst": self.burst,
                "conversations_per_connection": self.per_connection, "connections_per_address": self.per_address}

    def bound(self, sockets: int, per_socket: int, seconds: float) -> int:
        """The most conversations one address may create in ``seconds`` (one worker)."""
        most = sockets * per_socket
        if self.per_connection is not None:
            most = min(most, sockets * self.per_connection)
        if self.rate is not None:
            most = min(most, int(self.burst + self.rate * seconds))
        return most


@dataclass
class Flood:
    created: int = 0
    refused: int = 0
    sockets_refused: int = 0  # handshakes refused with HTTP 429 (connections per address)
    other: dict[str, int] = field(default_factory=dict)
    started: float = 0.0  # time.monotonic() (system-wide on Linux: comparable across processes)
    ended: float = 0.0


async def flood_process(url: str, sockets: int, per_socket: int) -> Flood:
    """Run :func:`flood` in a child process (``--flood URL``); its result."""
    # At a lower CPU priority: on a real deployment the attacker's CPU is on another machine, here it shares our two
    # cores, and without this the figure would measure the flood client's own CPU as much as the server's defences.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__).resolve()), "--flood", url, "--sockets", str(sockets),
        "--per-socket", str(per_socket), stdout=asyncio.subprocess.PIPE, env=harness.worker_env(),
        preexec_fn=lambda: os.nice(FLOOD_NICE),
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"the flood process failed ({proc.returncode})")
    return Flood(**json.loads(out.decode().strip().splitlines()[-1]))


async def flood(url: str, sockets: int, per_socket: int, result: Flood) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    async def one(k: int) -> None:
        try:
            ws = await connect(url, open_timeout=30, ping_interval=None)
        except InvalidStatus as exc:
            if exc.response.status_code != 429:
                raise
            result.sockets_refused += 1
            return
        async with ws:
            for j in range(per_socket):
                await ws.send(json.dumps({"type": "hello", "conversation_id": None}))
                await ws.send(json.dumps({"type": "message", "message_id": f"f{k}x{j}", "text": "hello"}))
                while True:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 60))
                    if frame.get("reply_to") != f"f{k}x{j}" or frame["type"] not in ("message", "error"):
                        continue
                    if frame["type"] == "message":
                        result.created += 1
                    elif frame["code"] == "rate_limited":
                        result.refused += 1
                    else:
                        result.other[frame["code"]] = result.other.get(frame["code"], 0) + 1
                    break

    result.started = time.monotonic()
    await asyncio.gather(*(one(k) for k in range(sockets)))
    result.ended = time.monotonic()


async def customer(url: str, index: int, think: float, stop: asyncio.Event,
                   turns: list[tuple[float, float]]) -> str:
    """One customer from 127.0.0.<index + 2>: turns until ``stop``; appends (sent_at, latency) to ``turns``."""
    from websockets.asyncio.client import connect

    async with connect(url, local_addr=(f"127.0.0.{index + 2}", 0), ping_interval=None) as ws:
        await ws.send(json.dumps({"type": "hello", "conversation_id": None, "language": "en"}))
        conversation_id = ""
        k = 0
        while not stop.is_set():
            message_id = f"c{index}t{k}"
            sent = time.monotonic()
            await ws.send(json.dumps({"type": "message", "message_id": message_id,
                                      "text": "where is my order 10234" if k % 2 else "hello"}))
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 60))
                if frame["type"] == "session":
                    conversation_id = frame["conversation_id"]
                if frame.get("reply_to") == message_id and frame["type"] in ("message", "error"):
                    if frame["type"] == "error":
                        raise SystemExit(f"customer {index} got an error: {frame}")
                    turns.append((sent, time.monotonic() - sent))
                    break
            k += 1
            await asyncio.sleep(think)
        return conversation_id


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from channels.server import ServerOptions
    from dialogue.store import Store

    defaults = ServerOptions()
    assert (defaults.conversation_rate, defaults.conversation_burst, defaults.conversations_per_connection) == (
        DEFAULT_RATE, DEFAULT_BURST, DEFAULT_PER_CONNECTION), "update this benchmark's defaults"
    limits = Limits(None, 1, None, None) if args.no_limits else Limits(
        args.conversation_rate, args.conversation_burst, args.per_connection, args.per_address or None)
    tmp = tempfile.TemporaryDirectory(prefix="kefu-hello-")
    db = None
    if args.pg_url:
        db = await harness.create_database(args.pg_url)
        store_url = db.url
    else:
        store_url = f"sqlite+aiosqlite:///{Path(tmp.name) / 'kefu.db'}"
    port = harness.free_port()
    url = f"ws://127.0.0.1:{port}/ws"
    if args.worker == "lite":
        argv = [sys.executable, str(LOAD), "--serve-lite", "--port", str(port),
                "--store", store_url, "--server-options", json.dumps(limits.options())]
    else:
        argv = [sys.executable, "-m", "kefu.cli", "serve", "--bot", str(harness.DEFAULT_BOT), "--host", "127.0.0.1",
                "--port", str(port), "--store", store_url, "--generation", "template", "--log-format", "json",
                "--no-console", *limits.kefu_args()]
    worker = harness.Worker(0, argv, harness.worker_env())
    report: dict[str, Any] = {"worker": args.worker, "store": "postgresql" if db else "sqlite",
                              "limits": limits.options(), "sockets": args.sockets, "per_socket": args.per_socket,
                              "attempts": args.sockets * args.per_socket, "customers": args.customers,
                              "cpus": os.cpu_count(), "loadavg_start": [round(x, 2) for x in os.getloadavg()]}
    try:
        await worker.start()
        t_start = time.monotonic()
        while not worker.ready.is_set():
            if not worker.alive:
                await asyncio.sleep(0.5)
                raise SystemExit("the worker exited:\n" + "\n".join(worker.tail))
            if time.monotonic() - t_start > 300:
                raise SystemExit("the worker did not start within 300 s")
            await asyncio.sleep(0.2)
        harness.note(f"worker listening on port {port} after {time.monotonic() - t_start:.1f} s")

        stop = asyncio.Event()
        turns: list[tuple[float, float]] = []
        customers = [asyncio.create_task(customer(url, i, args.think_time, stop, turns))
                     for i in range(args.customers)]
        await asyncio.sleep(args.quiet)  # customers alone first: the latency before the flood
        cpu_before = worker.cpu_seconds()
        result = await flood_process(url, args.sockets, args.per_socket)
        cpu_after = worker.cpu_seconds()
        flood_start, flood_end = result.started, result.ended
        if cpu_before is not None and cpu_after is not None:
            report["worker_cpu_s_during_flood"] = round(cpu_after - cpu_before, 2)
        stop.set()
        customer_ids = set(await asyncio.gather(*customers))
        report["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        await worker.stop()
    store = await Store.open(store_url)
    try:
        rows = await store.count_conversations()
    finally:
        await store.close()
        if db is not None:
            await harness.drop_database(db)
        tmp.cleanup()
    flood_s = flood_end - flood_start
    during = [latency for sent, latency in turns if flood_start <= sent < flood_end]
    before = [latency for sent, latency in turns if sent < flood_start]
    report.update(
        created=rows - len(customer_ids),
        bound=limits.bound(args.sockets, args.per_socket, flood_s),
        refused=result.refused,
        sockets_refused=result.sockets_refused,
        answered=result.created,
        other_errors=result.other,
        flood_s=round(flood_s, 2),
        latency_ms={"before": harness.summary_ms(before), "during": harness.summary_ms(during)},
        # when the slowest turns during the flood were sent (seconds after its start) and took (ms)
        slowest_during=sorted(([round(sent - flood_start, 2), round(latency * 1000, 1)] for sent, latency in turns
                               if flood_start <= sent < flood_end), key=lambda x: -x[1])[:5],
    )
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", choices=["kefu", "lite"], default="kefu")
    ap.add_argument("--sockets", type=int, default=250)
    ap.add_argument("--per-socket", type=int, default=8)
    ap.add_argument("--customers", type=int, default=4)
    ap.add_argument("--think-time", type=float, default=0.2, help="seconds between a customer's reply and next turn")
    ap.add_argument("--quiet", type=float, default=3.0, help="seconds of customers alone before the flood")
    ap.add_argument("--conversation-rate", type=float, default=DEFAULT_RATE)
    ap.add_argument("--conversation-burst", type=int, default=DEFAULT_BURST)
    ap.add_argument("--per-connection", type=int, default=DEFAULT_PER_CONNECTION)
    ap.add_argument("--per-address", type=int, default=64, help="open connections per address (0: no limit)")
    ap.add_argument("--no-limits", action="store_true", help="no limits on new conversations (before the fix)")
    ap.add_argument("--pg-url", default=None, help="an admin PostgreSQL URL (a fresh database beside it); "
                                                   "default: a temporary SQLite file")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--flood", metavar="URL", default=None, help=argparse.SUPPRESS)  # the flood's own process
    args = ap.parse_args(argv)
    if args.flood:
        result = Flood()
        asyncio.run(flood(args.flood, args.sockets, args.per_socket, result))
        print(json.dumps(result.__dict__))
        return 0
    report = asyncio.run(run(args))
    if args.json:
        print(json.dumps(report, sort_keys=True))
    else:
        for key, value in sorted(report.items()):
            print(f"{key}: {value}")
    return 0 if report["created"] <= report["bound"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
