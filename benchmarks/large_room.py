"""Large rooms: a full mesh against the bounded-degree mesh, on ``MemoryNetwork``.

``python -m benchmarks.large_room [--quick] [--sizes N ...] [--latency S]`` builds
rooms of N peers in this process, every frame delayed by ``--latency`` (20 ms by
default: a link between two homes), and for each mesh prints:

* ``links/peer``: the links each peer holds once the room settled (mean, max);
* ``write p50/max``: one write, from a random peer, until it shows at the peers
  (median and last peer), over ``--writes`` writes;
* ``hops p50/max``: the shortest path from the writer to each peer in the link
  graph at the time of the write (what the relay can do at best; the times show
  it does about that);
* ``bytes/peer/write``: everything the room sent for one write (updates, relays,
  acks), divided by N; heartbeats are made rare (10 s) so they do not count;
  ``busiest peer``: the most one peer sent for one write, bytes (frames): in a
  full mesh, the writer's N-1 copies;
* ``late join``: a newcomer's time until ``synced()`` with a 1,000-key store;
* ``10% leave``: a tenth of the peers leave at once, a remaining peer writes at
  once: the time until every remaining peer shows that write.

All peers share this process and its one CPU: the times include waiting behind the
other peers' work (a write makes every peer apply it and relay it), so they grow
with N faster than a real room's, where each peer has its own machine.

The full mesh is measured up to 64 peers (``full_mesh_max`` set to N), the bounded
mesh at every size (``full_mesh_max=2``: bounded from the start, default degrees).
Writes ``large_room.json`` into a new ``benchmarks/runs/`` folder (``--publish``:
into ``benchmarks/results/``, the README's table).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from crdt_stores import Meeting, MeshConfig
from crdt_stores.memory import MemoryNetwork

from .common import RESULTS, machine, percentile, run_dir

# Heartbeats every 10 s (dead after 60): their bytes would otherwise blur bytes per write.
TIMING = {"heartbeat_interval": 10.0, "dead_after": 60.0}
SETTLE_TIMEOUT = 300.0


@dataclass
class Row:
    mesh: str
    peers: int
    links_mean: float
    links_max: int
    write_p50_ms: float
    write_max_ms: float
    hops_p50: float
    hops_max: int
    bytes_per_peer_write: float
    bytes_max_peer: int
    frames_max_peer: int
    late_join_s: float
    leave_converge_s: float
    settle_s: float


def hops_from(source: str, graph: dict[str, set[str]]) -> dict[str, int]:
    """Breadth-first distances from ``source`` in the link graph."""
    dist = {source: 0}
    queue = deque([source])
    while queue:
        here = queue.popleft()
        for there in graph.get(here, ()):
            if there not in dist:
                dist[there] = dist[here] + 1
                queue.append(there)
    return dist


async def until(condition: Any, timeout: float, what: str) -> float:
    """Seconds until ``condition()`` holds (polled every 5 ms), TimeoutError past ``timeout``."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            while not condition():  # noqa: ASYNC110 - a condition over many meetings
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise TimeoutError(f"{what}: not within {timeout:g} s") from None
    return time.perf_counter() - started


async def arrival_times(
    meetings: list[Meeting], writer: Meeting, key: str, value: int
) -> list[float]:
    """Write ``key`` at ``writer``; seconds until each meeting shows it."""
    loop = asyncio.get_running_loop()
    seen: dict[str, float] = {}
    done = asyncio.Event()
    subs = []
    for m in meetings:
        store = m.stores.get("s")
        assert store is not None

        def cb(_key: str, got: Any, peer: str = m.peer_id) -> None:
            if got == value and peer not in seen:
                seen[peer] = loop.time()
                if len(seen) == len(meetings):
                    done.set()

        subs.append(store.subscribe(key, cb))
    started = loop.time()
    store = writer.stores.get("s")
    assert store is not None
    seen[writer.peer_id] = started
    await store.set(key, value)
    async with asyncio.timeout(SETTLE_TIMEOUT):
        await done.wait()
    for sub in subs:
        sub()
    return [seen[m.peer_id] - started for m in meetings]


