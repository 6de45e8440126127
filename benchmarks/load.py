"""Load and fault harness: N ``kefu serve`` workers on one PostgreSQL database, simulated customers over WebSocket.

Everything runs on the loopback interface and is bounded in count (``--conversations`` x ``--turns``) and in time
(``--time-limit``). One run:

1. creates a fresh database ``kefu_load_<random>`` on the PostgreSQL server of ``--pg-url`` (dropped afterwards);
   with ``--restart-postgres-at`` a private PostgreSQL cluster is created for the run instead (``initdb`` in a
   temporary folder, on a free port), so restarting it disturbs nobody else;
2. starts ``--workers`` ``kefu serve --reuse-port --no-console --log-format json --conversation-rate 0
   --connections-per-address 0 --turns-per-address 0`` processes
   on one free port (SO_REUSEPORT: the kernel spreads connections over them), one torch thread each; every
   customer comes from 127.0.0.1, so the per-address limits on new conversations, open connections and turns
   running at once are off
   (their own figure is ``benchmarks/security_hello.py``);
3. runs ``--conversations`` simulated customers, started over ``--ramp`` seconds. Each replays the user messages of
   the English or Chinese scenarios in ``scenarios/`` (alternating), ``--turns`` messages, with client message
   ids and a random think time between turns (uniform, mean ``--think-time`` s). A customer sends ``hello`` with
   its ``user`` id and, after a reconnect, its conversation id and the resume secret its first ``session`` frame
   gave it; it resends an unanswered message (same id) after
   a dropped connection or an error frame, with back-off, and after a ``busy`` frame (admission control,
   ``--admission-budget-ms``) once its ``retry_after_ms`` (plus up to 50% jitter) has passed. A turn's latency is the
   customer's: from the first send of the message to its final reply, resends included;
4. optionally kills one worker with SIGKILL (``--kill-worker-at``: its customers reconnect to the other workers
   and resume) or restarts PostgreSQL (``--restart-postgres-at``: errors while it is down must be clean
   ``store_unavailable`` frames; recovery is timed from the moment it accepts connections again);
   With ``--swap-nlu-at`` a new NLU model is published at that time while the customers talk, as the console's
   retrain does (``--swap-source retrain``: ``kefu retrain-nlu`` trains one, on the same cores; ``copy``: a copy
   of the served model, to time the swap alone), and every worker must swap it in between turns (their
   ``NLU model ... swapped in`` log line); the bot's models are left as they were afterwards;
5. checks the store against every customer's transcript: ``lost`` (a message the customer got a reply for is not
   stored, or the reply is not), ``duplicated`` (a message or reply stored twice), ``reordered`` (stored messages
   out of the customer's order: messages outside the longest in-order subsequence), ``mismatched`` (the stored
   reply text differs from the one received), ``conversation_changed`` (a reconnect landed in another
   conversation);
6. optionally (``--long-conversation N``) runs one N-turn conversation (0.15 s between turns, under the rate
   limit), then alternates its last 50 turns with the turns of five fresh 10-turn conversations, and compares
   their latencies.

Usage::

    python benchmarks/load.py --conversations 500 --turns 10 --workers 2 --generation template --json
    python benchmarks/load.py --conversations 500 --turns 10 --workers 2 --generation embedded --json
    python benchmarks/load.py --conversations 100 --turns 10 --kill-worker-at 20 --json
    python benchmarks/load.py --conversations 100 --turns 10 --restart-postgres-at 20 --json
    python benchmarks/load.py --conversations 0 --long-conversation 1000 --json
    python benchmarks/load.py --conversations 32 --turns 5 --workers 1 --think-time 1 --generation embedded --json
    python benchmarks/load.py --conversations 300 --turns 10 --think-time 10 --swap-nlu-at 30 --swap-source retrain --json

``--json`` prints one JSON object with at least ``conversations, turns, turns_per_s, errors, lost, duplicated,
reordered, latency_ms {p50, p95, p99}``, ``first_token_ms`` (first send to the reply's first streamed ``token`` frame,
over the turns that streamed one) and the admission counts: ``turns_admitted`` (answered without ever being
answered ``busy``), ``turns_shed`` (answered ``busy`` at least once), ``turns_shed_then_answered`` (of those, retried
until answered), ``latency_ms_admitted`` / ``latency_ms_shed`` (the two kinds' waits, retries included), ``busy_frames`` (every ``busy`` frame, by reason in ``busy_by_reason``) and ``busy_retry_after_ms``.
A shed message is not stored, so the store checks below hold for shed and retried turns too. ``--worker lite`` serves a model-free stand-in of the bot (every message
is a greeting, replies from templates; same server, engine and store) for the harness's own quick tests.

The report's statistics (percentiles, admission counts, what a fault cost, the store check's comparison) are
:mod:`benchmarks.load_report`'s, pure. What stays here is one harness and stays one file (~800 lines): PostgreSQL,
the workers, the customers, the fault schedule, the lite worker and the command line are the parts of one run, and
``benchmarks/security_*.py`` and ``tests/kefu/test_faults.py`` load or run it by its path as one module.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this folder comes first on sys.path, and benchmarks/nlu.py would shadow the nlu package.
sys.path[:] = [p for p in sys.path if not p or Path(p).resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

from benchmarks.load_report import (  # the report's statistics (pure); security_*.py use them through this module
    Stats,
    Turn,
    admission_counts,
    kill_report,
    percentile,
    restart_report,
    store_check,
    summary_ms,
    swap_report,
)

SCENARIOS = ROOT / "scenarios"
DEFAULT_BOT = ROOT / "examples" / "shop"
RETRYABLE = {"busy", "rate_limited", "timeout", "store_unavailable", "internal", "not_found"}
PG_BIN = Path("/usr/lib/postgresql")


def note(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------------------------------------------ scripts
def load_scripts() -> dict[str, list[list[str]]]:
    """The user messages of every scenario, by language: ``{"en": [[msg, ...], ...], "zh": [...]}``."""
    import yaml

    scripts: dict[str, list[list[str]]] = {"en": [], "zh": []}
    for path in sorted(SCENARIOS.glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        language = str(data.get("language", "en"))
        texts = [str(t["user"]) for t in data.get("turns", []) if isinstance(t, dict) and t.get("user")]
        if texts and language in scripts:
            scripts[language].append(texts)
    return scripts


def script_for(scripts: dict[str, list[list[str]]], index: int, turns: int) -> tuple[str, list[str]]:
    """Customer ``index``'s language and ``turns`` messages: its language's scenarios, one after another."""
    language = "en" if index % 2 == 0 else "zh"
    pool = scripts[language] or scripts["en"]
    texts: list[str] = []
    k = index // 2
    while len(texts) < turns:
        texts.extend(pool[k % len(pool)])
        k += 1
    return language, texts[:turns]


# ------------------------------------------------------------------------------------------------------ postgres
@dataclass
class Database:
    """The run's database: ``url`` for Kefu (asyncpg driver), ``dsn`` for direct checks."""

    dsn: str
    url: str
    admin_dsn: str
    name: str
    cluster: PrivateCluster | None = None


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def create_database(admin_dsn: str) -> Database:
    import asyncpg

    name = f"kefu_load_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = admin_dsn.rsplit("/", 1)[0]
    return Database(dsn=f"{base}/{name}", url=f"{base}/{name}".replace("postgresql://", "postgresql+asyncpg://", 1),
                    admin_dsn=admin_dsn, name=name)


