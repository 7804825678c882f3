"""The messages of the peer-to-peer protocol, one typed class per kind (PROTOCOL.md §5.2).

A message is the CBOR array ``[version, kind, *fields]``; ``body()`` gives a message's
fields and ``parse(kind, fields)`` checks and types them, raising ``ProtocolError``
for anything malformed, so the engine only ever handles well-formed messages.
Messages are values: nothing changes one after it is made (they are not frozen
only because a frozen dataclass costs three times as much to make, twice per write).
Trailing fields a kind does not know are ignored (room for later versions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from . import _statevector

__all__ = [
    "ACK",
    "CHUNK",
    "COMPRESSED",
    "DIFF",
    "HEARTBEAT",
    "HELLO",
    "KIND_NAMES",
    "LINKS",
    "SYNC",
    "UPDATE",
    "Ack",
    "Chunk",
    "Compressed",
    "Diff",
    "Heartbeat",
    "Hello",
    "Links",
    "Message",
    "ProtocolError",
    "Sync",
    "Unknown",
    "Update",
    "parse",
    "state_items",
]

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

KIND_NAMES = {
    HELLO: "hello",
    SYNC: "sync",
    DIFF: "diff",
    UPDATE: "update",
    ACK: "ack",
    HEARTBEAT: "heartbeat",
    LINKS: "links",
    CHUNK: "chunk",
    COMPRESSED: "compressed",
}

Blobs = dict[str, bytes]
"""Store name -> bytes (an update, an encoded state vector, a digest)."""


class ProtocolError(ValueError):
    """A frame that does not decode to a well-formed message of this protocol."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # counter name: malformed, unsupported_version, oversize...


@dataclass(slots=True)
class Hello:
    """The first message on a link: who the sender is and whom it is linked to."""

    kind: ClassVar[int] = HELLO
    peer: str
    links: list[str]

    def body(self) -> list[Any]:
        return [self.peer, self.links]


@dataclass(slots=True)
class Sync:
    """What the sender holds (its state vectors); "send me what I lack" (and, with
    ``want_sync``, "and your SYNC"). ``more``: further parts follow."""

    kind: ClassVar[int] = SYNC
    states: Blobs
    want_sync: bool = False
    more: bool = False
    digests: Blobs | None = None  # None: not sent (the peer's digests become unknown)

    def body(self) -> list[Any]:
        return _with_digests([self.states, self.want_sync, self.more], self.digests)


@dataclass(slots=True)
class Diff:
    """What the receiver lacks, per store (answer to a SYNC, a repair, a relay)."""

    kind: ClassVar[int] = DIFF
    diffs: Blobs
    states: Blobs
    digests: Blobs | None = None

    def body(self) -> list[Any]:
        return _with_digests([self.diffs, self.states], self.digests)


@dataclass(slots=True)
class Update:
    """Live deltas, per store, in order; the sender's state vectors of some stores."""

    kind: ClassVar[int] = UPDATE
    updates: dict[str, list[bytes]]
    states: Blobs
    want_ack: bool = False

    def body(self) -> list[Any]:
        return [self.updates, self.states, self.want_ack]


@dataclass(slots=True)
class Ack:
    """What the sender holds now; with ``want_ack``, "tell me yours"."""

    kind: ClassVar[int] = ACK
    states: Blobs
    want_ack: bool = False
    digests: Blobs | None = None

    def body(self) -> list[Any]:
        return _with_digests([self.states, self.want_ack], self.digests)


@dataclass(slots=True)
class Heartbeat:
    kind: ClassVar[int] = HEARTBEAT

    def body(self) -> list[Any]:
        return []


@dataclass(slots=True)
class Links:
    """The sender's links changed: whom it is linked to now."""

    kind: ClassVar[int] = LINKS
    links: list[str]

    def body(self) -> list[Any]:
        return [self.links]


@dataclass(slots=True)
class Chunk:
    """Part ``index`` of ``count`` of a message too big for one frame."""

    kind: ClassVar[int] = CHUNK
    message_id: int
    index: int
    count: int
    data: bytes

    def body(self) -> list[Any]:
        return [self.message_id, self.index, self.count, self.data]


