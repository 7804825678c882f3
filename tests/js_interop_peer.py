"""A Python sync engine driven over stdin/stdout, for the JavaScript interop test.

``js/test/interop.test.js`` runs this script and pipes frames between it and the
JavaScript ``SyncEngine`` in memory. Each stdin line is one JSON command, answered by
exactly one JSON line on stdout (frames and values travel as hex; values as CBOR, so
that ``1`` and ``1.0`` stay apart):

* ``{"op": "link_up" | "link_down", "peer": P, "now": T}``
* ``{"op": "receive", "peer": P, "frame": HEX, "now": T}``
* ``{"op": "send", "now": T}`` -> ``{"frames": [[P, HEX], ...]}``
* ``{"op": "tick", "now": T}`` -> ``{"deadline": T or null}``
* ``{"op": "create", "store": S}``
* ``{"op": "write", "store": S, "write": "set" | ..., "args": HEX}`` (a CBOR array)
* ``{"op": "values", "store": S}`` -> ``{"values": HEX}`` (a CBOR map)
* ``{"op": "status"}`` -> ``{"synced": bool, "stats": {...}, "stores": [...],
  "entries": {S: entries held}}``

Errors answer ``{"error": "..."}``; end of input ends the script.
"""

from __future__ import annotations

import sys
from typing import Any

import cbor2

from crdt_stores.protocol import SyncEngine
from tests.helpers.json_lines import serve


def handle(engine: SyncEngine, command: dict[str, Any]) -> dict[str, Any]:
    op = command["op"]
    now = float(command.get("now", 0.0))
    if op == "link_up":
        engine.link_up(command["peer"], now)
    elif op == "link_down":
        engine.link_down(command["peer"])
    elif op == "receive":
        engine.receive(command["peer"], bytes.fromhex(command["frame"]), now)
    elif op == "send":
        return {"frames": [[peer, frame.hex()] for peer, frame in engine.data_to_send(now)]}
    elif op == "tick":
        engine.tick(now)
        return {"deadline": engine.next_deadline()}
    elif op == "create":
        engine.create_store(command["store"])
    elif op == "write":
        args = cbor2.loads(bytes.fromhex(command["args"]))
        engine.write(command["store"], command["write"], *args)
    elif op == "values":
        replica = engine.store(command["store"])
        values = dict(replica.items()) if replica is not None else {}
        return {"values": cbor2.dumps(values).hex()}
    elif op == "status":
        engine.take_events()
        return {
            "synced": engine.is_synced(),
            "stats": dict(engine.stats),
            "stores": sorted(engine.stores),
            "entries": {name: replica.entry_count for name, replica in engine.stores.items()},
        }
    else:
        return {"error": f"unknown command {op!r}"}
    return {"ok": True}


def main() -> None:
    engine = SyncEngine(sys.argv[1] if len(sys.argv) > 1 else "py")
    serve(lambda command: handle(engine, command))


if __name__ == "__main__":
    main()
