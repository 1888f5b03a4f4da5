"""The packages depend one way: service -> api, web, workers -> projections -> membership.

Read from the source (imports at run time; those under `if TYPE_CHECKING:` are types only), so a
shortcut across the layers fails here rather than in a review.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = {"membership", "projections", "workers", "api", "web", "service", "ocore", "benchmarks", "tests"}
# What each package may import of ours (besides itself).
ALLOWED = {
    "membership": set(),
    "projections": {"membership"},
    "workers": {"membership", "projections"},
    "api": {"membership", "projections"},
    "web": {"membership", "projections"},
    "service": {"membership", "projections", "workers", "api", "web"},
}
# The write side imports nothing but the standard library and the eventsourcing library.
WRITE_SIDE_THIRD_PARTY = {"eventsourcing"}


def runtime_imports(path: Path) -> set[str]:
    """Top-level names of the modules a file imports when it runs."""
    tree = ast.parse(path.read_text())
    type_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and ast.unparse(block.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
        for statement in block.body
        for node in ast.walk(statement)
    }
    names = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_package_imports_only_the_layers_below_it(package: str) -> None:
    crossings = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in (ROOT / package).rglob("*.py")
        for name in runtime_imports(path) & OURS - {package} - ALLOWED[package]
    }
    assert not crossings, sorted(crossings)


def test_the_write_side_needs_only_the_standard_library_and_eventsourcing() -> None:
    foreign = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in (ROOT / "membership").rglob("*.py")
        for name in runtime_imports(path) - OURS - WRITE_SIDE_THIRD_PARTY - set(sys.stdlib_module_names)
    }
    assert not foreign, sorted(foreign)


def test_imports_for_types_only_do_not_count_and_all_others_do(tmp_path: Path) -> None:
    module = tmp_path / "module.py"
    module.write_text(
        "from typing import TYPE_CHECKING\nimport api.errors\n"
        "if TYPE_CHECKING:\n    from service.settings import Settings\n"
        "def later():\n    from workers import cursors\n"
    )
    assert runtime_imports(module) == {"typing", "api", "workers"}
