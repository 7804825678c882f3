"""Convergence latency: one write on peer 0 until every other peer's subscriber fired.

Implementations: ``crdt_stores`` (real WebRTC), ``raw_aiortc`` (the same frames
fanned out over plain aiortc data channels: the transport's floor) and
``pycrdt_websocket`` (pycrdt's websocket server, star topology). Layouts:
``one-process`` (every peer in this process) and ``multi-process`` (one process
per peer). Writes are sequential with a 5 ms pause, so this measures latency, not
queueing.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from crdt_stores import Meeting
from signaling import SignalingServer

from .baselines import PycrdtClient, PycrdtServer, raw_mesh
from .common import (
    ICE_ADDRESSES,
    LOOPBACK,
    Worker,
    close_all,
    latency_value,
    percentile,
)
from .worker import latency_frames

GAP = 0.005
IMPLS = ("crdt_stores", "raw_aiortc", "pycrdt_websocket")


class _Fired:
    """Counts subscriber calls of one write; done when every receiver has fired."""

    def __init__(self, receivers: int) -> None:
        self.receivers = receivers
        self.count = 0
        self.last = 0.0
        self.done = asyncio.Event()

    def reset(self) -> None:
        self.count = 0
        self.done.clear()

    def fire(self) -> None:
        self.count += 1
        self.last = time.perf_counter()
        if self.count >= self.receivers:
            self.done.set()


async def _measure(write: Any, fired: _Fired, writes: int) -> list[float]:
    latencies = []
    for i in range(writes):
        fired.reset()
        started = time.perf_counter()
        await write(i)
        await asyncio.wait_for(fired.done.wait(), 10)
        latencies.append(fired.last - started)
        await asyncio.sleep(GAP)
    return latencies


async def one_process(impl: str, peers: int, writes: int) -> list[float]:
    fired = _Fired(peers - 1)
    if impl == "crdt_stores":
        async with SignalingServer(LOOPBACK, 0) as server:
            meetings = [
                await Meeting.join(
                    server.url, "bench", peer_id=f"p{i}", ice_addresses=ICE_ADDRESSES
                )
                for i in range(peers)
            ]
            try:
                for meeting in meetings[1:]:
                    meeting.stores.create("bench").subscribe("k", lambda k, v: fired.fire())
                store = meetings[0].stores.create("bench")
                await asyncio.gather(*(m.synced(timeout=60) for m in meetings))

                async def write(i: int) -> None:
                    await store.set("k", latency_value(i))

                return await _measure(write, fired, writes)
            finally:
                await asyncio.gather(*(m.leave() for m in meetings))
    if impl == "raw_aiortc":
        frames = latency_frames(writes)
        names = [f"p{i}" for i in range(peers)]
        mesh = await raw_mesh(names, lambda me, peer, data: fired.fire())
        try:

            async def write(i: int) -> None:
                mesh["p0"].broadcast(frames[i])

            return await _measure(write, fired, writes)
        finally:
            await asyncio.gather(*(p.close() for p in mesh.values()))
    if impl == "pycrdt_websocket":
        server = PycrdtServer()
        await server.start()
        clients = [PycrdtClient(server.url, "bench") for _ in range(peers)]
        subscriptions = []
        try:
            for client in clients:
                await client.start()
            for client in clients[1:]:
                subscriptions.append(client.data.observe(lambda event: fired.fire()))
            data = clients[0].data

            async def write(i: int) -> None:
                data["k"] = latency_value(i)

            return await _measure(write, fired, writes)
        finally:
            for client in clients:
                await client.stop()
            await server.stop()
    raise ValueError(impl)


async def multi_process(impl: str, peers: int, writes: int) -> list[float]:
    names = [f"p{i}" for i in range(peers)]
    server: Any = None
    workers: list[Worker] = []
    try:
        if impl == "crdt_stores":
            server = SignalingServer(LOOPBACK, 0)
            await server.start()
            workers = [await Worker.start("crdt", n, url=server.url) for n in names]
            for i, worker in enumerate(workers):
                await worker.send(op="join", subscribe=i > 0)
                await worker.expect("joined")
            for worker in workers:
                await worker.send(op="wait_peers", count=peers - 1)
            for worker in workers:
                await worker.expect("ready")
        elif impl == "raw_aiortc":
            workers = [await Worker.start("raw", n, subscribe=i > 0) for i, n in enumerate(names)]
            await _raw_mesh_over_workers(workers)
            await workers[0].send(op="prepare", count=writes)
            await workers[0].expect("prepared")
        else:
            server = PycrdtServer()
            await server.start()
            workers = [await Worker.start("pycrdt", n, url=server.url) for n in names]
            for i, worker in enumerate(workers):
                await worker.send(op="join", subscribe=i > 0)
                await worker.expect("joined")
        latencies = []
        for i in range(writes):
            await workers[0].send(op="write", i=i)
            sent = await workers[0].expect("sent")
            last = 0.0
            for worker in workers[1:]:
                while True:
                    fired = await worker.expect("fired", 10)
                    if fired["i"] == i:
                        break
                last = max(last, fired["t"])
            latencies.append(last - sent["t"])
            await asyncio.sleep(GAP)
        return latencies
    finally:
        await close_all(workers)
        if server is not None:
            await server.stop()


async def _raw_mesh_over_workers(workers: list[Worker]) -> None:
    """Connect raw workers pairwise; the SDP goes through this process."""
    for i, a in enumerate(workers):
        for b in workers[i + 1 :]:
            await a.send(op="offer", peer=b.name)
            offer = (await a.expect("sdp"))["sdp"]
            await b.send(op="answer", peer=a.name, sdp=offer)
            answer = (await b.expect("sdp"))["sdp"]
            await a.send(op="accept", peer=b.name, sdp=answer)
            await a.expect("accepted")
    for worker in workers:
        await worker.send(op="wait_open")
    for worker in workers:
        await worker.expect("ready")


async def run(quick: bool, report: Any = print) -> list[dict[str, Any]]:
    writes = 100 if quick else 300
    rows = []
    plan = [("one-process", n) for n in (2, 4, 8, 16)] + [("multi-process", n) for n in (2, 4)]
    for layout, peers in plan:
        for impl in IMPLS:
            measure = one_process if layout == "one-process" else multi_process
            latencies = await measure(impl, peers, writes)
            row = {
                "impl": impl,
                "layout": layout,
                "peers": peers,
                "p50_ms": round(percentile(latencies, 50) * 1000, 3),
                "p99_ms": round(percentile(latencies, 99) * 1000, 3),
                "writes": len(latencies),
            }
            rows.append(row)
            report(f"convergence {layout:13s} N={peers:<2d} {impl:17s} "
                   f"p50 {row['p50_ms']:7.2f} ms  p99 {row['p99_ms']:7.2f} ms")  # fmt: skip
    return rows


def main() -> None:
    from .__main__ import standalone

    standalone("convergence")


if __name__ == "__main__":
    main()
