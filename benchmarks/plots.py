"""One PNG per benchmark (matplotlib, no display needed)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _series(rows: list[dict[str, Any]], key: tuple[str, ...], x: str, y: str) -> dict[str, list]:
    out: dict[str, list] = defaultdict(list)
    for row in rows:
        label = " / ".join(str(row[k]) for k in key)
        out[label].append((row[x], row[y]))
    return {label: sorted(points) for label, points in out.items()}


def _plot(path: Path, title: str, series: dict[str, list], xlabel: str, ylabel: str,
          log_x: bool = False, log_y: bool = False) -> None:  # fmt: skip
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for label, points in series.items():
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, marker="o", label=label)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if log_x:
        ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot(name: str, rows: list[dict[str, Any]], directory: Path) -> Path | None:
    if not rows:
        return None
    path = directory / f"{name}.png"
    if name == "convergence":
        _plot(
            path,
            "Convergence latency (p50): one write until every subscriber fired",
            _series(rows, ("impl", "layout"), "peers", "p50_ms"),
            "peers",
            "ms",
            log_y=True,
        )
    elif name == "throughput":
        _plot(
            path,
            "Converged throughput, every peer writing (one process per peer)",
            _series(rows, ("impl",), "peers", "ops_per_s"),
            "peers",
            "ops/s",
        )
    elif name == "late_join":
        _plot(
            path,
            "Late join: store size vs download speed",
            _series(rows, ("impl",), "megabytes", "mb_per_s"),
            "store MB",
            "MB/s",
            log_x=True,
        )
    elif name == "history":
        _plot(
            path,
            "History: bytes a late joiner downloads (10 keys)",
            _series(rows, ("impl",), "writes", "sync_bytes"),
            "writes",
            "bytes",
            log_x=True,
            log_y=True,
        )
    elif name == "bulk":
        _plot(
            path,
            "Bulk writes: one call's time on the writer",
            _series(rows, ("impl", "op"), "keys", "seconds"),
            "keys",
            "seconds",
            log_x=True,
            log_y=True,
        )
    elif name == "mesh_join":
        _plot(
            path,
            "Mesh join: all peers linked and synced",
            _series(rows, ("impl",), "peers", "seconds"),
            "peers",
            "seconds",
        )
    return path
