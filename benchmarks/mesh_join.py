"""Mesh join: seconds until N peers are all linked to each other and synced.

All peers in this process. ``crdt_stores``: N ``Meeting.join`` calls at once
through the real signaling server, until every meeting has N-1 peers and
``synced()`` holds. ``raw_aiortc``: the floor, N(N-1)/2 plain aiortc connections
with the SDP handed over directly, until every data channel is open.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from crdt_stores import Meeting
from signaling import SignalingServer

from .baselines import raw_mesh
from .common import ICE_ADDRESSES, LOOPBACK


async def crdt(peers: int) -> float:
    async with SignalingServer(LOOPBACK, 0) as server:
        started = time.perf_counter()
        meetings = await asyncio.gather(
            *(
                Meeting.join(server.url, "mesh", peer_id=f"p{i:02d}", ice_addresses=ICE_ADDRESSES)
                for i in range(peers)
            )
        )
        try:
            for meeting in meetings:
                meeting.stores.create("s")
            async with asyncio.timeout(120):
                while any(len(m.peers) < peers - 1 for m in meetings):  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
                await asyncio.gather(*(m.synced() for m in meetings))
            return time.perf_counter() - started
        finally:
            await asyncio.gather(*(m.leave() for m in meetings))


async def raw(peers: int) -> float:
    started = time.perf_counter()
    mesh = await raw_mesh([f"p{i}" for i in range(peers)], lambda *args: None)
    elapsed = time.perf_counter() - started
    await asyncio.gather(*(p.close() for p in mesh.values()))
    return elapsed


async def run(quick: bool, report: Any = print) -> list[dict[str, Any]]:
    rows = []
    for peers in (2, 4, 8, 16):
        for impl, measure in (("crdt_stores", crdt), ("raw_aiortc", raw)):
            seconds = await measure(peers)
            rows.append({"impl": impl, "peers": peers, "seconds": round(seconds, 3)})
            report(f"mesh join N={peers:<2d} {impl:17s} {seconds:6.2f} s")
    return rows


def main() -> None:
    from .__main__ import standalone

    standalone("mesh_join")


if __name__ == "__main__":
    main()
