"""Yjs state vectors as Python dicts (``client id -> clock``), and digests of delete sets.

pycrdt hands out state vectors only as encoded bytes (lib0: a varuint count, then
varuint client/clock pairs); comparing what two peers hold needs them decoded.
State vectors do not cover deletions: peers compare digests of their delete sets.
"""

from __future__ import annotations

import hashlib

import cbor2

from ._lib0 import read_varuint, write_varuint

StateVector = dict[int, int]

_MAX_ENTRIES = 1 << 20


def _read_varuint(data: bytes | bytearray, pos: int) -> tuple[int, int]:
    try:
        return read_varuint(data, pos)
    except ValueError as exc:
        raise ValueError(f"malformed state vector: {exc}") from None


_write_varuint = write_varuint


def count(data: bytes | bytearray) -> int:
    """How many entries an encoded state vector announces (its first varuint)."""
    return _read_varuint(data, 0)[0]


def decode(data: bytes | bytearray, max_entries: int = _MAX_ENTRIES) -> StateVector:
    """Decode an encoded state vector; raises ``ValueError`` when malformed."""
    if not isinstance(data, (bytes, bytearray)):
        raise ValueError("state vector must be bytes")
    count, pos = _read_varuint(data, 0)
    if count > max_entries or count * 2 > len(data):
        raise ValueError("state vector too large")
    # All varuints at once: each ends at the first byte under 0x80 (the loop below is
    # what decoding costs, once per state vector a peer reports).
    ends = [i for i, byte in enumerate(data[pos:], pos) if byte < 0x80]
    if len(ends) != 2 * count or (ends and ends[-1] != len(data) - 1):
        raise ValueError("malformed state vector")
    values = []
    start = pos
    for end in ends:
        if end - start > 9:
            raise ValueError("varuint too long in state vector")
        value = 0
        for byte in reversed(data[start : end + 1]):
            value = (value << 7) | (byte & 0x7F)
        values.append(value)
        start = end + 1
    return dict(zip(values[::2], values[1::2], strict=True))


def encode(sv: StateVector) -> bytes:
    """Encode a state vector the way Yjs does (usable with ``Doc.get_update``)."""
    out = bytearray()
    _write_varuint(out, len(sv))
    for client, clock in sv.items():
        _write_varuint(out, client)
        _write_varuint(out, clock)
    return bytes(out)


def covers(have: StateVector, want: StateVector) -> bool:
    """True when ``have`` holds everything ``want`` describes."""
    return all(have.get(client, 0) >= clock for client, clock in want.items())


def merge(a: StateVector, b: StateVector) -> StateVector:
    """Per-client maximum of two state vectors (a new dict)."""
    out = dict(a)
    for client, clock in b.items():
        if clock > out.get(client, 0):
            out[client] = clock
    return out


def delete_digest(deletes: dict[int, list[tuple[int, int]]]) -> bytes:
    """A canonical digest of a delete set (PROTOCOL.md §6.7): BLAKE2b, 8 bytes, of the
    CBOR of ``[[client, [[clock, length], ...]], ...]``, clients and ranges sorted,
    overlapping and touching ranges joined."""
    canonical = sorted((client, _merged(ranges)) for client, ranges in deletes.items())
    return hashlib.blake2b(cbor2.dumps(canonical), digest_size=8).digest()


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Delete ranges sorted, with overlapping and touching ones joined."""
    out: list[tuple[int, int]] = []
    for clock, length in sorted(ranges):
        if out and clock <= out[-1][0] + out[-1][1]:
            start, size = out[-1]
            out[-1] = (start, max(size, clock + length - start))
        else:
            out.append((clock, length))
    return out
