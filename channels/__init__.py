"""Kefu: channels package: the chat wire protocol (pure), the WebSocket/HTTP server, the widget and console.

Public surface (lazy, so ``import channels`` does not import ``websockets``)::

    from channels import Backend, ChannelError, ProtocolError, run_server, serve, Server, ServerOptions
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from channels.errors import ChannelError, ProtocolError, StaticFilesError

if TYPE_CHECKING:
    from channels.backend import Backend
    from channels.server import Server, ServerOptions, run_server, serve

__all__ = [
    "Backend",
    "ChannelError",
    "ProtocolError",
    "Server",
    "ServerOptions",
    "StaticFilesError",
    "run_server",
    "serve",
]

_LAZY = {
    "Backend": "channels.backend",
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
