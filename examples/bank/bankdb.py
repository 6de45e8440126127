"""The demo bank's records: ``data/customers.yml`` materialised into SQLite, and the queries the actions run.

The seed file holds customers, their accounts, cards and recent card charges (charge dates relative to "today", so
the demo never goes stale). :func:`ensure_bank_db` builds ``<bot>/.kefu/bank.sqlite`` from it when the file is
missing, when the seed changed, or on a new day: what a demo conversation did (a blocked card, a transfer, a
dispute) lasts until then, and ``python bankdb.py`` starts over at once. The rebuild writes a temporary file and
renames it over the old one, so another process (an action server, a second worker) never reads half a database.

Money is kept in integer fen (cents): no float rounding on balances. The writes that must not interleave (a transfer
checks the balance and debits it; a block checks the card's status and sets it) run in one ``BEGIN IMMEDIATE``
transaction each, which SQLite serialises across processes.

Everything here is blocking (sqlite3, file I/O): call it from a thread (``asyncio.to_thread``) when on an event loop.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

SEED_FILE = "data/customers.yml"
DB_FILE = ".kefu/bank.sqlite"
ACCOUNT_TYPES = ("checking", "savings")
CARD_STATUSES = ("active", "blocked")
_SCHEMA_VERSION = "1"
_BUSY_TIMEOUT_S = 5.0
_build_lock = threading.Lock()

_SCHEMA = """
CREATE TABLE customers (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    date_of_birth TEXT NOT NULL                 -- ISO date
);
CREATE TABLE accounts (
    customer_id   TEXT NOT NULL REFERENCES customers(id),
    type          TEXT NOT NULL,                -- checking | savings
    last4         TEXT NOT NULL,
    balance_cents INTEGER NOT NULL,
    PRIMARY KEY (customer_id, type)
);
CREATE TABLE cards (
    id            INTEGER PRIMARY KEY,
    customer_id   TEXT NOT NULL REFERENCES customers(id),
    last4         TEXT NOT NULL,
    kind          TEXT NOT NULL,                -- debit | credit
    status        TEXT NOT NULL,                -- active | blocked
    blocked_at    TEXT
);
CREATE INDEX cards_last4 ON cards(last4);
CREATE TABLE charges (
    id            INTEGER PRIMARY KEY,
    customer_id   TEXT NOT NULL REFERENCES customers(id),
    card_last4    TEXT NOT NULL,
    merchant      TEXT NOT NULL,
    merchant_zh   TEXT NOT NULL,
    amount_cents  INTEGER NOT NULL,
    charged_on    TEXT NOT NULL                 -- ISO date
);
CREATE TABLE transfers (
    id              INTEGER PRIMARY KEY,
    reference       TEXT UNIQUE,
    customer_id     TEXT NOT NULL REFERENCES customers(id),
    account_type    TEXT NOT NULL,
    amount_cents    INTEGER NOT NULL,
    recipient       TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    created_at      TEXT NOT NULL
);
CREATE TABLE disputes (
    id              INTEGER PRIMARY KEY,
    reference       TEXT UNIQUE,
    customer_id     TEXT NOT NULL REFERENCES customers(id),
    charge_id       INTEGER NOT NULL REFERENCES charges(id),
    reason          TEXT NOT NULL,
    status          TEXT NOT NULL,              -- open
    conversation_id TEXT NOT NULL,
    created_at      TEXT NOT NULL
);
CREATE TABLE failed_verifications (
    conversation_id TEXT NOT NULL,
    at              TEXT NOT NULL
);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class SeedFileError(ValueError):
    """``customers.yml`` is missing or malformed; the message names the file and the offending entry."""

    def __init__(self, path: Path, message: str, where: str | None = None) -> None:
        self.path = path
        super().__init__(f"{path}{f' ({where})' if where else ''}: {message}")


@dataclass(frozen=True)
class Card:
    customer_id: str
    last4: str
    kind: str
    status: str