@dataclass(slots=True)
class Compressed:
    """A whole message, zlib-compressed."""

    kind: ClassVar[int] = COMPRESSED
    packed: bytes

    def body(self) -> list[Any]:
        return [self.packed]


@dataclass(slots=True)
class Unknown:
    """A kind this version does not know: ignored (a newer peer is not a faulty one)."""

    kind: int

    def body(self) -> list[Any]:
        return []


Message = Hello | Sync | Diff | Update | Ack | Heartbeat | Links | Chunk | Compressed | Unknown


def parse(kind: int, body: list[Any]) -> Message:
    """The message of ``kind`` with fields ``body``, checked; ``ProtocolError`` if malformed."""
    try:
        parser = _PARSERS.get(kind)
        return Unknown(kind) if parser is None else parser(body)
    except IndexError:
        raise ProtocolError("malformed", f"message of kind {kind} is too short") from None


def _hello(body: list[Any]) -> Hello:
    if type(body[0]) is not str:
        raise ProtocolError("malformed", "hello needs a peer id")
    return Hello(body[0], _str_list(body[1], "links"))


def _sync(body: list[Any]) -> Sync:
    return Sync(
        _bytes_map(body[0], "states"),
        want_sync=_flag(body, 1),
        more=_flag(body, 2),
        digests=_digests(body, 3),
    )


def _diff(body: list[Any]) -> Diff:
    return Diff(_bytes_map(body[0], "diffs"), _bytes_map(body[1], "states"), _digests(body, 2))


def _update(body: list[Any]) -> Update:
    updates = body[0]
    if type(updates) is not dict or not all(
        type(name) is str
        and name
        and type(deltas) is list
        and all(type(d) is bytes for d in deltas)
        for name, deltas in updates.items()
    ):
        raise ProtocolError("malformed", "updates must map store names to lists of bytes")
    return Update(updates, _bytes_map(body[1], "states"), want_ack=_flag(body, 2))


def _ack(body: list[Any]) -> Ack:
    return Ack(_bytes_map(body[0], "states"), want_ack=_flag(body, 1), digests=_digests(body, 2))


def _links(body: list[Any]) -> Links:
    return Links(_str_list(body[0], "links"))


def _chunk(body: list[Any]) -> Chunk:
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
    return Chunk(msg_id, index, count, data)


def _compressed(body: list[Any]) -> Compressed:
    if type(body[0]) is not bytes:
        raise ProtocolError("malformed", "compressed message must be bytes")
    return Compressed(body[0])


_PARSERS: dict[int, Any] = {
    HELLO: _hello,
    SYNC: _sync,
    DIFF: _diff,
    UPDATE: _update,
    ACK: _ack,
    HEARTBEAT: lambda body: Heartbeat(),
    LINKS: _links,
    CHUNK: _chunk,
    COMPRESSED: _compressed,
}


def _flag(body: list[Any], index: int) -> bool:
    """An optional flag: set only by CBOR ``true``."""
    return len(body) > index and body[index] is True


def _bytes_map(value: Any, what: str) -> Blobs:
    if type(value) is not dict:
        raise ProtocolError("malformed", f"{what} must be a map")
    for name, blob in value.items():
        if type(name) is not str or not name or type(blob) is not bytes:
            raise ProtocolError("malformed", f"{what} must map store names to bytes")
    return value


def _with_digests(body: list[Any], digests: Blobs | None) -> list[Any]:
    return body if digests is None else [*body, digests]


def _digests(body: list[Any], index: int) -> Blobs | None:
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


SV_ENTRIES_PER_ITEM = 8
"""A state-vector entry costs an eighth of an entry to decode: what counts as an item."""


def state_items(states: Blobs) -> int:
    """The work the state vectors of a message announce, in items (``ProtocolError``
    ``malformed_state`` if one does not even start like a state vector)."""
    entries = 0
    for encoded in states.values():
        try:
            entries += _statevector.count(encoded)
        except ValueError:
            raise ProtocolError("malformed_state", "malformed state vector") from None
    return entries // SV_ENTRIES_PER_ITEM
