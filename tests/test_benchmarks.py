"""The benchmarks are scripts, not timed tests: here we only check that --quick runs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .netutil import ROOT, child_env


def run_module(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """``python -m ARGS`` in a checkout-rooted child, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.timeout(900)
def test_quick_benchmarks_run_and_write_results(tmp_path) -> None:
    done = run_module("benchmarks", "--quick", "--out", str(tmp_path), timeout=800)
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


def test_runs_go_to_an_ignored_folder_by_default() -> None:
    """Without --out or --publish a run never writes the README's figures."""
    from benchmarks.__main__ import destination, parser
    from benchmarks.common import RESULTS, RUNS

    quick = destination(parser().parse_args(["--quick"]))
    full = destination(parser().parse_args([]))
    for path in (quick, full):
        assert path != RESULTS and path.parent == RUNS and not path.exists()
    assert quick.name.endswith("-quick") and not full.name.endswith("-quick")
    assert destination(parser().parse_args(["--publish"])) == RESULTS
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", str(quick / "latest.json")], cwd=ROOT, check=False
    )
    assert ignored.returncode == 0, "benchmarks/runs/ is not in .gitignore"
    helped = run_module("benchmarks", "--help", timeout=60)
    assert helped.returncode == 0 and "benchmarks/runs/" in helped.stdout
    assert "--publish" in helped.stdout


@pytest.mark.parametrize("extra", [["--quick"], ["--out", "elsewhere"]], ids=["quick", "out"])
def test_publish_is_refused_with_quick_or_out(extra: list[str]) -> None:
    published = ROOT / "benchmarks" / "results" / "latest.json"
    before = published.stat().st_mtime_ns if published.exists() else None
    done = run_module("benchmarks", "--publish", *extra, timeout=60)
    assert done.returncode != 0 and "--publish" in done.stderr
    assert (published.stat().st_mtime_ns if published.exists() else None) == before
    assert not (ROOT / "elsewhere").exists()
    if extra == ["--quick"]:
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.parametrize("quick", [True, False])
def test_every_plot_title_says_whether_the_run_was_quick(tmp_path, monkeypatch, quick) -> None:
    from matplotlib.figure import Figure

    from benchmarks import plots
    from benchmarks.__main__ import BENCHMARKS

    published = json.loads((ROOT / "benchmarks" / "results" / "latest.json").read_text())
    titles: dict[str, str] = {}
    savefig = Figure.savefig

    def record(fig: Figure, path, *args, **kwargs) -> None:
        suptitle = fig._suptitle  # type: ignore[attr-defined]
        titles[path.stem] = suptitle.get_text() if suptitle else ""
        savefig(fig, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    for name in BENCHMARKS:
        assert plots.plot(name, published[name], tmp_path, quick=quick) == tmp_path / f"{name}.png"
    assert titles.keys() == BENCHMARKS.keys()
    assert all(("quick run" in title) == quick for title in titles.values()), titles


def test_hostile_benchmark_measures_rows_that_reuse_a_victim_id(tmp_path) -> None:
    """Rows 1 and 8 both start a victim named "victim" (the signaling server keeps a
    peer id that left reserved for its session for a while: each row has its own
    room); both are measured against this checkout, and the file is written."""
    out = tmp_path / "hostile.json"
    done = run_module("benchmarks.hostile", "--rows", "1", "8", "--out", str(out), timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    after = json.loads(out.read_text())["runs"]["after"]
    assert after["1"]["effect"] == "105-byte frame: alive"
    assert after["8"]["effect"] == "refused"
