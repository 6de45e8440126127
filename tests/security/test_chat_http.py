"""Issue 19, the chat port's HTTP side, attacked with real requests against the real ``channels.server.Server``:

* "public metrics": anyone could read the business's turn, hand-off, safety-block and error counters at /metrics on
  the customer port. Now /metrics is served there only when ``ServerOptions.public_metrics`` (``kefu serve
  --public-metrics``) says so.
* "Origin trusted from Host": the ``Host`` header (chosen by the client, or by whoever fronts the server) went into
  the Content-Security-Policy of served pages. Now nothing of the request is in the header.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from channels.server import CONTENT_SECURITY_POLICY, Server, ServerOptions, run_server
from tests.channels.conftest import EchoBackend

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def default_server() -> AsyncIterator[Server]:
    async with run_server(EchoBackend()) as server:  # the defaults, as `kefu serve` starts it
        yield server


async def get(server: Server, path: str, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
        return await client.get(path, headers=headers)


async def test_metrics_are_not_public_by_default(default_server: Server) -> None:
    default_server.metrics.handoffs.inc(7)  # something worth hiding
    res = await get(default_server, "/metrics")
    assert res.status_code == 404 and res.json()["error"]["code"] == "not_found"
    assert "kefu_" not in res.text


async def test_metrics_on_the_chat_port_when_enabled() -> None:
    async with run_server(EchoBackend(), options=ServerOptions(public_metrics=True)) as server:
        server.metrics.handoffs.inc(7)
        res = await get(server, "/metrics")
    assert res.status_code == 200 and "kefu_handoffs_total 7.0" in res.text


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8443", "127.0.0.1:1", "[::1]:9"])
async def test_the_host_header_never_reaches_the_csp(default_server: Server, host: str) -> None:
    res = await get(default_server, "/", Host=host)
    assert res.status_code == 200
    csp = res.headers["content-security-policy"]
    assert csp == CONTENT_SECURITY_POLICY
    hostname = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
    assert hostname not in csp and "ws:" not in csp and "wss:" not in csp
    assert "connect-src 'self'" in csp


async def test_kefu_serve_refuses_bad_chat_limits_before_starting() -> None:
    from typer.testing import CliRunner

    from kefu.cli import app

    for args, needle in ((["--trusted-proxy", "proxy.example"], "proxy.example"),
                         (["--conversation-burst", "0"], "burst")):
        result = CliRunner().invoke(app, ["serve", "--no-console", *args])
        assert result.exit_code == 2 and "invalid chat limits" in result.output and needle in result.output


async def test_sockets_per_address_are_capped_at_the_handshake() -> None:
    """A flood of sockets from one address is refused at the HTTP handshake (429, before any WebSocket work), while
    another address still connects; a closed socket frees its place."""
    import websockets
    from websockets.exceptions import InvalidStatus

    async with run_server(EchoBackend(), options=ServerOptions(connections_per_address=2)) as server:
        first = await websockets.connect(server.ws_url)
        second = await websockets.connect(server.ws_url)
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(server.ws_url)
        assert refused.value.response.status_code == 429
        assert server.metrics.value("kefu_connections_refused_total", {"reason": "connections_per_address"}) == 1
        other = await websockets.connect(server.ws_url, local_addr=("127.0.0.2", 0))
        await other.close()
        await first.close()
        await asyncio.sleep(0.05)  # the server's side of the close
        third = await websockets.connect(server.ws_url)
        for ws in (second, third):
            await ws.close()
