"""Store entries: the CBOR records ``[key, op, payload, lamport]`` that writers append.

One entry is one write of one key. Local writes build them with ``encode_entry``;
entries from peers are checked by ``parse_entry`` before pycrdt ever sees them,
with the same limits a local write has, so every peer accepts or refuses an entry
alike (given the same ``max_value_bytes``).
"""

from __future__ import annotations

from typing import Any, Final

import cbor2

from .values import MAX_KEY_BYTES, check_key, decode, encode, flat_and_plain, is_valid, normalize

__all__ = [
    "APPEND",
    "DELETE",
    "LAMPORT_MAX",
    "MERGE",
    "SET",
    "WILDCARD",
    "EntryError",
    "ParsedEntry",
    "Op",
    "delete_op",
    "encode_entry",
    "set_op",
    "update_op",
    "write_key",
    "entry_limit",
    "parse_entry",
]

SET: Final = 0
MERGE: Final = 1
APPEND: Final = 2
DELETE: Final = 3

WILDCARD: Final = "*"

LAMPORT_MAX: Final = 2**64 - 1
"""Lamport clocks are unsigned 64-bit; a writer's clock saturates here."""

ParsedEntry = tuple[str, int, Any, int]
"""``(key, op, payload, lamport)`` of a valid entry."""

_HEAD: Final = b"\x84"  # CBOR array of 4 items; the items are encoded separately
_OP_BYTES: Final = (b"\x00", b"\x01", b"\x02", b"\x03")  # CBOR of the small ints 0-3
_DELETE_PAYLOAD: Final = b"\xf6"  # CBOR null


Op = tuple[str, int, Any, bytes]
"""A local write of one key, checked: ``(key, op, payload, payload encoded)``."""


def write_key(key: object) -> str:
    """``key`` checked for a write (``TypeError``/``ValueError``; ``"*"`` is reserved)."""
    key = check_key(key)
    if key == WILDCARD:
        raise ValueError('the key "*" is reserved for subscribing to every key')
    return key  # type: ignore[return-value]


def set_op(key: object, value: object, max_value_bytes: int) -> Op:
    """``set(key, value)``, checked and encoded (the value copied, normalized)."""
    return _op(write_key(key), SET, normalize(value), max_value_bytes)


def update_op(key: object, value: object, max_value_bytes: int) -> Op:
    """``update(key, value)``: a dict merges, a list appends, anything else sets."""
    key = write_key(key)
    norm = normalize(value)
    kind = type(norm)
    op = MERGE if kind is dict else APPEND if kind is list else SET
    return _op(key, op, norm, max_value_bytes)


def delete_op(key: str) -> Op:
    return key, DELETE, None, _DELETE_PAYLOAD


def _op(key: str, op: int, payload: Any, max_value_bytes: int) -> Op:
    blob = encode(payload)
    if len(blob) > max_value_bytes:
        raise ValueError(
            f"value for {key!r} encodes to {len(blob)} bytes; the limit is {max_value_bytes}"
        )
    return key, op, payload, blob


class EntryError(ValueError):
    """An entry from a peer that a local write could not have made."""


_ENTRY_OVERHEAD: Final = MAX_KEY_BYTES + 16


def entry_limit(max_value_bytes: int) -> int:
    """Largest encoded entry a peer may send: a value at the limit, the longest key, a clock."""
    return max_value_bytes + _ENTRY_OVERHEAD


def encode_entry(key: str, op: int, payload_cbor: bytes, lamport_cbor: bytes) -> bytes:
    """An entry from already encoded parts (the payload is encoded once, for the size check)."""
    return b"".join((_HEAD, cbor2.dumps(key), _OP_BYTES[op], payload_cbor, lamport_cbor))


def _head_len(n: int) -> int:
    """Bytes of a CBOR head carrying ``n`` (the whole of a small int, or a string's length)."""
    return 1 if n < 24 else 2 if n < 0x100 else 3 if n < 0x10000 else 5 if n < 2**32 else 9


def parse_entry(blob: bytes, max_value_bytes: int) -> ParsedEntry:
    """Decode and check one entry; raises ``EntryError`` for anything a write cannot produce."""
    if len(blob) > max_value_bytes + _ENTRY_OVERHEAD:
        raise EntryError(f"entry of {len(blob)} bytes is over the value limit")
    try:
        item = decode(blob)
    except ValueError as exc:
        raise EntryError(str(exc)) from None
    if type(item) is not list or len(item) != 4:
        raise EntryError("an entry is [key, op, payload, lamport]")
    key, op, payload, lamport = item
    if type(key) is not str or not key or key == WILDCARD:
        raise EntryError("bad key")
    if type(op) is not int or not SET <= op <= DELETE:  # (not a bool, float or simple value)
        raise EntryError("op is not an unsigned integer from 0 to 3")
    if type(lamport) is not int or not 0 <= lamport <= LAMPORT_MAX:
        raise EntryError("lamport clock out of the unsigned 64-bit range")
    if len(key) > MAX_KEY_BYTES // 4 and len(key.encode()) > MAX_KEY_BYTES:
        raise EntryError(f"key longer than {MAX_KEY_BYTES} bytes")
    if len(blob) > max_value_bytes:  # (a smaller entry cannot hold a bigger value)
        key_bytes = len(key.encode())
        payload_bytes = len(blob) - 2 - _head_len(key_bytes) - key_bytes - _head_len(lamport)
        if payload_bytes > max_value_bytes:
            raise EntryError(f"value of {payload_bytes} bytes is over the limit {max_value_bytes}")
    if op == SET:
        ok = is_valid(payload)
    elif op == MERGE:
        ok = type(payload) is dict and (flat_and_plain(payload) or is_valid(payload))
    elif op == APPEND:
        ok = type(payload) is list and is_valid(payload)
    else:
        ok = payload is None
    if not ok:
        raise EntryError("payload is not a store value for this operation")
    return key, op, payload, lamport


if __name__ == "crdt_stores.entries":  # (not in the compiled copy, crdt_stores._c_entries)
    from ._compiled import adopt

    adopt(__name__, __file__)
