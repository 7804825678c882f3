"""The victim of ``benchmarks/hostile.py``: one honest peer in its own process.

Usage: python benchmarks/hostile_victim.py URL ROOM PEER_ID
(with PYTHONPATH choosing which version of the library it runs). It joins, creates
the store "s", answers a remote "ping" with "pong" = the same value, and obeys
commands on stdin, each answered with one JSON line:

* ``dump``: ``{"stores": {name: get_all()}, "stats": meeting.stats}``
* ``delete KEY``: deletes KEY from "s", answers ``{"ok": true}`` or the error
* ``quit``

Only the public API of every version is used, so old versions can be measured too.
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
        print(json.dumps({"ready": True}), flush=True)
        loop = asyncio.get_running_loop()
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if not line or line == "quit":
                break
            if line == "dump":
                stores = {}
                for name in list(meeting.stores)[:20]:
                    values = meeting.stores[name].get_all()
                    stores[name] = {k[:40]: repr(v)[:80] for k, v in list(values.items())[:50]}
                reply: dict[str, object] = {"stores": stores, "stats": meeting.stats}
                reply["store_count"] = len(meeting.stores)
            elif line.startswith("delete "):
                try:
                    await store.delete(line[7:])
                    reply = {"ok": True}
                except Exception as exc:
                    reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:200]}
            else:
                reply = {"error": f"unknown command {line!r}"}
            print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
