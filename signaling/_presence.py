"""Who is in each room beyond this process's own sockets: the small interface the rooms
layer asks (claim an id, announce a join or a leave, find a reserved id, route a signal),
and its in-memory implementation, for a server that is the only instance.

The rooms layer keeps its sockets (``rooms``: room -> peer id -> ``Client``) either way;
a presence decides whether a join may take an id and tells the others. ``_redis`` is
the other implementation: rooms shared by every instance on one Redis.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ._sockets import Client
from .limits import Limits

__all__ = [
    "Decision",
    "Host",
    "JoinRequest",
    "LocalPresence",
    "Presence",
    "PresenceError",
    "Reservation",
    "Reservations",
    "Route",
    "same_secret",
]

Outcome = Literal["ok", "taken", "reserved", "grace", "address", "full"]
Route = Literal["sent", "gone", "reserved", "absent"]
"""Where a signal for a peer that is not on this instance went: ``sent`` to its instance,
``gone`` (its instance no longer listens), or nowhere: the id is ``reserved`` (a peer
that just left) or ``absent``."""


class PresenceError(Exception):
    """The shared presence (Redis) cannot be reached or answered nonsense."""


@dataclass(frozen=True)
class JoinRequest:
    """A join that passed the token checks, with what the local caps already decided."""

    room: str
    peer_id: str
    secret: str  # the resume secret this join gets if admitted
    resume: str | None  # the secret the join presents, if any
    address: str
    session: str  # a fresh id for this socket's hold on the peer id
    grace: bool  # a token from before the start, in the restart window
    address_full: bool  # the address is at its joined-ids cap (a replaced socket freed)


@dataclass(frozen=True)
class Decision:
    """A presence's answer to a join: admitted (``ok``) or why not."""

    outcome: Outcome
    resumed: bool = False  # let in by a resume secret
    peers: list[str] = field(default_factory=list)  # the others in the room, when admitted
    reserved_for: float = 0.0  # seconds the id stays reserved (outcome ``reserved``)
    seq: int = 0  # the room's event number of this join (shared presence)


class Host(Protocol):
    """What a presence may ask of the server it serves."""

    rooms: dict[str, dict[str, Client]]
    limits: Limits
    stats: dict[str, int]

    def _send(self, client: Client, message: dict[str, Any]) -> None: ...

    def _replaced(self, client: Client) -> None:
        """Another session (on another instance) holds this socket's peer id now."""

    def _lost(self, client: Client) -> None:
        """The shared presence no longer holds this socket's peer id: it must rejoin."""

    def _routed(
        self,
        room: str,
        sender: str,
        target: str,
        data: dict[str, Any],
        first_contact: bool,
        credited: bool,
        origin: str,
    ) -> None:
        """A signal from a peer on instance ``origin`` for a peer on this one."""

    def _bounced(self, room: str, peer: str, code: str, reason: str) -> None:
        """Another instance refused a signal a local peer sent (an error for it)."""

    def _set_epoch(self, started_wall: float) -> None:
        """When the shared state began (the start the restart grace counts from)."""


class Presence:
    """The interface; ``LocalPresence`` and ``RedisPresence`` implement it."""

    shared = False  # whether peers on other instances exist (signals may leave this one)
    instance: str | None = None  # this instance's id among those sharing the rooms

    async def start(self, host: Host, resume_key: bytes, derived: bool) -> bytes:
        """Start; returns the resume key to use (every instance must use the same one).
        ``derived``: the key comes from the token secret (so instances agree already)."""
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def fresh_id(self, room: str) -> str:
        """A new peer id for a join that names none."""
        raise NotImplementedError

    async def claim(self, request: JoinRequest) -> Decision:
        """Decide a join and, when admitted, hold the id for it (raises ``PresenceError``)."""
        raise NotImplementedError

    def admitted(self, client: Client, decision: Decision, replaced: bool) -> None:
        """``client`` got its welcome; ``replaced``: it took over a local socket of its id."""
        raise NotImplementedError

    def left(self, client: Client, members: dict[str, Client]) -> None:
        """``client`` left its room (``members``: the local sockets still there): tell the
        others and reserve its id for its resume secret."""
        raise NotImplementedError

    def reserved(self, room: str, peer_id: str) -> bool:
        """Whether ``peer_id`` departed moments ago (an answer to it is a race, not a fault)."""
        raise NotImplementedError

    async def route(
        self,
        room: str,
        sender: str,
        target: str,
        data: dict[str, Any],
        first_contact: bool,
        credited: bool,
    ) -> Route:
        """Send a signal to ``target`` on whichever instance holds it."""
        raise NotImplementedError

    def bounce(self, origin: str, room: str, peer: str, code: str, reason: str) -> None:
        """Send an error about a routed signal back to its sender on instance ``origin``."""


@dataclass
class Reservation:
    """A departed peer's id, kept for whoever holds its resume secret until ``expires``."""

    expires: float
    secret: str
    address: str


