"""The reference's update splitting driven over stdin/stdout, for the JavaScript tests.

``js/test/split.test.js`` checks that the JavaScript ``split`` (``js/src/updates.js``)
cuts updates exactly where ``crdt_stores._update_writing.split`` does. Each stdin line
is one JSON command, answered by exactly one JSON line on stdout:

* ``{"update": HEX, "max_bytes": N, "max_units": N}`` -> ``{"units": N, "parts": [HEX, ...]}``
  (the update read as the outbox reads its own before splitting it: entries unchecked,
  every struct kept)

Errors answer ``{"error": "..."}``; end of input ends the script.
"""

from __future__ import annotations

from typing import Any

from crdt_stores import updates
from crdt_stores.config import SyncConfig
from tests.helpers.json_lines import serve

MAX_VALUE_BYTES = SyncConfig().max_value_bytes


def split(command: dict[str, Any]) -> dict[str, Any]:
    read = updates.read(
        bytes.fromhex(command["update"]),
        max_units=1 << 62,
        max_value_bytes=MAX_VALUE_BYTES,
        check_entries=False,
        keep_structs=True,
    )
    parts = updates.split(read, command["max_bytes"], command["max_units"])
    return {"units": read.units, "parts": [part.hex() for part in parts]}


if __name__ == "__main__":
    serve(split)
