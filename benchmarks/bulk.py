"""Bulk writes: one ``bulk_set`` of N small keys, then one ``clear()``, between two peers.

Two processes over WebRTC: the writer, and a peer that receives. For each N, the
writer's time for the call and its resident memory growth, and the time until the
other peer holds the result. The baseline ``pycrdt_map`` sets the same N keys (CBOR
values) in a plain pycrdt ``Map`` in one transaction, in this process. Target (the
hostile-peers issue): 100,000 keys in one ``bulk_set`` under 300 MB of growth and 5 s.
"""

from __future__ import annotations

import time
from typing import Any

import cbor2
from pycrdt import Doc, Map

from signaling import SignalingServer

from .common import LOOPBACK, Worker, close_all


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 1e6


def pycrdt_map(keys: int) -> dict[str, Any]:
    doc = Doc()
    data = doc.get("data", type=Map)
    before = _rss_mb()
    started = time.perf_counter()
    with doc.transaction():
        for i in range(keys):
            data[f"b{i}"] = cbor2.dumps({"n": i, "tag": "bulk"})
    return {
        "impl": "pycrdt_map",
        "keys": keys,
        "op": "bulk_set",
        "seconds": round(time.perf_counter() - started, 3),
        "rss_mb": round(_rss_mb() - before, 1),
    }


async def crdt(sizes: list[int]) -> list[dict[str, Any]]:
    rows = []
    async with SignalingServer(LOOPBACK, 0) as server:
        for keys in sizes:
            writer = await Worker.start("crdt", "writer", url=server.url, room=f"bulk{keys}")
            reader = await Worker.start("crdt", "reader", url=server.url, room=f"bulk{keys}")
            try:
                for worker in (writer, reader):
                    await worker.send(op="join")
                    await worker.expect("joined")
                await reader.send(op="rss")
                reader_before = (await reader.expect("rss"))["rss_mb"]
                for kind in ("set", "clear"):
                    await writer.send(op="bulk", keys=keys, kind=kind)
                    done = await writer.expect("bulked", 600)
                    await reader.send(op="await_state", target=done["sv"])
                    covered = await reader.expect("covered", 600)
                    await reader.send(op="rss")
                    reader_rss = (await reader.expect("rss"))["rss_mb"] - reader_before
                    rows.append(
                        {
                            "impl": "crdt_stores",
                            "keys": keys,
                            "op": "bulk_set" if kind == "set" else "clear",
                            "seconds": round(done["t1"] - done["t0"], 3),
                            "rss_mb": round(done["rss_mb"], 1),
                            "converged_s": round(covered["t"] - done["t0"], 3),
                            "receiver_rss_mb": round(reader_rss, 1),
                        }
                    )
            finally:
                await close_all([writer, reader])
    return rows


async def run(quick: bool, report: Any = print) -> list[dict[str, Any]]:
    sizes = [1_000, 10_000] if quick else [1_000, 10_000, 100_000]
    rows = await crdt(sizes)
    rows += [pycrdt_map(keys) for keys in sizes]
    for row in rows:
        report(
            f"bulk {row['keys']:>7,} {row['op']:8s} {row['impl']:11s} {row['seconds']:6.2f} s"
            f" +{row['rss_mb']:.0f} MB"
            + (f", converged after {row['converged_s']:.2f} s" if "converged_s" in row else "")
        )
    return rows