async def drop_database(db: Database) -> None:
    import asyncpg

    with contextlib.suppress(Exception):
        conn = await asyncpg.connect(db.admin_dsn, timeout=10)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)')
        finally:
            await conn.close()


class PrivateCluster:
    """A throw-away PostgreSQL cluster (``initdb`` in a temp folder) that this run may restart at will."""

    def __init__(self) -> None:
        versions = sorted(PG_BIN.glob("*/bin/pg_ctl"))
        if not versions:
            raise SystemExit("--restart-postgres-at needs PostgreSQL's server binaries (pg_ctl, initdb)")
        self.bin = versions[-1].parent
        self.dir = Path(tempfile.mkdtemp(prefix="kefu_load_pg_"))
        self.port = free_port()
        self._as_postgres: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root: run the cluster as the postgres user
            shutil.chown(self.dir, "postgres")
            self._as_postgres = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as_postgres, *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    @property
    def _opts(self) -> str:
        return f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"

    def start(self) -> None:
        self._run(str(self.bin / "initdb"), "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres",
                  "--no-sync")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-o", self._opts,
                  "-l", str(self.dir / "log"), "-w", "start")

    def restart(self) -> None:
        """Fast shutdown (open transactions are aborted, clients disconnected) and start again; returns when up."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-o", self._opts, "-m", "fast", "-w",
                  "restart")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"


# ------------------------------------------------------------------------------------------------------- workers
class Worker:
    """One ``kefu serve`` process; its JSON log lines are read to know when it listens and to count warnings."""

    def __init__(self, index: int, argv: list[str], env: dict[str, str]) -> None:
        self.index = index
        self.argv = argv
        self.env = env
        self.proc: asyncio.subprocess.Process | None = None
        self.ready = asyncio.Event()
        self.levels: collections.Counter[str] = collections.Counter()
        self.messages: collections.Counter[str] = collections.Counter()
        self.started_at = 0.0
        self.ready_after: float | None = None
        self.killed = False
        self.swapped_at: float | None = None  # when it logged that a newly published NLU model was swapped in
        self.tail: collections.deque[str] = collections.deque(maxlen=20)  # non-JSON lines (tracebacks)
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.started_at = time.monotonic()
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=self.env,
            start_new_session=True,
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while True:
            try:
                line = await self.proc.stderr.readline()
            except (ValueError, asyncio.LimitOverrunError):
                continue
            if not line:
                return
            text = line.decode("utf-8", "replace").strip()
            try:
                entry = json.loads(text)
            except ValueError:
                self.tail.append(text[-300:])  # progress bars, console lines, a traceback
                continue
            if not isinstance(entry, dict):
                continue
            level = str(entry.get("level", ""))
            msg = str(entry.get("msg", ""))
            self.levels[level] += 1
            if level in ("warning", "error", "critical"):
                self.messages[msg[:120]] += 1
            if msg.startswith("NLU model") and msg.endswith("swapped in"):
                self.swapped_at = time.monotonic()
            if "channel server listening" in msg and not self.ready.is_set():
                self.ready_after = time.monotonic() - self.started_at
                self.ready.set()

    def cpu_seconds(self) -> float | None:
        """User + system CPU seconds this worker used so far (``/proc``; ``None`` elsewhere or once gone)."""
        if self.proc is None or self.proc.returncode is not None:
            return None
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.killed = True
            os.kill(self.proc.pid, signal.SIGKILL)

    async def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 5)


def worker_argv(cfg: Config, port: int, store_url: str) -> list[str]:
    budget = cfg.admission_budget_ms
    if cfg.worker == "lite":
        options = ["--server-options", json.dumps({"admission_budget": budget / 1000.0 or None})] \
            if budget is not None else []
        return [sys.executable, str(Path(__file__).resolve()), "--serve-lite", "--port", str(port),
                "--store", store_url, *(["--action-endpoint", cfg.action_endpoint] if cfg.action_endpoint else []),
                *options]
    return [sys.executable, "-m", "kefu.cli", "serve", "--bot", str(cfg.bot), "--host", "127.0.0.1",
            "--port", str(port), "--store", store_url, "--generation", cfg.generation, "--reuse-port",
            "--log-format", "json", "--no-console", "--conversation-rate", "0", "--connections-per-address", "0",
            "--turns-per-address", "0",
            *(["--admission-budget-ms", f"{budget:g}"] if budget is not None else [])]


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


# ----------------------------------------------------------------------------------------------------- customers
class Customer:
    """One simulated customer: one conversation, messages in order, resends until answered."""

    def __init__(self, index: int, url: str, language: str, texts: list[str], run_id: str, think: float,
                 rng: random.Random, stats: Stats, deadline: float, attempt_timeout: float = 60.0) -> None:
        self.index = index
        self.url = url
        self.language = language
        self.user = f"load-{run_id}-{index}"
        self.turns = [Turn(f"{run_id}c{index}t{k}", text) for k, text in enumerate(texts)]
        self.think = think
        self.rng = rng
        self.stats = stats
        self.deadline = deadline
        self.attempt_timeout = attempt_timeout
        self.conversation_id: str | None = None
        self.secret: str | None = None  # the resume secret of the conversation (from its first session frame)
        self.ws: Any = None
        self.failed: str | None = None

    async def _connect(self) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidStatus

        backoff = 0.1
        while True:
            if time.monotonic() > self.deadline:
                raise TimeoutError("time limit")
            try:
                ws = await connect(self.url, open_timeout=10, max_size=2**20, ping_interval=None)
            except InvalidStatus:
                self.stats.http_refusals += 1
            except (OSError, TimeoutError, Exception):  # noqa: BLE001 - any failure to connect: retry
                self.stats.connect_failures += 1
            else:
                try:
                    await ws.send(json.dumps({"type": "hello", "conversation_id": self.conversation_id,
                                              "secret": self.secret, "language": self.language,
                                              "user": self.user}))
                    while True:
                        frame = json.loads(await asyncio.wait_for(ws.recv(), self.attempt_timeout))
                        if frame.get("type") == "session":
                            cid = frame["conversation_id"]
                            if self.conversation_id is not None and cid != self.conversation_id:
                                self.stats.conversation_changed += 1
                            self.conversation_id = cid
                            if isinstance(frame.get("secret"), str):
                                self.secret = frame["secret"]
                            self.ws = ws
                            return
                        if frame.get("type") == "error":
                            self.stats.error(str(frame.get("code")))
                            break
                except Exception:  # noqa: BLE001 - dropped during the hello: retry
                    self.stats.connect_failures += 1
                with contextlib.suppress(Exception):
                    await ws.close()
            await asyncio.sleep(backoff * (0.5 + self.rng.random()))
            backoff = min(2.0, backoff * 2)

    async def _drop(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()
        self.ws = None
        self.stats.reconnects += 1

    async def _exchange(self, turn: Turn) -> dict[str, Any]:
        """Send ``turn`` once; the frame that answers it (final message or error)."""
        turn.attempts += 1
        turn.last_sent = time.monotonic()
        if turn.attempts == 1:
            turn.first_sent = turn.last_sent
        await self.ws.send(json.dumps({"type": "message", "conversation_id": self.conversation_id,
                                       "message_id": turn.message_id, "text": turn.text}))
        end = time.monotonic() + self.attempt_timeout
        while True:
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), max(0.01, end - time.monotonic())))
            kind = frame.get("type")
            if kind == "message" and frame.get("reply_to") == turn.message_id:
                return dict(frame)
            if kind == "error" and frame.get("reply_to") in (turn.message_id, None):
                return dict(frame)
            if kind == "busy" and frame.get("reply_to") == turn.message_id:
                return dict(frame)
            if kind == "token" and frame.get("reply_to") == turn.message_id and turn.first_token_at is None:
                turn.first_token_at = time.monotonic()

    async def run(self, start_delay: float, *, close: bool = True) -> None:
        await asyncio.sleep(start_delay)
        try:
            for k, turn in enumerate(self.turns):
                if k:
                    await asyncio.sleep(self.think * (0.5 + self.rng.random()))
                backoff = 0.1
                while turn.done_at is None:
                    if time.monotonic() > self.deadline:
                        self.failed = "time limit"
                        return
                    try:
                        if self.ws is None:
                            await self._connect()
                        frame = await self._exchange(turn)
                    except TimeoutError:
                        if time.monotonic() > self.deadline:
                            self.failed = "time limit"
                            return
                        self.stats.error("client_timeout")
                        await self._drop()
                        continue
                    except Exception:  # noqa: BLE001 - connection dropped (worker killed...): reconnect, resend
                        await self._drop()
                        continue
                    if frame["type"] == "message":
                        turn.done_at = time.monotonic()
                        turn.reply = str(frame.get("text", ""))
                        turn.replayed = bool(frame.get("replayed"))
                        break
                    if frame["type"] == "busy":  # not queued, not stored: resend the same id when told to
                        wait = max(0.0, float(frame.get("retry_after_ms") or 1000) / 1000.0)
                        turn.busy += 1
                        self.stats.busy[str(frame.get("reason"))] += 1
                        self.stats.retry_after.append(wait)
                        await asyncio.sleep(wait * (1.0 + 0.5 * self.rng.random()))  # never sooner than asked
                        continue
                    code = str(frame.get("code"))
                    self.stats.error(code)
                    if code not in RETRYABLE:
                        self.failed = f"error {code}"
                        return
                    await asyncio.sleep(backoff * (0.5 + self.rng.random()))
                    backoff = min(2.0, backoff * 2)
        finally:
            if close and self.ws is not None:
                with contextlib.suppress(Exception):
                    await self.ws.close()
                self.ws = None


# --------------------------------------------------------------------------------------------------------- check
async def check_store(dsn: str, customers: list[Customer]) -> dict[str, Any]:
    """Compare every customer's transcript with what the store holds."""
    import asyncpg

    ids = [c.conversation_id for c in customers if c.conversation_id]
    conn = await asyncpg.connect(dsn, timeout=30)
    try:
        rows = await conn.fetch(
            "SELECT conversation_id, seq, type, message_id, data->>'reply_to' AS reply_to, data->>'text' AS text "
            "FROM events WHERE conversation_id = ANY($1::text[]) AND type IN ('user_message', 'bot_message') "
            "ORDER BY conversation_id, seq",
            ids,
        )
        stage_rows = await conn.fetch(
            "SELECT data->'latency_ms' AS latency FROM events WHERE conversation_id = ANY($1::text[]) "
            "AND type = 'bot_message'", ids)
        senders = {r["id"]: r["sender"] for r in await conn.fetch(
            "SELECT id, sender FROM conversations WHERE id = ANY($1::text[])", ids)}
    finally:
        await conn.close()
    return store_check(customers, rows, stage_rows, senders)


