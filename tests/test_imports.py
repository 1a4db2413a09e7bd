"""Every module imports on its own (an import cycle would fail here), and imports point down
the floors of docs/architecture.md only."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import xprnn

SRC = Path(xprnn.__file__).parent
# every module but ``python -m xprnn``'s entry script, which runs the command when imported
MODULES = sorted(m.name for m in pkgutil.walk_packages(xprnn.__path__, "xprnn.")
                 if m.name != "xprnn.__main__")
# floor of each top-level part: a module may import from its own part and from lower floors
FLOORS = {"_version": 0, "backend": 0, "text": 0, "cells": 1, "nn": 2, "checkpoint": 3,
          "optim": 3, "training": 3, "models": 4, "export": 5, "cli": 6}
ROOT = 7  # a name taken from the package itself (xprnn/__init__.py) sits above everything


def test_every_module_is_listed_in_a_floor():
    parts = {name.split(".")[1] for name in MODULES}
    assert parts - set(FLOORS) == set()


def test_each_module_imports_alone():
    # one fresh interpreter per module: importing it first is what exposes a cycle
    code = "import importlib, sys; [importlib.import_module(m) for m in sys.argv[1:2]]"
    failed = {}
    for name in MODULES:
        r = subprocess.run([sys.executable, "-c", code, name], capture_output=True, text=True,
                           timeout=60)
        if r.returncode:
            failed[name] = r.stderr.strip().splitlines()[-1]
    assert failed == {}


def _part(dotted):
    return dotted.split(".")[1] if dotted.startswith("xprnn.") else None


@pytest.mark.parametrize("name", [m for m in MODULES if m.count(".") >= 1])
def test_imports_point_down(name):
    path = SRC.joinpath(*name.split(".")[1:])
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    me = _part(name)
    up = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            targets = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        for t in targets:
            other = _part(t)
            if other is not None and other != me and FLOORS.get(other, ROOT) > FLOORS[me]:
                up.append(t)
    assert up == [], f"{name} imports from a higher floor"
