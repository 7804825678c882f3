"""Every Python snippet of the README is a complete program: run each, check its output.

A snippet followed by a ```text block must print exactly that. Snippets talk to
``ws://127.0.0.1:8787``; here that address is replaced by a signaling server of
the test on a free loopback port, so the README can never drift from the code.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from signaling import SignalingServer

from .netutil import ROOT, child_env

pytestmark = pytest.mark.timeout(120)

README = (ROOT / "README.md").read_text()
BLOCK = re.compile(r"```python\n(?P<code>.*?)```\n(?:\n```text\n(?P<out>.*?)```\n)?", re.S)
SNIPPETS = [(m["code"], m["out"]) for m in BLOCK.finditer(README)]
DEFAULT_URL = "ws://127.0.0.1:8787"


def _line(code: str) -> int:
    return README[: README.index(code)].count("\n") + 1


def test_the_readme_has_its_snippets() -> None:
    assert len(SNIPPETS) >= 5
    assert all(out is not None for _, out in SNIPPETS), "every snippet shows its output"


@pytest.mark.parametrize(
    "code, expected", SNIPPETS, ids=[f"line-{_line(code)}" for code, _ in SNIPPETS]
)
async def test_readme_snippet_runs_and_prints_what_it_says(tmp_path, code, expected) -> None:
    async with SignalingServer("127.0.0.1", 0) as server:
        program = tmp_path / "snippet.py"
        program.write_text(code.replace(DEFAULT_URL, server.url))
        done = await _run(program)
    assert done.returncode == 0, done.stderr[-3000:]
    if expected is not None:
        assert done.stdout == expected, done.stdout


async def _run(program) -> subprocess.CompletedProcess[str]:
    import asyncio

    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(program)],
        cwd=program.parent,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=90,
    )