# ----------------------------------------------------------------------------------------------------------- run
@dataclass
class Config:
    conversations: int = 500
    turns: int = 10
    workers: int = 2
    generation: str = "template"
    think_time: float = 5.0
    ramp: float | None = None
    kill_worker_at: float | None = None
    restart_postgres_at: float | None = None
    long_conversation: int = 0
    pg_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    bot: Path = DEFAULT_BOT
    worker: str = "kefu"
    action_endpoint: str | None = None
    time_limit: float = 900.0
    seed: int = 7
    admission_budget_ms: float | None = None  # None: the bot's bot.yml (kefu workers), off (lite workers)
    swap_nlu_at: float | None = None
    swap_source: str = "retrain"  # retrain | copy
    py_spy: Path | None = None  # a flame graph (SVG) of worker 0 over the load phase, sampled by py-spy


async def start_py_spy(out: Path, worker: Worker) -> asyncio.subprocess.Process:
    """``py-spy record`` on ``worker`` (all its threads, 100 samples/s) until :func:`stop_py_spy`: a flame graph for
    ``.svg``, collapsed stacks (one ``frame;frame;... count`` line per stack, for scripts) for ``.txt``, speedscope's
    format for ``.json``. Why py-spy: it samples from outside the process, so the worker runs its own code unchanged;
    cProfile sees one thread (the turn's models run in others) and slows Python code several-fold. It pauses the
    worker for each sample, so a profiled run's latencies are not the benchmark's."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        raise SystemExit("--py-spy needs py-spy (pip install py-spy)")
    assert worker.proc is not None
    out.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".txt": "raw", ".json": "speedscope"}.get(out.suffix, "flamegraph")
    return await asyncio.create_subprocess_exec(
        exe, "record", "--pid", str(worker.proc.pid), "--rate", "100", "--format", fmt, "--output", str(out),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)


async def stop_py_spy(proc: asyncio.subprocess.Process) -> str | None:
    """Stop the recording as Ctrl-C does (py-spy then writes its output); ``None``, or why py-spy failed (it needs
    ptrace on the worker: root, or ``kernel.yama.ptrace_scope`` 0, or ``CAP_SYS_PTRACE`` in a container)."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGINT)
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return "py-spy did not stop within 60 s"
    if proc.returncode in (0, -signal.SIGINT, 130):
        return None
    return err.decode("utf-8", "replace").strip()[-500:] or f"py-spy exited with {proc.returncode}"


