"""A peer in its own process that answers: a remote write of "ping" gets "pong" = the same value.

Usage: python -m tests.helpers.echo_peer URL ROOM PEER_ID
Prints "ready" once joined, then serves until its stdin closes (or it is killed),
and then prints its ``meeting.stats`` as one JSON line.
Tests use it as the victim of hostile input: it must stay alive and keep answering.
"""

from __future__ import annotations

import asyncio
import json
import sys

from crdt_stores import Meeting


async def main(url: str, room: str, peer_id: str) -> None:
    async with Meeting(url, room=room, peer_id=peer_id, ice_addresses=["127.0.0.1"]) as meeting:
        store = meeting.stores.create("s")

        async def answer(key: str, value: object) -> None:
            await store.set("pong", value)

        store.subscribe("ping", answer)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        print(json.dumps(meeting.stats), flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
