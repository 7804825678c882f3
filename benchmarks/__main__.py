"""``python -m benchmarks [--quick] [--only NAME ...] [--out DIR | --publish]``: run the benchmarks.

Prints a table per benchmark and checks the targets against the baselines of the
same run. Writes ``latest.json`` and one PNG plot per benchmark into a new folder
``benchmarks/runs/<timestamp>[-quick]/`` (ignored by git), or into ``--out DIR``.
``--publish`` writes them into ``benchmarks/results/`` instead: the tracked folder
the README's figures come from, so only a full run (no ``--quick``) may publish.

``--quick`` (about 1.5 minutes on 2 cores) runs fewer writes and smaller sizes:
100 latency writes instead of 300, one throughput run instead of the median of
three (and no pycrdt_websocket baseline at 8 peers, which alone takes a minute to
converge), late joins of 1 and 10 MB, bulk writes of 1,000 and 10,000 keys.
A full run takes about six minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from . import bulk, convergence, history, late_join, mesh_join, throughput
from .common import (
    BULK_KEYS,
    BULK_MB,
    BULK_SECONDS,
    CONVERGENCE_VS_RAW,
    HISTORY_BYTES,
    HISTORY_WRITES,
    LATE_JOIN_VS_RAW,
    RESULTS,
    THROUGHPUT_OPS,
    THROUGHPUT_PEERS,
    machine,
    run_dir,
)
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
            out.append((f"convergence p50 <= {CONVERGENCE_VS_RAW}x raw_aiortc ({where})",
                        f"{row['p50_ms']:.2f} ms = {ratio:.2f}x",
                        ratio <= CONVERGENCE_VS_RAW))  # fmt: skip
        if ws:
            out.append((f"convergence p50 < pycrdt_websocket ({where})",
                        f"{row['p50_ms']:.2f} vs {ws['p50_ms']:.2f} ms",
                        row["p50_ms"] < ws["p50_ms"]))  # fmt: skip
    for row in results.get("throughput", []):
        if row["impl"] == "crdt_stores" and row["peers"] == THROUGHPUT_PEERS:
            met = row["ops_per_s"] >= THROUGHPUT_OPS and row.get("converged", True)
            out.append((f"throughput >= {THROUGHPUT_OPS:,} converged ops/s with "
                        f"{THROUGHPUT_PEERS} peers",
                        f"{row['ops_per_s']:,} ops/s", met))  # fmt: skip
    late = results.get("late_join", [])
    for row in late:
        if row["impl"] != "crdt_stores":
            continue
        raw = next((r for r in late if r["impl"] == "raw_aiortc"
                    and r["megabytes"] == row["megabytes"]), None)  # fmt: skip
        if raw:
            ratio = row["mb_per_s"] / raw["mb_per_s"]
            out.append((f"late join >= {LATE_JOIN_VS_RAW}x raw_aiortc MB/s "
                        f"({row['megabytes']} MB)",
                        f"{row['mb_per_s']:.2f} MB/s = {ratio:.2f}x",
                        ratio >= LATE_JOIN_VS_RAW))  # fmt: skip
    for row in results.get("history", []):
        if row["impl"] == "crdt_stores" and row["writes"] == HISTORY_WRITES:
            out.append((f"history < {HISTORY_BYTES // 1000} KB after {HISTORY_WRITES:,} "
                        "overwrites", f"{row['sync_bytes']:,} B",
                        row["sync_bytes"] < HISTORY_BYTES))  # fmt: skip
    for row in results.get("bulk", []):
        if row["impl"] == "crdt_stores" and row["keys"] == BULK_KEYS and row["op"] == "bulk_set":
            met = row["rss_mb"] < BULK_MB and row["seconds"] < BULK_SECONDS
            out.append((f"bulk_set of {BULK_KEYS:,} keys: under {BULK_MB} MB and "
                        f"{BULK_SECONDS} s",
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
    results: dict[str, Any] = {"quick": quick, **machine(), "benchmark_seconds": {}}
    for name in names:
        started = time.perf_counter()
        console.print(f"[bold]{name}[/] ...")
        results[name] = await BENCHMARKS[name](
            quick, report=lambda line: console.print("  " + line)
        )
        elapsed = time.perf_counter() - started
        results["benchmark_seconds"][name] = round(elapsed, 1)
        console.print(f"  ({elapsed:.0f} s)")
    return results


def save(results: dict[str, Any], out: Path, filename: str = "latest.json") -> list[Path]:
    """Write the JSON and one plot per benchmark into ``out``; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / filename]
    written[0].write_text(json.dumps(results, indent=2) + "\n")
    for name in BENCHMARKS:
        if name in results:
            path = plot(name, results[name], out, quick=bool(results.get("quick")))
            if path is not None:
                written.append(path)
    return written


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def standalone(name: str) -> None:
    """``python -m benchmarks.NAME [--quick] [--out DIR]``: one benchmark, its table and files.

    Writes into a new ``benchmarks/runs/<timestamp>-NAME[-quick]/`` unless ``--out``.
    """
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{name}")
    parser.add_argument("--quick", action="store_true", help="fewer writes and sizes")
    parser.add_argument(
        "--out", type=Path, help="results directory (default: a new benchmarks/runs/ folder)"
    )
    args = parser.parse_args()
    logging.getLogger("signaling").setLevel(logging.ERROR)
    console = Console()
    out = args.out or run_dir(args.quick, name)
    results = asyncio.run(run_all([name], args.quick, console))
    tables(results, console)
    save(results, out)
    console.print(f"wrote {_relative(out / 'latest.json')} and {name}.png")


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick", action="store_true", help="fewer writes and smaller sizes (about 1.5 minutes)"
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=list(BENCHMARKS),
        metavar="NAME",
        help=f"run only these: {', '.join(BENCHMARKS)}",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="results directory (default: a new benchmarks/runs/<timestamp>[-quick]/)",
    )
    where.add_argument(
        "--publish",
        action="store_true",
        help="write into benchmarks/results/, the README's figures (full runs only)",
    )
    return parser


def destination(args: argparse.Namespace) -> Path:
    """Where a run writes: --out, benchmarks/results/ with --publish, else a new runs/ folder."""
    if args.out is not None:
        return Path(args.out)
    if args.publish:
        return RESULTS
    return run_dir(args.quick)


def main() -> None:
    args = parser().parse_args()
    if args.publish and args.quick:
        sys.exit(
            "python -m benchmarks: --publish replaces the README's figures and needs a full "
            "run; drop --quick (quick runs go to benchmarks/runs/)"
        )
    out = destination(args)
    logging.getLogger("signaling").setLevel(logging.ERROR)
    console = Console()
    console.print(f"writing to {_relative(out)}/")
    started = time.perf_counter()
    names = args.only or list(BENCHMARKS)
    results = asyncio.run(run_all(names, args.quick, console))
    results["seconds"] = round(time.perf_counter() - started, 1)
    if args.only:
        # a partial run keeps the other benchmarks of that folder's previous latest.json
        previous = out / "latest.json"
        if previous.exists():
            old = json.loads(previous.read_text())
            results = {**{k: v for k, v in old.items() if k in BENCHMARKS}, **results}
    tables(results, console)
    written = save(results, out)
    console.print(
        f"wrote {len(written) - 1} plots and latest.json to {_relative(out)}/ "
        f"in {time.perf_counter() - started:.0f} s"
        + (" (published: the README's figures)" if args.publish else "")
    )


if __name__ == "__main__":
    main()
