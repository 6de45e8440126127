"""The packages import only downwards: channels -> dialogue -> policy / nlu / safety / runtime; `kefu` composes them.

A package may import itself, anything below it, and the standard library or third-party code; it never imports a
package above it or a sibling on its own layer (policy, nlu, safety and runtime know nothing of each other, so each
can be trained, tested and benchmarked alone). Imports inside functions count too: a lazy import is still a
dependency. The policy package takes a parsed bot from the composition root instead of reading bot folders itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

LAYERS: dict[str, int] = {"kefu": 3, "channels": 2, "dialogue": 1, "policy": 0, "nlu": 0, "safety": 0, "runtime": 0}
# Known exceptions, each with its reason (empty: none today).
ALLOWED: dict[tuple[str, str], str] = {}


def imports(path: Path) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def violations(package: str) -> list[str]:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        if "templates" in path.parts:  # bot templates are a bot's code, not the package's
            continue
        for line, module in imports(path):
            target = module.split(".")[0]
            if target not in LAYERS or target == package or (package, target) in ALLOWED:
                continue
            if LAYERS[target] >= LAYERS[package]:
                bad.append(f"{path.relative_to(ROOT)}:{line}: {package} imports {module} "
                           f"({target} is {'above' if LAYERS[target] > LAYERS[package] else 'beside'} it)")
    return bad


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_package_imports_only_downwards(package: str) -> None:
    assert violations(package) == []


def test_the_rule_catches_an_upward_import(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("def f():\n    from kefu.config import Bot\n    import channels.server\n", encoding="utf-8")
    assert imports(sample) == [(2, "kefu.config"), (3, "channels.server")]
