"""lib0 variable-length unsigned integers, as Yjs encodes updates and state vectors."""

from __future__ import annotations

__all__ = ["read_varuint", "write_varuint"]


def read_varuint(data: bytes | bytearray, pos: int, max_bits: int = 64) -> tuple[int, int]:
    """The varuint at ``pos`` and the position after it; ``ValueError`` if truncated or
    longer than ``max_bits``."""
    result = 0
    shift = 0
    end = len(data)
    while True:
        if pos >= end:
            raise ValueError("truncated varuint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            if result >> max_bits:
                raise ValueError(f"varuint over {max_bits} bits")
            return result, pos
        shift += 7
        if shift >= max_bits + 7:
            raise ValueError(f"varuint over {max_bits} bits")


def write_varuint(out: bytearray, value: int) -> None:
    while value > 0x7F:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
