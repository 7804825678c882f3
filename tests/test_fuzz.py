"""The fuzzer (``tests/fuzzer.py``): saved findings stay fixed, and a bounded run finds none."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .netutil import ROOT, child_env

FUZZ_SECONDS = 30


def run_fuzzer(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.fuzzer", *args],
        cwd=ROOT,
        env={**child_env(), "RUST_BACKTRACE": "0"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_every_saved_finding_passes() -> None:
    """Each input in tests/fuzz_corpus/ runs in its own process: a native crash fails it."""
    corpus = sorted((ROOT / "tests" / "fuzz_corpus").glob("*.cbor"))
    assert len(corpus) >= 20  # crashes of the old code are kept as regressions
    done = run_fuzzer("--replay", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(corpus)} of {len(corpus)} saved inputs pass" in done.stdout


@pytest.mark.timeout(FUZZ_SECONDS + 120)
def test_a_bounded_fuzzing_run_finds_nothing() -> None:
    done = run_fuzzer("--seconds", str(FUZZ_SECONDS), "--workers", "1", timeout=FUZZ_SECONDS + 100)
    print(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert int(done.stdout.split(" inputs")[0].split()[-1]) > 1_000  # it did run