async def long_conversation(url: str, n: int, scripts: dict[str, list[list[str]]], run_id: str,
                            stats: Stats, deadline: float) -> dict[str, Any]:
    """One ``n``-turn conversation, 0.15 s between turns; its last 50 turns alternate with five fresh 10-turn ones."""
    rng = random.Random(1)
    pause = 0.15
    tail = min(50, n)
    _, texts = script_for(scripts, 0, n)
    long = Customer(10**6, url, "en", texts, f"{run_id}L", 0.0, rng, stats, deadline)
    shorts = []
    for j in range(tail // 10 or 1):
        language, short_texts = script_for(scripts, 2 * j, 10)
        shorts.append(Customer(10**6 + 1 + j, url, language, short_texts, f"{run_id}S", 0.0, rng, stats, deadline))
    t0 = time.monotonic()

    async def one(c: Customer, turn: Turn) -> None:
        await asyncio.sleep(pause)  # stay under the per-connection rate limit (10 messages/s by default)
        single = Customer(c.index, c.url, c.language, [], "", 0.0, rng, stats, deadline)
        single.turns, single.ws, single.conversation_id, single.user = [turn], c.ws, c.conversation_id, c.user
        single.secret = c.secret
        await single.run(0.0, close=False)  # the connection stays open for the conversation's next turn
        c.conversation_id, c.ws, c.secret = single.conversation_id, single.ws, single.secret

    for turn in long.turns[: n - tail]:
        await one(long, turn)
    # The short conversations' connections stay open too (and are closed at the end).
    short_turns = [t for s in shorts for t in s.turns]
    owners = [s for s in shorts for _ in s.turns]
    for k, turn in enumerate(long.turns[n - tail:]):
        await one(long, turn)
        if k < len(short_turns):
            await one(owners[k], short_turns[k])
    for c in (long, *shorts):
        if c.ws is not None:
            with contextlib.suppress(Exception):
                await c.ws.close()
    lat = [t.latency for t in long.turns if t.latency is not None]
    short_lat = [t.latency for t in short_turns if t.latency is not None]
    last = lat[-tail:]
    p50_last, p50_short = percentile(last, 50), percentile(short_lat, 50)
    return {
        "turns": n,
        "completed": len(lat),
        "seconds": round(time.monotonic() - t0, 1),
        "first10_ms": summary_ms(lat[:10]),
        "last_ms": summary_ms(last),
        "short_ms": summary_ms(short_lat),
        "ratio_p50": round(p50_last / p50_short, 3) if p50_last and p50_short else None,
        "customers": [long, *shorts],
    }


async def run(cfg: Config) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:6]
    rng = random.Random(cfg.seed)
    cluster: PrivateCluster | None = None
    if cfg.restart_postgres_at is not None:
        cluster = PrivateCluster()
        note(f"private PostgreSQL cluster in {cluster.dir} on port {cluster.port}")
        await asyncio.to_thread(cluster.start)
        db = await create_database(cluster.admin_dsn)
    else:
        db = await create_database(cfg.pg_url)
    note(f"database {db.name}")
    port = free_port()
    url = f"ws://127.0.0.1:{port}/ws"
    workers = [Worker(i, worker_argv(cfg, port, db.url), worker_env()) for i in range(cfg.workers)]
    report: dict[str, Any] = {"workers": cfg.workers, "generation": cfg.generation, "worker": cfg.worker,
                              "think_time_s": cfg.think_time, "cpus": os.cpu_count()}
    try:
        t_start = time.monotonic()
        for w in workers:
            await w.start()
        while not all(w.ready.is_set() for w in workers):
            dead = [w for w in workers if w.proc is not None and w.proc.returncode is not None]
            if dead:
                await asyncio.sleep(0.5)  # let the reader collect the last lines
                raise SystemExit(f"worker {dead[0].index} exited with {dead[0].proc.returncode}:\n"  # type: ignore[union-attr]
                                 + "\n".join(dead[0].tail))
            if time.monotonic() - t_start > 300:
                raise SystemExit("workers did not start within 300 s")
            await asyncio.sleep(0.2)
        report["worker_start_s"] = round(time.monotonic() - t_start, 1)
        note(f"{cfg.workers} workers listening on port {port} after {report['worker_start_s']} s")

        scripts = load_scripts()
        stats = Stats()
        deadline = time.monotonic() + cfg.time_limit
        # Customers arrive spread over at least one think time, so the first messages do not all come at once.
        ramp = cfg.ramp if cfg.ramp is not None else max(cfg.conversations / 50, cfg.think_time)
        customers = []
        for i in range(cfg.conversations):
            language, texts = script_for(scripts, i, cfg.turns)
            customers.append(Customer(i, url, language, texts, run_id, cfg.think_time, random.Random(rng.random()),
                                      stats, deadline))
        fault: dict[str, Any] = {}
        cpu_start = {w.index: w.cpu_seconds() for w in workers}
        cpu_end: dict[int, float | None] = {}
        harness_cpu = time.process_time()
        t0 = time.monotonic()

        async def faults() -> None:
            if cfg.kill_worker_at is not None:
                await asyncio.sleep(cfg.kill_worker_at)
                victim = workers[0]
                cpu_end[victim.index] = victim.cpu_seconds()
                victim.kill()
                fault["killed_worker_at_s"] = round(time.monotonic() - t0, 2)
                note(f"killed worker {victim.index} (pid {victim.proc.pid if victim.proc else '?'}) with SIGKILL")
            if cfg.restart_postgres_at is not None and cluster is not None:
                await asyncio.sleep(max(0.0, cfg.restart_postgres_at - (time.monotonic() - t0)))
                down = time.monotonic()
                await asyncio.to_thread(cluster.restart)
                up = time.monotonic()
                fault.update(pg_restart_started=down, pg_ready=up)
                note(f"PostgreSQL restarted ({up - down:.2f} s down)")
            if cfg.swap_nlu_at is not None:
                await asyncio.sleep(max(0.0, cfg.swap_nlu_at - (time.monotonic() - t0)))
                started = time.monotonic()
                folder = await publish_nlu_model(cfg)
                # Published when the pointer was replaced (its mtime), not when the training process had exited.
                published = time.monotonic() - max(0.0, time.time() - (cfg.bot / "models" / "nlu.current").stat().st_mtime)
                fault.update(swap_published=published, swap_training_s=published - started)
                note(f"published {folder.name} ({cfg.swap_source}, {fault['swap_training_s']:.1f} s)")

        fault_task = asyncio.create_task(faults())
        spy = await start_py_spy(cfg.py_spy, workers[0]) if cfg.py_spy is not None else None
        tasks = [asyncio.create_task(c.run(ramp * i / max(1, cfg.conversations))) for i, c in enumerate(customers)]
        if tasks:
            await asyncio.gather(*tasks)
        load_s = time.monotonic() - t0
        harness_cpu = time.process_time() - harness_cpu
        if spy is not None:
            failure = await stop_py_spy(spy)
            report["py_spy"] = {"path": str(cfg.py_spy), "error": failure}
        for w in workers:
            cpu_end.setdefault(w.index, w.cpu_seconds())
        worker_cpu = sum((cpu_end[i] or 0.0) - (cpu_start[i] or 0.0) for i in cpu_start)
        if cfg.swap_nlu_at is not None:  # a retrain still running is awaited: never left to write the bot's models
            await fault_task
        if "swap_published" in fault:  # give the workers their next look at the pointer (every 3 s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(until(lambda: all(w.swapped_at or not w.alive for w in workers)), 10)
        if not fault_task.done():
            fault_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await fault_task
        turns = [t for c in customers for t in c.turns]
        done = [t for t in turns if t.done_at is not None]
        latencies = [t.latency for t in done if t.latency is not None]
        report.update(
            conversations=cfg.conversations,
            turns_planned=len(turns),
            turns=len(done),
            duration_s=round(load_s, 1),
            turns_per_s=round(len(done) / load_s, 1) if load_s > 0 else 0.0,
            latency_ms=summary_ms(latencies),
            first_token_ms=summary_ms([t.first_token for t in done if t.first_token is not None]),
            resent_turns=sum(t.attempts > 1 for t in done),
            worker_cpu_s=round(worker_cpu, 1),
            worker_cpu_ms_per_turn=round(1000 * worker_cpu / len(done), 1) if done else None,
            harness_cpu_s=round(harness_cpu, 1),
            load_average=[round(x, 2) for x in os.getloadavg()],
            replayed_replies=sum(t.replayed for t in done),
            admission_budget_ms=cfg.admission_budget_ms,
        )

        if cfg.long_conversation:
            note(f"long conversation: {cfg.long_conversation} turns")
            long = await long_conversation(url, cfg.long_conversation, scripts, run_id, stats, deadline)
            customers.extend(long.pop("customers"))
            report["long_conversation"] = long

        failed = [c.failed for c in customers if c.failed]
        report.update(admission_counts([t for c in customers for t in c.turns], stats))
        report.update(
            errors=sum(stats.errors.values()),
            errors_by_code=dict(stats.errors),
            failed_conversations=len(failed),
            failed_reasons=dict(collections.Counter(failed)),
            reconnects=stats.reconnects,
            connect_failures=stats.connect_failures,
            http_refusals=stats.http_refusals,
            conversation_changed=stats.conversation_changed,
        )
        if "killed_worker_at_s" in fault:
            report["kill"] = kill_report(done, t0, fault)
        if "swap_published" in fault:
            report["swap"] = swap_report(done, stats, t0, fault["swap_published"], [w.swapped_at for w in workers],
                                         cfg.swap_source, fault["swap_training_s"])
        if "pg_ready" in fault:
            down, up = fault.pop("pg_restart_started"), fault.pop("pg_ready")
            report["postgres_restart"] = restart_report(done, stats, t0, down, up)

        note("checking the store against every transcript")
        report.update(await check_store(db.dsn, customers))
        report["worker_warnings"] = {f"worker{w.index}": dict(w.messages) for w in workers if w.messages}
        report["workers_alive"] = sum(w.alive for w in workers)
        return report
    finally:
        for w in workers:
            await w.stop()
        if cluster is not None:
            await asyncio.to_thread(cluster.stop)
        else:
            await drop_database(db)