@dataclass(frozen=True)
class Account:
    customer_id: str
    type: str
    last4: str
    balance_cents: int


@dataclass(frozen=True)
class Charge:
    id: int
    card_last4: str
    merchant: str
    merchant_zh: str
    amount_cents: int
    charged_on: dt.date


@dataclass(frozen=True)
class TransferOutcome:
    """``status``: ``done`` (debited; ``reference`` set), ``insufficient`` or ``no_account``;
    ``balance_cents``: the balance after the transfer (or as it stands when refused)."""

    status: str
    balance_cents: int
    reference: str | None = None


@dataclass(frozen=True)
class DisputeOutcome:
    """``created`` False: the charge was already disputed; ``reference`` is then the existing dispute's."""

    reference: str
    created: bool


# ------------------------------------------------------------------------------------------------- the seed file


def _cents(raw: Any, path: Path, where: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise SeedFileError(path, "an amount must be a number", where)
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        raise SeedFileError(path, f"{raw!r} is not an amount", where) from None
    return int((value * 100).to_integral_value())


def _entries(raw: Any, key: str, path: Path, where: str) -> list[dict[str, Any]]:
    items = raw.get(key) or []
    if not isinstance(items, list) or not all(isinstance(x, dict) for x in items):
        raise SeedFileError(path, f"{key} must be a list of mappings", where)
    return items


def load_seed(path: Path, today: dt.date | None = None) -> dict[str, list[tuple[Any, ...]]]:
    """Parse and check ``customers.yml``; returns the rows of each table (charge dates resolved against ``today``).

    ``meta`` carries ``signed_in``, the customer the demo chat is signed in as."""
    today = today or dt.date.today()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SeedFileError(path, "file not found") from exc
    except yaml.YAMLError as exc:
        raise SeedFileError(path, f"invalid YAML: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("customers"), list):
        raise SeedFileError(path, "expected a mapping with a 'customers' list")
    rows: dict[str, list[tuple[Any, ...]]] = {"customers": [], "accounts": [], "cards": [], "charges": []}
    seen: set[str] = set()
    for i, customer in enumerate(raw["customers"]):
        where = f"customers[{i}]"
        if not isinstance(customer, dict):
            raise SeedFileError(path, "each customer must be a mapping", where)
        cid = str(customer.get("id", "")).strip()
        if not cid or cid in seen:
            raise SeedFileError(path, "needs a unique id", where)
        seen.add(cid)
        try:
            born = dt.date.fromisoformat(str(customer.get("date_of_birth")))
        except ValueError:
            raise SeedFileError(path, "date_of_birth must be an ISO date (YYYY-MM-DD)", where) from None
        rows["customers"].append((cid, str(customer.get("name", "")), born.isoformat()))
        for account in _entries(customer, "accounts", path, where):
            if account.get("type") not in ACCOUNT_TYPES:
                raise SeedFileError(path, f"account type must be one of {', '.join(ACCOUNT_TYPES)}", where)
            rows["accounts"].append((cid, account["type"], str(account.get("last4", "")),
                                     _cents(account.get("balance", 0), path, where)))
        for card in _entries(customer, "cards", path, where):
            last4 = str(card.get("last4", ""))
            if len(last4) != 4 or not last4.isdigit() or card.get("status") not in CARD_STATUSES:
                raise SeedFileError(path, f"a card needs 4-digit last4 and status {' or '.join(CARD_STATUSES)}", where)
            rows["cards"].append((cid, last4, str(card.get("kind", "debit")), card["status"]))
        for charge in _entries(customer, "charges", path, where):
            days = charge.get("days_ago")
            if isinstance(days, bool) or not isinstance(days, int) or days < 0:
                raise SeedFileError(path, "a charge needs days_ago (a whole number of days)", where)
            rows["charges"].append((cid, str(charge.get("card", "")), str(charge.get("merchant", "")),
                                    str(charge.get("merchant_zh") or charge.get("merchant", "")),
                                    _cents(charge.get("amount"), path, where),
                                    (today - dt.timedelta(days=days)).isoformat()))
    signed_in = str(raw.get("signed_in", ""))
    if signed_in not in seen:
        raise SeedFileError(path, f"signed_in must name one of the customers, got {signed_in!r}")
    rows["meta"] = [("signed_in", signed_in)]
    return rows


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def materialise(seed: Path, db_path: Path, today: dt.date | None = None) -> int:
    """Write the seed into a fresh SQLite file at ``db_path`` (atomically replaced); returns the customer count."""
    today = today or dt.date.today()
    rows = load_seed(seed, today)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".bank-", suffix=".sqlite", dir=db_path.parent)
    os.close(fd)
    try:
        con = sqlite3.connect(tmp_name)
        try:
            con.executescript(_SCHEMA)
            con.executemany("INSERT INTO customers VALUES (?, ?, ?)", rows["customers"])
            con.executemany("INSERT INTO accounts VALUES (?, ?, ?, ?)", rows["accounts"])
            con.executemany("INSERT INTO cards (customer_id, last4, kind, status) VALUES (?, ?, ?, ?)", rows["cards"])
            con.executemany(
                "INSERT INTO charges (customer_id, card_last4, merchant, merchant_zh, amount_cents, charged_on)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                rows["charges"],
            )
            con.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [*rows["meta"], ("schema", _SCHEMA_VERSION), ("materialised_on", today.isoformat()),
                 ("source_sha256", _digest(seed))],
            )
            con.commit()
        finally:
            con.close()
        os.replace(tmp_name, db_path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return len(rows["customers"])


def _read_meta(db_path: Path) -> dict[str, str]:
    try:
        con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    except sqlite3.Error:
        return {}
    try:
        return dict(con.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.Error:
        return {}
    finally:
        con.close()


def ensure_bank_db(seed: Path, db_path: Path, today: dt.date | None = None) -> Path:
    """Return ``db_path``, (re)building it first if missing, built on another day, or older than the seed."""
    today = today or dt.date.today()
    with _build_lock:
        meta = _read_meta(db_path) if db_path.exists() else {}
        fresh = (
            meta.get("schema") == _SCHEMA_VERSION
            and meta.get("materialised_on") == today.isoformat()
            and seed.exists()
            and meta.get("source_sha256") == _digest(seed)
        )
        if not fresh:
            materialise(seed, db_path, today)
    return db_path


def bot_paths(bot_dir: Path) -> tuple[Path, Path]:
    """``(seed, db_path)`` of a bot folder: ``data/customers.yml`` and ``.kefu/bank.sqlite`` (git-ignored)."""
    return bot_dir / SEED_FILE, bot_dir / DB_FILE


# ------------------------------------------------------------------------------------------------- queries


@contextmanager
def _connect(db_path: Path, *, write: bool = False) -> Iterator[sqlite3.Connection]:
    """A connection; with ``write``, inside one ``BEGIN IMMEDIATE`` transaction committed on success."""
    con = sqlite3.connect(str(db_path), timeout=_BUSY_TIMEOUT_S, isolation_level=None)
    try:
        if write:
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


def signed_in_customer(db_path: Path) -> str:
    """The customer the demo chat is signed in as (``signed_in`` of the seed)."""
    with _connect(db_path) as con:
        row = con.execute("SELECT value FROM meta WHERE key = 'signed_in'").fetchone()
    if row is None:
        raise SeedFileError(db_path, "the database has no signed-in customer: rebuild it")
    return str(row[0])


def verify_card(db_path: Path, last4: str, dates_of_birth: set[dt.date]) -> Card | None:
    """The card ending ``last4`` whose holder was born on one of ``dates_of_birth``, or ``None``: the identity check
    before a block (both must match; which of the two was wrong is not told)."""
    if not dates_of_birth:
        return None
    births = sorted(d.isoformat() for d in dates_of_birth)
    with _connect(db_path) as con:
        row = con.execute(
            "SELECT cards.customer_id, cards.last4, cards.kind, cards.status FROM cards"
            " JOIN customers ON customers.id = cards.customer_id"
            f" WHERE cards.last4 = ? AND customers.date_of_birth IN ({', '.join('?' * len(births))})"
            " ORDER BY cards.id LIMIT 1",
            (last4, *births),
        ).fetchone()
    return None if row is None else Card(*row)


def block_card(db_path: Path, card: Card, now: dt.datetime | None = None) -> bool:
    """Block ``card``; ``False`` when it was blocked already (nothing changes then)."""
    stamp = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
    with _connect(db_path, write=True) as con:
        cursor = con.execute(
            "UPDATE cards SET status = 'blocked', blocked_at = ?"
            " WHERE customer_id = ? AND last4 = ? AND status = 'active'",
            (stamp, card.customer_id, card.last4),
        )
        return cursor.rowcount > 0


def record_failed_verification(db_path: Path, conversation_id: str, now: dt.datetime | None = None) -> int:
    """Count a failed identity check in this conversation; returns how many there have been."""
    stamp = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
    with _connect(db_path, write=True) as con:
        con.execute("INSERT INTO failed_verifications VALUES (?, ?)", (conversation_id, stamp))
        row = con.execute("SELECT COUNT(*) FROM failed_verifications WHERE conversation_id = ?",
                          (conversation_id,)).fetchone()
    return int(row[0])


def failed_verifications(db_path: Path, conversation_id: str) -> int:
    with _connect(db_path) as con:
        row = con.execute("SELECT COUNT(*) FROM failed_verifications WHERE conversation_id = ?",
                          (conversation_id,)).fetchone()
    return int(row[0])


def account(db_path: Path, customer_id: str, account_type: str) -> Account | None:
    with _connect(db_path) as con:
        row = con.execute(
            "SELECT customer_id, type, last4, balance_cents FROM accounts WHERE customer_id = ? AND type = ?",
            (customer_id, account_type),
        ).fetchone()
    return None if row is None else Account(*row)


def transfer(
    db_path: Path, customer_id: str, account_type: str, amount_cents: int, recipient: str, conversation_id: str,
    now: dt.datetime | None = None,
) -> TransferOutcome:
    """Debit ``amount_cents`` from the customer's account and record the transfer, unless the balance is short."""
    moment = now or dt.datetime.now(dt.UTC)
    with _connect(db_path, write=True) as con:
        row = con.execute("SELECT balance_cents FROM accounts WHERE customer_id = ? AND type = ?",
                          (customer_id, account_type)).fetchone()
        if row is None:
            return TransferOutcome("no_account", 0)
        balance = int(row[0])
        if amount_cents > balance:
            return TransferOutcome("insufficient", balance)
        con.execute("UPDATE accounts SET balance_cents = balance_cents - ? WHERE customer_id = ? AND type = ?",
                    (amount_cents, customer_id, account_type))
        cursor = con.execute(
            "INSERT INTO transfers (customer_id, account_type, amount_cents, recipient, conversation_id, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (customer_id, account_type, amount_cents, recipient, conversation_id,
             moment.isoformat(timespec="seconds")),
        )
        reference = f"TR{moment:%Y%m%d}-{cursor.lastrowid:04d}"
        con.execute("UPDATE transfers SET reference = ? WHERE id = ?", (reference, cursor.lastrowid))
    return TransferOutcome("done", balance - amount_cents, reference)


def _squash(text: str) -> str:
    return "".join(ch for ch in text.casefold() if ch.isalnum())


# Words that name no merchant: "the Luckin coffee one" is about Luckin, not any coffee.
_GENERIC_WORDS = frozenset({"the", "one", "a", "an", "at", "on", "of", "from", "my", "that", "this", "charge", "payment",
                            "transaction", "com", "coffee", "shanghai", "store", "shop", "online"})


_CJK = re.compile(r"^[\u3400-\u9fff]+$")


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.casefold()) if len(w) >= 2 and w not in _GENERIC_WORDS}


