"""What the sync engine reports: typed events, returned by ``SyncEngine.take_events()``.

The engine never calls user code; the driver (``Meeting``'s) takes these after
each engine call and dispatches them to subscribers and peer-event listeners.
Events are values (not frozen only because that costs three times as much to make).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["EngineEvent", "LinkDead", "PeerMisbehaved", "StoreAdded", "StoreChanged"]


@dataclass(slots=True)
class StoreAdded:
    """A store now exists here (created locally or first named by a peer)."""

    name: str


@dataclass(slots=True)
class StoreChanged:
    """One transaction changed values of store ``name``: ``{key: value or MISSING}``.

    ``local``: this peer's own write (subscribers see it only if the write asked).
    Values are the replica's own objects: copy before handing them out.
    """

    name: str
    changes: dict[str, Any]
    local: bool


@dataclass(slots=True)
class LinkDead:
    """A link was silent past ``dead_after`` (no frames, no signs of life); it is dropped."""

    peer: str


@dataclass(slots=True)
class PeerMisbehaved:
    """A link kept sending what no correct peer sends; it has been closed."""

    peer: str
    reason: str  # the last violation: malformed, bad_update, oversize, too_many_items...
    violations: int


EngineEvent = StoreAdded | StoreChanged | LinkDead | PeerMisbehaved
