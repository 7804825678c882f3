"""``python -m benchmarks [--quick] [--only NAME ...]``: run the benchmarks.

Prints a table, writes ``benchmarks/results/latest.json`` and one PNG plot per
benchmark, and checks the targets against the baselines of the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from . import bulk, convergence, history, late_join, mesh_join, throughput
from .common import RESULTS, machine
from .plots import plot

BENCHMARKS: dict[str, Callable[..., Awaitable[list[dict[str, Any]]]]] = {
    "convergence": convergence.run,
    "throughput": throughput.run,
    "late_join": late_join.run,
    "history": history.run,
    "mesh_join": mesh_join.run,
    "bulk": bulk.run,
}


def targets(results: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(target, measured, met) for every target of the benchmarks issue."""
    out = []
    rows = results.get("convergence", [])
    for row in rows:
        if row["impl"] != "crdt_stores":
            continue

        def same(impl: str, row: dict[str, Any] = row) -> dict[str, Any] | None:
            return next((r for r in rows if r["impl"] == impl and r["layout"] == row["layout"]
                         and r["peers"] == row["peers"]), None)  # fmt: skip

        raw, ws = same("raw_aiortc"), same("pycrdt_websocket")
        where = f"{row['layout']} N={row['peers']}"
        if raw:
            ratio = row["p50_ms"] / raw["p50_ms"]
            out.append((f"convergence p50 <= 1.25x raw_aiortc ({where})",
                        f"{row['p50_ms']:.2f} ms = {ratio:.2f}x", ratio <= 1.25))  # fmt: skip
        if ws:
            out.append((f"convergence p50 < pycrdt_websocket ({where})",
                        f"{row['p50_ms']:.2f} vs {ws['p50_ms']:.2f} ms",
                        row["p50_ms"] < ws["p50_ms"]))  # fmt: skip
    for row in results.get("throughput", []):
        if row["impl"] == "crdt_stores" and row["peers"] == 4:
            met = row["ops_per_s"] >= 50_000 and row.get("converged", True)
            out.append(("throughput >= 50,000 converged ops/s with 4 peers",
                        f"{row['ops_per_s']:,} ops/s", met))  # fmt: skip
    late = results.get("late_join", [])
    for row in late:
        if row["impl"] != "crdt_stores":
            continue
        raw = next((r for r in late if r["impl"] == "raw_aiortc"
                    and r["megabytes"] == row["megabytes"]), None)  # fmt: skip
        if raw:
            ratio = row["mb_per_s"] / raw["mb_per_s"]
            out.append((f"late join >= 0.5x raw_aiortc MB/s ({row['megabytes']} MB)",
                        f"{row['mb_per_s']:.2f} MB/s = {ratio:.2f}x", ratio >= 0.5))  # fmt: skip
    for row in results.get("history", []):
        if row["impl"] == "crdt_stores" and row["writes"] == 100_000:
            out.append(("history < 10 KB after 100,000 overwrites",
                        f"{row['sync_bytes']:,} B", row["sync_bytes"] < 10_000))  # fmt: skip
    for row in results.get("bulk", []):
        if row["impl"] == "crdt_stores" and row["keys"] == 100_000 and row["op"] == "bulk_set":
            met = row["rss_mb"] < 300 and row["seconds"] < 5
            out.append(("bulk_set of 100,000 keys: under 300 MB and 5 s",
                        f"{row['seconds']:.2f} s, +{row['rss_mb']:.0f} MB", met))  # fmt: skip
    return out


def tables(results: dict[str, Any], console: Console) -> None:
    for name in BENCHMARKS:
        rows = results.get(name)
        if not rows:
            continue
        table = Table(title=name)
        columns = [c for c in rows[0] if c not in ("writes",) or name == "history"]
        for column in columns:
            table.add_column(column, justify="left" if column in ("impl", "layout") else "right")
        for row in rows:
            table.add_row(*(f"{row.get(c):,}" if isinstance(row.get(c), int) else str(row.get(c))
                            for c in columns))  # fmt: skip
        console.print(table)
    checks = targets(results)
    if checks:
        table = Table(title="targets (ratios against the baselines of this run)")
        table.add_column("target")
        table.add_column("measured", justify="right")
        table.add_column("")
        for target, measured, met in checks:
            table.add_row(target, measured, "[green]met[/]" if met else "[red]missed[/]")
        console.print(table)


async def run_all(names: list[str], quick: bool, console: Console) -> dict[str, Any]:
    results: dict[str, Any] = {"quick": quick, **machine()}
    for name in names:
        started = time.perf_counter()
        console.print(f"[bold]{name}[/] ...")
        results[name] = await BENCHMARKS[name](
            quick, report=lambda line: console.print("  " + line)
        )
        console.print(f"  ({time.perf_counter() - started:.0f} s)")
    return results


def save(results: dict[str, Any], filename: str = "latest.json", out: Path = RESULTS) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / filename).write_text(json.dumps(results, indent=2) + "\n")
    for name in BENCHMARKS:
        if name in results:
            plot(name, results[name], out)


def standalone(name: str) -> None:
    """``python -m benchmarks.NAME [--quick]``: one benchmark, its table, JSON and plot."""
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{name}")
    parser.add_argument("--quick", action="store_true")
    quick = parser.parse_args().quick
    logging.getLogger("signaling").setLevel(logging.ERROR)
    console = Console()
    results = asyncio.run(run_all([name], quick, console))
    tables(results, console)
    save(results, f"{name}.json")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer writes and sizes (< 3 minutes)")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run only these")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    args = parser.parse_args()
    logging.getLogger("signaling").setLevel(logging.ERROR)
    console = Console()
    started = time.perf_counter()
    names = args.only or list(BENCHMARKS)
    results = asyncio.run(run_all(names, args.quick, console))
    results["seconds"] = round(time.perf_counter() - started, 1)
    if args.only:
        # a partial run keeps the other benchmarks of the previous latest.json
        previous = args.out / "latest.json"
        if previous.exists():
            old = json.loads(previous.read_text())
            results = {**{k: v for k, v in old.items() if k in BENCHMARKS}, **results}
    tables(results, console)
    save(results, out=args.out)
    console.print(
        f"wrote {args.out / 'latest.json'} and plots in {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