def _cjk_overlap(said: str, name: str, least: int = 2) -> bool:
    """Whether ``said`` and ``name`` share ``least`` consecutive Chinese characters (美团那笔 / 美团外卖)."""
    return any(name[i : i + least] in said for i in range(len(name) - least + 1) if _CJK.match(name[i : i + least]))


def name_match(description: str, names: tuple[str, ...]) -> int:
    """How well a customer's description names a merchant: 2 the whole name (either way round: "the Starbucks one",
    "Hilton"), 1 a distinctive part of it ("the Luckin one", "美团那笔"), 0 not at all."""
    said = _squash(description)
    if not said:
        return 0
    squashed = [_squash(n) for n in names if n]
    if any(n and (n in said or (len(said) >= 2 and said in n)) for n in squashed):
        return 2
    words = _words(description)
    if any(words & _words(n) for n in names) or any(_cjk_overlap(said, n) for n in squashed):
        return 1
    return 0


def find_charges(db_path: Path, customer_id: str, description: str, amount_cents: int | None) -> list[Charge]:
    """The customer's charges that ``description`` names (a merchant, in either language) or whose amount is
    ``amount_cents``; best match first (a whole name or the amount before a part of a name), then newest first."""
    with _connect(db_path) as con:
        rows = con.execute(
            "SELECT id, card_last4, merchant, merchant_zh, amount_cents, charged_on FROM charges"
            " WHERE customer_id = ? ORDER BY charged_on DESC, id DESC",
            (customer_id,),
        ).fetchall()
    scored: list[tuple[int, Charge]] = []
    for row in rows:
        score = max(name_match(description, (row[2], row[3])), 2 if amount_cents == row[4] else 0)
        if score:
            scored.append((score, Charge(row[0], row[1], row[2], row[3], int(row[4]), dt.date.fromisoformat(row[5]))))
    scored.sort(key=lambda pair: -pair[0])  # stable: newest first within a score
    return [charge for _, charge in scored]


