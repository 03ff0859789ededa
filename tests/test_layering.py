"""DESIGN section 1: messages <- runtime <- trading <- actors <- app <- main;
exchange and config are leaves. The kernel stands alone: runtime/ imports
nothing of the application, so a test of the kernel needs no trading code and
the kernel can be read (and replaced) on its own."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NEVER = {
    "messages": {"runtime", "trading", "actors", "app", "exchange", "config"},
    "runtime": {"trading", "actors", "app", "exchange", "config"},
    "trading": {"actors", "app"},
    "exchange": {"runtime", "actors", "app"},
    # config owns the simulated exchange's schema (config.sim_exchange); exchange/
    # imports it, so config/ never imports exchange/ (one direction, no cycle)
    "config": {"runtime", "actors", "app", "exchange"},
    "actors": {"app"},
}


def imported_packages(path: Path) -> set[tuple[int, str]]:
    """Top-level packages imported anywhere in ``path`` (TYPE_CHECKING blocks aside)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for sub in node.body for n in ast.walk(sub))
    out: set[tuple[int, str]] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update((node.lineno, a.name.split(".")[0]) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add((node.lineno, node.module.split(".")[0]))
    return out


@pytest.mark.parametrize("package", sorted(NEVER))
def test_each_layer_imports_only_the_layers_below_it(package: str) -> None:
    bad = [f"{path.relative_to(ROOT)}:{line} imports {top}"
           for path in sorted((ROOT / package).rglob("*.py"))
           for line, top in sorted(imported_packages(path)) if top in NEVER[package]]
    assert bad == []
