"""An in-process network for tests and simulation, with fault injection.

Peers of a room are linked pairwise, like the WebRTC mesh. Frames are delivered
through the event loop (never synchronously), in order unless faults say
otherwise: frames can be dropped, duplicated, delayed (which reorders them), and
links can be cut and restored, or the room partitioned and healed.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .base import Transport, TransportHandler

if TYPE_CHECKING:
    from ..meeting import Meeting

__all__ = ["Faults", "MemoryNetwork", "MemoryTransport"]


@dataclass(frozen=True)
class Faults:
    """Per-frame fault probabilities and delays (seconds)."""

    drop: float = 0.0
    duplicate: float = 0.0
    delay: float = 0.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        for name in ("drop", "duplicate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability between 0 and 1")
        if self.delay < 0 or self.jitter < 0:
            raise ValueError("delay and jitter must not be negative")

    @property
    def none(self) -> bool:
        return not (self.drop or self.duplicate or self.delay or self.jitter)


class _Link:
    """One open link between two transports; closed for good when cut."""

    __slots__ = ("ends", "open")

    def __init__(self, a: MemoryTransport, b: MemoryTransport) -> None:
        self.ends = (a, b)
        self.open = True


class MemoryNetwork:
    """Rooms of in-process peers. ``await net.join(room, peer_id=...)`` gives a ``Meeting``."""

    def __init__(self, *, seed: int | None = None, **meeting_options: Any) -> None:
        self._rooms: dict[str, dict[str, MemoryTransport]] = {}
        self._links: dict[tuple[str, frozenset[str]], _Link] = {}
        self._blocked: set[tuple[str, frozenset[str]]] = set()
        self._faults = Faults()
        self._link_faults: dict[tuple[str, frozenset[str]], Faults] = {}
        self._rng = random.Random(seed)
        self._ids = itertools.count(1)
        self._options = meeting_options
        self.frames_delivered = 0
        self.frames_dropped = 0
        self._in_flight = 0
        self._drained: asyncio.Event | None = None

    async def join(self, room: str, *, peer_id: str | None = None, **options: Any) -> Meeting:
        """Join ``room`` as a new peer and return its started ``Meeting``."""
        from ..meeting import Meeting

        if peer_id is None:
            peer_id = f"peer-{next(self._ids)}"
        if peer_id in self._rooms.get(room, {}):
            raise ValueError(f"peer id {peer_id!r} is already in room {room!r}")
        transport = MemoryTransport(self, room, peer_id)
        return await Meeting.join(None, room, transport=transport, **{**self._options, **options})

    def peers(self, room: str) -> list[str]:
        return list(self._rooms.get(room, {}))

    async def drained(self, timeout: float = 10.0) -> None:
        """Wait until every frame in flight has arrived (or been dropped).

        ``Meeting.synced()`` covers what peers send through their stores; this also
        covers frames handed to a transport directly (tests of hostile input do that).
        """
        if self._in_flight:
            self._drained = asyncio.Event()
            await asyncio.wait_for(self._drained.wait(), timeout)

    # -- faults -------------------------------------------------------------------

    def set_faults(
        self,
        *,
        drop: float = 0.0,
        duplicate: float = 0.0,
        delay: float = 0.0,
        jitter: float = 0.0,
        between: tuple[str, str] | None = None,
        room: str | None = None,
    ) -> None:
        """Faults for every frame, or only between two peers (``between=(a, b)``)."""
        faults = Faults(drop, duplicate, delay, jitter)
        if between is None:
            self._faults = faults
        else:
            self._link_faults[(self._room_of(room, between), frozenset(between))] = faults

    def clear_faults(self) -> None:
        self._faults = Faults()
        self._link_faults.clear()

    def cut(self, a: str, b: str, *, room: str | None = None) -> None:
        """Close the link between ``a`` and ``b`` and keep it closed until restored."""
        key = (self._room_of(room, (a, b)), frozenset((a, b)))
        self._blocked.add(key)
        self._close(key)

    def restore(self, a: str, b: str, *, room: str | None = None) -> None:
        """Reopen a cut link: a new link, so both sides sync again."""
        key = (self._room_of(room, (a, b)), frozenset((a, b)))
        self._blocked.discard(key)
        self._connect(key)

    def partition(self, *groups: Iterable[str], room: str | None = None) -> None:
        """Cut every link between peers of different groups."""
        sets = [set(g) for g in groups]
        for i, first in enumerate(sets):
            for second in sets[i + 1 :]:
                for a in first:
                    for b in second:
                        self.cut(a, b, room=room)

    def heal(self) -> None:
        """Restore every cut link and clear all faults."""
        self.clear_faults()
        blocked = list(self._blocked)
        self._blocked.clear()
        for key in blocked:
            self._connect(key)

    # -- internals ----------------------------------------------------------------

    def _room_of(self, room: str | None, peers: Iterable[str]) -> str:
        if room is not None:
            return room
        peers = set(peers)
        found = [name for name, members in self._rooms.items() if peers <= set(members)]
        if len(found) == 1:
            return found[0]
        if not found and len(self._rooms) == 1:
            return next(iter(self._rooms))
        raise ValueError("cannot tell which room is meant: pass room=")

    def _register(self, transport: MemoryTransport) -> None:
        members = self._rooms.setdefault(transport.room, {})
        members[transport.peer_id] = transport
        others = [other for other in members if other != transport.peer_id]
        assert transport._handler is not None
        for other in transport._handler.choose_links(others):
            self._dial(transport, other)

    def _dial(self, transport: MemoryTransport, peer: str) -> None:
        """``transport`` asks for a link to ``peer``, which accepts it or refuses."""
        target = self._rooms.get(transport.room, {}).get(peer)
        key = (transport.room, frozenset((transport.peer_id, peer)))
        if target is None or key in self._links:
            return
        if target._handler is not None and target._handler.accepts_link(transport.peer_id):
            self._connect(key)
        elif transport._handler is not None:
            asyncio.get_running_loop().call_soon(transport._handler.link_refused, peer)

    def _unregister(self, transport: MemoryTransport) -> None:
        members = self._rooms.get(transport.room, {})
        if members.get(transport.peer_id) is not transport:
            return
        del members[transport.peer_id]
        for other in list(members):
            self._close((transport.room, frozenset((other, transport.peer_id))), graceful=True)
        if not members:
            self._rooms.pop(transport.room, None)

    def _connect(self, key: tuple[str, frozenset[str]]) -> None:
        room, pair = key
        if key in self._blocked or key in self._links:
            return
        members = self._rooms.get(room, {})
        a, b = sorted(pair)
        if a not in members or b not in members:
            return
        link = _Link(members[a], members[b])
        self._links[key] = link
        loop = asyncio.get_running_loop()
        for end in link.ends:
            end._links[link.ends[1] if end is link.ends[0] else link.ends[0]] = link
        loop.call_soon(_notify_up, link, link.ends[0], link.ends[1].peer_id)
        loop.call_soon(_notify_up, link, link.ends[1], link.ends[0].peer_id)

    def _close(self, key: tuple[str, frozenset[str]], *, graceful: bool = False) -> None:
        link = self._links.pop(key, None)
        if link is None or not link.open:
            return
        a, b = link.ends
        a._links.pop(b, None)
        b._links.pop(a, None)
        if graceful:
            # Frames already queued for delivery arrive first: a leaving peer's last words.
            asyncio.get_running_loop().call_soon(_shut, link)
        else:
            _shut(link)

    def _deliver(self, sender: MemoryTransport, peer: str, data: bytes) -> None:
        target = self._rooms.get(sender.room, {}).get(peer)
        link = sender._links.get(target) if target is not None else None
        if link is None or target is None:
            self.frames_dropped += 1
            return
        key = (sender.room, frozenset((sender.peer_id, peer)))
        faults = self._link_faults.get(key, self._faults)
        loop = asyncio.get_running_loop()
        if faults.none:
            self._in_flight += 1
            loop.call_soon(_arrive, self, link, target, sender.peer_id, data)
            return
        rng = self._rng
        if rng.random() < faults.drop:
            self.frames_dropped += 1
            return
        copies = 2 if rng.random() < faults.duplicate else 1
        self._in_flight += copies
        for _ in range(copies):
            delay = faults.delay + rng.random() * faults.jitter
            if delay > 0:
                loop.call_later(delay, _arrive, self, link, target, sender.peer_id, data)
            else:
                loop.call_soon(_arrive, self, link, target, sender.peer_id, data)


def _shut(link: _Link) -> None:
    link.open = False
    a, b = link.ends
    loop = asyncio.get_running_loop()
    loop.call_soon(_notify_down, a, b.peer_id)
    loop.call_soon(_notify_down, b, a.peer_id)


def _notify_up(link: _Link, end: MemoryTransport, peer: str) -> None:
    if link.open and end._handler is not None:
        end._handler.link_up(peer)


def _notify_down(end: MemoryTransport, peer: str) -> None:
    if end._handler is not None:
        end._handler.link_down(peer)


def _arrive(
    net: MemoryNetwork, link: _Link, target: MemoryTransport, sender: str, data: bytes
) -> None:
    net._in_flight -= 1
    if not net._in_flight and net._drained is not None:
        net._drained.set()
    if not link.open or target._handler is None:
        net.frames_dropped += 1
        return
    net.frames_delivered += 1
    target._handler.frame(sender, data)


class MemoryTransport(Transport):
    """One peer's end of a ``MemoryNetwork`` room."""

    def __init__(self, network: MemoryNetwork, room: str, peer_id: str) -> None:
        self.network = network
        self.room = room
        self.peer_id = peer_id
        self.stats: dict[str, int] = {}
        self._handler: TransportHandler | None = None
        self._links: dict[MemoryTransport, _Link] = {}

    def present_peers(self) -> set[str]:
        return set(self.network._rooms.get(self.room, {})) - {self.peer_id}

    async def start(self, handler: TransportHandler) -> None:
        self._handler = handler
        self.network._register(self)
        # Return with the links to the peers already present open, as WebRTC does.
        await asyncio.sleep(0)

    def send(self, peer: str, data: bytes) -> None:
        self.network._deliver(self, peer, data)

    def room_size(self) -> int:
        return len(self.network._rooms.get(self.room, ()))

    def dial(self, peer: str) -> None:
        self.network._dial(self, peer)

    def drop_link(self, peer: str) -> None:
        self.network._close((self.room, frozenset((self.peer_id, peer))), graceful=True)

    def close_link(self, peer: str) -> None:
        self.network._close((self.room, frozenset((self.peer_id, peer))))
        # A dead link comes back when both ends are still there, like a reconnect
        # (in a large room the mesh picks its own replacement instead).
        if self._handler is None or self._handler.retries_link(peer):
            asyncio.get_running_loop().call_soon(
                self.network._connect, (self.room, frozenset((self.peer_id, peer)))
            )

    async def close(self) -> None:
        self.network._unregister(self)
        for _ in range(3):
            await asyncio.sleep(0)  # let queued frames and link_down notifications run
        self._handler = None