class Reservations:
    """Departed peers' ids kept for their resume secrets, oldest first; the caps (per
    address, in all) drop the oldest early and say which went."""

    def __init__(self, limits: Limits, stats: dict[str, int]) -> None:
        self._limits = limits
        self._stats = stats
        self._kept: dict[tuple[str, str], Reservation] = {}  # oldest first
        self._by_address: dict[str, dict[tuple[str, str], None]] = {}

    def add(
        self, key: tuple[str, str], secret: str, address: str
    ) -> list[tuple[tuple[str, str], Reservation]]:
        """Keep ``key`` for ``reserve_seconds``; returns those the caps dropped for it."""
        self.discard(key)
        expires = time.monotonic() + self._limits.reserve_seconds
        self._kept[key] = Reservation(expires, secret, address)
        mine = self._by_address.setdefault(address, {})
        mine[key] = None
        dropped: list[tuple[tuple[str, str], Reservation]] = []
        while len(mine) > self._limits.max_reserved_per_address:
            self._stats["reservations_evicted"] += 1
            oldest = next(iter(mine))
            dropped.append((oldest, self._pop(oldest)))
        while len(self._kept) > self._limits.max_reserved:
            self._stats["reservations_evicted"] += 1
            oldest = next(iter(self._kept))
            dropped.append((oldest, self._pop(oldest)))
        return dropped

    def get(self, key: tuple[str, str]) -> Reservation | None:
        """The live reservation of an id, if any (expired ones are dropped here)."""
        now = time.monotonic()
        while self._kept:
            oldest_key, oldest = next(iter(self._kept.items()))
            if oldest.expires > now:
                break
            self._pop(oldest_key)
        return self._kept.get(key)

    def discard(self, key: tuple[str, str]) -> None:
        if key in self._kept:
            self._pop(key)

    def clear(self) -> None:
        self._kept.clear()
        self._by_address.clear()

    def _pop(self, key: tuple[str, str]) -> Reservation:
        reservation = self._kept.pop(key)
        mine = self._by_address.get(reservation.address)
        if mine is not None:
            mine.pop(key, None)
            if not mine:
                del self._by_address[reservation.address]
        return reservation


class LocalPresence(Presence):
    """This process is the only instance: its sockets are the room."""

    def __init__(self, rooms: dict[str, dict[str, Client]], limits: Limits, stats: dict[str, int]):
        self._rooms = rooms
        self._limits = limits
        self.reservations = Reservations(limits, stats)
        self._host: Host | None = None

    async def start(self, host: Host, resume_key: bytes, derived: bool) -> bytes:
        self._host = host
        return resume_key

    async def stop(self) -> None:
        self.reservations.clear()

    async def fresh_id(self, room: str) -> str:
        members = self._rooms.get(room, {})
        peer_id = secrets.token_hex(6)
        while peer_id in members or self.reservations.get((room, peer_id)) is not None:
            peer_id = secrets.token_hex(6)
        return peer_id

    async def claim(self, request: JoinRequest) -> Decision:
        # Nothing here awaits: the decision and the admission that follows are one step.
        room, peer_id = request.room, request.peer_id
        members = self._rooms.get(room, {})
        live = members.get(peer_id)
        reservation = self.reservations.get((room, peer_id)) if live is None else None
        accepted = [request.secret]
        if live is not None:
            accepted.append(live.resume)
        if reservation is not None:
            accepted.append(reservation.secret)
        resume = request.resume
        resumed = resume is not None and any(same_secret(resume, s) for s in accepted)
        if live is not None and not resumed:
            return Decision("taken")
        if reservation is not None and not resumed:
            return Decision("reserved", reserved_for=reservation.expires - time.monotonic())
        if live is None and reservation is None and not resumed and request.grace:
            return Decision("grace")
        if request.address_full:
            return Decision("address")
        if live is None and len(members) >= self._limits.max_peers_per_room:
            return Decision("full")
        self.reservations.discard((room, peer_id))
        return Decision("ok", resumed=resumed, peers=[p for p in members if p != peer_id])

    def admitted(self, client: Client, decision: Decision, replaced: bool) -> None:
        if replaced or self._host is None:
            return  # same peer, new socket: nobody else needs to hear about it
        for other in self._rooms.get(client.room, {}).values():
            if other is not client:
                self._host._send(other, {"type": "peer-joined", "peer_id": client.peer_id})

    def left(self, client: Client, members: dict[str, Client]) -> None:
        if self._limits.reserve_seconds > 0:
            self.reservations.add((client.room, client.peer_id), client.resume, client.address)
        if self._host is None:
            return
        for other in list(members.values()):
            other.credits.pop(client.peer_id, None)
            self._host._send(other, {"type": "peer-left", "peer_id": client.peer_id})

    def reserved(self, room: str, peer_id: str) -> bool:
        return self.reservations.get((room, peer_id)) is not None

    async def route(
        self,
        room: str,
        sender: str,
        target: str,
        data: dict[str, Any],
        first_contact: bool,
        credited: bool,
    ) -> Route:
        return "reserved" if self.reserved(room, target) else "absent"


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison of a resume secret (any text, compared as UTF-8)."""
    return hmac.compare_digest(_utf8(given), _utf8(expected))


def _utf8(text: str) -> bytes:
    # A JSON string may hold a lone surrogate ("\\ud800"): compared, never an exception.
    return text.encode("utf-8", "surrogatepass")
