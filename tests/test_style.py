"""Project standards that CI keeps: ruff-clean code and type hints that mypy accepts."""

from __future__ import annotations

import subprocess
import sys

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
