"""Attacks on the console's HTTP layer (issue 19), each against a real ops server over a real socket.

* forged log lines: a path with control characters is written escaped, on the line of its own request;
* slow clients: half a request head (or a head sent a byte at a time, or half a body) is cut off within the
  configured time instead of holding a connection for minutes;
* DNS rebinding: a page whose Origin and Host are both its own name is refused; the console's own names work;
* metrics: served on the console port, to staff.
"""

from __future__ import annotations

import asyncio
import io
import json
import re

import httpx
import pytest

from channels.metrics import Metrics
from channels.ops import CSP, OpsOptions, OpsServer, run_ops_server
from tests.channels.conftest import PASSWORDS, ConsoleEnv
from tests.security.conftest import closed_after, raw_request

# ------------------------------------------------------------------------------------------ forged log lines
FAKE = "2027-01-01 00:00:00,000 INFO kefu.channels.ops login ok (user=admin, role=admin)"


@pytest.mark.parametrize(
    ("encoded", "escaped"),
    [
        ("%0a", "\\x0a"),  # LF
        ("%0d%0a", "\\x0d\\x0a"),  # CRLF
        ("%0d", "\\x0d"),  # CR: terminals and some viewers return to the line's start
        ("%e2%80%a8", "\\u2028"),  # LINE SEPARATOR: a line break for many log viewers
        ("%1b%5b2K%0d", "\\x1b[2K\\x0d"),  # ANSI "erase line"
    ],
)
async def test_a_path_cannot_forge_a_log_line(
    console_env: ConsoleEnv, text_log: io.StringIO, encoded: str, escaped: str
) -> None:
    async with run_ops_server(console_env.console) as ops:
        path = "/" + encoded + FAKE.replace(" ", "%20")
        head = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{ops.port}\r\nConnection: close\r\n\r\n"
        response = await raw_request("127.0.0.1", ops.port, head.encode("ascii"))
        assert response.startswith(b"HTTP/1.1 404")
        await _logged(text_log, "GET /")
    lines = text_log.getvalue().splitlines()
    access = [line for line in lines if " GET /" in line]
    assert len(access) == 1 and escaped + FAKE in access[0] and access[0].endswith("ms")
    assert not [line for line in lines if line.startswith(FAKE[:10])]  # no line of the attacker's making
    assert "\x1b" not in text_log.getvalue() and "\u2028" not in text_log.getvalue()


async def _logged(log: io.StringIO, text: str) -> None:
    """The access log is written as the response ends: wait for it (briefly)."""
    for _ in range(200):
        if text in log.getvalue():
            return
        await asyncio.sleep(0.01)


# --------------------------------------------------------------------------------------------- slow clients
SLOW = OpsOptions(header_timeout=1.0, body_timeout=1.0)
GRACE = 2.0  # the event loop's timer granularity, a loaded test machine


async def test_half_sent_request_heads_are_closed_in_time(console_env: ConsoleEnv) -> None:
    async with run_ops_server(console_env.console, options=SLOW) as ops:
        connections = [await asyncio.open_connection("127.0.0.1", ops.port) for _ in range(20)]
        for _, writer in connections:
            writer.write(f"GET /login HTTP/1.1\r\nHost: 127.0.0.1:{ops.port}\r\n".encode())  # no blank line
            await writer.drain()
        closed = await asyncio.gather(*(closed_after(r, SLOW.header_timeout + GRACE) for r, _ in connections))
        for _, writer in connections:
            writer.close()
    assert all(t is not None for t in closed), closed


async def test_a_head_sent_a_byte_at_a_time_is_closed_in_time(console_env: ConsoleEnv) -> None:
    async with run_ops_server(console_env.console, options=SLOW) as ops:
        reader, writer = await asyncio.open_connection("127.0.0.1", ops.port)

        async def dribble() -> None:
            writer.write(f"GET /login HTTP/1.1\r\nHost: 127.0.0.1:{ops.port}\r\n".encode())
            for _ in range(100):
                await asyncio.sleep(0.1)
                writer.write(b"X-a: b\r\n")  # a new header line every 100 ms: never idle, never done

        sender = asyncio.create_task(dribble())
        closed = await closed_after(reader, SLOW.header_timeout + GRACE)
        sender.cancel()
        writer.close()
    assert closed is not None


async def test_an_idle_keep_alive_connection_is_closed_in_time(console_env: ConsoleEnv) -> None:
    async with run_ops_server(console_env.console, options=SLOW) as ops:
        reader, writer = await asyncio.open_connection("127.0.0.1", ops.port)
        writer.write(f"GET /login HTTP/1.1\r\nHost: 127.0.0.1:{ops.port}\r\n\r\n".encode())
        status = await reader.readline()
        closed = await closed_after(reader, SLOW.header_timeout + GRACE)
        writer.close()
    assert status.startswith(b"HTTP/1.1 200") and closed is not None


