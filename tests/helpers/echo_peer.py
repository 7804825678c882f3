"""A peer in its own process that answers: a remote write of "ping" gets "pong" = the same value.

Usage: python tests/helpers/echo_peer.py URL ROOM PEER_ID  (or ``-m tests.helpers.echo_peer``)
Prints "ready" once joined. Tests and ``benchmarks/hostile.py`` use it as the victim of
hostile input: it must stay alive and keep answering. Commands on stdin, each answered
with one JSON line:

* ``dump``: ``{"stores": {name: {key: repr(value)}}, "stats": ..., "store_count": ...}``
  (at most 20 stores and 50 keys each, keys cut at 40 characters);
* ``delete KEY``: deletes KEY from the store "s": ``{"ok": true}`` or the error;
* end of input: prints ``meeting.stats`` and leaves.

Only the public API of every version is used (the benchmark runs old versions too).
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
        loop = asyncio.get_running_loop()
        while line := (await loop.run_in_executor(None, sys.stdin.readline)):
            command = line.strip()
            reply: dict[str, object]
            if command == "dump":
                stores = {}
                for name in list(meeting.stores)[:20]:
                    values = list(meeting.stores[name].get_all().items())[:50]
                    stores[name] = {k[:40]: repr(v)[:80] for k, v in values}
                reply = {"stores": stores, "stats": meeting.stats}
                reply["store_count"] = len(meeting.stores)
            elif command.startswith("delete "):
                try:
                    await store.delete(command[7:])
                    reply = {"ok": True}
                except Exception as exc:
                    reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:200]}
            else:
                reply = {"error": f"unknown command {command!r}"}
            print(json.dumps(reply), flush=True)
        print(json.dumps(meeting.stats), flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
