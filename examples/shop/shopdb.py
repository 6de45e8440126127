"""The demo shop's order database: ``data/orders.yml`` materialised into SQLite with real dates.

``orders.yml`` stores dates relative to "today" (``ordered_days_ago``, ``delivered_days_ago``, ``eta_days``) so
the demo scenarios keep working forever. :func:`materialise_orders` turns them into calendar dates in an SQLite
file (``<bot>/models/orders.sqlite`` by default); :func:`ensure_orders_db` rebuilds that file only when the YAML
changed or the day rolled over; :func:`lookup_order` reads one order back.

Everything here is blocking (sqlite3, file I/O): call it from a thread (``asyncio.to_thread``) when on an event
loop. The rebuild writes a temporary file and renames it over the old one, so a concurrent reader (another
process, e.g. a rasa-sdk action server) always sees a complete database.

Every order lookup asks :func:`bot_paths` and :func:`ensure_orders_db` first, so both remember their last answer:
``bot.yml`` is parsed again only when its file changed (path, mtime, size, inode), and the database's freshness is
re-read only when the YAML's content, the day or the database file changed. The YAML's digest is still taken on
every call (cheap next to a YAML parse), since an edit can keep the file's size and mtime.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import sqlite3
import tempfile
import threading
from pathlib import Path
from typing import Any, TypedDict

import yaml

STATUSES = ("processing", "shipped", "delivered", "cancelled")
DEFAULT_DB_NAME = "orders.sqlite"
_SCHEMA_VERSION = "1"
_build_lock = threading.Lock()
_paths_lock = threading.Lock()
_FileKey = tuple[str, int, int, int]  # path, mtime_ns, size, inode
_paths_memo: dict[str, tuple[_FileKey, str]] = {}  # bot.yml path -> (its file key, the orders path it names)
_fresh_memo: dict[tuple[str, str], tuple[str, str, _FileKey]] = {}  # (yml, db) -> (digest, day, db file key) verified


class OrdersFileError(ValueError):
    """``orders.yml`` is missing or malformed; carries the file path and the offending entry index."""

    def __init__(self, path: Path, message: str, index: int | None = None) -> None:
        self.path = path
        self.index = index
        where = f"{path}" if index is None else f"{path} (orders[{index}])"
        super().__init__(f"{where}: {message}")


class Order(TypedDict):
    """One materialised order; dates are calendar dates (``None`` where not applicable)."""

    order_id: str
    customer: str
    items: list[str]
    status: str
    ordered_at: dt.date
    delivered_at: dt.date | None
    eta: dt.date | None
    carrier: str


def _opt_int(entry: dict[str, Any], key: str, path: Path, index: int) -> int | None:
    value = entry.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise OrdersFileError(path, f"{key} must be an integer or null", index)
    return value


def load_orders_yaml(path: Path, today: dt.date | None = None) -> list[Order]:
    """Parse ``orders.yml`` and resolve its relative days against ``today`` (default: the local date)."""
    today = today or dt.date.today()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise OrdersFileError(path, "file not found") from exc
    except yaml.YAMLError as exc:
        raise OrdersFileError(path, f"invalid YAML: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("orders"), list):
        raise OrdersFileError(path, "expected a mapping with an 'orders' list")
    orders: list[Order] = []
    seen: set[str] = set()
    for i, entry in enumerate(raw["orders"]):
        if not isinstance(entry, dict):
            raise OrdersFileError(path, "each order must be a mapping", i)
        order_id = str(entry.get("order_id", "")).strip()
        if not order_id:
            raise OrdersFileError(path, "order_id is required", i)
        if order_id in seen:
            raise OrdersFileError(path, f"duplicate order_id {order_id}", i)
        seen.add(order_id)
        status = str(entry.get("status", "")).strip()
        if status not in STATUSES:
            raise OrdersFileError(path, f"status must be one of {', '.join(STATUSES)}", i)
        items = entry.get("items") or []
        if not isinstance(items, list):
            raise OrdersFileError(path, "items must be a list", i)
        ordered_ago = _opt_int(entry, "ordered_days_ago", path, i)
        if ordered_ago is None:
            raise OrdersFileError(path, "ordered_days_ago is required", i)
        delivered_ago = _opt_int(entry, "delivered_days_ago", path, i)
        eta_days = _opt_int(entry, "eta_days", path, i)
        if status == "delivered" and delivered_ago is None:
            raise OrdersFileError(path, "a delivered order needs delivered_days_ago", i)
        orders.append(
            Order(
                order_id=order_id,
                customer=str(entry.get("customer", "")),
                items=[str(x) for x in items],
                status=status,
                ordered_at=today - dt.timedelta(days=ordered_ago),
                delivered_at=None if delivered_ago is None else today - dt.timedelta(days=delivered_ago),
                eta=None if eta_days is None else today + dt.timedelta(days=eta_days),
                carrier=str(entry.get("carrier", "")),
            )
        )
    return orders


def _source_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def materialise_orders(orders_yml: Path, db_path: Path, today: dt.date | None = None) -> int:
    """Write ``orders_yml`` into a fresh SQLite file at ``db_path`` (atomically replaced); returns the order count."""
    today = today or dt.date.today()
    orders = load_orders_yaml(orders_yml, today)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".orders-", suffix=".sqlite", dir=db_path.parent)
    os.close(fd)
    try:
        con = sqlite3.connect(tmp_name)
        try:
            con.executescript(
                """
                CREATE TABLE orders (
                    order_id     TEXT PRIMARY KEY,
                    customer     TEXT NOT NULL,
                    items        TEXT NOT NULL,   -- JSON list
                    status       TEXT NOT NULL,
                    ordered_at   TEXT NOT NULL,   -- ISO date
                    delivered_at TEXT,
                    eta          TEXT,
                    carrier      TEXT NOT NULL
                );
                CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                """
            )
            con.executemany(
                "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        o["order_id"],
                        o["customer"],
                        json.dumps(o["items"], ensure_ascii=False),
                        o["status"],
                        o["ordered_at"].isoformat(),
                        o["delivered_at"].isoformat() if o["delivered_at"] else None,
                        o["eta"].isoformat() if o["eta"] else None,
                        o["carrier"],
                    )
                    for o in orders
                ],
            )
            con.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [
                    ("schema", _SCHEMA_VERSION),
                    ("materialised_on", today.isoformat()),
                    ("source", str(orders_yml.resolve())),
                    ("source_sha256", _source_digest(orders_yml)),
                ],
            )
            con.commit()
        finally:
            con.close()
        os.replace(tmp_name, db_path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return len(orders)


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


def _file_key(path: Path) -> _FileKey | None:
    """What tells one version of a file from another without reading it; ``None`` when it does not exist."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (str(path), st.st_mtime_ns, st.st_size, st.st_ino)


