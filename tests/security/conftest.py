"""Shared helpers for the security regression tests: each test performs an attack on a real server, over real sockets.

Generic pieces only (any test module here may use them):

* :func:`client_from`: an httpx client whose connections come from a given loopback address (Linux routes all of
  ``127.0.0.0/8`` to ``lo``), so "another attacker address" is a real, different peer address;
* :func:`raw_request` and :func:`closed_after`: a plain TCP socket for what HTTP clients will not send (control
  characters in a path, half a request) and for watching when the server hangs up;
* ``console_env`` (from ``tests/channels``): a real SQLite store, the model-free engine, the console backend and
  one account per role;
* ``text_log``: the ``kefu`` loggers written through a real ``StreamHandler`` in ``kefu serve``'s text format,
  read back as the lines an operator would see.

Async fixtures run on the session event loop, like the rest of the suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from kefu.logs import TEXT_FORMAT
from tests.channels.conftest import console_env  # noqa: F401 - a real store, a model-free engine, one account per role


def client_from(address: str, base_url: str, **kwargs: Any) -> httpx.AsyncClient:
    """An httpx client of ``base_url`` whose TCP connections are bound to ``address`` (e.g. ``127.0.0.7``)."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    kwargs.setdefault("timeout", 30)
    return httpx.AsyncClient(base_url=base_url, transport=transport, **kwargs)


async def raw_request(host: str, port: int, data: bytes, *, read_timeout: float = 10.0) -> bytes:
    """Send ``data`` as is on a new connection and return everything read until the server closes it."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(data)
        await writer.drain()
        chunks = []
        async with asyncio.timeout(read_timeout):
            while chunk := await reader.read(65536):
                chunks.append(chunk)
        return b"".join(chunks)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def closed_after(reader: asyncio.StreamReader, limit: float) -> float | None:
    """Seconds until the peer closed the connection (EOF or reset), reading and discarding whatever it sends;
    ``None`` when it was still open after ``limit`` seconds."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(limit):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return None
    except ConnectionError:
        pass
    return time.monotonic() - started


@pytest.fixture
def text_log() -> Iterator[io.StringIO]:
    """What the ``kefu`` loggers write in the text format of ``kefu serve --log-format text``."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    handler.setLevel(logging.DEBUG)
    kefu = logging.getLogger("kefu")
    previous = kefu.level
    kefu.addHandler(handler)
    kefu.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        kefu.removeHandler(handler)
        kefu.setLevel(previous)
