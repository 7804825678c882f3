"""The JavaScript peer (``js/``) passes the shared test vectors under Node's test runner.

``npm ci`` installs its locked dependencies when ``js/node_modules`` is missing, then
``npm test`` runs ``js/test/*.test.js``, which read ``tests/vectors/`` as
``tests/test_vectors.py`` does. Node.js and npm are required: without them this test
fails (it does not skip), so that a machine that cannot check the JavaScript side says so.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

JS = Path(__file__).resolve().parent.parent / "js"
TIMEOUT = 300  # seconds for each npm command
NODE_MINIMUM = (20, 19)  # js/package.json "engines"


def _tail(text: str, limit: int = 6000) -> str:
    """The end of ``text``, after every failed subtest's report (TAP ``not ok`` and the
    lines that follow it): a failure early in a long run is not cut off."""
    lines = text.splitlines()
    failures = ["\n".join(lines[i : i + 40]) for i, line in enumerate(lines) if "not ok " in line]
    end = text if len(text) <= limit else "...\n" + text[-limit:]
    return "\n\n".join([*failures, end]) if failures else end


def _run(*command: str) -> str:
    """Run ``command`` in js/; its output, or a test failure that shows it."""
    try:
        done = subprocess.run(
            command,
            cwd=JS,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
            # the interop test drives a Python peer: this interpreter, with this install
            env={**os.environ, "CRDT_STORES_PYTHON": sys.executable},
        )
    except subprocess.TimeoutExpired as exc:
        # (bytes even with text=True: the pipes' partial output is not decoded)
        output = "".join(
            part.decode(errors="replace") if isinstance(part, bytes) else part
            for part in (exc.stdout or "", exc.stderr or "")
        )
        pytest.fail(f"`{' '.join(command)}` did not finish in {TIMEOUT} s:\n{_tail(output)}")
    output = done.stdout + done.stderr
    if done.returncode != 0:
        pytest.fail(f"`{' '.join(command)}` failed ({done.returncode}):\n{_tail(output)}")
    return output


@pytest.mark.timeout(3 * TIMEOUT)
def test_the_javascript_peer_passes_the_shared_vectors() -> None:
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} not found on PATH: the JavaScript peer in js/ needs "
            f"Node.js {'.'.join(map(str, NODE_MINIMUM))} or later with npm to be tested"
        )
    version = _run("node", "--version").strip()
    found = tuple(int(part) for part in re.findall(r"\d+", version)[:2])
    assert found >= NODE_MINIMUM, f"js/ needs Node.js {NODE_MINIMUM}+; this is {version}"
    if not (JS / "node_modules").is_dir():
        _run("npm", "ci", "--no-audit", "--no-fund")
    output = _run("npm", "test")
    passed = re.search(r"^# pass (\d+)$", output, re.MULTILINE)
    failed = re.search(r"^# fail (\d+)$", output, re.MULTILINE)
    assert passed and failed, f"no test summary in the npm test output:\n{_tail(output)}"
    assert int(failed.group(1)) == 0 and int(passed.group(1)) > 0, _tail(output)
