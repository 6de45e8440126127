"""The telecom demo's operator database: ``data/telecom.yml`` in SQLite, plus what the bot writes.

Two kinds of rows live in one SQLite file (``<bot>/.kefu/telecom-data.sqlite``, git-ignored):

* **seed rows** (cities, plans, subscribers, outages, the tickets of ``telecom.yml``): the YAML stores dates
  relative to "today", so :func:`ensure_db` refreshes them whenever the YAML changed or the day rolled over;
* **the bot's rows**: fault tickets it opened (numbered from ``T-5001``) and plan-change orders. A refresh never
  touches them, so a ticket opened in a chat can be looked up in the next one. A plan change is an *order* for the
  billing system (not part of the demo): the subscriber's current plan stays the seed's, so replaying the scenarios
  gives the same answers every time.

The refresh runs in one write transaction (``BEGIN IMMEDIATE``), so a reader in another process (a rasa-sdk action
server) sees the old rows or the new ones, never half of them. Everything here is blocking (sqlite3, file I/O): call
it from a thread (``asyncio.to_thread``) when on an event loop. ``python telecomdb.py [BOT_DIR] [--reset]`` rebuilds
the file (``--reset`` also drops what the bot wrote).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import yaml

SERVICES = ("broadband", "mobile", "tv")
TICKET_STATUSES = ("open", "scheduled", "in_progress", "resolved")
SEED_FILE = "data/telecom.yml"
DB_FILE = ".kefu/telecom-data.sqlite"
DB_ENV = "KEFU_TELECOM_DB"  # overrides the database path (tests point it at a temporary file)
FIRST_BOT_TICKET = 5001
_SCHEMA_VERSION = "1"
_build_lock = threading.Lock()
_ACCOUNT_RE = re.compile(r"\d{8}")
_TICKET_RE = re.compile(r"(?i)^\s*#?\s*(?:t\s*[-_#]?\s*)?(\d{3,5})\s*$")


class SeedFileError(ValueError):
    """``telecom.yml`` is missing or malformed; the message names the file and the offending entry."""

    def __init__(self, path: Path, message: str, where: str | None = None) -> None:
        self.path = path
        self.where = where
        super().__init__(f"{path}{f' ({where})' if where else ''}: {message}")


class City(TypedDict):
    name: str
    zh: str


class Plan(TypedDict):
    name: str
    kind: str
    price: int
    en: str
    zh: str


class Subscriber(TypedDict):
    account: str
    plan: str
    city: str
    contract_end: dt.date | None  # the last day of the minimum term; None: no contract
    phone_tail: str


class Ticket(TypedDict):
    ticket_id: str
    account: str
    service: str
    status: str
    opened_on: dt.date
    visit_on: dt.date | None
    resolved_on: dt.date | None


class Outage(TypedDict):
    city: str
    service: str
    fix_hours: int


@dataclass(frozen=True)
class Seed:
    """``telecom.yml`` with its relative days resolved against one date."""

    cities: list[City]
    plans: list[Plan]
    subscribers: list[Subscriber]
    tickets: list[Ticket]
    outages: list[Outage]


def key(name: str) -> str:
    """A name as lookups compare it: lower case, without spaces, dashes, dots or apostrophes
    (``"fibre-300"`` and ``"Fibre 300"``, ``"xian"`` and ``"Xi'an"`` are the same)."""
    return re.sub(r"[\s\-_.'’]", "", name.casefold())


def normalise_account(text: str | None) -> str | None:
    """The 8-digit account number in ``text`` (spaces and dashes between the digits ignored), or ``None``."""
    if text is None:
        return None
    digits = re.sub(r"[\s\-]", "", str(text))
    return digits if _ACCOUNT_RE.fullmatch(digits) else None


def normalise_ticket_id(text: str | None) -> str | None:
    """``"T-1042"`` for ``t1042``, ``T 1042``, ``#1042`` or ``1042``; ``None`` when ``text`` is no ticket number."""
    if text is None:
        return None
    match = _TICKET_RE.match(str(text))
    return f"T-{match.group(1)}" if match else None


