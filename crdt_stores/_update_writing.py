"""Yjs updates written: an update from encoded blocks and deletions, and a big update
split into bounded parts that, applied in order, do what the whole does."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ._lib0 import write_varuint
from ._update_format import _ANY, _HAS_ORIGIN, _HAS_RIGHT, _HAS_SUB, DeleteSet, Struct, Update

__all__ = ["encode", "encode_deletes", "split"]


def encode_deletes(deletes: DeleteSet) -> bytes:
    out = bytearray()
    write_varuint(out, len(deletes))
    for client, ranges in deletes.items():
        write_varuint(out, client)
        write_varuint(out, len(ranges))
        for clock, length in ranges:
            write_varuint(out, clock)
            write_varuint(out, length)
    return bytes(out)


def encode(blocks: Iterable[bytes], deletes: DeleteSet) -> bytes:
    """An update from encoded blocks (``Update.block_bytes``) and a delete set."""
    blocks = list(blocks)
    out = bytearray()
    write_varuint(out, len(blocks))
    for block in blocks:
        out += block
    out += encode_deletes(deletes)
    return bytes(out)


# -- splitting --------------------------------------------------------------------


def split(update: Update, max_bytes: int, max_units: int) -> list[bytes]:
    """Cut an update into parts of at most ``max_bytes`` and ``max_units`` each.

    Applied in order, the parts have the same effect as the whole: each writer's
    structs stay in clock order, an entry list too long for one part continues in
    the next with an origin pointing at the last entry before it (as Yjs itself
    encodes a partial item), and the deletions come last. A single entry bigger
    than ``max_bytes`` makes a part of its own.
    """
    parts: list[bytes] = []
    blocks: list[bytes] = []  # encoded blocks of the part being filled
    size = 0
    units = 0
    current: list[bytes] = []  # structs of the block being filled
    current_client = -1
    current_clock = 0

    def close_block() -> None:
        nonlocal current, size
        if current:
            head = bytearray()
            write_varuint(head, len(current))
            write_varuint(head, current_client)
            write_varuint(head, current_clock)
            blocks.append(bytes(head) + b"".join(current))
            size += len(head)
            current = []

    def close_part() -> None:
        nonlocal blocks, size, units
        close_block()
        if blocks:
            parts.append(encode(blocks, {}))
        blocks, size, units = [], 0, 0

    def add(piece: bytes, clock: int, cost: int) -> None:
        nonlocal size, units, current_clock
        if (blocks or current) and (size + len(piece) + 32 > max_bytes or units + cost > max_units):
            close_part()
        if not current:
            current_clock = clock
        current.append(piece)
        size += len(piece)
        units += cost

    data = update.data
    for block in update.blocks:
        close_block()
        current_client = block.client
        assert block.structs is not None, "read with keep_structs=True"
        for struct in block.structs:
            values = struct.values
            whole = struct.end - struct.start
            if values is None or (whole <= max_bytes and 1 + len(values) <= max_units):
                add(data[struct.start : struct.end], struct.clock, 1 + (len(values or ())))
                continue
            for first, last in _value_runs(struct, max_bytes, max_units):
                add(
                    _partial(update, block.client, struct, first, last),
                    struct.clock + first,
                    1 + last - first,
                )
    close_part()
    if update.deletes:
        parts.extend(_split_deletes(update.deletes, max_units))
    return parts or [encode([], {})]


def _value_runs(struct: Struct, max_bytes: int, max_units: int) -> Iterator[tuple[int, int]]:
    """Runs ``[first, last)`` of an Any struct's values that fit the limits."""
    assert struct.values is not None
    values = struct.values
    ends = [*values[1:], struct.end]
    first = 0
    budget = max(max_bytes - 64, 1)
    while first < len(values):
        last = first + 1
        while (
            last < len(values)
            and ends[last] - values[first] <= budget
            and last - first < max_units - 1
        ):
            last += 1
        yield first, last
        first = last


def _partial(update: Update, client: int, struct: Struct, first: int, last: int) -> bytes:
    """The values ``[first, last)`` of an Any struct, encoded as a struct of their own."""
    assert struct.values is not None
    data = update.data
    ends = [*struct.values[1:], struct.end]
    out = bytearray()
    if first == 0:
        out += data[struct.start : struct.head_end]
    else:
        # A continuation: the origin is the entry just before (how Yjs encodes a split item).
        out.append(_HAS_ORIGIN | (struct.info & (_HAS_RIGHT | _HAS_SUB)) | _ANY)
        write_varuint(out, client)
        write_varuint(out, struct.clock + first - 1)
        if struct.right >= 0:
            write_varuint(out, client)
            write_varuint(out, struct.right)
    write_varuint(out, last - first)
    out += data[struct.values[first] : ends[last - 1]]
    return bytes(out)


def _split_deletes(deletes: DeleteSet, max_units: int) -> list[bytes]:
    parts: list[bytes] = []
    chunk: DeleteSet = {}
    units = 0
    for client, ranges in deletes.items():
        for clock_length in ranges:
            if units >= max_units - 1:
                parts.append(encode([], chunk))
                chunk, units = {}, 0
            chunk.setdefault(client, []).append(clock_length)
            units += 1
    if chunk:
        parts.append(encode([], chunk))
    return parts
