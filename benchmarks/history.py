"""History cost: what 1,000 to 100,000 writes cycling over 10 keys leave behind.

Each measurement runs in a fresh process. ``crdt_stores``: one writer on the
in-memory network (the bytes do not depend on the transport), then a late joiner;
``sync_bytes`` is everything the late joiner received. ``pycrdt_map``: a plain
pycrdt ``Map`` with the same writes; ``sync_bytes`` is its full update.
``rss_bytes`` is the growth of the process's resident memory over the writes.
The ``*_interleaved`` rows split the same writes among three peers taking turns.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
from typing import Any

from .common import ROOT

KEYS = 10


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _crdt(writes: int, writers: int) -> dict[str, int]:
    from crdt_stores.memory import MemoryNetwork

    net = MemoryNetwork()
    peers = [await net.join("history", peer_id=f"w{i}") for i in range(writers)]
    stores = [peer.stores.create("counters") for peer in peers]
    await asyncio.gather(*(p.synced(timeout=60) for p in peers))
    gc.collect()
    before = rss()
    for i in range(writes):
        await stores[i % writers].set(f"k{i % KEYS}", i)
        if writers > 1:
            await asyncio.gather(*(p.synced(timeout=60) for p in peers))
    await asyncio.gather(*(p.synced(timeout=60) for p in peers))
    gc.collect()
    grown = rss() - before
    late = await net.join("history", peer_id="late")
    await late.synced(timeout=60)
    assert late.stores["counters"].get_all() == stores[0].get_all()
    return {"sync_bytes": late.stats["bytes_in"], "rss_bytes": grown}


def _pycrdt_map(writes: int) -> dict[str, int]:
    import cbor2
    from pycrdt import Doc, Map

    doc = Doc()
    data = doc.get("counters", type=Map)
    gc.collect()
    before = rss()
    for i in range(writes):
        data[f"k{i % KEYS}"] = cbor2.dumps(i)
    gc.collect()
    return {"sync_bytes": len(doc.get_update()), "rss_bytes": rss() - before}


def child(impl: str, writes: int) -> None:
    if impl == "pycrdt_map":
        result = _pycrdt_map(writes)
    else:
        writers = 3 if impl.endswith("_interleaved") else 1
        result = asyncio.run(_crdt(writes, writers))
    print(json.dumps(result))


async def measure(impl: str, writes: int) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.history", "--child", impl, str(writes),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=ROOT,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 900)
    if proc.returncode != 0:
        raise RuntimeError(f"history child failed: {err.decode()[-2000:]}")
    return {"impl": impl, "writes": writes, "keys": KEYS, **json.loads(out.splitlines()[-1])}


async def run(quick: bool, report: Any = print) -> list[dict[str, Any]]:
    rows = []
    for writes in (1_000, 10_000, 100_000):
        impls = ["crdt_stores", "pycrdt_map"]
        if writes <= (1_000 if quick else 10_000):  # strict turns: a sync per write
            impls.insert(1, "crdt_stores_interleaved")
        for impl in impls:
            row = await measure(impl, writes)
            rows.append(row)
            report(
                f"history {writes:>7d} writes {impl:24s} {row['sync_bytes']:>9d} B to sync, "
                f"{row['rss_bytes'] / 1e6:7.2f} MB memory"
            )
    return rows


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]))
        return
    from .__main__ import standalone

    standalone("history")


if __name__ == "__main__":
    main()
