"""A peer in its own process that floods one other peer, for responsiveness tests.

Usage: python -m tests.helpers.flooder URL ROOM PEER_ID TARGET SECONDS MODE
Joins, prepares its frames, prints "ready" once linked to TARGET, then for SECONDS
sends as fast as its link takes them:

(Into the store "flood": the peer that measures how fast the victim answers can refuse
that store, so that only the victim does the work.)

* ``fresh``: valid updates of 8,000 new entries each (a writer's chain), all different;
* ``replay``: the same big valid update (16,000 entries) again and again;
* ``garbage``: frames that are not CBOR (its link gets closed, and it comes back).

Prints "done" and waits for stdin to close.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from pycrdt import Doc

from crdt_stores import Meeting
from tests.helpers import attacks


def fresh_frames(count: int, entries: int) -> list[bytes]:
    """``count`` UPDATE messages, each appending ``entries`` new entries to one chain."""
    doc = Doc(client_id=4_000_002)
    frames = []
    n = 0
    for i in range(count):
        batch = []
        for _ in range(entries):
            n += 1
            batch.append(attacks.entry(f"f{n % 50_000}", {"n": n}, n))
        _, update = attacks.own_entries(4_000_002, *batch, base=doc)
        frames.extend(attacks.chunked(attacks.message(attacks.UPDATE, {"flood": [update]}, {}), i))
    return frames


async def main(url: str, room: str, peer_id: str, target: str, seconds: str, mode: str) -> None:
    if mode == "fresh":
        frames = fresh_frames(30, 8_000)
    elif mode == "replay":
        _, replay = attacks.own_entries(
            4_000_001, *(attacks.entry(f"r{i % 64}", i, i + 1) for i in range(16_000))
        )
        frames = attacks.chunked(attacks.message(attacks.UPDATE, {"flood": [replay]}, {}), 1)
    else:
        frames = [b"\xff not cbor"] * 100
    async with Meeting(url, room=room, peer_id=peer_id, ice_addresses=["127.0.0.1"]) as meeting:
        linked = asyncio.Event()
        meeting.on("peer_joined", lambda peer: linked.set() if peer == target else None)
        if target not in meeting.peers:
            await asyncio.wait_for(linked.wait(), 20)
        transport = meeting._transport
        assert transport is not None
        print("ready", flush=True)
        deadline = time.monotonic() + float(seconds)
        sent = 0
        while time.monotonic() < deadline and (mode != "fresh" or sent < len(frames)):
            for frame in frames if mode != "fresh" else frames[sent : sent + 10]:
                transport.send(target, frame)
                sent += 1
            if transport.buffered_amount() > 4_000_000:
                await transport.drain(1_000_000)
            await asyncio.sleep(0)
        print("done", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    # The flooder yields the CPU to the peers it shares this machine with: on a network
    # its CPU is not its victim's (with 2 cores, aiortc encrypting ~5 MB for it competed
    # with the victim and the measuring peer, and stalls of one second were its share).
    os.nice(10)
    asyncio.run(main(*sys.argv[1:7]))