# ----------------------------------------------------------------------------------------------- the model swap
async def until(done: Any, interval: float = 0.2) -> None:
    """Return once ``done()`` is true (checked every ``interval`` seconds)."""
    while not done():
        await asyncio.sleep(interval)


async def publish_nlu_model(cfg: Config) -> Path:
    """Publish a new NLU model for the bot as the console's retrain does (``kefu retrain-nlu``, in its own process),
    or a copy of the one served (``copy``); returns the published folder."""
    from kefu.models_watch import next_nlu_folder, publish_nlu, served_nlu

    models = cfg.bot / "models"
    if cfg.swap_source == "copy":
        folder = next_nlu_folder(models)
        await asyncio.to_thread(shutil.copytree, served_nlu(models), folder)
        publish_nlu(models, folder)
        return folder
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kefu.cli", "retrain-nlu", "--bot", str(cfg.bot),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, env=worker_env())
    if await proc.wait() != 0:
        raise SystemExit(f"kefu retrain-nlu exited with {proc.returncode}")
    return served_nlu(models)


@contextlib.contextmanager
def bot_models_kept(cfg: Config) -> Iterator[None]:
    """Leave the bot's served model as it was: the run's published folders are removed and the pointer with them.
    A bot that already serves a published model is refused (publishing more would prune that one)."""
    from kefu.models_watch import NEXT_PREFIX, POINTER, unpublish_nlu

    models = cfg.bot / "models"
    if cfg.swap_nlu_at is None:
        yield
        return
    if cfg.worker != "kefu":
        raise SystemExit("--swap-nlu-at needs --worker kefu (the lite worker has no NLU model)")
    if (models / POINTER).exists():
        raise SystemExit(f"{models / POINTER} exists: --swap-nlu-at needs a bot serving models/nlu")
    try:
        yield
    finally:
        unpublish_nlu(models)
        for folder in models.glob(NEXT_PREFIX + "*"):
            shutil.rmtree(folder, ignore_errors=True)


