"""The state of one link to a peer, as the sync engine keeps it: where the link is in its
life (``Phase``), what goes out at the next flush (``Outgoing``), what the peer reported,
and the bookkeeping of liveness, repairs and violations."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import _statevector as sv
from . import wire

if TYPE_CHECKING:
    from .replica import StoreReplica

__all__ = ["Link", "Outgoing", "Phase"]

_UNKNOWN_KEEP = 64  # clients a peer reports that we do not know, kept per store


class Phase(enum.Enum):
    """Where a link is in its life. (A closed link is dropped: a reconnect is a new one.)"""

    HANDSHAKE = "handshake"
    """Open; our HELLO and SYNC are queued or sent; the peer's full SYNC has not arrived."""
    LIVE = "live"
    """The peer's SYNC (all its parts) arrived: it has been sent a diff of what it lacks,
    and from now on it is sent live updates, acks and repairs."""


@dataclass(eq=False)
class Outgoing:
    """What goes out on a link at the next flush (``SyncEngine.data_to_send``)."""

    hello: bool = True
    sync: bool = True
    announce_links: bool = False
    diffs: dict[str, bytes] = field(default_factory=dict)
    updates: dict[str, list[tuple[bytes, int]]] = field(default_factory=dict)  # (delta, items)
    states_now: set[str] = field(default_factory=set)  # acks due now
    states_later: set[str] = field(default_factory=set)  # acks that may wait until states_due
    states_due: float | None = None
    want_ack: bool = False  # ask the peer to acknowledge right away
    heartbeat: bool = False

    def ack_later(self, name: str, due: float) -> float | None:
        """Acknowledge ``name`` by ``due`` at the latest; returns ``due`` if that is new."""
        self.states_later.add(name)
        if self.states_due is not None:
            return None
        self.states_due = due
        return due

    def promote_acks(self) -> set[str]:
        """Every delayed ack goes out now (with what goes out anyway); returns them all."""
        self.states_now |= self.states_later
        self.states_later = set()
        self.states_due = None
        return self.states_now

    def pending(self) -> bool:
        return bool(
            self.hello
            or self.sync
            or self.announce_links
            or self.diffs
            or self.updates
            or self.states_now
            or self.heartbeat
        )


@dataclass(eq=False)
class Link:
    """One open link to ``peer``."""

    peer: str
    opened: float
    last_recv: float  # a frame arrived
    last_sent: float
    reassembler: wire.Reassembler
    phase: Phase = Phase.HANDSHAKE
    out: Outgoing = field(default_factory=Outgoing)
    # -- what the peer reported
    remote_states: dict[str, sv.StateVector] = field(default_factory=dict)
    # the last state vector reported per store, decoded only when someone looks (most
    # never are; a peer's state only grows, so the last report says it all)
    unread_states: dict[str, bytes] = field(default_factory=dict)
    remote_digests: dict[str, bytes] = field(default_factory=dict)  # of their deletions
    remote_links: set[str] | None = None
    sync_seen: set[str] = field(default_factory=set)  # stores named by a multi-part SYNC
    # -- liveness and misbehaviour
    violations: int = 0
    # the peer's network stack was heard (datagrams below the frames, per the transport):
    # under loss, frames wait behind retransmissions while the peer is alive and well
    last_alive: float = 0.0
    backlog: int = 0  # bytes for the peer the transport still holds (not yet sent)
    # -- repairs
    # our state of each store when we last sent this peer a diff of all it lacked
    diffed: dict[str, sv.StateVector] = field(default_factory=dict)
    # anti-entropy, per store: (our state and theirs at the last check, repairs in a row)
    suspect: dict[str, tuple[sv.StateVector, sv.StateVector, int]] = field(default_factory=dict)
    # per store: (our digest when theirs was seen to differ, repairs in a row)
    digest_suspect: dict[str, tuple[bytes, int]] = field(default_factory=dict)

    def learn(self, name: str, encoded: bytes, digests: dict[str, bytes] | None) -> None:
        """The peer reported its state vector of ``name`` (decoded later, by ``settle``)
        and, in SYNC, DIFF and ACK, the digest of its deletions."""
        self.unread_states[name] = encoded
        if digests is not None and name in digests:
            self.remote_digests[name] = digests[name]
        else:  # (UPDATEs carry none: digests cost too much per batch)
            self.remote_digests.pop(name, None)

    def settle(self, stores: Mapping[str, StoreReplica], max_entries: int) -> int:
        """Decode the state vectors reported since the last look into ``remote_states``;
        returns how many were malformed (violations: the engine counts them).

        Only clients this peer knows are kept, and a few it does not (enough to tell
        that the peer holds something we lack): a link's memory follows our data,
        not the size of what it reports.
        """
        unread = self.unread_states
        if not unread:
            return 0
        self.unread_states = {}
        malformed = 0
        remote_states = self.remote_states
        for name, encoded in unread.items():
            replica = stores.get(name)
            if replica is None:
                continue
            try:
                vector = sv.decode(encoded, max_entries)
            except ValueError:
                malformed += 1
                continue
            local = replica.state_vector_dict()
            if len(vector) > len(local):
                unknown = 0
                kept: sv.StateVector = {}
                for client, clock in vector.items():
                    if client in local:
                        kept[client] = clock
                    elif unknown < _UNKNOWN_KEEP:
                        kept[client] = clock
                        unknown += 1
                vector = kept
            known = remote_states.get(name)
            remote_states[name] = vector if known is None else sv.merge(known, vector)
        return malformed

    def dead(self, now: float, dead_after: float) -> bool:
        """Nothing from the peer (no frame, no sign of life) for ``dead_after``."""
        return now - max(self.last_recv, self.last_alive) >= dead_after

    def tick(self, now: float, heartbeat_interval: float) -> None:
        """Delayed acks that fell due go out; so does a heartbeat after a quiet spell."""
        out = self.out
        if out.states_due is not None and now >= out.states_due:
            out.promote_acks()
        if now - self.last_sent >= heartbeat_interval:
            out.heartbeat = True

    def deadline(self, heartbeat_interval: float, dead_after: float) -> float:
        """When ``tick`` (or the dead check) next has work for this link."""
        due = min(
            self.last_sent + heartbeat_interval,
            max(self.last_recv, self.last_alive) + dead_after,
        )
        states_due = self.out.states_due
        return due if states_due is None or states_due > due else states_due
