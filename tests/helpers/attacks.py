"""Hostile inputs of the threat model (issue "hostile peers"), built from raw bytes.

Each builder makes what one attacker peer sends, with cbor2, zlib and pycrdt only
(never this library's encoders), so the same inputs can be replayed against any
version of the library: the regression tests use them, and so does
``benchmarks/hostile.py``, which measures their effect before and after a change.
"""

from __future__ import annotations

import zlib

import cbor2
from pycrdt import Array, Doc, Map

VERSION = 1
HELLO, SYNC, DIFF, UPDATE, ACK, HEARTBEAT, LINKS, CHUNK, COMPRESSED = range(9)


def message(kind: int, *body: object) -> bytes:
    return cbor2.dumps([VERSION, kind, *body])


def compressed(inner: bytes) -> bytes:
    return message(COMPRESSED, zlib.compress(inner, 9))


def varuint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)


def varstring(text: str) -> bytes:
    raw = text.encode()
    return varuint(len(raw)) + raw


# -- row 1: a lib0 Any nested deeper than Yrs' decoder can recurse --------------------


def deep_any_update(depth: int, client: int = 77) -> bytes:
    """A Yjs update whose one item holds an Any array nested ``depth`` deep."""
    value = b"\x75\x01" * depth + b"\x7e"  # Any arrays of one item each, then null
    struct = b"\x28" + b"\x01" + varstring("writers") + varstring(str(client)) + b"\x01" + value
    return b"\x01\x01" + varuint(client) + b"\x00" + struct + b"\x00"


def deep_any_frame(depth: int = 20_000, store: str = "s") -> bytes:
    """Row 1: about 100 bytes that crashed every receiving peer (SIGSEGV in Yrs' decoder;
    this encoding crashes it from about 14,000 levels on)."""
    return compressed(message(DIFF, {store: deep_any_update(depth)}, {}))


# -- rows 2 and 3: memory through envelopes --------------------------------------------


def chunk_flood(message_id: int, announced: int, chunks: int, size: int = 60_000) -> list[bytes]:
    """Row 2: the first ``chunks`` CHUNK frames of a message announced as ``announced`` bytes."""
    count = max(2, -(-announced // size))
    data = b"\x00" * size
    return [message(CHUNK, message_id, index, count, data) for index in range(chunks)]


def zero_bomb(inflated: int) -> bytes:
    """Row 3a: a COMPRESSED frame inflating to ``inflated`` zero bytes."""
    return message(COMPRESSED, zlib.compress(b"\x00" * inflated, 9))


def list_bomb(lists: int, *, packed: bool = True) -> bytes:
    """Row 3b: a HEARTBEAT carrying ``lists`` empty lists, COMPRESSED unless ``packed`` is false."""
    body = b"\x9a" + lists.to_bytes(4, "big") + b"\x80" * lists
    inner = b"\x83" + cbor2.dumps(VERSION) + cbor2.dumps(HEARTBEAT) + body
    return message(COMPRESSED, zlib.compress(inner, 9)) if packed else inner


# -- store content -------------------------------------------------------------------------


def own_entries(client: int, *entries: bytes, base: Doc | None = None) -> tuple[Doc, bytes]:
    """An update in which writer ``client`` appends raw ``entries`` to its own array."""
    doc = base or Doc(client_id=client)
    writers = doc.get("writers", type=Map)
    state = doc.get_state()
    if str(client) not in writers:
        writers[str(client)] = Array()
    array = writers[str(client)]
    for i in range(0, len(entries), 64):  # Yrs appends quadratically within one transaction
        array.extend(list(entries[i : i + 64]))
    return doc, doc.get_update(state)


def entry(key: str, value: object, lamport: int, op: int = 0) -> bytes:
    return cbor2.dumps([key, op, value, lamport])


def huge_lamport(size: int = 1_000_000) -> int:
    """A Lamport clock of ``size`` random bytes (a CBOR bignum that does not compress)."""
    import random

    return int.from_bytes(random.Random(4).randbytes(size), "big") | 1 << (8 * size - 1)


def store_names_frames(count: int, per_frame: int = 2_000) -> list[bytes]:
    """Row 5: ACKs naming ``count`` stores that nobody created."""
    names = [f"junk-{i}" for i in range(count)]
    return [
        compressed(message(ACK, {name: b"\x00" for name in names[i : i + per_frame]}))
        for i in range(0, count, per_frame)
    ]


def state_vector(entries: int, start: int = 1) -> bytes:
    return varuint(entries) + b"".join(
        varuint(client) + varuint(1) for client in range(start, start + entries)
    )


def big_state_ack(store: str, entries: int) -> bytes:
    """Row 6a: a small compressed ACK whose state vector has ``entries`` entries (all the
    same one, so that it compresses about 1,000 to 1)."""
    vector = varuint(entries) + b"\x01\x01" * entries
    return compressed(message(ACK, {store: vector}))


def equal_order_updates(client: int = 7) -> tuple[bytes, bytes, bytes]:
    """Row 7: two entries of one key with the same (lamport, writer): apart and merged.

    The first in the array sorts last by content, so a peer that orders by arrival and
    one that orders by content disagree."""
    from pycrdt import merge_updates

    doc, first = own_entries(client, entry("door", "OPENED", 1))
    _, second = own_entries(client, entry("door", "LOCKED", 1), base=doc)
    return first, second, merge_updates(first, second)


def foreign_append(diff: bytes, writer: int, key: str, value: object) -> bytes:
    """Row 8: an entry appended by client 666 to ``writer``'s array (from a full ``diff``)."""
    evil = Doc(client_id=666)
    evil.apply_update(diff)
    state = evil.get_state()
    evil.get("writers", type=Map)[str(writer)].append(entry(key, value, 10**6))
    return evil.get_update(state)


def oversized_entry(store: str = "s", client: int = 93) -> list[bytes]:
    """Row 11: one entry with a 100,000-character key and a 5 MB value, as CHUNK frames."""
    _, update = own_entries(client, entry("K" * 100_000, "v" * 5_000_000, 1))
    return chunked(message(UPDATE, {store: [update]}, {}), 424_242)


def chunked(whole: bytes, message_id: int, size: int = 60_000) -> list[bytes]:
    """``whole`` as CHUNK frames if it needs them (the way a peer sends a big message)."""
    if len(whole) <= size:
        return [whole]
    count = -(-len(whole) // size)
    return [
        message(CHUNK, message_id, i, count, whole[i * size : (i + 1) * size]) for i in range(count)
    ]


def big_state_sync(entries: int = 1_000_000, stores: int = 4) -> list[bytes]:
    """Row 6b: a SYNC carrying ``stores`` state vectors of ``entries`` entries each."""
    vector = state_vector(entries)
    whole = message(SYNC, {f"s{i}": vector for i in range(stores)}, True)
    return chunked(whole, 515_151)