def add_months(day: dt.date, months: int) -> dt.date:
    """``day`` moved by whole months (the 31st becomes the last day of a shorter month)."""
    month0 = day.month - 1 + months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    for last in (31, 30, 29, 28):
        try:
            return dt.date(year, month, min(day.day, last))
        except ValueError:
            continue
    raise ValueError(f"no such month: {year}-{month}")


def first_of_next_month(day: dt.date) -> dt.date:
    return add_months(day.replace(day=1), 1)


# ------------------------------------------------------------------------------------------------ the seed file
def _int(entry: dict[str, Any], name: str, path: Path, where: str, *, default: int | None = None) -> int:
    value = entry.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SeedFileError(path, f"{name} must be a non-negative integer", where)
    return value


def _str(entry: dict[str, Any], name: str, path: Path, where: str) -> str:
    value = str(entry.get(name) or "").strip()
    if not value:
        raise SeedFileError(path, f"{name} is required", where)
    return value


def _entries(raw: dict[str, Any], name: str, path: Path) -> list[dict[str, Any]]:
    items = raw.get(name)
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise SeedFileError(path, f"expected a list of mappings under {name!r}")
    return items


def load_seed(path: Path, today: dt.date | None = None) -> Seed:
    """Parse and check ``telecom.yml``; relative days resolve against ``today`` (default: the local date)."""
    today = today or dt.date.today()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SeedFileError(path, "file not found") from exc
    except yaml.YAMLError as exc:
        raise SeedFileError(path, f"invalid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise SeedFileError(path, "expected a mapping with cities, plans, subscribers, tickets and outages")

    cities = [City(name=_str(c, "name", path, f"cities[{i}]"), zh=_str(c, "zh", path, f"cities[{i}]"))
              for i, c in enumerate(_entries(raw, "cities", path))]
    city_keys = {key(c["name"]): c["name"] for c in cities}

    plans: list[Plan] = []
    for i, p in enumerate(_entries(raw, "plans", path)):
        where = f"plans[{i}]"
        kind = _str(p, "kind", path, where)
        if kind not in SERVICES:
            raise SeedFileError(path, f"kind must be one of {', '.join(SERVICES)}", where)
        plans.append(Plan(name=_str(p, "name", path, where), kind=kind, price=_int(p, "price", path, where),
                          en=_str(p, "en", path, where), zh=_str(p, "zh", path, where)))
    plan_keys = {key(p["name"]): p["name"] for p in plans}
    if len(plan_keys) != len(plans) or len(city_keys) != len(cities):
        raise SeedFileError(path, "two plans (or two cities) have the same name")

    subscribers: list[Subscriber] = []
    for i, s in enumerate(_entries(raw, "subscribers", path)):
        where = f"subscribers[{i}]"
        account = normalise_account(_str(s, "account", path, where))
        if account is None:
            raise SeedFileError(path, "account must be an 8-digit number (quote it)", where)
        plan, city = plan_keys.get(key(_str(s, "plan", path, where))), city_keys.get(key(_str(s, "city", path, where)))
        if plan is None or city is None:
            raise SeedFileError(path, "plan and city must be listed under plans and cities", where)
        months = _int(s, "contract_months_left", path, where, default=0)
        tail = _str(s, "phone_tail", path, where)
        if not re.fullmatch(r"\d{4}", tail):
            raise SeedFileError(path, "phone_tail must be the last 4 digits only (quote it)", where)
        subscribers.append(Subscriber(account=account, plan=plan, city=city, phone_tail=tail,
                                      contract_end=add_months(today, months) if months else None))
    accounts = {s["account"] for s in subscribers}
    if len(accounts) != len(subscribers):
        raise SeedFileError(path, "two subscribers have the same account number")

    tickets: list[Ticket] = []
    for i, t in enumerate(_entries(raw, "tickets", path)):
        where = f"tickets[{i}]"
        ticket_id = normalise_ticket_id(_str(t, "id", path, where))
        if ticket_id is None or int(ticket_id[2:]) >= FIRST_BOT_TICKET:
            raise SeedFileError(path, f"id must look like T-1234, below T-{FIRST_BOT_TICKET}", where)
        service, status = _str(t, "service", path, where), _str(t, "status", path, where)
        if service not in SERVICES or status not in TICKET_STATUSES:
            raise SeedFileError(path, f"service: {', '.join(SERVICES)}; status: {', '.join(TICKET_STATUSES)}", where)
        account = normalise_account(_str(t, "account", path, where))
        if account not in accounts:
            raise SeedFileError(path, "account is not one of the subscribers", where)
        visit = _int(t, "visit_in_days", path, where) if status == "scheduled" else None
        resolved = _int(t, "resolved_days_ago", path, where) if status == "resolved" else None
        tickets.append(Ticket(
            ticket_id=ticket_id, account=account, service=service, status=status,
            opened_on=today - dt.timedelta(days=_int(t, "opened_days_ago", path, where)),
            visit_on=None if visit is None else today + dt.timedelta(days=visit),
            resolved_on=None if resolved is None else today - dt.timedelta(days=resolved),
        ))
    if len({t["ticket_id"] for t in tickets}) != len(tickets):
        raise SeedFileError(path, "two tickets have the same id")

    outages: list[Outage] = []
    for i, o in enumerate(_entries(raw, "outages", path)):
        where = f"outages[{i}]"
        city, service = city_keys.get(key(_str(o, "city", path, where))), _str(o, "service", path, where)
        if city is None or service not in SERVICES:
            raise SeedFileError(path, f"city must be listed under cities, service one of {', '.join(SERVICES)}", where)
        outages.append(Outage(city=city, service=service, fix_hours=_int(o, "fix_hours", path, where)))
    return Seed(cities, plans, subscribers, tickets, outages)


# ------------------------------------------------------------------------------------------------ the database
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cities (key TEXT PRIMARY KEY, name TEXT NOT NULL, zh TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS plans (
    key TEXT PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL, price INTEGER NOT NULL, en TEXT NOT NULL,
    zh TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS subscribers (
    account TEXT PRIMARY KEY, plan TEXT NOT NULL, city TEXT NOT NULL,
    contract_end TEXT,                    -- ISO date, NULL when there is no minimum term
    phone_tail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outages (city TEXT NOT NULL, service TEXT NOT NULL, fix_hours INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS tickets (
    id TEXT PRIMARY KEY, num INTEGER NOT NULL UNIQUE, account TEXT NOT NULL, service TEXT NOT NULL,
    status TEXT NOT NULL, opened_on TEXT NOT NULL, visit_on TEXT, resolved_on TEXT,
    issue TEXT,                           -- the customer's own (redacted) description, never logged
    source TEXT NOT NULL                  -- 'seed' (refreshed with telecom.yml) or 'bot' (kept)
);
CREATE TABLE IF NOT EXISTS plan_changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT, account TEXT NOT NULL, plan TEXT NOT NULL,
    requested_at TEXT NOT NULL, effective_on TEXT NOT NULL
);
"""
_SEED_TABLES = ("cities", "plans", "subscribers", "outages")


def bot_paths(bot_dir: Path) -> tuple[Path, Path]:
    """``(seed_yml, db_path)`` of a bot folder; ``$KEFU_TELECOM_DB`` overrides the database path."""
    env = os.environ.get(DB_ENV)
    return bot_dir / SEED_FILE, Path(env) if env else bot_dir / DB_FILE


@contextmanager
def _connect(db_path: Path, *, write: bool = False) -> Iterator[sqlite3.Connection]:
    """A connection in autocommit mode; with ``write`` the block runs in one ``BEGIN IMMEDIATE`` transaction."""
    con = sqlite3.connect(db_path, timeout=10.0, isolation_level=None)
    try:
        if write:
            con.execute("PRAGMA journal_mode=WAL")  # readers never wait for a writer (persists in the file)
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        else:
            yield con
    finally:
        con.close()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _iso(day: dt.date | None) -> str | None:
    return None if day is None else day.isoformat()


def _write_seed(con: sqlite3.Connection, seed: Seed) -> None:
    for table in _SEED_TABLES:
        con.execute(f"DELETE FROM {table}")  # fixed table names
    con.execute("DELETE FROM tickets WHERE source = 'seed'")
    con.executemany("INSERT INTO cities VALUES (?, ?, ?)", [(key(c["name"]), c["name"], c["zh"]) for c in seed.cities])
    con.executemany("INSERT INTO plans VALUES (?, ?, ?, ?, ?, ?)",
                    [(key(p["name"]), p["name"], p["kind"], p["price"], p["en"], p["zh"]) for p in seed.plans])
    con.executemany("INSERT INTO subscribers VALUES (?, ?, ?, ?, ?)",
                    [(s["account"], s["plan"], s["city"], _iso(s["contract_end"]), s["phone_tail"])
                     for s in seed.subscribers])
    con.executemany("INSERT INTO outages VALUES (?, ?, ?)", [(o["city"], o["service"], o["fix_hours"])
                                                            for o in seed.outages])
    con.executemany(
        "INSERT OR REPLACE INTO tickets VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, 'seed')",
        [(t["ticket_id"], int(t["ticket_id"][2:]), t["account"], t["service"], t["status"], t["opened_on"].isoformat(),
          _iso(t["visit_on"]), _iso(t["resolved_on"])) for t in seed.tickets],
    )


def ensure_db(seed_yml: Path, db_path: Path, today: dt.date | None = None, *, reset: bool = False) -> Path:
    """Return ``db_path``, creating it or refreshing its seed rows first when the seed file changed or the day rolled
    over. ``reset`` also drops what the bot wrote (its tickets and plan-change orders)."""
    today = today or dt.date.today()
    digest = _digest(seed_yml) if seed_yml.exists() else ""
    with _build_lock:
        db_path.parent.mkdir(parents=True, exist_ok=True)
        with _connect(db_path, write=True) as con:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            meta = dict(con.execute("SELECT key, value FROM meta").fetchall()) if "meta" in tables else {}
            if reset or (tables and meta.get("schema") != _SCHEMA_VERSION):
                for table in tables - {"sqlite_sequence"}:
                    con.execute(f'DROP TABLE "{table}"')
                meta = {}
            if meta.get("seed_sha256") == digest and meta.get("seeded_on") == today.isoformat():
                return db_path
            for statement in filter(str.strip, _SCHEMA.split(";")):
                con.execute(statement)
            _write_seed(con, load_seed(seed_yml, today))
            con.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                            [("schema", _SCHEMA_VERSION), ("seeded_on", today.isoformat()), ("seed_sha256", digest)])
    return db_path


def _date(value: str | None) -> dt.date | None:
    return None if value is None else dt.date.fromisoformat(value)


def find_subscriber(db_path: Path, account: str) -> Subscriber | None:
    """The subscriber with this account number (normalised first), or ``None``."""
    number = normalise_account(account)
    if number is None:
        return None
    with _connect(db_path) as con:
        row = con.execute("SELECT account, plan, city, contract_end, phone_tail FROM subscribers WHERE account = ?",
                          (number,)).fetchone()
    if row is None:
        return None
    return Subscriber(account=row[0], plan=row[1], city=row[2], contract_end=_date(row[3]), phone_tail=row[4])


def _plan(row: tuple[Any, ...]) -> Plan:
    return Plan(name=row[0], kind=row[1], price=int(row[2]), en=row[3], zh=row[4])


def find_plan(db_path: Path, name: str) -> Plan | None:
    """The plan called ``name`` (compared with :func:`key`), or ``None``."""
    with _connect(db_path) as con:
        row = con.execute("SELECT name, kind, price, en, zh FROM plans WHERE key = ?", (key(name),)).fetchone()
    return None if row is None else _plan(row)


def list_plans(db_path: Path, kind: str | None = None) -> list[Plan]:
    """Every plan (of one ``kind``), cheapest first."""
    with _connect(db_path) as con:
        rows = con.execute("SELECT name, kind, price, en, zh FROM plans WHERE ? IS NULL OR kind = ? ORDER BY price",
                           (kind, kind)).fetchall()
    return [_plan(r) for r in rows]


def find_city(db_path: Path, name: str) -> City | None:
    """A town the network covers, by its English or Chinese name, or ``None``."""
    with _connect(db_path) as con:
        row = con.execute("SELECT name, zh FROM cities WHERE key = ? OR zh = ?", (key(name), name.strip())).fetchone()
    return None if row is None else City(name=row[0], zh=row[1])


def active_outages(db_path: Path, city: str, service: str | None = None) -> list[Outage]:
    """The known outages in ``city`` (canonical name), of one ``service`` when given."""
    with _connect(db_path) as con:
        rows = con.execute(
            "SELECT city, service, fix_hours FROM outages WHERE city = ? AND (? IS NULL OR service = ?)"
            " ORDER BY service", (city, service, service),
        ).fetchall()
    return [Outage(city=r[0], service=r[1], fix_hours=int(r[2])) for r in rows]


def find_ticket(db_path: Path, ticket_id: str) -> Ticket | None:
    """The ticket with this id (normalised first: ``t1042`` is ``T-1042``), or ``None``."""
    normalised = normalise_ticket_id(ticket_id)
    if normalised is None:
        return None
    with _connect(db_path) as con:
        row = con.execute(
            "SELECT id, account, service, status, opened_on, visit_on, resolved_on FROM tickets WHERE id = ?",
            (normalised,),
        ).fetchone()
    if row is None:
        return None
    return Ticket(ticket_id=row[0], account=row[1], service=row[2], status=row[3],
                  opened_on=dt.date.fromisoformat(row[4]), visit_on=_date(row[5]), resolved_on=_date(row[6]))


def open_ticket(db_path: Path, account: str, service: str, issue: str, today: dt.date | None = None) -> str:
    """Write a new open fault ticket and return its id (``T-5001``, then the next free number)."""
    if service not in SERVICES:
        raise ValueError(f"service must be one of {', '.join(SERVICES)}")
    today = today or dt.date.today()
    with _connect(db_path, write=True) as con:
        (last,) = con.execute("SELECT MAX(num) FROM tickets").fetchone()
        num = max(FIRST_BOT_TICKET - 1, int(last or 0)) + 1
        ticket_id = f"T-{num}"
        con.execute("INSERT INTO tickets VALUES (?, ?, ?, ?, 'open', ?, NULL, NULL, ?, 'bot')",
                    (ticket_id, num, account, service, today.isoformat(), issue))
    return ticket_id


def order_plan_change(
    db_path: Path, account: str, plan: str, effective_on: dt.date, now: dt.datetime | None = None
) -> None:
    """Record an order to move ``account`` to ``plan`` on ``effective_on`` (the billing system carries it out)."""
    now = now or dt.datetime.now(dt.UTC)
    with _connect(db_path, write=True) as con:
        con.execute("INSERT INTO plan_changes (account, plan, requested_at, effective_on) VALUES (?, ?, ?, ?)",
                    (account, plan, now.isoformat(timespec="seconds"), effective_on.isoformat()))


def plan_change_orders(db_path: Path, account: str) -> list[tuple[str, dt.date]]:
    """The plan-change orders of ``account``, oldest first: ``(plan, effective_on)``."""
    with _connect(db_path) as con:
        rows = con.execute("SELECT plan, effective_on FROM plan_changes WHERE account = ? ORDER BY id",
                           (account,)).fetchall()
    return [(r[0], dt.date.fromisoformat(r[1])) for r in rows]


def main(argv: list[str] | None = None) -> None:
    """``python examples/telecom/telecomdb.py [BOT_DIR] [--reset]``: (re)build the bot's database."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    reset = "--reset" in args
    folders = [a for a in args if a != "--reset"]
    bot_dir = Path(folders[0]) if folders else Path(__file__).resolve().parent
    seed_yml, db_path = bot_paths(bot_dir)
    ensure_db(seed_yml, db_path, reset=reset)
    with _connect(db_path) as con:
        counts = {t: con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]  # fixed table names
                  for t in ("subscribers", "plans", "tickets", "outages", "plan_changes")}
    print(f"{db_path}: " + ", ".join(f"{n} {t}" for t, n in counts.items()))


if __name__ == "__main__":
    main()
