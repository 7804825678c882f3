"""One PNG per benchmark (matplotlib, no display needed).

Every figure's title says "quick run" when the run was a quick one. Where the
benchmarks issue sets a target that maps to a plot, it is drawn as a grey dashed
line (only when the run measured the size the target is about). Bars and ratios
start at zero; log axes are kept where sizes span decades.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullLocator

from .common import (
    BULK_KEYS,
    BULK_MB,
    BULK_SECONDS,
    CONVERGENCE_VS_RAW,
    HISTORY_BYTES,
    HISTORY_WRITES,
    LATE_JOIN_VS_RAW,
    THROUGHPUT_OPS,
    THROUGHPUT_PEERS,
)

TARGET = {"color": "0.35", "linestyle": "--", "linewidth": 1.2}
COLORS = {
    "crdt_stores": "C0",
    "crdt_stores_interleaved": "C4",
    "raw_aiortc": "C1",
    "pycrdt_websocket": "C2",
    "pycrdt_map": "C3",
}
LAYOUT_STYLE = {"one-process": "-", "multi-process": ":"}
OP_STYLE = {"bulk_set": "-", "clear": "--"}
Points = list[tuple[float, float]]


def title(text: str, quick: bool) -> str:
    return f"{text} (quick run)" if quick else text


def _series(rows: Iterable[dict[str, Any]], key: tuple[str, ...], x: str, y: str,
            scale: float = 1.0) -> dict[str, Points]:  # fmt: skip
    out: dict[str, Points] = defaultdict(list)
    for row in rows:
        if row.get(y) is None:
            continue
        label = " / ".join(str(row[k]) for k in key)
        out[label].append((row[x], row[y] * scale))
    return {label: sorted(points) for label, points in out.items()}


def _lines(ax: Axes, series: dict[str, Points], style: dict[str, str] | None = None,
           prefix: str = "") -> None:  # fmt: skip
    """One line per series; colour by the label's first part, style by its last."""
    ticks: set[float] = set()
    for label, points in series.items():
        xs, ys = zip(*points, strict=True)
        ticks.update(xs)
        impl = label.split(" / ")[0]
        layout = label.split(" / ")[-1]
        ax.plot(xs, ys, marker="o", label=prefix + label, color=COLORS.get(impl),
                linestyle=(style or {}).get(layout, "-"))  # fmt: skip
    if ticks and len(ticks) <= 8:
        ax.set_xticks(sorted(ticks), [f"{t:,}" for t in sorted(ticks)])
        ax.xaxis.set_minor_locator(NullLocator())


def _from_zero(ax: Axes) -> None:
    low, high = ax.get_ylim()
    ax.set_ylim(min(0.0, low), high)


def _finish(ax: Axes, xlabel: str, ylabel: str, subtitle: str) -> None:
    ax.set_title(subtitle, fontsize=9)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)


def _bars(ax: Axes, rows: list[dict[str, Any]], group: str, impls: list[str], y: str,
          errors: bool = False) -> list[Any]:  # fmt: skip
    """Grouped bars: one group per value of ``group``, one bar per impl; returns the groups."""
    groups = sorted({row[group] for row in rows})
    width = 0.8 / max(len(impls), 1)
    for i, impl in enumerate(impls):
        xs, ys, low, high, hatches = [], [], [], [], []
        for g, value in enumerate(groups):
            row = next((r for r in rows if r["impl"] == impl and r[group] == value), None)
            if row is None:
                continue
            xs.append(g - 0.4 + width * (i + 0.5))
            ys.append(row[y])
            runs = row.get("runs") or [row[y]]
            low.append(row[y] - min(runs))
            high.append(max(runs) - row[y])
            hatches.append("//" if row.get("converged") is False else "")
        bars = ax.bar(xs, ys, width, label=impl, color=COLORS.get(impl),
                      yerr=[low, high] if errors and any(low + high) else None,
                      capsize=3)  # fmt: skip
        for bar, hatch in zip(bars, hatches, strict=True):
            bar.set_hatch(hatch)
        ax.bar_label(bars, labels=[f"{v:,.0f}" if v >= 100 else f"{v:.2f}" for v in ys],
                     fontsize=7, padding=2)  # fmt: skip
    ax.set_xticks(range(len(groups)), [str(g) for g in groups])
    return groups


def _group_span(groups: list[Any], value: Any) -> tuple[float, float]:
    g = groups.index(value)
    return g - 0.45, g + 0.45


