"""The protocol core, split by concept, still answers as one module: every name of ``channels.protocol.__all__`` is
the object of the module that defines it, and errors map to wire codes by their classes."""

from __future__ import annotations

import importlib

import pytest

from channels import protocol as p
from dialogue import errors as dialogue_errors

MODULES = ("error_codes", "frames", "transcript", "resume", "limits", "presence", "json_api")


def test_every_reexport_is_the_defining_modules_object() -> None:
    defined_here = {"DEFAULT_MAX_PENDING", "ConnectionState"}
    modules = [importlib.import_module(f"channels.{name}") for name in MODULES]
    for name in p.__all__:
        value = getattr(p, name)
        if name in defined_here:
            continue
        owners = [m for m in modules if name in vars(m) and vars(m)[name] is value]
        assert owners, f"{name} is not defined by any of {MODULES}"


def test_the_process_typing_board_is_one_object() -> None:
    from channels.presence import TYPING_BOARD

    assert p.TYPING_BOARD is TYPING_BOARD


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (dialogue_errors.StoreUnavailable("sqlite:///x.db"), p.STORE_UNAVAILABLE),
        (dialogue_errors.ConversationNotFound("c1"), p.NOT_FOUND),
        (dialogue_errors.ConcurrentUpdate("c1", 1, 2), p.BUSY),
        (dialogue_errors.NotResolved("not resolved"), p.NOT_RESOLVED),
        (dialogue_errors.AlreadyRated("rated"), p.ALREADY_RATED),
        (TimeoutError(), p.TIMEOUT),
        (dialogue_errors.StoreError("other"), p.INTERNAL),  # a base class of mapped ones is not mapped
    ],
)
def test_dialogue_errors_map_by_class(exc: BaseException, code: str) -> None:
    assert p.error_code_for(exc) == code


def test_the_exception_table_holds_classes() -> None:
    assert all(isinstance(cls, type) and issubclass(cls, BaseException) for cls in p.EXCEPTION_CODES)