# ----------------------------------------------------------------------------------------------- the lite worker
def serve_lite(port: int, store_url: str, action_endpoint: str | None = None,
               server_options: dict[str, Any] | None = None) -> None:
    """A model-free stand-in of ``kefu serve --reuse-port`` (same server, engine, store; every message greets,
    except that a message mentioning an order asks the action server when ``action_endpoint`` is set).
    ``server_options``: ``ServerOptions`` fields over the harness's (e.g. the limits on new conversations, which
    are off by default: every simulated customer comes from 127.0.0.1)."""
    from channels.metrics import Metrics
    from channels.server import ServerOptions, run_server
    from dialogue.actions import action_runner
    from dialogue.engine import BotParts, DialogueEngine
    from dialogue.store import Store
    from kefu.app import bot_dialogue
    from kefu.config import Bot
    from kefu.logs import configure
    from kefu.serving import ServingBackend
    from nlu.types import Entity, Parse
    from policy import FSMPolicy
    from runtime.nlg import NLG
    from runtime.templates import Templates
    from safety.filters import InputFilter

    class KeywordParser:
        def parse(self, text: str) -> Parse:
            digits = next((w for w in text.replace("订单", " ").split() if w.isdigit() and len(w) == 5), None)
            if digits and action_endpoint:
                start = text.index(digits)
                return Parse(text=text, intent="order_status", confidence=1.0,
                             entities=(Entity("order_id", digits, start, start + 5),), language="en")
            return Parse(text=text, intent="greet", confidence=1.0, ranking=(("greet", 1.0),), language="en")

    configure("json")

    async def main() -> None:
        domain, flows = bot_dialogue(Bot.load(DEFAULT_BOT), None)
        actions = action_runner(DEFAULT_BOT, actions=None, action_endpoint=action_endpoint, timeout_s=1.0) \
            if action_endpoint else None
        parts = BotParts(domain=domain, flows=flows, policy=FSMPolicy(flows.default_policy), nlu=KeywordParser(),
                         actions=actions, input_filter=InputFilter())  # type: ignore[arg-type]
        store = await Store.open(store_url)
        engine = DialogueEngine(parts, store, NLG(Templates.from_domain(domain.raw), None, mode="template"))
        metrics = Metrics()
        try:
            async with run_server(ServingBackend(engine, metrics), port=port, metrics=metrics,
                                  options=ServerOptions(**{"reuse_port": True, "turn_timeout": 30,
                                                           "conversation_rate": None, "connections_per_address": None,
                                                           "turns_per_address": None,
                                                           **(server_options or {})})):
                stop = asyncio.Event()
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(sig, stop.set)
                await stop.wait()
        finally:
            await store.close()
            if actions is not None:
                await actions.aclose()

    asyncio.run(main())


