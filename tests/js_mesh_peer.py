"""A Python peer of a bounded-mesh room, driven over stdin/stdout by the JavaScript mesh
test (``js/test/mesh.webrtc.test.js``): ``tests/js_room_peer.py`` with two changes.

* ``{"op": "join", ..., "mesh": {"full_mesh_max": N, "degree": D, ...}}`` joins with
  ``MeshConfig(**mesh)`` (the other join fields as in ``js_room_peer.py``);
* ``{"op": "links"}`` -> ``{"peers": [...], "room_peers": [...]}``: the linked peers and
  every peer signaling lists.

Every other command is ``js_room_peer.py``'s.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Any

from crdt_stores import Meeting, MeshConfig
from tests.js_room_peer import handle as room_handle


async def handle(state: dict[str, Any], command: dict[str, Any]) -> dict[str, Any]:
    op = command["op"]
    if op == "join":
        meeting = await Meeting.join(
            command["url"],
            command["room"],
            peer_id=command.get("peer_id"),
            ice_addresses=["127.0.0.1"],
            room_key=command.get("room_key"),
            mesh=MeshConfig(**command.get("mesh", {})),
        )
        state["meeting"] = meeting
        return {"peer_id": meeting.peer_id, "peers": sorted(meeting.peers)}
    if op == "links":
        meeting = state["meeting"]
        return {"peers": sorted(meeting.peers), "room_peers": meeting.room_peers}
    return await room_handle(state, command)


async def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    state: dict[str, Any] = {}
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while not state.get("done"):
        line = await reader.readline()
        if not line:
            break
        try:
            reply = await handle(state, json.loads(line))
        except Exception as exc:  # reported to the test, which fails on it
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    meeting = state.get("meeting")
    if meeting is not None and not state.get("done"):
        await meeting.leave()


if __name__ == "__main__":
    asyncio.run(main())
