"""A peer in its own process, for tests that kill processes.

Usage: python -m tests.helpers.peer_process URL ROOM PEER_ID STORE KEY VALUE_JSON
Joins, writes KEY=VALUE into STORE, waits until synced, prints "ready", then
serves until its stdin closes (or it is killed).
"""

from __future__ import annotations

import asyncio
import json
import sys

from crdt_stores import Meeting


async def main(url: str, room: str, peer_id: str, store: str, key: str, value: str) -> None:
    async with Meeting(url, room=room, peer_id=peer_id, ice_addresses=["127.0.0.1"]) as meeting:
        await meeting.stores.create(store).set(key, json.loads(value))
        await meeting.synced(timeout=20)
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:7]))