def _figure(panels: int) -> tuple[Figure, list[Axes]]:
    width = max(7.5, 5.2 * panels)
    fig, axes = plt.subplots(1, panels, figsize=(width, 4.4), dpi=110, squeeze=False)
    return fig, list(axes[0])


def _convergence(rows: list[dict[str, Any]], fig: Figure, axes: list[Axes]) -> None:
    p50, p99, ratio = axes
    key = ("impl", "layout")
    _lines(p50, _series(rows, key, "peers", "p50_ms"), LAYOUT_STYLE)
    _lines(p99, _series(rows, key, "peers", "p99_ms"), LAYOUT_STYLE)
    raw = {(r["layout"], r["peers"]): r for r in rows if r["impl"] == "raw_aiortc"}
    ws = {(r["layout"], r["peers"]): r for r in rows if r["impl"] == "pycrdt_websocket"}
    ratios: dict[str, Points] = defaultdict(list)
    for row in rows:
        where = (row["layout"], row["peers"])
        if row["impl"] != "crdt_stores":
            continue
        for name, base in (("raw_aiortc", raw), ("pycrdt_websocket", ws)):
            if where in base and base[where]["p50_ms"] > 0:
                ratios[f"{name} / {row['layout']}"].append(
                    (row["peers"], row["p50_ms"] / base[where]["p50_ms"])
                )
    _lines(ratio, {k: sorted(v) for k, v in ratios.items()}, LAYOUT_STYLE, prefix="vs ")
    if raw:
        ratio.axhline(CONVERGENCE_VS_RAW, **TARGET)
        ratio.annotate(f"target vs raw_aiortc: ≤ {CONVERGENCE_VS_RAW}x",
                       (0.02, CONVERGENCE_VS_RAW), xycoords=("axes fraction", "data"),
                       fontsize=7, va="bottom")  # fmt: skip
        for layout, style in LAYOUT_STYLE.items():
            target = sorted((p, r["p50_ms"] * CONVERGENCE_VS_RAW)
                            for (lay, p), r in raw.items() if lay == layout)  # fmt: skip
            if target:
                xs, ys = zip(*target, strict=True)
                p50.plot(xs, ys, color=TARGET["color"], linestyle=style, linewidth=0.9,
                         label=f"target: {CONVERGENCE_VS_RAW}x raw_aiortc ({layout})")  # fmt: skip
    if ws:
        ratio.axhline(1.0, color="0.6", linestyle="-.", linewidth=1.0)
        ratio.annotate("target vs pycrdt_websocket: < 1x", (0.02, 1.0),
                       xycoords=("axes fraction", "data"), fontsize=7, va="top")  # fmt: skip
    for ax in axes:
        _from_zero(ax)
    _finish(p50, "peers", "ms", "p50: one write until every subscriber fired")
    _finish(p99, "peers", "ms", "p99")
    _finish(ratio, "peers", "x baseline", "crdt_stores p50 / baseline p50 (lower is better)")


def _throughput(rows: list[dict[str, Any]], fig: Figure, axes: list[Axes]) -> None:
    (ax,) = axes
    impls = [i for i in ("crdt_stores", "pycrdt_websocket") if any(r["impl"] == i for r in rows)]
    groups = _bars(ax, rows, "peers", impls, "ops_per_s", errors=True)
    if THROUGHPUT_PEERS in groups:
        left, right = _group_span(groups, THROUGHPUT_PEERS)
        label = f"target: ≥ {THROUGHPUT_OPS:,} ops/s with {THROUGHPUT_PEERS} peers"
        ax.hlines(THROUGHPUT_OPS, left, right, **TARGET, label=label)
    _from_zero(ax)
    ax.set_ylim(top=ax.get_ylim()[1] * 1.15)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    runs = max(len(r.get("runs") or [1]) for r in rows)
    note = f"median of {runs} runs, whiskers: min-max" if runs > 1 else "one run each"
    note += "; hatched: never converged"
    _finish(ax, "peers (one process each)", "converged ops/s", note)


