"""Yjs updates read in Python, so that pycrdt only ever sees what the store layout can hold.

Yrs (pycrdt's core) trusts its input: a lib0 ``Any`` nested 13,000 deep makes its
decoder recurse until the process dies, clocks past 2**32 overflow, and a struct
pointing at an item that never comes is kept pending forever. Every update from a
peer is therefore read here first, by a bounded, iterative decoder of the Yjs v1
update format, and accepted only if it describes the layout of a store:

* Writer ``C``'s first struct, ``(C, 0)``, is its array: a ``YArray`` in the root map
  ``writers`` under the key ``str(C)``. Every later struct of ``C`` is an entry
  appended to that array (a byte string holding a CBOR entry, checked with
  ``entries.parse_entry``), deleted content, or garbage-collected content.
* Every reference an item makes (origin, right origin, parent) is to an earlier
  item of the same client, never to the array's map slot. So nobody can put items
  into someone else's array, replace an array, or nest types; and a writer's
  struct is integrable as soon as that writer's earlier structs are.
* Deletions never remove an array: clock 0 is clipped out of delete ranges.

Anything else (other content types, ``Skip`` structs, clocks past Yrs' u32 range,
client ids past 53 bits, varuints not in their shortest form, trailing bytes) raises
``InvalidUpdate``. Writing updates (re-encoding subsets of one, splitting big ones into
bounded parts) is in ``_update_writing``, re-exported here: ``updates`` is the one
module to import.
"""

from __future__ import annotations

from typing import Final

from ._lib0 import read_varuint, write_varuint
from ._update_format import (
    _ANY,
    _BUFFER,
    _DELETED,
    _GC,
    _HAS_ORIGIN,
    _HAS_RIGHT,
    _HAS_SUB,
    _ROOT,
    _SKIP,
    _TYPE,
    _YARRAY,
    MAX_CLIENT,
    MAX_CLOCK,
    Block,
    DeleteSet,
    InvalidUpdate,
    Struct,
    Update,
)
from ._update_writing import encode, encode_deletes, split
from .entries import EntryError, ParsedEntry, entry_limit, parse_entry

