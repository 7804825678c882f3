"""Peers of one large room in their own process, over real WebRTC (loopback only).

``python -m tests.room_worker URL ROOM PREFIX COUNT TOTAL FULL_MESH_MAX``: joins COUNT
meetings (peer ids ``PREFIX-i``) with ``MeshConfig(full_mesh_max=FULL_MESH_MAX)``,
each writes its own id into store ``s``, and once every meeting of this process
holds TOTAL keys prints one JSON line (``{"converged": seconds, "links": [...]}``).
Then it stays (its peers relay for the others) until a line arrives on stdin, and
leaves. Any failure prints ``{"error": ...}``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from crdt_stores import Meeting, MeshConfig

LOOPBACK = ["127.0.0.1"]


async def main(url: str, room: str, prefix: str, count: int, total: int, full: int) -> None:
    mesh = MeshConfig(full_mesh_max=full)
    started = time.monotonic()
    meetings = await asyncio.gather(
        *(
            Meeting.join(url, room, peer_id=f"{prefix}-{i}", ice_addresses=LOOPBACK, mesh=mesh)
            for i in range(count)
        )
    )
    try:
        for meeting in meetings:
            await meeting.stores.create("s").set(meeting.peer_id, True)

        def converged() -> bool:
            for meeting in meetings:
                store = meeting.stores.get("s")
                if store is None or len(store.keys()) < total:
                    return False
            return True

        async with asyncio.timeout(120):
            while not converged():  # noqa: ASYNC110 - a condition over several meetings
                await asyncio.sleep(0.05)
        print(
            json.dumps(
                {
                    "converged": time.monotonic() - started,
                    "links": [len(m.peers) for m in meetings],
                    "room": [len(m.room_peers) for m in meetings],
                }
            ),
            flush=True,
        )
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    except Exception as exc:  # reported to the test, which fails with it
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
    finally:
        await asyncio.gather(*(m.leave() for m in meetings))


if __name__ == "__main__":
    url, room, prefix, count, total, full = sys.argv[1:7]
    asyncio.run(main(url, room, prefix, int(count), int(total), int(full)))