@pytest.mark.parametrize("trickle", [False, True])
async def test_a_slow_body_gets_408_and_the_connection_closes(console_env: ConsoleEnv, trickle: bool) -> None:
    async with run_ops_server(console_env.console, options=SLOW) as ops:
        reader, writer = await asyncio.open_connection("127.0.0.1", ops.port)
        head = (
            f"POST /api/login HTTP/1.1\r\nHost: 127.0.0.1:{ops.port}\r\nOrigin: {ops.url}\r\n"
            "Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"username\": "
        )
        writer.write(head.encode())

        async def dribble() -> None:
            for _ in range(100):
                await asyncio.sleep(0.1)
                writer.write(b" ")

        sender = asyncio.create_task(dribble()) if trickle else None
        status = await asyncio.wait_for(reader.readline(), SLOW.body_timeout + GRACE)
        closed = await closed_after(reader, SLOW.body_timeout + GRACE)
        if sender is not None:
            sender.cancel()
        writer.close()
    assert status.startswith(b"HTTP/1.1 408"), status
    assert closed is not None


# -------------------------------------------------------------------------------------------- DNS rebinding
async def _login(ops: OpsServer, host: str, origin: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=ops.url, timeout=30) as client:
        return await client.post(
            "/api/login",
            content=json.dumps({"username": "agent", "password": PASSWORDS["agent"]}),
            headers={"Content-Type": "application/json", "Host": host, "Origin": origin},
        )


async def test_a_rebound_name_is_refused_even_when_origin_and_host_agree(console_env: ConsoleEnv) -> None:
    async with run_ops_server(console_env.console) as ops:
        rebound = await _login(ops, f"evil.example:{ops.port}", f"http://evil.example:{ops.port}")
        async with httpx.AsyncClient(base_url=ops.url, timeout=30) as client:
            page = await client.get("/login", headers={"Host": f"evil.example:{ops.port}"})
        own = await _login(ops, f"localhost:{ops.port}", f"http://localhost:{ops.port}")
    assert (rebound.status_code, rebound.json()["error"]["code"]) == (400, "bad_host")
    assert "set-cookie" not in rebound.headers
    assert page.status_code == 400 and "evil" not in page.text  # a rebound page cannot even read the login page
    assert rebound.headers["content-security-policy"] == CSP and "evil" not in rebound.headers["content-security-policy"]
    assert own.status_code == 200  # the console's own loopback names still work


async def test_with_a_public_origin_only_its_name_and_loopback_are_answered(console_env: ConsoleEnv) -> None:
    options = OpsOptions(origins=("https://ops.shop.example",))
    async with run_ops_server(console_env.console, options=options) as ops:
        proxied = await _login(ops, "ops.shop.example", "https://ops.shop.example")
        rebound = await _login(ops, "evil.example", "https://evil.example")
        spoofed = await _login(ops, "evil.example", "https://ops.shop.example")
    assert proxied.status_code == 200 and "Secure" in proxied.headers["set-cookie"]
    assert rebound.status_code == 400 and spoofed.status_code == 400


# -------------------------------------------------------------------------------------------------- metrics
async def test_metrics_are_served_to_staff_on_the_console_port(console_env: ConsoleEnv) -> None:
    metrics = Metrics()
    metrics.turn_done("ok", 0.05)
    metrics.handoffs.inc()
    async with run_ops_server(console_env.console, metrics=metrics) as ops:
        async with httpx.AsyncClient(base_url=ops.url, timeout=30) as anonymous:
            refused = await anonymous.get("/metrics")
        async with httpx.AsyncClient(base_url=ops.url, timeout=30) as viewer:
            res = await viewer.post("/api/login", content=json.dumps(
                {"username": "viewer", "password": PASSWORDS["viewer"]}),
                headers={"Content-Type": "application/json", "Origin": ops.url})
            assert res.status_code == 200
            served = await viewer.get("/metrics")
    assert refused.status_code == 401
    assert served.status_code == 200 and served.headers["content-type"].startswith("text/plain")
    assert re.search(r'^kefu_turns_total\{outcome="ok"\} 1\.0$', served.text, flags=re.MULTILINE)
    assert re.search(r"^kefu_handoffs_total 1\.0$", served.text, flags=re.MULTILINE)


async def test_metrics_can_be_public_on_the_console_port(console_env: ConsoleEnv) -> None:
    options = OpsOptions(public_metrics=True)
    async with (
        run_ops_server(console_env.console, options=options, metrics=Metrics()) as ops,
        httpx.AsyncClient(base_url=ops.url, timeout=30) as scraper,
    ):
        served = await scraper.get("/metrics")
        wrong_host = await scraper.get("/metrics", headers={"Host": "evil.example"})
    assert served.status_code == 200 and "kefu_turns_total" in served.text
    assert wrong_host.status_code == 400