def _late_join(rows: list[dict[str, Any]], fig: Figure, axes: list[Axes]) -> None:
    speed, ratio = axes
    _bars(speed, rows, "megabytes", ["crdt_stores", "raw_aiortc"], "mb_per_s")
    raw = {r["megabytes"]: r for r in rows if r["impl"] == "raw_aiortc"}
    ours = sorted((r["megabytes"], r["mb_per_s"] / raw[r["megabytes"]]["mb_per_s"])
                  for r in rows if r["impl"] == "crdt_stores"
                  and r["megabytes"] in raw and raw[r["megabytes"]]["mb_per_s"] > 0)  # fmt: skip
    if ours:
        bars = ratio.bar(range(len(ours)), [r for _, r in ours], 0.5,
                         color=COLORS["crdt_stores"], label="crdt_stores / raw_aiortc")  # fmt: skip
        ratio.bar_label(bars, labels=[f"{r:.2f}x" for _, r in ours], fontsize=7, padding=2)
        ratio.set_xticks(range(len(ours)), [str(mb) for mb, _ in ours])
        ratio.axhline(LATE_JOIN_VS_RAW, **TARGET, label=f"target: ≥ {LATE_JOIN_VS_RAW}x")
    for ax in axes:
        _from_zero(ax)
        ax.set_ylim(top=ax.get_ylim()[1] * 1.15)
    ratio.set_ylim(top=max(1.1, ratio.get_ylim()[1]))
    _finish(speed, "store MB", "MB/s", "download speed of a newcomer")
    _finish(ratio, "store MB", "x raw_aiortc", "crdt_stores MB/s / raw_aiortc MB/s")


def _history(rows: list[dict[str, Any]], fig: Figure, axes: list[Axes]) -> None:
    sync, memory = axes
    for ax in axes:
        ax.set_xscale("log")
    _lines(sync, _series(rows, ("impl",), "writes", "sync_bytes"))
    _lines(memory, _series(rows, ("impl",), "writes", "rss_bytes", scale=1e-6))
    if any(r["writes"] == HISTORY_WRITES for r in rows):
        label = f"target: < {HISTORY_BYTES // 1000} KB after {HISTORY_WRITES:,} writes"
        sync.axhline(HISTORY_BYTES, **TARGET, label=label)
    sync.set_yscale("log")
    _from_zero(memory)
    _finish(sync, "writes", "bytes", "bytes a late joiner downloads")
    _finish(memory, "writes", "MB", "resident memory grown over the writes")


def _bulk(rows: list[dict[str, Any]], fig: Figure, axes: list[Axes]) -> None:
    seconds, memory = axes
    for ax in axes:
        ax.set_xscale("log")
    _lines(seconds, _series(rows, ("impl", "op"), "keys", "seconds"), OP_STYLE)
    _lines(memory, _series(rows, ("impl", "op"), "keys", "rss_mb"), OP_STYLE)
    if any(r["keys"] == BULK_KEYS and r["impl"] == "crdt_stores" for r in rows):
        label = f"target for bulk_set of {BULK_KEYS:,} keys"
        seconds.axhline(BULK_SECONDS, **TARGET, label=f"{label}: < {BULK_SECONDS} s")
        memory.axhline(BULK_MB, **TARGET, label=f"{label}: < {BULK_MB} MB")
    seconds.set_yscale("log")
    _from_zero(memory)
    _finish(seconds, "keys", "seconds", "one call's time on the writer")
    _finish(memory, "keys", "MB", "the writer's resident memory growth")


def _mesh_join(rows: list[dict[str, Any]], fig: Figure, axes: list[Axes]) -> None:
    (ax,) = axes
    _lines(ax, _series(rows, ("impl",), "peers", "seconds"))
    _from_zero(ax)
    _finish(ax, "peers (one process)", "seconds", "until all peers are linked and synced")


PLOTS = {
    "convergence": (_convergence, 3, "Convergence latency: one write on peer 0"),
    "throughput": (_throughput, 1, "Converged throughput, every peer writing for 0.5 s"),
    "late_join": (_late_join, 2, "Late join: a newcomer downloads the store"),
    "history": (_history, 2, "History: writes cycling over 10 keys"),
    "bulk": (_bulk, 2, "Bulk writes: one bulk_set of N keys, then clear()"),
    "mesh_join": (_mesh_join, 1, "Mesh join: N peers linked and synced"),
}


def plot(
    name: str, rows: list[dict[str, Any]], directory: Path, quick: bool = False
) -> Path | None:
    """Write ``directory/NAME.png`` for one benchmark's rows; None if nothing to plot."""
    if not rows or name not in PLOTS:
        return None
    draw, panels, text = PLOTS[name]
    fig, axes = _figure(panels)
    try:
        draw(rows, fig, axes)
        fig.suptitle(title(text, quick), fontsize=11, fontweight="bold" if quick else "normal")
        fig.tight_layout()
        path = directory / f"{name}.png"
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path