__all__ = [
    "MAX_CLIENT",
    "MAX_CLOCK",
    "Block",
    "DeleteSet",
    "InvalidUpdate",
    "Struct",
    "Update",
    "encode",
    "encode_deletes",
    "read",
    "split",
]


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        pos = self.pos
        if pos >= len(self.data):
            raise InvalidUpdate("truncated update")
        self.pos = pos + 1
        return self.data[pos]

    def uint(self) -> int:
        pos = self.pos
        data = self.data
        if pos + 1 < len(data):  # the usual one- and two-byte values, inline
            first = data[pos]
            if first < 0x80:
                self.pos = pos + 1
                return first
            second = data[pos + 1]
            if second < 0x80:
                if not second:
                    raise InvalidUpdate("non-minimal varuint")
                self.pos = pos + 2
                return (first & 0x7F) | second << 7
        # Longer values (client ids are 7-8 bytes): the same loop as read_varuint, inline.
        end = len(data)
        result = 0
        shift = 0
        while pos < end:
            byte = data[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                if not byte and shift:  # lib0 writes no leading zero groups (81 00 for 1)
                    raise InvalidUpdate("non-minimal varuint")
                if result >> 53:
                    raise InvalidUpdate("varuint over 53 bits")
                self.pos = pos
                return result
            shift += 7
            if shift >= 60:
                raise InvalidUpdate("varuint over 53 bits")
        raise InvalidUpdate("truncated varuint")

    def expect(self, raw: bytes) -> bool:
        """Skip ``raw`` if the data continues with it (a client id, encoded)."""
        end = self.pos + len(raw)
        if self.data[self.pos : end] != raw:
            return False
        self.pos = end
        return True

    def skip(self, count: int) -> int:
        start = self.pos
        end = start + count
        if end > len(self.data):
            raise InvalidUpdate("truncated update")
        self.pos = end
        return start

    def string(self) -> str:
        size = self.uint()
        start = self.skip(size)
        try:
            return self.data[start : start + size].decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidUpdate("bad UTF-8 in a string") from None


def read(
    data: bytes,
    *,
    max_units: int,
    max_value_bytes: int,
    check_entries: bool = True,
    have: dict[int, int] | None = None,
    keep_structs: bool = False,
) -> Update:
    """Read and check a Yjs v1 update from a peer.

    ``max_units`` bounds the structs, entries and delete ranges it may hold (and so
    the work it causes); each entry is decoded and checked (``parse_entry``) unless
    ``check_entries`` is false (for updates this replica encoded itself) or its
    struct lies wholly below ``have`` (the reader's state vector: Yrs skips what it
    holds, so a resent update costs only its structure). ``keep_structs`` keeps a
    description of every struct (``split`` needs it).
    """
    reader = _Reader(data)
    end = len(data)
    blocks: list[Block] = []
    entries: dict[bytes, ParsedEntry] = {}
    units = 0
    seen: set[int] = set()
    for _ in range(reader.uint()):
        count = reader.uint()
        client = reader.uint()
        clock = reader.uint()
        if count == 0 or client in seen:
            raise InvalidUpdate("empty or repeated client block")
        seen.add(client)
        units += count
        if units > max_units:
            raise _too_many(max_units)
        structs: list[Struct] | None = [] if keep_structs else None
        known = have.get(client, 0) if have else 0
        raw = _client_bytes(client)  # references must name the client with these bytes
        size_head = 1 + len(raw)  # an item's info byte, then its origin's client
        check = entries if check_entries else None
        block = Block(client, clock, clock, count, reader.pos, 0, structs)
        for _ in range(count):
            pos = reader.pos
            info = data[pos] if pos < end else 0
            if (
                structs is None
                and info in (_ORIGIN_ANY, _ORIGIN_DELETED)
                and pos + size_head + 1 < end
                and data.startswith(raw, pos + 1)
            ):
                # The usual structs: entries appended after an earlier entry of the writer
                # (origin: this client and an earlier clock; then the entry count), or a
                # run of them already deleted (then its length).
                at = pos + size_head
                origin = data[at]
                if origin < 0x80:
                    at += 1
                elif data[at + 1] and data[at + 1] < 0x80:  # two bytes (minimal: not 0)
                    origin = (origin & 0x7F) | data[at + 1] << 7
                    at += 2
                else:
                    reader.pos = at
                    origin = reader.uint()
                    at = reader.pos
                if not 1 <= origin < clock:
                    raise InvalidUpdate(
                        "an item may only refer to earlier entries of its own writer"
                        if info == _ORIGIN_DELETED  # (the message of _read_struct's check)
                        else "an item may only refer to earlier entries of its writer"
                    )
                if info == _ORIGIN_DELETED:
                    reader.pos = at
                    length = reader.uint()
                    if length == 0:
                        raise InvalidUpdate("empty deleted content")
                elif data.startswith(_ONE_BUFFER, at) and at + 2 < end and data[at + 2] < 0x80:
                    # one entry of under 128 bytes: the commonest of all, inline
                    start = at + 3
                    stop = start + data[at + 2]
                    if stop > end:
                        raise InvalidUpdate("truncated update")
                    reader.pos = stop
                    if check is not None and clock >= known:
                        _check_entry(check, data[start:stop], max_value_bytes)
                    length = 1
                else:
                    reader.pos = at
                    length = reader.uint()
                    if length == 0:
                        raise InvalidUpdate("empty content")
                    _read_entries(reader, length, clock, max_value_bytes, check, known, False)
                if info == _ORIGIN_ANY:
                    units += length
            else:
                struct = _read_struct(reader, raw, clock, max_value_bytes, check, known)
                if struct.values is not None:
                    units += len(struct.values)
                if structs is not None:
                    structs.append(struct)
                length = struct.length
            if units > max_units:
                raise _too_many(max_units)
            clock += length
            if clock > MAX_CLOCK:
                raise InvalidUpdate("clock out of range")
        block.end = clock
        block.stop = reader.pos
        blocks.append(block)
    deletes: DeleteSet = {}
    clipped = False
    for _ in range(reader.uint()):
        client = reader.uint()
        count = reader.uint()
        units += count
        if units > max_units:
            raise _too_many(max_units)
        ranges = deletes.setdefault(client, [])
        pos = reader.pos
        for _ in range(count):
            if pos + 1 < end and data[pos] < 0x80 and data[pos + 1] < 0x80:
                clock = data[pos]  # one-byte clock and length, inline
                length = data[pos + 1]
                pos += 2
            elif (
                pos + 2 < end
                and data[pos] >= 0x80
                and 0 < data[pos + 1] < 0x80
                and data[pos + 2] < 0x80
            ):
                clock = (data[pos] & 0x7F) | data[pos + 1] << 7  # two-byte clock (minimal)
                length = data[pos + 2]
                pos += 3
            else:
                reader.pos = pos
                clock = reader.uint()
                length = reader.uint()
                pos = reader.pos
            if length == 0 or clock + length > MAX_CLOCK:
                raise InvalidUpdate("bad delete range")
            if clock == 0:  # never delete an array: clip its slot out
                clock, length = 1, length - 1
                clipped = True
                if not length:
                    continue
            ranges.append((clock, length))
        reader.pos = pos
        if not ranges:
            del deletes[client]
    if reader.pos != len(data):
        raise InvalidUpdate("trailing bytes after the update")
    return Update(data, blocks, deletes, units, entries, clipped)


_ORIGIN_ANY: Final = _HAS_ORIGIN | _ANY
_ORIGIN_DELETED: Final = _HAS_ORIGIN | _DELETED
_ONE_BUFFER: Final = bytes([1, _BUFFER])  # one Any value, a byte string

_CLIENT_BYTES: dict[int, bytes] = {}


def _client_bytes(client: int) -> bytes:
    """A client id's minimal varuint encoding (cached: a room has few writers)."""
    raw = _CLIENT_BYTES.get(client)
    if raw is None:
        encoded = bytearray()
        write_varuint(encoded, client)
        raw = bytes(encoded)
        if len(_CLIENT_BYTES) >= 4096:  # forged ids must not grow it without bound
            _CLIENT_BYTES.clear()
        _CLIENT_BYTES[client] = raw
    return raw


def _too_many(max_units: int) -> InvalidUpdate:
    return InvalidUpdate(f"update holds more than {max_units} items", "too_many_items")


def _read_struct(
    reader: _Reader,
    client: bytes,
    clock: int,
    max_value_bytes: int,
    entries: dict[bytes, ParsedEntry] | None,
    known: int = 0,
) -> Struct:
    start = reader.pos
    info = reader.byte()
    ref = info & 0x1F
    if ref == _GC:
        length = reader.uint()
        if length == 0 or clock == 0:
            raise InvalidUpdate("bad garbage-collected range")
        return _bounded(Struct(clock, length, start, reader.pos, info))
    if ref == _SKIP:
        raise InvalidUpdate("a Skip struct (a gap in a merged update) is never sent")
    if ref not in (_DELETED, _TYPE, _ANY):
        raise InvalidUpdate(f"struct of content type {ref} is not part of the store layout")
    struct = Struct(clock, 0, start, 0, info)
    root = False
    if info & _HAS_ORIGIN:
        _same_client_earlier(reader, client, clock)
    if info & _HAS_RIGHT:
        struct.right = _same_client_earlier(reader, client, clock)
    if not info & (_HAS_ORIGIN | _HAS_RIGHT):
        kind = reader.uint()
        if kind == 1:
            if (
                reader.string() != _ROOT
                or not info & _HAS_SUB
                or reader.string() != str(read_varuint(client, 0)[0])
            ):
                raise InvalidUpdate("a root item must be its writer's array in the writers map")
            root = True
        elif kind == 0:
            if not reader.expect(client) or reader.uint() != 0 or info & _HAS_SUB:
                raise InvalidUpdate("an entry's parent must be its own writer's array")
        else:
            raise InvalidUpdate("bad parent info")
    if root != (clock == 0) or root != (ref == _TYPE):
        raise InvalidUpdate("a writer's first struct, and only it, is its array")
    if ref == _TYPE:
        if reader.uint() != _YARRAY:
            raise InvalidUpdate("only arrays are part of the store layout")
        struct.length = 1
    elif ref == _DELETED:
        struct.length = reader.uint()
        if struct.length == 0:
            raise InvalidUpdate("empty deleted content")
    else:
        struct.head_end = reader.pos
        count = reader.uint()
        if count == 0:
            raise InvalidUpdate("empty content")
        struct.values = _read_entries(reader, count, clock, max_value_bytes, entries, known)
        struct.length = count
    struct.end = reader.pos
    return _bounded(struct)


def _read_entries(
    reader: _Reader,
    count: int,
    clock: int,
    max_value_bytes: int,
    entries: dict[bytes, ParsedEntry] | None,
    known: int,
    offsets: bool = True,
) -> list[int]:
    """Read ``count`` Any values, each a byte string holding an entry; returns their offsets
    (if ``offsets``).

    The hot loop of reading a big update: one-byte lengths are read inline.
    """
    limit = entry_limit(max_value_bytes)
    data = reader.data
    end = len(data)
    pos = reader.pos
    values: list[int] = []
    for i in range(count):
        if offsets:
            values.append(pos)
        if pos + 2 > end or data[pos] != _BUFFER:
            raise InvalidUpdate("an entry must be a byte string")
        size = data[pos + 1]
        if size < 0x80:
            pos += 2
        else:
            reader.pos = pos + 1
            size = reader.uint()
            pos = reader.pos
            if size > limit:
                raise InvalidUpdate(f"entry of {size} bytes is over the value limit")
        at = pos
        pos += size
        if pos > end:
            raise InvalidUpdate("truncated update")
        if entries is not None and clock + i >= known:  # (Yrs skips what it holds)
            _check_entry(entries, data[at:pos], max_value_bytes)
    reader.pos = pos
    return values


def _check_entry(entries: dict[bytes, ParsedEntry], blob: bytes, max_value_bytes: int) -> None:
    """Parse ``blob`` into ``entries`` (once per distinct entry), or refuse the update."""
    if blob not in entries:
        try:
            entries[blob] = parse_entry(blob, max_value_bytes)
        except EntryError as exc:
            raise InvalidUpdate(f"bad entry: {exc}") from None


def _same_client_earlier(reader: _Reader, client: bytes, clock: int) -> int:
    """Read an origin: it must be an earlier entry (not the array slot) of the same writer."""
    if not reader.expect(client):
        raise InvalidUpdate("an item may only refer to earlier entries of its own writer")
    at = reader.uint()
    if not 1 <= at < clock:
        raise InvalidUpdate("an item may only refer to earlier entries of its own writer")
    return at


def _bounded(struct: Struct) -> Struct:
    if struct.clock + struct.length > MAX_CLOCK:
        raise InvalidUpdate("clock out of range")
    return struct


if __name__ == "crdt_stores.updates":  # (not in the compiled copy, crdt_stores._c_updates)
    from ._compiled import adopt

    adopt(__name__, __file__)
