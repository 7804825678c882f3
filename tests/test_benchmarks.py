"""The benchmarks are scripts, not timed tests: here we only check that --quick runs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .netutil import ROOT, child_env


@pytest.mark.timeout(900)
def test_quick_benchmarks_run_and_write_results(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=800,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / "latest.json").read_text())
    assert results["quick"] is True and results["cpus"] >= 1 and results["python"]
    schema = {
        "convergence": {"impl", "layout", "peers", "p50_ms", "p99_ms"},
        "throughput": {"impl", "peers", "ops_per_s"},
        "late_join": {"impl", "megabytes", "seconds", "mb_per_s"},
        "history": {"impl", "writes", "keys", "sync_bytes", "rss_bytes"},
        "mesh_join": {"impl", "peers", "seconds"},
        "bulk": {"impl", "keys", "op", "seconds", "rss_mb"},
    }
    for name, fields in schema.items():
        rows = results[name]
        assert rows and all(fields <= row.keys() for row in rows), name
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    impls = {row["impl"] for row in results["convergence"]}
    assert impls == {"crdt_stores", "raw_aiortc", "pycrdt_websocket"}
    assert "targets" in done.stdout