def open_dispute(
    db_path: Path, customer_id: str, charge: Charge, reason: str, conversation_id: str, now: dt.datetime | None = None
) -> DisputeOutcome:
    """Open a dispute about ``charge`` (one per charge: a second request gets the first one's reference)."""
    moment = now or dt.datetime.now(dt.UTC)
    with _connect(db_path, write=True) as con:
        row = con.execute("SELECT reference FROM disputes WHERE charge_id = ? AND status = 'open'",
                          (charge.id,)).fetchone()
        if row is not None:
            return DisputeOutcome(str(row[0]), created=False)
        cursor = con.execute(
            "INSERT INTO disputes (customer_id, charge_id, reason, status, conversation_id, created_at)"
            " VALUES (?, ?, ?, 'open', ?, ?)",
            (customer_id, charge.id, reason, conversation_id, moment.isoformat(timespec="seconds")),
        )
        reference = f"DSP-{100000 + int(cursor.lastrowid or 0)}"
        con.execute("UPDATE disputes SET reference = ? WHERE id = ?", (reference, cursor.lastrowid))
    return DisputeOutcome(reference, created=True)


def main(argv: list[str] | None = None) -> None:
    """``python examples/bank/bankdb.py [BOT_DIR]``: rebuild ``<bot>/.kefu/bank.sqlite`` from the seed now."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0]) if args else Path(__file__).resolve().parent
    seed, db_path = bot_paths(root)
    count = materialise(seed, db_path)
    print(f"wrote {count} customers to {db_path}")


if __name__ == "__main__":
    main()