def ensure_orders_db(orders_yml: Path, db_path: Path, today: dt.date | None = None) -> Path:
    """Return ``db_path``, (re)building it first if missing, built on another day, or older than ``orders_yml``."""
    today = today or dt.date.today()
    with _build_lock:
        digest = _source_digest(orders_yml) if orders_yml.exists() else ""
        day, key = today.isoformat(), (str(orders_yml), str(db_path))
        db_key = _file_key(db_path)
        if digest and db_key is not None and _fresh_memo.get(key) == (digest, day, db_key):
            return db_path  # verified (or built) by this process for this content and day, and untouched since
        meta = _read_meta(db_path) if db_key is not None else {}
        fresh = (
            meta.get("schema") == _SCHEMA_VERSION
            and meta.get("materialised_on") == day
            and bool(digest)
            and meta.get("source_sha256") == digest
        )
        if not fresh:
            materialise_orders(orders_yml, db_path, today)
            db_key = _file_key(db_path)
        if digest and db_key is not None:
            _fresh_memo[key] = (digest, day, db_key)
    return db_path


def bot_paths(bot_dir: Path) -> tuple[Path, Path]:
    """``(orders_yml, db_path)`` for a bot folder: ``bot.yml``'s ``orders:`` (default ``data/orders.yml``) and
    ``models/orders.sqlite``."""
    bot_yml = bot_dir / "bot.yml"
    return bot_dir / _orders_setting(bot_yml), bot_dir / "models" / DEFAULT_DB_NAME


def _orders_setting(bot_yml: Path) -> str:
    """``bot.yml``'s ``orders:`` (default ``data/orders.yml``), parsed again only when the file changed."""
    file_key = _file_key(bot_yml)
    with _paths_lock:
        known = _paths_memo.get(str(bot_yml))
    if known is not None and known[0] == file_key:
        return known[1]
    orders_rel = "data/orders.yml"
    if file_key is not None:
        try:
            cfg = yaml.safe_load(bot_yml.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError:
            cfg = {}
        except FileNotFoundError:  # removed since the stat: the default, and nothing remembered
            return orders_rel
        if isinstance(cfg, dict) and isinstance(cfg.get("orders"), str):
            orders_rel = cfg["orders"]
    if file_key is not None:
        with _paths_lock:
            _paths_memo[str(bot_yml)] = (file_key, orders_rel)
    return orders_rel


def lookup_order(db_path: Path | str, order_id: str) -> Order | None:
    """The order ``order_id`` (surrounding spaces and a leading ``#`` ignored), or ``None`` if there is none."""
    key = str(order_id).strip().lstrip("#").strip()
    if not key:
        return None
    con = sqlite3.connect(f"file:{Path(db_path)}?mode=ro", uri=True)
    try:
        row = con.execute(
            "SELECT order_id, customer, items, status, ordered_at, delivered_at, eta, carrier"
            " FROM orders WHERE order_id = ?",
            (key,),
        ).fetchone()
    finally:
        con.close()
    if row is None:
        return None
    return Order(
        order_id=row[0],
        customer=row[1],
        items=list(json.loads(row[2])),
        status=row[3],
        ordered_at=dt.date.fromisoformat(row[4]),
        delivered_at=dt.date.fromisoformat(row[5]) if row[5] else None,
        eta=dt.date.fromisoformat(row[6]) if row[6] else None,
        carrier=row[7],
    )


def main(argv: list[str] | None = None) -> None:
    """``python examples/shop/shopdb.py [BOT_DIR]``: (re)build ``<bot>/models/orders.sqlite``."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    bot_dir = Path(args[0]) if args else Path(__file__).resolve().parent
    orders_yml, db_path = bot_paths(bot_dir)
    count = materialise_orders(orders_yml, db_path)
    print(f"wrote {count} orders to {db_path}")


if __name__ == "__main__":
    main()
