"""Peer-to-peer wire format: versioned CBOR messages, split into frames of at most 64 KiB.

Every message is a CBOR array ``[version, kind, ...body]`` (one typed class per kind:
``messages``). Decoding a frame checks its size, its CBOR and its version, then the
shape of its kind, and raises ``ProtocolError`` for anything malformed, so the sync
engine only ever sees well-formed messages.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from typing import Any

import cbor2

from .budget import Budget
from .messages import (
    ACK,
    CHUNK,
    COMPRESSED,
    DIFF,
    HEARTBEAT,
    HELLO,
    KIND_NAMES,
    LINKS,
    SYNC,
    UPDATE,
    Chunk,
    Compressed,
    Message,
    ProtocolError,
    parse,
)
from .values import decode

__all__ = [
    "ACK",
    "CHUNK",
    "COMPRESSED",
    "DIFF",
    "KIND_NAMES",
    "MAX_INFLATE_RATIO",
    "MAX_MESSAGE_ITEMS",
    "HEARTBEAT",
    "HELLO",
    "LINKS",
    "MAX_FRAME_BYTES",
    "PROTOCOL_VERSION",
    "SYNC",
    "UPDATE",
    "Message",
    "count_items",
    "ProtocolError",
    "Reassembler",
    "decode_frame",
    "encode",
    "encode_message",
    "frames",
    "inflate",
]

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 64 * 1024
"""Largest frame on a data channel; bigger messages are chunked."""

COMPRESS_MIN_BYTES = 256
"""Messages at least this big are sent zlib-compressed when that makes them smaller:
a batch of deltas shrinks 3-4x, and every SCTP packet saved is CPU saved in aiortc."""

MAX_INFLATE_RATIO = 64
"""A compressed message may inflate to at most this many times its compressed size, so
the work a frame causes stays proportional to its size (zlib alone allows ~1,000x: 15 KB
became 15 MB of CBOR lists). Senders compress only up to half of it and send anything
that would shrink more as it is."""

MAX_MESSAGE_ITEMS = 16_384
"""CBOR items in one message. Honest messages hold a few items per store (store data
travels inside byte strings); CBOR's smallest items (one byte each) would otherwise
let a 4 MiB message become 4 million Python objects."""

KINDS = frozenset((HELLO, SYNC, DIFF, UPDATE, ACK, HEARTBEAT, LINKS, CHUNK, COMPRESSED))

_CHUNK_OVERHEAD = 40  # CBOR array header and integers around a chunk's bytes


def encode(kind: int, *body: Any) -> bytes:
    """A raw message ``[version, kind, *body]`` (tests build malformed ones with it)."""
    return cbor2.dumps([PROTOCOL_VERSION, kind, *body])


def encode_message(message: Message) -> bytes:
    return cbor2.dumps([PROTOCOL_VERSION, message.kind, *message.body()])


def frames(message: bytes, message_id: int, max_frame: int = MAX_FRAME_BYTES) -> list[bytes]:
    """The frames that carry ``message``: compressed if worth it, chunked if too big."""
    if len(message) >= COMPRESS_MIN_BYTES and _worth_compressing(message):
        packed = zlib.compress(message, 1)
        if len(packed) + 8 < len(message) * 0.9 and len(message) <= len(packed) * (
            MAX_INFLATE_RATIO // 2
        ):
            message = encode(COMPRESSED, packed)
    if len(message) <= max_frame:
        return [message]
    size = max_frame - _CHUNK_OVERHEAD
    count = -(-len(message) // size)
    view = memoryview(message)
    return [
        encode(CHUNK, message_id, i, count, bytes(view[i * size : (i + 1) * size]))
        for i in range(count)
    ]


_SAMPLE_BYTES = 32 * 1024


def _worth_compressing(message: bytes) -> bool:
    """Big messages are compressed only when a sample shrinks well: zlib runs at about
    the speed aiortc sends, so mildly compressible data (random text, base64) is
    faster to send as it is."""
    if len(message) <= 4 * _SAMPLE_BYTES:
        return True
    middle = len(message) // 2
    sample = message[middle : middle + _SAMPLE_BYTES]
    return len(zlib.compress(sample, 1)) < len(sample) * 0.6


def count_items(data: bytes, limit: int) -> int:
    """Count the CBOR items of one top-level item without building them.

    Byte and text strings are skipped by their length, so a message carrying big
    updates costs a handful of steps. Raises ``ProtocolError`` past ``limit`` items,
    on tags and indefinite lengths (never written here) and on malformed framing.
    """
    pos = 0
    end = len(data)
    todo = 1
    count = 0
    while todo:
        if pos >= end:
            raise ProtocolError("malformed", "truncated CBOR")
        head = data[pos]
        pos += 1
        major = head >> 5
        info = head & 0x1F
        if info < 24:
            arg = info
        elif info <= 27:
            size = 1 << (info - 24)
            if pos + size > end:
                raise ProtocolError("malformed", "truncated CBOR")
            arg = int.from_bytes(data[pos : pos + size], "big")
            pos += size
        else:
            raise ProtocolError("malformed", "indefinite or reserved CBOR length")
        todo -= 1
        count += 1
        if count > limit:
            raise ProtocolError("too_many_items", f"message holds more than {limit} CBOR items")
        if major == 2 or major == 3:
            pos += arg
        elif major == 4:
            todo += arg
        elif major == 5:
            todo += 2 * arg
        elif major == 6:
            raise ProtocolError("malformed", "CBOR tags are not used by this protocol")
        if todo > limit:
            raise ProtocolError("too_many_items", f"message holds more than {limit} CBOR items")
    if pos != end:
        raise ProtocolError("malformed", "bytes after the CBOR message")
    return count


def decode_frame(
    frame: bytes | bytearray | memoryview, max_frame: int = MAX_FRAME_BYTES
) -> Message:
    """Decode one frame (or a reassembled message when ``max_frame`` allows it)."""
    if len(frame) > max_frame:
        raise ProtocolError("oversize", f"frame of {len(frame)} bytes exceeds {max_frame}")
    data = frame if type(frame) is bytes else bytes(frame)
    if len(data) > MAX_MESSAGE_ITEMS:  # (every item takes a byte: a smaller one is fine)
        count_items(data, MAX_MESSAGE_ITEMS)
    try:
        item = decode(data)
    except ValueError as exc:
        raise ProtocolError("malformed", str(exc)) from None
    if type(item) is not list or len(item) < 2 or type(item[1]) is not int:
        raise ProtocolError("malformed", "a message is a CBOR array [version, kind, ...]")
    version = item[0]
    if type(version) is not int or version < 0:  # (not a bool, float or simple value)
        raise ProtocolError("malformed", "the protocol version is not an unsigned integer")
    if version != PROTOCOL_VERSION:
        raise ProtocolError("unsupported_version", f"protocol version {version} is not supported")
    return parse(item[1], item[2:])


def inflate(packed: bytes, max_message: int) -> bytes:
    """Decompress a COMPRESSED message, refusing to grow past ``max_message`` bytes or
    ``MAX_INFLATE_RATIO`` times its compressed size."""
    limit = min(max_message, len(packed) * MAX_INFLATE_RATIO)
    inflater = zlib.decompressobj()
    try:
        data = inflater.decompress(packed, limit)
    except zlib.error as exc:
        raise ProtocolError("malformed", f"bad compressed message: {exc}") from None
    if inflater.unconsumed_tail:
        raise ProtocolError("oversize", f"compressed message inflates past {limit} bytes")
    if not inflater.eof:
        raise ProtocolError("malformed", "truncated compressed message")
    return data


class Reassembler:
    """Reads one link's frames into messages: collects CHUNK frames back into messages
    (chunks may come in any order) and inflates COMPRESSED ones (``complete``).

    Memory is charged as chunks arrive (never on what a first chunk announces): at most
    ``max_message`` per message, ``max_link`` for all of this link's partial messages,
    and the ``shared`` budget of the whole meeting.
    """

    def __init__(
        self,
        max_message: int,
        max_link: int | None = None,
        shared: Budget | None = None,
        max_frame: int = MAX_FRAME_BYTES,
    ) -> None:
        self.max_message = max_message
        self.max_frame = max_frame
        self._budget = Budget(max_link if max_link is not None else 2 * max_message)
        self._shared = shared
        self._parts: OrderedDict[int, tuple[int, dict[int, bytes], int]] = OrderedDict()
        self._rejected: OrderedDict[int, None] = OrderedDict()  # their later chunks are ignored

    @property
    def held_bytes(self) -> int:
        return self._budget.used

    def complete(self, frame: bytes) -> Message | None:
        """The message ``frame`` completes, through CHUNK and COMPRESSED (None while a
        chunked message is still partial); ``ProtocolError`` for anything malformed."""
        limit = self.max_message
        message = decode_frame(frame, self.max_frame)
        if type(message) is Chunk:
            whole = self.add(message.message_id, message.index, message.count, message.data)
            if whole is None:
                return None
            message = decode_frame(whole, limit)
            if type(message) is Chunk:
                raise ProtocolError("malformed", "chunk inside a chunk")
        if type(message) is Compressed:
            message = decode_frame(inflate(message.packed, limit), limit)
            if type(message) in (Chunk, Compressed):
                raise ProtocolError("malformed", "nested envelope in a compressed message")
        return message

    def add(self, msg_id: int, index: int, count: int, data: bytes) -> bytes | None:
        """Add a chunk; returns the whole message once every chunk is in.

        Raises ``ProtocolError`` (reason ``oversize``) when the message would exceed
        a limit; its chunks are then forgotten.
        """
        if msg_id in self._rejected:
            return None
        entry = self._parts.get(msg_id)
        if entry is None:
            most = -(-self.max_message // (self.max_frame - _CHUNK_OVERHEAD))
            if not 2 <= count <= most:
                self._reject(msg_id)
                raise ProtocolError("oversize", f"chunked message of {count} parts is too large")
            entry = (count, {}, 0)
            self._parts[msg_id] = entry
        total, parts, size = entry
        if count != total:
            self._reject(msg_id)
            raise ProtocolError("malformed", "chunk count changed within a message")
        if index not in parts:
            if size + len(data) > self.max_message:
                self._reject(msg_id)
                raise ProtocolError("oversize", f"chunked message exceeds {self.max_message} bytes")
            if not self._charge(len(data)):
                self._reject(msg_id)
                raise ProtocolError("over_budget", "partial messages exceed the memory budget")
            parts[index] = data
            size += len(data)
            self._parts[msg_id] = (total, parts, size)
        if len(parts) < total:
            return None
        del self._parts[msg_id]
        self._refund(size)
        return b"".join(parts[i] for i in range(total))

    def clear(self) -> None:
        """Forget every partial message (the link closed) and give back their memory."""
        for _, _, size in self._parts.values():
            self._refund(size)
        self._parts.clear()

    def _charge(self, amount: int) -> bool:
        if not self._budget.take(amount):
            return False
        if self._shared is not None and not self._shared.take(amount):
            self._budget.give(amount)
            return False
        return True

    def _refund(self, amount: int) -> None:
        self._budget.give(amount)
        if self._shared is not None:
            self._shared.give(amount)

    def _reject(self, msg_id: int) -> None:
        entry = self._parts.pop(msg_id, None)
        if entry is not None:
            self._refund(entry[2])
        self._rejected[msg_id] = None
        while len(self._rejected) > 64:
            self._rejected.popitem(last=False)
