"""The store replicas of one peer: created here or first named by a peer (within
``max_stores``), written to locally, and what they changed, reported as events.

Every store exists on every peer once any peer holds it; a name from a peer that is
not a valid store name is refused, and names past ``max_stores`` are ignored (they
would otherwise cost memory and a share of every sync and tick).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from .budget import Budget
from .config import SyncConfig
from .events import EngineEvent, StoreAdded, StoreChanged
from .replica import StoreReplica
from .values import check_key

__all__ = ["WRITE_OPERATIONS", "Replicas"]

WRITE_OPERATIONS = frozenset({"set", "update", "delete", "bulk_set", "bulk_delete", "clear"})
"""The local writes ``SyncEngine.write`` takes (``StoreReplica``'s methods of these names)."""


class Replicas(dict[str, StoreReplica]):
    """Store name -> replica; a dict the engine reads, with the ways stores come to be."""

    def __init__(self, config: SyncConfig, events: list[EngineEvent], stats: Counter[str]) -> None:
        super().__init__()
        self._config = config
        self._events = events  # the engine's: StoreAdded and StoreChanged go there
        self._stats = stats
        self._held = Budget(config.max_held_bytes)  # out-of-order update parts, all stores

    def create(self, name: str) -> tuple[StoreReplica, bool]:
        """Get or create store ``name`` locally (``ValueError`` past ``max_stores``, or
        for a bad name); returns it and whether it is new."""
        replica = self.get(name)
        if replica is not None:
            return replica, False
        name = check_key(name, "store name")
        if len(self) >= self._config.max_stores:
            raise ValueError(f"a meeting holds at most {self._config.max_stores} stores")
        return self._add(name), True

    def add_named_by_peer(self, name: str) -> StoreReplica | None:
        """A store a peer names and this peer lacks: created if there is room (None if
        not); ``ValueError`` if ``name`` is not a store name."""
        try:
            name = check_key(name, "store name")
        except TypeError:
            raise ValueError("not a store name") from None
        if len(self) >= self._config.max_stores:
            self._stats["stores_refused"] += 1
            return None
        return self._add(name)

    def write(self, name: str, operation: str, args: tuple[Any, ...]) -> StoreReplica:
        """A local write (``WRITE_OPERATIONS``); bad input raises and changes nothing."""
        if operation not in WRITE_OPERATIONS:
            raise ValueError(f"unknown write operation {operation!r}")
        replica = self.get(name)
        if replica is None:
            raise KeyError(f"no store named {name!r}")
        getattr(replica, operation)(*args)
        return replica

    def collect(self, replica: StoreReplica) -> None:
        """Report what ``replica``'s transactions changed since the last look."""
        if replica.changes:  # (the usual case, nothing, costs no call)
            for changes, local in replica.take_changes():
                self._events.append(StoreChanged(replica.name, changes, local))

    def _add(self, name: str) -> StoreReplica:
        config = self._config
        replica = StoreReplica(
            name,
            max_value_bytes=config.max_value_bytes,
            max_update_items=config.max_message_items,
            held=self._held,
            track_changes=True,
        )
        self[name] = replica
        self._events.append(StoreAdded(name))
        return replica
