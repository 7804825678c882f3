"""Peer-to-peer wire format: versioned CBOR messages, split into frames of at most 64 KiB.

Every message is a CBOR array ``[version, kind, ...body]``. Decoding checks the
shape of each known kind and raises ``ProtocolError`` for anything malformed, so
the sync engine only ever sees well-formed messages.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import cbor2

from .budget import Budget
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
    "frames",
    "inflate",
]

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 64 * 1024
"""Largest frame on a data channel; bigger messages are chunked."""

HELLO = 0  # [v, 0, peer_id, [linked peer ids]]
SYNC = 1  # [v, 1, {store: sv}, want_sync, more, {store: digest}]  "this is what I hold;
#   send what I lack" (and your SYNC); ``more``: further SYNC parts follow
DIFF = 2  # [v, 2, {store: update}, {store: sv}, {store: digest}]  reply to SYNC, repair, relay
UPDATE = 3  # [v, 3, {store: [delta, ...]}, {store: sv}, want_ack]  live deltas of one tick
ACK = 4  # [v, 4, {store: sv}, want_ack, {store: digest}]  "this is what I hold now" (and
#   "tell me yours"). A digest summarizes a store's deletions, which state vectors do not
#   cover: peers with equal state vectors and different digests repair with a diff.
#   (UPDATEs carry no digests: a state vector reported without one makes the last
#   digest of that store unknown until the next ACK.)
#   (Trailing fields may be missing: they default to false and empty.)
HEARTBEAT = 5  # [v, 5]
LINKS = 6  # [v, 6, [linked peer ids]]
CHUNK = 7  # [v, 7, message id, index, count, bytes]
COMPRESSED = 8  # [v, 8, zlib bytes of a whole message]

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

KIND_NAMES = {
    0: "hello",
    1: "sync",
    2: "diff",
    3: "update",
    4: "ack",
    5: "heartbeat",
    6: "links",
    7: "chunk",
    8: "compressed",
}

KINDS = frozenset((HELLO, SYNC, DIFF, UPDATE, ACK, HEARTBEAT, LINKS, CHUNK, COMPRESSED))

_CHUNK_OVERHEAD = 40  # CBOR array header and integers around a chunk's bytes


class ProtocolError(ValueError):
    """A frame that does not decode to a well-formed message of this protocol."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # counter name: malformed, unsupported_version, oversize...


@dataclass(slots=True)
class Message:
    kind: int
    peer: str = ""
    links: list[str] | None = None
    states: dict[str, bytes] | None = None
    diffs: dict[str, bytes] | None = None
    updates: dict[str, list[bytes]] | None = None
    chunk: tuple[int, int, int, bytes] | None = None
    want_sync: bool = False
    want_ack: bool = False
    more: bool = False
    digests: dict[str, bytes] | None = None
    packed: bytes = b""


def encode(kind: int, *body: Any) -> bytes:
    return cbor2.dumps([PROTOCOL_VERSION, kind, *body])


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


def _bytes_map(value: Any, what: str) -> dict[str, bytes]:
    if type(value) is not dict:
        raise ProtocolError("malformed", f"{what} must be a map")
    for name, blob in value.items():
        if type(name) is not str or not name or type(blob) is not bytes:
            raise ProtocolError("malformed", f"{what} must map store names to bytes")
    return value


def _digests(body: list[Any], index: int) -> dict[str, bytes] | None:
    if len(body) <= index:
        return None
    digests = _bytes_map(body[index], "digests")
    if any(len(digest) > 32 for digest in digests.values()):
        raise ProtocolError("malformed", "a digest is at most 32 bytes")
    return digests


def _str_list(value: Any, what: str) -> list[str]:
    if type(value) is not list or not all(type(v) is str for v in value):
        raise ProtocolError("malformed", f"{what} must be a list of strings")
    return value


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
    if item[0] != PROTOCOL_VERSION:
        raise ProtocolError("unsupported_version", f"protocol version {item[0]!r} is not supported")
    kind = item[1]
    body = item[2:]
    try:
        if kind == HELLO:
            if type(body[0]) is not str:
                raise ProtocolError("malformed", "hello needs a peer id")
            return Message(kind, peer=body[0], links=_str_list(body[1], "links"))
        if kind == SYNC:
            want = body[1] if len(body) > 1 else False
            more = body[2] if len(body) > 2 else False
            return Message(
                kind,
                states=_bytes_map(body[0], "states"),
                want_sync=want is True,
                more=more is True,
                digests=_digests(body, 3),
            )
        if kind == ACK:
            return Message(
                kind,
                states=_bytes_map(body[0], "states"),
                want_ack=len(body) > 1 and body[1] is True,
                digests=_digests(body, 2),
            )
        if kind == DIFF:
            return Message(
                kind,
                diffs=_bytes_map(body[0], "diffs"),
                states=_bytes_map(body[1], "states"),
                digests=_digests(body, 2),
            )
        if kind == UPDATE:
            updates = body[0]
            if type(updates) is not dict or not all(
                type(name) is str
                and name
                and type(deltas) is list
                and all(type(d) is bytes for d in deltas)
                for name, deltas in updates.items()
            ):
                raise ProtocolError("malformed", "updates must map store names to lists of bytes")
            return Message(
                kind,
                updates=updates,
                states=_bytes_map(body[1], "states"),
                want_ack=len(body) > 2 and body[2] is True,
            )
        if kind == HEARTBEAT:
            return Message(kind)
        if kind == LINKS:
            return Message(kind, links=_str_list(body[0], "links"))
        if kind == CHUNK:
            if len(body) < 4:
                raise ProtocolError("malformed", "chunk frame too short")
            msg_id, index, count, data = body[:4]
            if not (
                type(msg_id) is int
                and type(index) is int
                and type(count) is int
                and type(data) is bytes
                and 0 <= index < count
            ):
                raise ProtocolError("malformed", "bad chunk header")
            return Message(kind, chunk=(msg_id, index, count, data))
        if kind == COMPRESSED:
            if type(body[0]) is not bytes:
                raise ProtocolError("malformed", "compressed message must be bytes")
            return Message(kind, packed=body[0])
    except IndexError:
        raise ProtocolError("malformed", f"message of kind {kind} is too short") from None
    return Message(kind)  # an unknown kind: the caller ignores it


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
    """Collects CHUNK frames of one link back into messages (chunks may come in any order).

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
