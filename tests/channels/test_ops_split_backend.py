"""The console backend's layers: the store's and the engine's operations reach the ops server as they are (one
signature each, checked here against the real classes), and errors map to statuses by exception class."""

from __future__ import annotations

import inspect
import types
from typing import Any

import pytest

from channels.backend import ENGINE_OPERATIONS, STORE_OPERATIONS, ConsoleBackend, ConsoleEngine, ConsoleStore
from channels.errors import ChannelError
from channels.ops import ROUTES, ApiError, OpsServer, PasswordPoolFull
from channels.ops.api import ERROR_STATUS, ERRORS, error_code_for
from dialogue.canned import CannedReplyExists, CannedReplyInvalid, CannedReplyNotFound
from dialogue.engine import DialogueEngine
from dialogue.errors import ConversationNotFound, ReviewError, StoreError, StoreUnavailable
from dialogue.store import Store
from kefu.console import Console


def fits(store: Store, engine: DialogueEngine) -> tuple[ConsoleStore, ConsoleEngine]:
    """Never called: mypy checks that the real store and engine have the protocols' operations."""
    return store, engine


@pytest.mark.parametrize(
    ("protocol", "names", "implementation"),
    [(ConsoleStore, STORE_OPERATIONS, Store), (ConsoleEngine, ENGINE_OPERATIONS, DialogueEngine)],
)
def test_the_real_class_takes_every_operation_as_the_protocol_states_it(
    protocol: type, names: frozenset[str], implementation: type
) -> None:
    declared = {n for c in protocol.__mro__ if getattr(c, "_is_protocol", False) and c is not protocol.__mro__[-1]
                for n, v in vars(c).items() if callable(v) and not n.startswith("_")}
    assert names and names == declared
    for name in sorted(names):
        wanted = inspect.signature(getattr(protocol, name)).parameters
        real = inspect.signature(getattr(implementation, name)).parameters
        assert inspect.iscoroutinefunction(getattr(implementation, name)), name
        for param in wanted.values():
            assert param.name in real and real[param.name].kind == param.kind, (name, param.name)
        extra = [p for p in real.values() if p.name not in wanted]
        assert all(p.default is not inspect.Parameter.empty for p in extra), (name, extra)


def test_console_forwards_store_and_engine_operations_without_restating_them() -> None:
    store = types.SimpleNamespace(**{name: object() for name in STORE_OPERATIONS}, correct=object())
    engine = types.SimpleNamespace(store=store, **{name: object() for name in ENGINE_OPERATIONS}, review=object())
    console = Console(engine)
    assert console.review is store.review and console.list_conversations is store.list_conversations
    assert console.correct is engine.correct and console.take_over is engine.take_over
    with pytest.raises(AttributeError):
        console.get_canned_reply  # noqa: B018 - a store method the console does not offer
    restated = (STORE_OPERATIONS | ENGINE_OPERATIONS) & set(vars(Console))
    assert not restated
    assert isinstance(console, ConsoleBackend)


def test_errors_map_by_class_with_the_same_statuses() -> None:
    assert issubclass(ApiError, ChannelError) and issubclass(PasswordPoolFull, ChannelError)
    assert all(isinstance(cls, type) and issubclass(cls, Exception) for cls in ERROR_STATUS)
    assert all(code in ERRORS for code in ERROR_STATUS.values())
    cases: dict[BaseException, int] = {
        ConversationNotFound("c1"): 404,
        StoreUnavailable("down"): 503,
        ReviewError("bad"): 422,
        CannedReplyInvalid("title: too long"): 400,
        CannedReplyExists("taken"): 409,
        CannedReplyNotFound("gone"): 404,
        PasswordPoolFull("full"): 503,
        ApiError("csrf"): 403,
        StoreError("other"): 500,
        ValueError("x"): 500,
    }
    for exc, status in cases.items():
        assert ERRORS[error_code_for(exc)][0] == status, type(exc).__name__

    class Foreign(Exception):
        """A class of the same name elsewhere is not the dialogue's error."""

    Foreign.__name__ = "StoreUnavailable"
    assert error_code_for(Foreign()) == "internal"


def test_every_route_has_exactly_one_handler_group() -> None:
    server: Any = OpsServer(Console(types.SimpleNamespace(store=None)))
    names = [name for _, _, _, name in ROUTES]
    owners = {name: [g for g in server.groups if name in g.handlers()] for name in names}
    assert all(len(groups) == 1 for groups in owners.values()), owners
    server.passwords.close()
