"""The peer-to-peer sync state machine: bytes in, bytes out, no I/O.

One ``SyncEngine`` per meeting participant holds every store replica and the
state of every link to another peer. The transport feeds it ``link_up``,
``link_down`` and ``receive``; a clock feeds it ``tick``; it hands back frames
through ``data_to_send``. The same object runs over the in-memory network and
over WebRTC.

Replication rules:

* On a new link both sides send ``HELLO`` and ``SYNC`` (their state vectors); each
  answers with a ``DIFF`` of what the other lacks.
* Local deltas of one tick go out as one ``UPDATE`` per link. Each carries the
  sender's state vectors of the stores it touches; receivers acknowledge with
  their own (``ACK``, or piggybacked on their next ``UPDATE``). Acks are lazy (up
  to ``ack_delay``) unless someone awaits ``synced()``: then this peer asks its
  links for their state (``want_ack``) and acknowledges at once ("eager" mode).
  So a busy room does not pay for N² acks per write that nobody is waiting for.
* New content is relayed at once to links the source peer is not linked to
  (from its ``LINKS`` announcements); anti-entropy catches every other gap: a
  link whose acknowledged state still lacks what this peer held one
  ``sync_interval`` earlier is sent a ``DIFF`` from its acknowledged state.
* Malformed frames, bad Yjs updates and oversize messages are dropped and counted.
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pycrdt import merge_updates

from . import _statevector as sv
from . import wire
from .replica import StoreReplica, UpdateError
from .values import DEFAULT_MAX_VALUE_BYTES, check_key

__all__ = ["SyncConfig", "SyncEngine"]

log = logging.getLogger("crdt_stores")


@dataclass(frozen=True)
class SyncConfig:
    """Timing and size settings of the sync protocol (seconds and bytes)."""

    heartbeat_interval: float = 1.0
    dead_after: float = 6.0
    sync_interval: float = 1.0
    ack_delay: float = 0.25
    max_frame_bytes: int = wire.MAX_FRAME_BYTES
    max_message_bytes: int = 512 * 1024 * 1024
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES

    def __post_init__(self) -> None:
        if self.dead_after <= self.heartbeat_interval:
            raise ValueError("dead_after must be longer than heartbeat_interval")
        if self.max_frame_bytes < 1024:
            raise ValueError("max_frame_bytes must be at least 1024")


@dataclass(eq=False)
class _Link:
    peer: str
    opened: float
    last_recv: float
    last_sent: float
    remote_states: dict[str, sv.StateVector] = field(default_factory=dict)
    # state vectors as received, decoded only when someone looks (most never are)
    unread_states: list[tuple[str, bytes]] = field(default_factory=list)
    remote_links: set[str] | None = None
    synced_once: bool = False  # the peer's SYNC (its full state) has arrived
    reassembler: wire.Reassembler | None = None
    # what goes out at the next flush
    hello: bool = True
    sync: bool = True
    announce_links: bool = False
    diffs: dict[str, bytes] = field(default_factory=dict)
    updates: dict[str, list[bytes]] = field(default_factory=dict)
    states_now: set[str] = field(default_factory=set)
    states_later: set[str] = field(default_factory=set)
    states_due: float | None = None
    want_ack: bool = False  # ask the peer to acknowledge right away
    # our state of each store when we last sent this peer a diff of all it lacked
    diffed: dict[str, sv.StateVector] = field(default_factory=dict)
    heartbeat: bool = False
    # anti-entropy, per store: (our state and theirs at the last check, repairs in a row)
    suspect: dict[str, tuple[sv.StateVector, sv.StateVector, int]] = field(default_factory=dict)

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


class SyncEngine:
    """Replicates a set of named stores with every linked peer."""

    def __init__(
        self,
        peer_id: str,
        config: SyncConfig | None = None,
        *,
        on_store_added: Callable[[StoreReplica], None] | None = None,
        on_link_dead: Callable[[str], None] | None = None,
    ) -> None:
        self.peer_id = peer_id
        self.config = config or SyncConfig()
        self.on_store_added = on_store_added
        self.on_link_dead = on_link_dead
        self.stats: Counter[str] = Counter()
        self._stores: dict[str, StoreReplica] = {}
        self._links: dict[str, _Link] = {}
        self._now = 0.0
        self._next_sync_check = 0.0
        self._message_ids = itertools.count()
        self._eager = False
        self._local_out: dict[str, list[bytes]] = {}  # local deltas of this tick, per store
        self.last_batch = 0  # how many local deltas the last data_to_send() carried
        self._pending_bytes = 0

    # -- stores -------------------------------------------------------------------

    def store(self, name: str) -> StoreReplica | None:
        return self._stores.get(name)

    @property
    def stores(self) -> dict[str, StoreReplica]:
        return self._stores

    def create_store(self, name: str) -> StoreReplica:
        """Get or create a store; a new one is announced to every linked peer."""
        replica = self._stores.get(name)
        if replica is None:
            name = check_key(name, "store name")
            replica = self._add_store(name)
            for link in self._links.values():
                link.states_now.add(name)
        return replica

    def _add_store(self, name: str) -> StoreReplica:
        replica = StoreReplica(name, max_value_bytes=self.config.max_value_bytes)
        self._stores[name] = replica
        if self.on_store_added is not None:
            self.on_store_added(replica)
        return replica

    def _remote_store(self, name: str) -> StoreReplica | None:
        replica = self._stores.get(name)
        if replica is None:
            try:
                name = check_key(name, "store name")
            except (TypeError, ValueError):
                self.stats["bad_store_name"] += 1
                return None
            replica = self._add_store(name)
            # Tell the other links too: store existence spreads like content.
            for link in self._links.values():
                self._ack(link, name)
        return replica

    def commit(self, name: str) -> None:
        """Queue the local deltas of store ``name`` for every link."""
        deltas = self._stores[name].take_outbox()
        if deltas:
            self._local_out.setdefault(name, []).extend(deltas)
            self._pending_bytes += sum(len(d) for d in deltas)

    # -- links --------------------------------------------------------------------

    @property
    def peers(self) -> list[str]:
        return list(self._links)

    def link_up(self, peer: str, now: float) -> None:
        """A data channel to ``peer`` opened (a reconnect is just a new link)."""
        self._now = now
        self._links.pop(peer, None)
        self._links[peer] = _Link(
            peer,
            opened=now,
            last_recv=now,
            last_sent=now,
            reassembler=wire.Reassembler(self.config.max_message_bytes),
        )
        self._announce_links(except_peer=peer)

    def link_down(self, peer: str) -> bool:
        """The link to ``peer`` closed; returns False if there was none."""
        if self._links.pop(peer, None) is None:
            return False
        self._announce_links()
        return True

    def _announce_links(self, except_peer: str | None = None) -> None:
        for link in self._links.values():
            if link.peer != except_peer:
                link.announce_links = True

    # -- input --------------------------------------------------------------------

    def receive(self, peer: str, frame: bytes, now: float) -> None:
        """Handle one frame from ``peer``. Never raises for bad input."""
        self._now = now
        link = self._links.get(peer)
        if link is None:
            self.stats["frame_without_link"] += 1
            return
        link.last_recv = now
        self.stats["frames_in"] += 1
        self.stats["bytes_in"] += len(frame)
        try:
            message = wire.decode_frame(frame, self.config.max_frame_bytes)
            limit = self.config.max_message_bytes
            if message.kind == wire.CHUNK:
                assert message.chunk is not None and link.reassembler is not None
                whole = link.reassembler.add(*message.chunk)
                if whole is None:
                    return
                message = wire.decode_frame(whole, limit)
                if message.kind == wire.CHUNK:
                    raise wire.ProtocolError("malformed", "chunk inside a chunk")
            if message.kind == wire.COMPRESSED:
                message = wire.decode_frame(wire.inflate(message.packed, limit), limit)
                if message.kind in (wire.CHUNK, wire.COMPRESSED):
                    raise wire.ProtocolError("malformed", "nested envelope in a compressed message")
            self._handle(link, message)
        except wire.ProtocolError as exc:
            self.stats[exc.reason] += 1
            log.debug("dropped frame from %s: %s", peer, exc)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException:  # pycrdt's PanicException is a BaseException
            self.stats["handler_error"] += 1
            log.exception("error handling a frame from %s", peer)

    def _handle(self, link: _Link, message: wire.Message) -> None:
        kind = message.kind
        if kind in wire.KINDS:  # counters never grow with what a peer invents
            self.stats[f"in:{kind}"] += 1
        if kind == wire.HELLO or kind == wire.LINKS:
            link.remote_links = set(message.links or ())
        elif kind == wire.SYNC:
            link.synced_once = True
            if message.want_sync:
                link.sync = True
            self._learn_states(link, message.states or {})
            states = self._settle(link)
            for name, replica in self._stores.items():
                local = replica.state_vector_dict()
                if name in states and sv.covers(states[name], local):
                    continue
                if name in link.diffed and sv.covers(link.diffed[name], local):
                    continue  # SYNCs crossed: everything it lacks is already on its way
                link.diffs[name] = replica.diff(sv.encode(states.get(name, {})))
                link.diffed[name] = dict(local)
        elif kind == wire.ACK:
            self._learn_states(link, message.states or {})
            if message.want_ack:
                link.states_now.update(self._stores)
        elif kind == wire.DIFF:
            assert message.diffs is not None
            self._apply(link, {name: [diff] for name, diff in message.diffs.items()})
            self._learn_states(link, message.states or {})
            # Always answer a diff, even a useless one: the sender is waiting on our
            # state, and a lost ack would otherwise make it resend forever.
            link.states_now.update(message.diffs)
        elif kind == wire.UPDATE:
            assert message.updates is not None
            self._apply(link, message.updates)
            self._learn_states(link, message.states or {})
            if message.want_ack:
                link.states_now.update(message.updates)
        elif kind == wire.HEARTBEAT:
            pass
        else:
            self.stats["unknown_kind"] += 1

    def _learn_states(self, link: _Link, states: dict[str, bytes]) -> None:
        """Note the peer's reported state vectors (decoded later, by ``_settle``)."""
        for name, encoded in states.items():
            if self._remote_store(name) is not None:
                link.unread_states.append((name, encoded))
        if len(link.unread_states) > 64:
            self._settle(link)

    def _settle(self, link: _Link) -> dict[str, sv.StateVector]:
        """Decode the reports received since the last look; returns what the peer holds."""
        unread = link.unread_states
        if unread:
            link.unread_states = []
            remote_states = link.remote_states
            for name, encoded in unread:
                try:
                    vector = sv.decode(encoded)
                except ValueError:
                    self.stats["malformed_state"] += 1
                    continue
                known = remote_states.get(name)
                remote_states[name] = vector if known is None else sv.merge(known, vector)
        return link.remote_states

    def _apply(self, source: _Link, updates: dict[str, list[bytes]]) -> None:
        for name, deltas in updates.items():
            replica = self._remote_store(name)
            if replica is None:
                continue
            fresh: list[bytes] = []
            for delta in deltas:
                try:
                    if replica.apply(delta):
                        fresh.append(delta)
                except UpdateError as exc:
                    self.stats["bad_update"] += 1
                    log.warning(
                        "dropped a bad update for store %r from %s: %s", name, source.peer, exc
                    )
            # Ack even what was known already: the sender may be waiting on our state.
            self._ack(source, name)
            if not fresh:
                continue
            self.stats["updates_applied"] += len(fresh)
            for link in self._links.values():
                if link is source:
                    continue
                if source.remote_links is None or link.peer not in source.remote_links:
                    link.updates.setdefault(name, []).extend(fresh)
                else:
                    self._ack(link, name)
            self.commit(name)  # compaction deltas, if this replica made any

    def _ack(self, link: _Link, name: str) -> None:
        """Tell ``link`` our state of ``name``: now if someone awaits synced(), else soon."""
        if self._eager:
            link.states_now.add(name)
            return
        link.states_later.add(name)
        if link.states_due is None:
            link.states_due = self._now + self.config.ack_delay

    def want_acks(self, eager: bool) -> None:
        """Someone awaits ``synced()`` (or stopped): ask linked peers for their state."""
        if eager and not self._eager:
            for link in self._links.values():
                link.states_now.update(self._stores)
                link.states_now |= link.states_later
                link.states_later.clear()
                link.states_due = None
                link.want_ack = True
        self._eager = eager

    # -- timers -------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Heartbeats, dead-link detection, delayed acks and anti-entropy."""
        self._now = now
        config = self.config
        for link in list(self._links.values()):
            if now - link.last_recv > config.dead_after:
                self.stats["links_dead"] += 1
                self.link_down(link.peer)
                if self.on_link_dead is not None:
                    self.on_link_dead(link.peer)
                continue
            if link.states_due is not None and now >= link.states_due:
                link.states_now |= link.states_later
                link.states_later.clear()
                link.states_due = None
            if now - link.last_sent >= config.heartbeat_interval:
                link.heartbeat = True
        if now >= self._next_sync_check:
            self._next_sync_check = now + config.sync_interval
            self._anti_entropy()

    def _anti_entropy(self) -> None:
        """Repair gaps that stopped closing (lost frames); leave slow links alone.

        A gap is repaired when, for some writer, this peer held more at the last
        check than the link had acknowledged, and the link's acknowledged clock for
        that writer has not moved since. A link that is merely behind (a backlog
        under load) keeps acknowledging, so it is not sent duplicate data.
        """
        for link in self._links.values():
            if not link.synced_once and self._now - link.opened >= self.config.sync_interval:
                link.sync = True  # our SYNC or theirs was lost: ask again
            for name, replica in self._stores.items():
                local = replica.state_vector_dict()
                remote = self._settle(link).get(name)
                if remote is not None and sv.covers(remote, local):
                    link.suspect.pop(name, None)
                    continue
                remote = remote or {}
                seen = link.suspect.get(name)
                link.suspect[name] = (dict(local), dict(remote), 0)
                if seen is None:
                    continue  # a gap first seen now may be in flight
                local_then, remote_then, repairs = seen
                if not _stuck(local_then, remote_then, remote):
                    continue
                # Backoff: repair at the 1st, 2nd, 4th, 8th... check it stays stuck.
                repairs += 1
                link.suspect[name] = (local_then, remote_then, repairs)
                if repairs & (repairs - 1) == 0:
                    self.stats["repairs"] += 1
                    link.diffs[name] = replica.diff(sv.encode(remote))
                    link.states_now.add(name)

    # -- output -------------------------------------------------------------------

    def data_to_send(self, now: float | None = None) -> list[tuple[str, bytes]]:
        """Frames to send now, coalesced: at most a few messages per link."""
        if now is not None:
            self._now = now
        self._pending_bytes = 0
        self.last_batch = sum(len(deltas) for deltas in self._local_out.values())
        if self._local_out:
            # One merged delta per store and tick (merged once, sent on every link):
            # smaller on the wire and much cheaper to apply than many tiny ones.
            local_out = self._local_out
            self._local_out = {}
            for name, deltas in local_out.items():
                merged = _merge(deltas)
                for link in self._links.values():
                    link.updates.setdefault(name, []).extend(merged)
        out: list[tuple[str, bytes]] = []
        # The same UPDATE usually goes to every link: encode (and compress) it once.
        shared: dict[tuple[Any, ...], list[bytes]] = {}
        for link in self._links.values():
            if not link.pending():
                continue
            messages: list[bytes] = []
            ready: list[bytes] = []  # frames already encoded
            if link.hello:
                messages.append(wire.encode(wire.HELLO, self.peer_id, self._link_ids(link)))
                link.hello = link.announce_links = False
            if link.announce_links:
                messages.append(wire.encode(wire.LINKS, self._link_ids(link)))
                link.announce_links = False
            if link.sync:
                states = {name: r.state_vector() for name, r in self._stores.items()}
                messages.append(wire.encode(wire.SYNC, states, not link.synced_once))
                link.sync = False
            states_for = link.states_now
            if link.diffs or link.updates or states_for:
                states_for |= link.states_later
                link.states_later = set()
                link.states_due = None
            if link.diffs:
                diffs = link.diffs
                link.diffs = {}
                messages.append(wire.encode(wire.DIFF, diffs, self._states(diffs)))
                states_for.difference_update(diffs)
            if link.updates:
                updates = link.updates
                link.updates = {}
                states_for.update(updates)
                want = self._eager or link.want_ack
                key = (
                    tuple((name, tuple(map(id, deltas))) for name, deltas in updates.items()),
                    frozenset(states_for),
                    want,
                )
                frames = shared.get(key)
                if frames is None:
                    message = wire.encode(wire.UPDATE, updates, self._states(states_for), want)
                    frames = shared[key] = wire.frames(
                        message, next(self._message_ids), self.config.max_frame_bytes
                    )
                ready.extend(frames)
                link.want_ack = False
            elif states_for:
                messages.append(wire.encode(wire.ACK, self._states(states_for), link.want_ack))
                link.want_ack = False
            link.states_now = set()
            if link.heartbeat and not messages and not ready:
                messages.append(wire.encode(wire.HEARTBEAT))
            link.heartbeat = False
            link.last_sent = self._now
            for message in messages:
                ready.extend(
                    wire.frames(message, next(self._message_ids), self.config.max_frame_bytes)
                )
            for frame in ready:
                out.append((link.peer, frame))
            self.stats["frames_out"] += len(ready)
            self.stats["bytes_out"] += sum(map(len, ready))
        return out

    def _states(self, names: Iterable[str]) -> dict[str, bytes]:
        stores = self._stores
        return {name: stores[name].state_vector() for name in names if name in stores}

    def _link_ids(self, link: _Link) -> list[str]:
        return [peer for peer in self._links if peer != link.peer]

    # -- status -------------------------------------------------------------------

    def is_synced(self) -> bool:
        """True when this peer and every linked peer hold the same state of every store.

        That is: each linked peer has acknowledged holding all of this peer's
        state, and this peer holds everything each of them reported holding.
        """
        return not self.unsynced_peers(first_only=True)

    def unsynced_peers(self, *, first_only: bool = False) -> list[str]:
        """Linked peers whose acknowledged state differs from this peer's."""
        out = []
        for peer, link in self._links.items():
            if not link.synced_once or not self._link_synced(link):
                out.append(peer)
                if first_only:
                    break
        return out

    def _link_synced(self, link: _Link) -> bool:
        remote_states = self._settle(link)
        if len(remote_states) < len(self._stores):
            return False
        stores = self._stores
        for name, remote in remote_states.items():
            local = stores[name].state_vector_dict()
            if not sv.covers(remote, local) or not sv.covers(local, remote):
                return False
        return True

    def has_output(self) -> bool:
        """Whether ``data_to_send()`` has something to send now."""
        return bool(self._local_out) or any(link.pending() for link in self._links.values())

    def pending_bytes(self) -> int:
        """Bytes of local deltas queued for the next flush (for backpressure)."""
        return self._pending_bytes


_MERGE_CHUNK = 256  # pycrdt's merge slows down on very long lists of updates


def _merge(deltas: list[bytes]) -> list[bytes]:
    if len(deltas) == 1:
        return deltas
    return [
        merge_updates(*deltas[i : i + _MERGE_CHUNK]) if len(deltas) - i > 1 else deltas[i]
        for i in range(0, len(deltas), _MERGE_CHUNK)
    ]


def _stuck(local_then: sv.StateVector, remote_then: sv.StateVector, remote: sv.StateVector) -> bool:
    """Did some writer's content we held at the last check fail to advance at the peer?"""
    return any(
        clock > remote_then.get(client, 0) and remote.get(client, 0) == remote_then.get(client, 0)
        for client, clock in local_then.items()
    )