# ---------------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conversations", type=int, default=500)
    ap.add_argument("--turns", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--generation", default="template", help="template | embedded | an OpenAI-compatible URL")
    ap.add_argument("--think-time", type=float, default=5.0, help="mean seconds between a reply and the next message")
    ap.add_argument("--ramp", type=float, default=None,
                    help="seconds over which customers arrive (default: the longer of N/50 and the think time)")
    ap.add_argument("--kill-worker-at", type=float, default=None, metavar="SECONDS")
    ap.add_argument("--restart-postgres-at", type=float, default=None, metavar="SECONDS")
    ap.add_argument("--long-conversation", type=int, default=0, metavar="TURNS")
    ap.add_argument("--pg-url", default=os.environ.get("KEFU_LOAD_PG_URL",
                                                        "postgresql://postgres@127.0.0.1:5432/postgres"),
                    help="an admin connection; a fresh database is created beside it")
    ap.add_argument("--bot", type=Path, default=DEFAULT_BOT)
    ap.add_argument("--worker", choices=["kefu", "lite"], default="kefu")
    ap.add_argument("--action-endpoint", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--time-limit", type=float, default=900.0, help="seconds; customers give up after it")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--admission-budget-ms", type=float, default=None,
                    help="the workers' admission budget (busy beyond it; 0: never); default: bot.yml's (kefu), off (lite)")
    ap.add_argument("--swap-nlu-at", type=float, default=None, metavar="SECONDS",
                    help="publish a new NLU model then; every worker must swap it in without failing a turn")
    ap.add_argument("--swap-source", choices=["retrain", "copy"], default="retrain",
                    help="retrain: kefu retrain-nlu trains it (as the console does); copy: a copy of the served one")
    ap.add_argument("--py-spy", type=Path, default=None, metavar="FILE",
                    help="record worker 0 with py-spy over the load phase: a flame graph (.svg) or collapsed stacks (.txt)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--serve-lite", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--store", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--server-options", type=json.loads, default=None, help=argparse.SUPPRESS)  # JSON, --serve-lite
    args = ap.parse_args(argv)
    if args.serve_lite:
        serve_lite(args.port, args.store, args.action_endpoint, args.server_options)
        return 0
    cfg = Config(conversations=args.conversations, turns=args.turns, workers=args.workers,
                 generation=args.generation, think_time=args.think_time, ramp=args.ramp,
                 kill_worker_at=args.kill_worker_at, restart_postgres_at=args.restart_postgres_at,
                 long_conversation=args.long_conversation, pg_url=args.pg_url, bot=args.bot, worker=args.worker,
                 action_endpoint=args.action_endpoint, time_limit=args.time_limit, seed=args.seed,
                 admission_budget_ms=args.admission_budget_ms, swap_nlu_at=args.swap_nlu_at,
                 swap_source=args.swap_source, py_spy=args.py_spy)
    with bot_models_kept(cfg):
        report = asyncio.run(run(cfg))
    if args.json:
        print(json.dumps(report, ensure_ascii=False, sort_keys=True))
    else:
        for key, value in sorted(report.items()):
            print(f"{key}: {value}")
    ok = all(report.get(k) == 0 for k in ("lost", "duplicated", "reordered", "mismatched"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
