"""Project standards that CI keeps: ruff-clean code and type hints that mypy accepts."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .netutil import ROOT


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "command",
    [
        ["-m", "ruff", "check", "crdt_stores", "signaling", "benchmarks", "tests"],
        ["-m", "ruff", "format", "--check", "crdt_stores", "signaling", "benchmarks", "tests"],
        ["-m", "mypy", "crdt_stores", "signaling"],
    ],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_tool_passes(command: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, *command], cwd=ROOT, capture_output=True, text=True, timeout=280
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


# The layers of the README's "Layout" section: the sans-IO core imports nothing above it,
# the driver nothing of the user's objects, and pycrdt's and aiortc's private APIs are
# each reached from one adapter module only.
_CORE = {
    "protocol", "link", "outbox", "repair", "mesh", "config", "events", "wire", "messages",
    "replica", "replicas", "mirror", "merge", "held", "updates", "_update_format",
    "_update_writing", "entries", "values",
    "_statevector", "budget", "_ydoc", "_lib0", "errors", "_compiled",
}  # fmt: skip
_USER = {"meeting", "store", "memory", "cli", "shell", "demo"}


def _imports(path: Path) -> set[str]:
    """Top-level names of what ``path`` imports, relative imports as package modules."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 1 and module:
                found.add(module.split(".")[0])
            elif node.level == 0:
                found.add(module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_the_core_imports_nothing_above_it() -> None:
    package = ROOT / "crdt_stores"
    for name in _CORE:
        above = _imports(package / f"{name}.py") & (_USER | {"driver", "transport"})
        assert not above, f"crdt_stores/{name}.py imports {above}"
    assert not _imports(package / "driver.py") & _USER


def test_private_apis_are_reached_from_one_adapter_each() -> None:
    for path in sorted((ROOT / "crdt_stores").rglob("*.py")):
        text = path.read_text()
        imported = _imports(path)
        if path.name != "_ydoc.py":
            assert "pycrdt._pycrdt" not in imported and not re.search(r"\._doc\b", text), path
        if path.name != "_aiortc.py":
            assert not any(name.startswith("aioice") for name in imported), path
