"""Throughput: every peer writes (set and update mixed) as fast as it can for a while.

One process per peer. Each peer collects its garbage (``worker.settle``), then
writes for 0.5 s, yielding to its event loop every 50 writes; the clock stops when
every peer holds every other peer's writes (its state vector covers the union of
all writers' final ones). Reported: all writes divided by the time from the first
write to full convergence (the median of three runs; one with ``--quick``).
The baseline runs the same workload through pycrdt's websocket server (star):
``set`` writes a new nested Y.Map, ``update`` sets one field of it. ``--quick``
skips the baseline at 8 peers (it alone takes about a minute to converge) and
gives up on convergence after 60 s instead of 180 s.
"""

from __future__ import annotations

from typing import Any

from signaling import SignalingServer

from .baselines import PycrdtServer
from .common import LOOPBACK, Worker, close_all, now

IMPLS = ("crdt_stores", "pycrdt_websocket")


async def measure(
    impl: str, peers: int, seconds: float, converge_timeout: float = 180.0
) -> dict[str, Any]:
    names = [f"p{i}" for i in range(peers)]
    server: Any = SignalingServer(LOOPBACK, 0) if impl == "crdt_stores" else PycrdtServer()
    await server.start()
    workers: list[Worker] = []
    try:
        role = "crdt" if impl == "crdt_stores" else "pycrdt"
        workers = [await Worker.start(role, n, url=server.url) for n in names]
        for worker in workers:
            await worker.send(op="join")
            await worker.expect("joined")
        if impl == "crdt_stores":
            for worker in workers:
                await worker.send(op="wait_peers", count=peers - 1)
            for worker in workers:
                await worker.expect("ready")
        for worker in workers:  # (the same collector state everywhere: see worker.settle)
            await worker.send(op="settle")
        for worker in workers:
            await worker.expect("settled", 60)
        for i, worker in enumerate(workers):
            await worker.send(op="flood", seconds=seconds, seed=i)
        written = [await w.expect("written", seconds + 120) for w in workers]
        target: dict[str, int] = {}
        for report in written:
            for client, clock in report["sv"].items():
                target[client] = max(target.get(client, 0), clock)
        for worker in workers:
            await worker.send(op="await_state", target=target)
        ops = sum(r["ops"] for r in written)
        start = min(r["t0"] for r in written)
        try:
            covered = [await w.expect("covered", converge_timeout) for w in workers]
            end, converged = max(c["t"] for c in covered), True
        except TimeoutError:
            # Seen with pycrdt-websocket: every process goes idle and it never
            # converges. Reported as such, with the rate as an upper bound.
            end, converged = now(), False
        return {
            "impl": impl,
            "peers": peers,
            "ops_per_s": round(ops / (end - start)),
            "ops": ops,
            "seconds": round(end - start, 3),
            "write_seconds": round(max(r["t1"] for r in written) - start, 3),
            "converged": converged,
        }
    finally:
        await close_all(workers)
        await server.stop()


FLOOD_SECONDS = 0.5  # pycrdt-websocket stalls for good under floods of 2 s
QUICK_BASELINE_PEERS = 4  # --quick: the largest N for pycrdt_websocket


async def run(quick: bool, report: Any = print) -> list[dict[str, Any]]:
    repeats = 1 if quick else 3
    timeout = 60.0 if quick else 180.0
    rows = []
    for peers in (2, 4, 8):
        for impl in IMPLS:
            if quick and impl == "pycrdt_websocket" and peers > QUICK_BASELINE_PEERS:
                continue
            runs = [await measure(impl, peers, FLOOD_SECONDS, timeout) for _ in range(repeats)]
            row = sorted(runs, key=lambda r: r["ops_per_s"])[len(runs) // 2]  # the median run
            row["runs"] = [r["ops_per_s"] for r in runs]
            rows.append(row)
            state = "converged" if row["converged"] else "NOT converged (stalled)"
            report(
                f"throughput N={peers:<2d} {impl:17s} {row['ops_per_s']:>8d} ops/s "
                f"({row['ops']} writes, {state} after {row['seconds']:.2f} s)"
            )
    return rows


def main() -> None:
    from .__main__ import standalone

    standalone("throughput")


if __name__ == "__main__":
    main()
