"""The Yjs v1 update format as the store layout uses it: its tags and bounds, and the
records a read update is described by (shared by ``updates`` and ``_update_writing``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from ._lib0 import write_varuint
from .entries import ParsedEntry

__all__ = [
    "MAX_CLIENT",
    "MAX_CLOCK",
    "Block",
    "DeleteSet",
    "InvalidUpdate",
    "Struct",
    "Update",
]

MAX_CLOCK: Final = 2**32 - 1
"""Yrs keeps clocks and lengths in 32 bits."""
MAX_CLIENT: Final = 2**53 - 1
"""Client ids are 53-bit (JavaScript's safe integers; pycrdt refuses more)."""

_ROOT: Final = "writers"
_GC: Final = 0
_DELETED: Final = 1
_TYPE: Final = 7
_ANY: Final = 8
_SKIP: Final = 10
_YARRAY: Final = 0
_BUFFER: Final = 116  # lib0 Any tag of a Uint8Array
_HAS_ORIGIN: Final = 0x80
_HAS_RIGHT: Final = 0x40
_HAS_SUB: Final = 0x20

DeleteSet = dict[int, list[tuple[int, int]]]
"""``client -> [(clock, length), ...]``."""


class InvalidUpdate(ValueError):
    """An update that is malformed or holds something the store layout never contains."""

    def __init__(self, message: str, reason: str = "bad_update") -> None:
        super().__init__(message)
        self.reason = reason  # bad_update, or too_many_items when over ``max_units``


@dataclass(slots=True)
class Struct:
    """One struct of a block: where its bytes are and which clocks it covers."""

    clock: int
    length: int
    start: int  # offset of its info byte in the update
    end: int  # offset just past it
    info: int
    right: int = -1  # clock of its right origin, if any
    head_end: int = 0  # Any items: offset of the value count (header bytes before it)
    values: list[int] | None = None  # Any items: offset of each value


@dataclass(slots=True)
class Block:
    """The structs of one client in an update: clocks ``clock`` to ``end``, bytes
    ``start`` to ``stop`` of the update; each struct only if asked for (to split)."""

    client: int
    clock: int
    end: int
    count: int
    start: int
    stop: int
    structs: list[Struct] | None = None


@dataclass(slots=True)
class Update:
    """A read (and checked) update."""

    data: bytes
    blocks: list[Block]
    deletes: DeleteSet
    units: int  # structs + entries + delete ranges: what reading and applying it costs
    entries: dict[bytes, ParsedEntry] = field(default_factory=dict)
    clipped: bool = False  # a delete range lost the array slot: ``data`` must not be used as is

    def block_bytes(self, block: Block) -> bytes:
        """``block`` encoded on its own (header and structs)."""
        head = bytearray()
        write_varuint(head, block.count)
        write_varuint(head, block.client)
        write_varuint(head, block.clock)
        return bytes(head) + self.data[block.start : block.stop]
