"""Kefu: channels package: the chat wire protocol (pure), the public WebSocket/HTTP server and the widget, and the
staff-only ops server (login, console pages and API) on a port of its own.

Public surface (lazy, so ``import channels`` imports neither ``websockets`` nor ``aiohttp``)::

    from channels import Backend, ChannelError, ProtocolError, run_server, serve, Server, ServerOptions
    from channels import ConsoleBackend, OpsServer, OpsOptions, run_ops_server
    from channels import Metrics  # Prometheus metrics of a server process (GET /metrics)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from channels.errors import ChannelError, ProtocolError, StaticFilesError

if TYPE_CHECKING:
    from channels.backend import Backend, ConsoleBackend
    from channels.metrics import Metrics
    from channels.ops import OpsOptions, OpsServer, run_ops_server
    from channels.server import Server, ServerOptions, run_server, serve

__all__ = [
    "Backend",
    "ChannelError",
    "ConsoleBackend",
    "Metrics",
    "OpsOptions",
    "OpsServer",
    "ProtocolError",
    "Server",
    "ServerOptions",
    "StaticFilesError",
    "run_ops_server",
    "run_server",
    "serve",
]

_LAZY = {
    "Backend": "channels.backend",
    "ConsoleBackend": "channels.backend",
    "Metrics": "channels.metrics",
    "OpsOptions": "channels.ops",
    "OpsServer": "channels.ops",
    "run_ops_server": "channels.ops",
    "Server": "channels.server",
    "ServerOptions": "channels.server",
    "run_server": "channels.server",
    "serve": "channels.server",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'channels' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