async def room(peers: int, full_mesh_max: int, latency: float, writes: int, seed: int) -> Row:
    rng = random.Random(seed)
    net = MemoryNetwork(seed=seed)
    mesh = MeshConfig(full_mesh_max=full_mesh_max)
    started = time.perf_counter()
    meetings: list[Meeting] = []
    for i in range(peers):
        meetings.append(await net.join("big", peer_id=f"p{i:04d}", mesh=mesh, **TIMING))
    net.set_faults(delay=latency)
    first = meetings[0].stores.create("s")
    await first.bulk_set({f"k{i:04d}": i for i in range(1000)})
    high = mesh.degree_high if peers > full_mesh_max else peers - 1
    low = min(mesh.degree_low, peers - 1) if peers > full_mesh_max else peers - 1

    def settled() -> bool:
        for m in meetings:
            store = m.stores.get("s")
            if store is None or len(store.keys()) < 1000 or not low <= len(m.peers) <= high:
                return False
        return True

    await until(settled, SETTLE_TIMEOUT, "settled")
    settle = time.perf_counter() - started
    # The 1,000 keys arrived everywhere, but copies relayed to peers that had them
    # already, and acks, may still be in flight: let them land before counting bytes.
    await net.drained(SETTLE_TIMEOUT)
    await asyncio.sleep(0.25 + 4 * latency)
    await net.drained(SETTLE_TIMEOUT)
    graph = {m.peer_id: set(m.peers) for m in meetings}
    links = [len(p) for p in graph.values()]

    times: list[float] = []
    hops: list[int] = []
    sent: list[float] = []
    busiest: list[int] = []
    frames: list[int] = []
    for w in range(writes):
        writer = rng.choice(meetings)
        graph = {m.peer_id: set(m.peers) for m in meetings}
        dist = hops_from(writer.peer_id, graph)
        before = [(m.stats.get("bytes_out", 0), m.stats.get("frames_out", 0)) for m in meetings]
        arrived = await arrival_times(meetings, writer, "w", w)
        # Acks follow a write by up to ack_delay (0.25 s) plus a link's latency.
        await asyncio.sleep(0.25 + 4 * latency)
        after = [(m.stats.get("bytes_out", 0), m.stats.get("frames_out", 0)) for m in meetings]
        delta = [(a[0] - b[0], a[1] - b[1]) for a, b in zip(after, before, strict=True)]
        sent.append(sum(d[0] for d in delta) / peers)
        busiest.append(max(d[0] for d in delta))
        frames.append(max(d[1] for d in delta))
        times.extend(t for m, t in zip(meetings, arrived, strict=True) if m is not writer)
        hops.extend(d for peer, d in dist.items() if peer != writer.peer_id)
    # A late joiner.
    t0 = time.perf_counter()
    late = await net.join("big", peer_id="late", mesh=mesh, **TIMING)

    def late_has_all() -> bool:
        store = late.stores.get("s")
        return store is not None and len(store.keys()) >= 1001

    await until(late_has_all, SETTLE_TIMEOUT, "late join")
    late_join = time.perf_counter() - t0
    meetings.append(late)
    # A tenth leave at once; a remaining peer writes at once.
    leaving = rng.sample(meetings[1:], max(1, len(meetings) // 10))
    staying = [m for m in meetings if m not in leaving]
    t0 = time.perf_counter()
    await asyncio.gather(*(m.leave() for m in leaving))
    await arrival_times(staying, staying[0], "after-leave", 1)
    leave_converge = time.perf_counter() - t0
    await asyncio.gather(*(m.leave() for m in staying))
    return Row(
        mesh="full" if peers <= full_mesh_max else "bounded",
        peers=peers,
        links_mean=round(sum(links) / len(links), 2),
        links_max=max(links),
        write_p50_ms=round(1000 * percentile(times, 50), 1),
        write_max_ms=round(1000 * max(times), 1),
        hops_p50=percentile(hops, 50),
        hops_max=max(hops),
        bytes_per_peer_write=round(sum(sent) / len(sent)),
        bytes_max_peer=max(busiest),
        frames_max_peer=max(frames),
        late_join_s=round(late_join, 2),
        leave_converge_s=round(leave_converge, 2),
        settle_s=round(settle, 1),
    )


async def run(sizes: list[int], latency: float, writes: int, report: Any = print) -> list[Row]:
    rows = []
    for peers in sizes:
        for full_mesh_max in (peers, 2) if peers <= 64 else (2,):
            row = await room(peers, full_mesh_max, latency, writes, seed=peers)
            rows.append(row)
            report(f"{row.mesh:8s} N={peers:<5d} {row}")
    return rows


def table(rows: list[Row], latency: float) -> Table:
    t = Table(title=f"Large rooms on MemoryNetwork, {1000 * latency:g} ms per link")
    for column in ("mesh", "N", "links/peer mean (max)", "write p50 / max ms", "hops p50 / max",
                   "bytes/peer/write", "busiest peer B (frames)", "late join s",
                   "10% leave s"):  # fmt: skip
        t.add_column(column, justify="right")
    for r in rows:
        t.add_row(r.mesh, str(r.peers), f"{r.links_mean:g} ({r.links_max})",
                  f"{r.write_p50_ms:g} / {r.write_max_ms:g}", f"{r.hops_p50:g} / {r.hops_max}",
                  f"{r.bytes_per_peer_write:,.0f}",
                  f"{r.bytes_max_peer:,} ({r.frames_max_peer})", f"{r.late_join_s:g}",
                  f"{r.leave_converge_s:g}")  # fmt: skip
    return t


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.large_room", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="N = 16, 64, 256; 3 writes")
    parser.add_argument("--sizes", type=int, nargs="+", help="room sizes (default 16 64 256 1000)")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per link (0.02)")
    parser.add_argument("--writes", type=int, help="writes per room (default 10, quick 3)")
    parser.add_argument("--publish", action="store_true", help="write into benchmarks/results/")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    sizes = args.sizes or ([16, 64, 256] if args.quick else [16, 64, 256, 1000])
    writes = args.writes or (3 if args.quick else 10)
    console = Console()
    rows = asyncio.run(run(sizes, args.latency, writes, report=console.print))
    console.print(table(rows, args.latency))
    folder = RESULTS if args.publish else run_dir(args.quick, "large_room")
    folder.mkdir(parents=True, exist_ok=True)
    report = {"machine": machine(), "latency": args.latency, "writes": writes,
              "rows": [asdict(r) for r in rows]}  # fmt: skip
    (folder / "large_room.json").write_text(json.dumps(report, indent=1))
    console.print(f"wrote {folder / 'large_room.json'}")


if __name__ == "__main__":
    main()
