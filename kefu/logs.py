"""Logging set-up for ``kefu serve``: the usual text lines, or one JSON object per line (``--log-format json``).

A JSON line holds ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``msg`` (the formatted message), ``pid``, and the
context fields a caller passed with ``extra=`` when present (``conversation_id``, ``message_id``, ``attempt``...).
Kefu's log messages name ids, counts, types and codes, never customer text; the JSON formatter keeps that promise
for exceptions too: it writes the exception's type and where it was raised (``file:line:function``), not its
message or traceback (a driver's error text can quote a statement's parameters, i.e. customer text).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
from typing import Any, Final, TextIO

from channels.errors import raised_at

FORMATS: Final = ("text", "json")
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s %(message)s"
#: ``extra=`` fields copied into JSON lines (scalars only; anything else is dropped).
CONTEXT_FIELDS: Final = (
    "conversation_id", "message_id", "attempt", "code", "stage", "worker", "operation", "status", "path", "user_id",
)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, one line each (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process if record.process is not None else os.getpid(),
        }
        for name in CONTEXT_FIELDS:
            value = record.__dict__.get(name)
            if value is None or not isinstance(value, (str, int, float, bool)):
                continue
            entry[name] = value
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            entry["exc_type"] = type(exc).__name__
            entry["exc_where"] = raised_at(exc)
        return json.dumps(entry, ensure_ascii=False, separators=(",", ":"), default=str)


def console_to_log(message: str) -> None:
    """What ``kefu serve`` prints for people (rich markup), as an INFO record of the ``kefu`` logger instead."""
    from rich.text import Text

    logging.getLogger("kefu").info("%s", Text.from_markup(message).plain.strip())


def configure(fmt: str = "text", level: int = logging.INFO, stream: TextIO | None = None) -> logging.Handler:
    """Install one stream handler on the root logger (replacing any), in ``fmt`` (``text`` or ``json``).

    ``json`` also turns progress bars off (tqdm, Hugging Face), so every line on stderr is one JSON object.
    """
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {FORMATS}, got {fmt!r}")
    if fmt == "json":
        os.environ.setdefault("TQDM_DISABLE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
