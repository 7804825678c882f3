"""A Python peer of a real room (``crdt_stores.Meeting`` over aiortc), driven over
stdin/stdout by the JavaScript mixed-room and mesh tests (``js/test/mixed.test.js``,
``js/test/mesh.webrtc.test.js``).

Each stdin line is one JSON command, answered by exactly one JSON line on stdout.
Values travel in *typed JSON* (``tests/vectors/README.md``): an integer beyond
±(2**53-1) is ``{"$int": "..."}``, every float ``{"$float": "repr"}``, a dict with a
key starting with ``$`` ``{"$map": [[key, value], ...]}``, so that ``1`` and ``1.0``
and 64-bit integers stay apart.

* ``{"op": "join", "url": U, "room": R, "peer_id": P, "room_key": K or null}``
  -> ``{"peer_id": P, "peers": [...]}`` (ICE on 127.0.0.1 only); with
  ``"mesh": {"full_mesh_max": N, "degree": D, ...}`` it joins with ``MeshConfig(**mesh)``
* ``{"op": "links"}`` -> ``{"peers": [...], "room_peers": [...]}``: the linked peers and
  every peer signaling lists
* ``{"op": "create", "store": S}``
* ``{"op": "write", "store": S, "write": "set" | "update" | "delete" | "bulk_set" |
  "bulk_delete" | "clear", "args": [typed...]}``
* ``{"op": "big", "store": S, "keys": N, "size": BYTES, "seed": X}``: N keys
  ``big-0``... each a string of BYTES pseudo-random hex characters -> ``{"written": bytes}``
* ``{"op": "wait_peers", "peers": [...], "timeout": T}``: until linked to all of them
* ``{"op": "wait_keys", "store": S, "keys": [...], "timeout": T}``: until S holds them
* ``{"op": "synced", "timeout": T}`` -> ``{"peers": [...]}``
* ``{"op": "values"}`` -> ``{"values": {store: typed map}}``
* ``{"op": "leave"}``: leaves and ends the script.

Errors answer ``{"error": "..."}``. Logs go to stderr.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sys
from typing import Any

from crdt_stores import Meeting, MeshConfig

SAFE = 2**53 - 1


def typed(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value if -SAFE <= value <= SAFE else {"$int": str(value)}
    if isinstance(value, float):
        return {"$float": repr(value)}
    if isinstance(value, list | tuple):
        return [typed(v) for v in value]
    if isinstance(value, dict):
        if any(k.startswith("$") for k in value):
            return {"$map": [[k, typed(v)] for k, v in value.items()]}
        return {k: typed(v) for k, v in value.items()}
    raise TypeError(f"cannot encode {type(value).__name__}")


def untyped(value: Any) -> Any:
    if isinstance(value, list):
        return [untyped(v) for v in value]
    if isinstance(value, dict):
        if len(value) == 1:
            ((tag, inner),) = value.items()
            if tag == "$int":
                return int(inner)
            if tag == "$float":
                return float(inner)
            if tag == "$map":
                return {k: untyped(v) for k, v in inner}
        return {k: untyped(v) for k, v in value.items()}
    return value


async def until(check: Any, timeout: float, what: str) -> None:
    """Wait (bounded) for ``check()``; the meeting changes only on the event loop."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


async def handle(state: dict[str, Any], command: dict[str, Any]) -> dict[str, Any]:
    op = command["op"]
    meeting: Meeting | None = state.get("meeting")
    if op == "join":
        meeting = await Meeting.join(
            command["url"],
            command["room"],
            peer_id=command.get("peer_id"),
            ice_addresses=["127.0.0.1"],
            room_key=command.get("room_key"),
            mesh=MeshConfig(**command["mesh"]) if "mesh" in command else None,
        )
        state["meeting"] = meeting
        return {"peer_id": meeting.peer_id, "peers": sorted(meeting.peers)}
    assert meeting is not None, "join first"
    if op == "links":
        return {"peers": sorted(meeting.peers), "room_peers": meeting.room_peers}
    if op == "create":
        meeting.stores.create(command["store"])
    elif op == "write":
        store = meeting.stores.create(command["store"])
        args = [untyped(a) for a in command.get("args", [])]
        await getattr(store, command["write"])(*args)
    elif op == "big":
        store = meeting.stores.create(command["store"])
        rng = random.Random(command.get("seed", 1))
        size = int(command["size"])
        written = 0
        for i in range(int(command["keys"])):
            value = rng.randbytes(size // 2).hex()
            await store.set(f"big-{i}", value)
            written += len(value)
        return {"written": written}
    elif op == "wait_peers":
        wanted = set(command["peers"])
        await until(
            lambda: wanted <= set(meeting.peers), command.get("timeout", 20), f"links to {wanted}"
        )
    elif op == "wait_keys":
        keys = command["keys"]

        def present() -> bool:
            store = meeting.stores.get(command["store"])
            return store is not None and all(k in store for k in keys)

        await until(present, command.get("timeout", 20), f"keys {keys}")
    elif op == "synced":
        return {"peers": await meeting.synced(timeout=command.get("timeout", 20))}
    elif op == "values":
        return {"values": {name: typed(meeting.stores[name].get_all()) for name in meeting.stores}}
    elif op == "stats":
        return {"stats": meeting.stats}
    elif op == "leave":
        await meeting.leave()
        state["done"] = True
    else:
        raise ValueError(f"unknown op {op!r}")
    return {}


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
