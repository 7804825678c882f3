"""``SyncConfig``: the timing and the budgets of the sync protocol, checked when made."""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cached_property

from . import wire
from .entries import entry_limit
from .values import DEFAULT_MAX_VALUE_BYTES

__all__ = ["VIOLATIONS", "KiB", "MiB", "SyncConfig"]

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True)
class SyncConfig:
    """Timing (seconds) and limits (bytes, counts) of the sync protocol.

    The limits are the budgets of the threat model (README, "What a peer can and
    cannot do to you"); every peer of a room should use the same ones, since an
    entry over a peer's ``max_value_bytes`` is refused by that peer.
    """

    heartbeat_interval: float = 1.0
    dead_after: float = 6.0
    sync_interval: float = 1.0
    ack_delay: float = 0.25
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES
    """One written value, CBOR-encoded (1 MiB, the SPEC's default)."""
    max_frame_bytes: int = wire.MAX_FRAME_BYTES
    """One data-channel frame (64 KiB); bigger messages are chunked."""
    max_message_bytes: int = 4 * MiB
    """One message, reassembled or inflated: a 1 MiB sync part plus one value at the
    1 MiB limit, with room to spare. Bigger syncs and batches are split."""
    max_message_items: int = 16_384
    """Yjs structs, entries, delete ranges and state-vector entries in one message: the
    work one message causes (applying an entry costs about 6 µs here, so at most
    about 0.1 s per message, and the peer keeps answering its other links)."""
    max_link_buffer_bytes: int = 8 * MiB
    """Partial (chunked) messages one link may have this peer hold: two messages."""
    max_buffer_bytes: int = 64 * MiB
    """Partial messages of all links together."""
    max_held_bytes: int = 16 * MiB
    """Parts of updates waiting for a writer's earlier structs (out-of-order delivery),
    all stores together; past it they are dropped and anti-entropy resends them."""
    max_stores: int = 1_000
    """Stores in a meeting; store names from peers past it are refused (each empty store
    costs about 8 KB and a share of every sync and tick)."""
    violation_budget: int = 16
    """Invalid frames or updates a link may send before it is closed."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            kind = float if f.type == "float" else int
            if type(value) is not kind and not (kind is float and type(value) is int):
                raise TypeError(f"{f.name} must be {kind.__name__}, not {type(value).__name__}")
            if value <= 0:
                raise ValueError(f"{f.name} must be positive")
        if self.dead_after <= self.heartbeat_interval:
            raise ValueError("dead_after must be longer than heartbeat_interval")
        if self.max_frame_bytes < 1024:
            raise ValueError("max_frame_bytes must be at least 1024")
        if self.max_message_bytes < entry_limit(self.max_value_bytes) + 64 * KiB:
            raise ValueError("max_message_bytes must hold a value of max_value_bytes and more")
        if self.max_link_buffer_bytes < self.max_message_bytes:
            raise ValueError("max_link_buffer_bytes must hold at least one message")
        if self.max_buffer_bytes < self.max_link_buffer_bytes:
            raise ValueError("max_buffer_bytes must hold at least one link's buffer")
        if self.max_message_items < 1024:
            raise ValueError("max_message_items must be at least 1024")

    @cached_property  # (a frozen dataclass: computed once, read on every flush)
    def part_bytes(self) -> int:
        """Size a sync or a batch is cut into (a quarter of a message, at most 1 MiB)."""
        return min(MiB, self.max_message_bytes // 4)

    @cached_property
    def part_items(self) -> int:
        """Items a message carries as updates: half the limit (the state vectors sent
        with them take at most another quarter)."""
        return self.max_message_items // 2


# Reasons a frame or update is dropped that a correct peer never causes: they count
# against the link's violation budget. (``unknown_kind`` is a newer peer, not a fault.)
VIOLATIONS = frozenset(
    {
        "malformed",
        "unsupported_version",
        "oversize",
        "over_budget",
        "too_many_items",
        "bad_update",
        "malformed_state",
        "bad_store_name",
    }
)
