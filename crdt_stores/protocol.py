"""The peer-to-peer sync state machine: bytes in, bytes out, no I/O.

One ``SyncEngine`` per meeting participant holds every store replica and the
state of every link to another peer. The transport feeds it ``link_up``,
``link_down`` and ``receive``; a clock feeds it ``tick``; it hands back frames
through ``data_to_send`` and reports misbehaving peers through ``take_events``.
The same object runs over the in-memory network and over WebRTC.

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
* Every message is bounded (``max_message_bytes``, ``max_message_items``): big
  syncs and big batches travel as several messages, each applied on arrival.

Hostile input (SPEC §9): every frame is decoded strictly and bounded before use,
every Yjs update is checked against the store layout before pycrdt sees it
(``updates``), and memory a link can make this peer hold is charged to budgets.
Input a correct peer never sends counts against the link's ``violation_budget``;
past it the link is closed and a ``PeerMisbehaved`` event reports it.
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any

from pycrdt import merge_updates

from . import _statevector as sv
from . import updates, wire
from .budget import Budget
from .entries import entry_limit
from .replica import StoreReplica, UpdateError
from .values import DEFAULT_MAX_VALUE_BYTES, check_key

__all__ = ["PeerMisbehaved", "SyncConfig", "SyncEngine"]

log = logging.getLogger("crdt_stores")

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True)
class SyncConfig:
    """Timing (seconds) and limits (bytes, counts) of the sync protocol.

    The limits are the budgets of the threat model (README, "What a peer can and
    cannot do to you"); every peer of a room should use the same ones, since an
    entry over a peer's ``max_value_bytes`` is refused by that peer.
    """

    heartbeat_interval: float = 1.0
    dead_after: float = 6.0
    sync_interval: float = 1.0
    ack_delay: float = 0.25
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES
    """One written value, CBOR-encoded (1 MiB, the SPEC's default)."""
    max_frame_bytes: int = wire.MAX_FRAME_BYTES
    """One data-channel frame (64 KiB); bigger messages are chunked."""
    max_message_bytes: int = 4 * MiB
    """One message, reassembled or inflated: a 1 MiB sync part plus one value at the
    1 MiB limit, with room to spare. Bigger syncs and batches are split."""
    max_message_items: int = 16_384
    """Yjs structs, entries, delete ranges and state-vector entries in one message: the
    work one message causes (applying an entry costs about 6 µs here, so at most
    about 0.1 s per message, and the peer keeps answering its other links)."""
    max_link_buffer_bytes: int = 8 * MiB
    """Partial (chunked) messages one link may have this peer hold: two messages."""
    max_buffer_bytes: int = 64 * MiB
    """Partial messages of all links together."""
    max_held_bytes: int = 16 * MiB
    """Parts of updates waiting for a writer's earlier structs (out-of-order delivery),
    all stores together; past it they are dropped and anti-entropy resends them."""
    max_stores: int = 1_000
    """Stores in a meeting; store names from peers past it are refused (each empty store
    costs about 8 KB and a share of every sync and tick)."""
    violation_budget: int = 16
    """Invalid frames or updates a link may send before it is closed."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            kind = float if f.type == "float" else int
            if type(value) is not kind and not (kind is float and type(value) is int):
                raise TypeError(f"{f.name} must be {kind.__name__}, not {type(value).__name__}")
            if value <= 0:
                raise ValueError(f"{f.name} must be positive")
        if self.dead_after <= self.heartbeat_interval:
            raise ValueError("dead_after must be longer than heartbeat_interval")
        if self.max_frame_bytes < 1024:
            raise ValueError("max_frame_bytes must be at least 1024")
        if self.max_message_bytes < entry_limit(self.max_value_bytes) + 64 * KiB:
            raise ValueError("max_message_bytes must hold a value of max_value_bytes and more")
        if self.max_link_buffer_bytes < self.max_message_bytes:
            raise ValueError("max_link_buffer_bytes must hold at least one message")
        if self.max_buffer_bytes < self.max_link_buffer_bytes:
            raise ValueError("max_buffer_bytes must hold at least one link's buffer")
        if self.max_message_items < 1024:
            raise ValueError("max_message_items must be at least 1024")

    @property
    def part_bytes(self) -> int:
        """Size a sync or a batch is cut into (a quarter of a message, at most 1 MiB)."""
        return min(MiB, self.max_message_bytes // 4)

    @property
    def part_items(self) -> int:
        """Items a message carries as updates: half the limit (the state vectors sent
        with them take at most another quarter)."""
        return self.max_message_items // 2


@dataclass(frozen=True, slots=True)
class PeerMisbehaved:
    """A link kept sending what no correct peer sends; it has been closed."""

    peer: str
    reason: str  # the last violation: malformed, bad_update, oversize, too_many_items...
    violations: int


# Reasons a frame or update is dropped that a correct peer never causes: they count
# against the link's violation budget. (``unknown_kind`` is a newer peer, not a fault.)
VIOLATIONS = frozenset(
    {
        "malformed",
        "unsupported_version",
        "oversize",
        "over_budget",
        "too_many_items",
        "bad_update",
        "malformed_state",
        "bad_store_name",
    }
)

_UNKNOWN_KEEP = 64  # clients a peer reports that we do not know, kept per store
_SV_ENTRIES_PER_ITEM = 8  # a state-vector entry costs an eighth of an entry to decode


@dataclass(eq=False)
class _Link:
    peer: str
    opened: float
    last_recv: float  # a frame arrived
    last_sent: float
    reassembler: wire.Reassembler
    remote_states: dict[str, sv.StateVector] = field(default_factory=dict)
    # the last state vector reported per store, decoded only when someone looks (most
    # never are; a peer's state only grows, so the last report says it all)
    unread_states: dict[str, bytes] = field(default_factory=dict)
    remote_digests: dict[str, bytes] = field(default_factory=dict)  # of their deletions
    remote_links: set[str] | None = None
    synced_once: bool = False  # the peer's SYNC (its full state) has arrived
    sync_seen: set[str] = field(default_factory=set)  # stores named by a multi-part SYNC
    violations: int = 0
    # the peer's network stack was heard (datagrams below the frames, per the transport):
    # under loss, frames wait behind retransmissions while the peer is alive and well
    last_alive: float = 0.0
    backlog: int = 0  # bytes for the peer the transport still holds (not yet sent)
    # what goes out at the next flush
    hello: bool = True
    sync: bool = True
    announce_links: bool = False
    diffs: dict[str, bytes] = field(default_factory=dict)
    updates: dict[str, list[tuple[bytes, int]]] = field(default_factory=dict)  # (delta, items)
    states_now: set[str] = field(default_factory=set)
    states_later: set[str] = field(default_factory=set)
    states_due: float | None = None
    want_ack: bool = False  # ask the peer to acknowledge right away
    # our state of each store when we last sent this peer a diff of all it lacked
    diffed: dict[str, sv.StateVector] = field(default_factory=dict)
    heartbeat: bool = False
    # anti-entropy, per store: (our state and theirs at the last check, repairs in a row)
    suspect: dict[str, tuple[sv.StateVector, sv.StateVector, int]] = field(default_factory=dict)
    # per store: (our digest when theirs was seen to differ, repairs in a row)
    digest_suspect: dict[str, tuple[bytes, int]] = field(default_factory=dict)

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
        self._events: list[PeerMisbehaved] = []
        self._now = 0.0
        self._next_sync_check = 0.0
        self._message_ids = itertools.count()
        self._eager = False
        # local deltas of this tick, per store, each with a bound on its Yjs items
        self._local_out: dict[str, list[tuple[bytes, int]]] = {}
        self.last_batch = 0  # how many local deltas the last data_to_send() carried
        self._pending_bytes = 0
        self._split_cache: dict[int, tuple[bytes, list[tuple[bytes, int]]]] = {}  # one flush
        self._buffers = Budget(self.config.max_buffer_bytes)  # partial messages, all links
        self._held = Budget(self.config.max_held_bytes)  # out-of-order update parts

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
            if len(self._stores) >= self.config.max_stores:
                raise ValueError(f"a meeting holds at most {self.config.max_stores} stores")
            replica = self._add_store(name)
            for link in self._links.values():
                link.states_now.add(name)
        return replica

    def _add_store(self, name: str) -> StoreReplica:
        replica = StoreReplica(
            name,
            max_value_bytes=self.config.max_value_bytes,
            max_update_items=self.config.max_message_items,
            held=self._held,
        )
        self._stores[name] = replica
        if self.on_store_added is not None:
            self.on_store_added(replica)
        return replica

    def _remote_store(self, link: _Link, name: str) -> StoreReplica | None:
        replica = self._stores.get(name)
        if replica is None:
            try:
                name = check_key(name, "store name")
            except (TypeError, ValueError):
                self._violation(link, "bad_store_name")
                return None
            if len(self._stores) >= self.config.max_stores:
                self.stats["stores_refused"] += 1
                return None
            replica = self._add_store(name)
            # Tell the other links too: store existence spreads like content.
            for other in self._links.values():
                self._ack(other, name)
        return replica

    def commit(self, name: str) -> None:
        """Queue the local deltas of store ``name`` for every link."""
        deltas = self._stores[name].take_outbox_items()
        if deltas:
            self._local_out.setdefault(name, []).extend(deltas)
            self._pending_bytes += sum(len(d) for d, _ in deltas)

    # -- links --------------------------------------------------------------------

    @property
    def peers(self) -> list[str]:
        return list(self._links)

    def link_up(self, peer: str, now: float) -> None:
        """A data channel to ``peer`` opened (a reconnect is just a new link)."""
        self._now = now
        self._drop(peer)
        config = self.config
        self._links[peer] = _Link(
            peer,
            opened=now,
            last_recv=now,
            last_sent=now,
            reassembler=wire.Reassembler(
                config.max_message_bytes,
                config.max_link_buffer_bytes,
                self._buffers,
                config.max_frame_bytes,
            ),
        )
        self._announce_links(except_peer=peer)

    def link_down(self, peer: str) -> bool:
        """The link to ``peer`` closed; returns False if there was none."""
        if not self._drop(peer):
            return False
        self._announce_links()
        return True

    def _drop(self, peer: str) -> bool:
        link = self._links.pop(peer, None)
        if link is None:
            return False
        link.reassembler.clear()  # its partial messages' memory goes back to the budget
        return True

    def heard(self, peer: str, when: float) -> None:
        """The transport heard from ``peer`` at ``when`` (a sign of life, not a frame).

        A link is declared dead only after ``dead_after`` with neither frames nor
        such signs: lost packets delay frames but do not silence a live peer.
        """
        link = self._links.get(peer)
        if link is not None and when > link.last_alive:
            link.last_alive = when

    def backlog(self, peer: str, nbytes: int) -> None:
        """The transport still holds ``nbytes`` for ``peer``. The channel is reliable:
        while it holds anything, a gap at the peer is a queue, not a loss, and
        anti-entropy does not pile duplicates onto it (under 40% loss it had sent
        25-45 repair diffs per burst, to no gain in convergence time)."""
        link = self._links.get(peer)
        if link is not None:
            link.backlog = nbytes

    def _announce_links(self, except_peer: str | None = None) -> None:
        for link in self._links.values():
            if link.peer != except_peer:
                link.announce_links = True

    def take_events(self) -> list[PeerMisbehaved]:
        """Events since the last call (links closed for misbehaving)."""
        events = self._events
        self._events = []
        return events

    def _violation(self, link: _Link, reason: str) -> None:
        """Count a dropped input; a link past its budget of violations is closed."""
        self.stats[reason] += 1
        if reason not in VIOLATIONS or self._links.get(link.peer) is not link:
            return
        self.stats["violations"] += 1
        link.violations += 1
        if link.violations > self.config.violation_budget:
            log.warning(
                "closing the link to %s: %d invalid inputs (last: %s)",
                link.peer,
                link.violations,
                reason,
            )
            self.stats["links_closed_misbehaving"] += 1
            self.link_down(link.peer)
            self._events.append(PeerMisbehaved(link.peer, reason, link.violations))

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
                assert message.chunk is not None
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
            log.debug("dropped frame from %s: %s", peer, exc)
            self._violation(link, exc.reason)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException:  # a bug here must not take the peer down
            self.stats["handler_error"] += 1
            log.exception("error handling a frame from %s", peer)

    def _handle(self, link: _Link, message: wire.Message) -> None:
        kind = message.kind
        if kind in wire.KIND_NAMES:  # counters never grow with what a peer invents
            self.stats[f"in:{wire.KIND_NAMES[kind]}"] += 1
        items = self._check_items(message)
        if kind == wire.HELLO or kind == wire.LINKS:
            link.remote_links = set(message.links or ())
        elif kind == wire.SYNC:
            self._handle_sync(link, message)
        elif kind == wire.ACK:
            self._learn_states(link, message.states or {}, message.digests)
            if message.want_ack:
                link.states_now.update(self._stores)
        elif kind == wire.DIFF:
            assert message.diffs is not None
            self._apply(link, {name: [diff] for name, diff in message.diffs.items()}, items)
            self._learn_states(link, message.states or {}, message.digests)
            # Always answer a diff, even a useless one: the sender is waiting on our
            # state, and a lost ack would otherwise make it resend forever.
            link.states_now.update(name for name in message.diffs if name in self._stores)
        elif kind == wire.UPDATE:
            assert message.updates is not None
            self._apply(link, message.updates, items)
            self._learn_states(link, message.states or {}, message.digests)
            if message.want_ack:
                link.states_now.update(name for name in message.updates if name in self._stores)
        elif kind == wire.HEARTBEAT:
            pass
        else:
            self.stats["unknown_kind"] += 1

    def _check_items(self, message: wire.Message) -> int:
        """Items of the state vectors a message carries; refused past ``max_message_items``.

        (Its updates are counted as they are read, against what is left.)
        """
        entries = 0
        for encoded in (message.states or {}).values():
            try:
                entries += sv.count(encoded)
            except ValueError:
                raise wire.ProtocolError("malformed_state", "malformed state vector") from None
        items = entries // _SV_ENTRIES_PER_ITEM
        if items > self.config.max_message_items:
            raise wire.ProtocolError("too_many_items", "state vectors too large")
        return items

    def _handle_sync(self, link: _Link, message: wire.Message) -> None:
        """A SYNC (or one part of it): send the diffs of what the peer lacks."""
        if message.want_sync:
            link.sync = True
        states_in = message.states or {}
        self._learn_states(link, states_in, message.digests)
        named = set(states_in)
        if message.more:  # more parts follow: stores not named yet may come in them
            link.sync_seen |= named
        else:
            link.synced_once = True
            unnamed = set(self._stores) - named - link.sync_seen
            named |= unnamed  # not named in any part: the peer lacks them entirely
            link.sync_seen = set()
        states = self._settle(link)
        for name in named:
            replica = self._stores.get(name)
            if replica is None:
                continue
            local = replica.state_vector_dict()
            if name in states and sv.covers(states[name], local):
                continue
            if name in link.diffed and sv.covers(link.diffed[name], local):
                continue  # SYNCs crossed: everything it lacks is already on its way
            link.diffs[name] = replica.diff(sv.encode(states.get(name, {})))
            link.diffed[name] = dict(local)

    def _learn_states(
        self, link: _Link, states: dict[str, bytes], digests: dict[str, bytes] | None = None
    ) -> None:
        """Note the peer's reported state vectors (decoded later, by ``_settle``) and the
        digests of its deletions (reported with them)."""
        for name, encoded in states.items():
            if self._remote_store(link, name) is not None:
                link.unread_states[name] = encoded
                if digests is not None and name in digests:
                    link.remote_digests[name] = digests[name]
                else:  # (UPDATEs carry none: digests cost too much per batch)
                    link.remote_digests.pop(name, None)

    def _settle(self, link: _Link) -> dict[str, sv.StateVector]:
        """Decode the reports received since the last look; returns what the peer holds.

        Only clients this peer knows are kept, and a few it does not (enough to tell
        that the peer holds something we lack): a link's memory follows our data,
        not the size of what it reports.
        """
        unread = link.unread_states
        if unread:
            link.unread_states = {}
            remote_states = link.remote_states
            for name, encoded in unread.items():
                replica = self._stores.get(name)
                if replica is None:
                    continue
                try:
                    vector = sv.decode(
                        encoded, self.config.max_message_items * _SV_ENTRIES_PER_ITEM
                    )
                except ValueError:
                    self._violation(link, "malformed_state")
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
        return link.remote_states

    def _apply(self, source: _Link, incoming: dict[str, list[bytes]], used: int) -> None:
        """Read every update of a message, then apply them: a message over the item
        budget is refused whole, an invalid update alone."""
        budget = self.config.max_message_items - used
        checked: list[tuple[str, StoreReplica, list[updates.Update]]] = []
        for name, deltas in incoming.items():
            replica = self._remote_store(source, name)
            if replica is None:
                continue
            reads: list[updates.Update] = []
            for delta in deltas:
                try:
                    read = updates.read(
                        delta,
                        max_units=budget,
                        max_value_bytes=self.config.max_value_bytes,
                        have=replica.state_vector_dict(),
                    )
                except updates.InvalidUpdate as exc:
                    log.debug("dropped an update for %r from %s: %s", name, source.peer, exc)
                    self._violation(source, exc.reason)
                    if exc.reason == "too_many_items":
                        return
                    continue
                budget -= read.units
                reads.append(read)
            checked.append((name, replica, reads))
        for name, replica, reads in checked:
            fresh: list[tuple[bytes, int]] = []
            for read in reads:
                try:
                    fresh.extend(replica.apply_items(read))
                except UpdateError as exc:
                    self._violation(source, "bad_update")
                    log.warning("dropped a bad update for %r from %s: %s", name, source.peer, exc)
                if replica.held_dropped:
                    self.stats["held_dropped"] += replica.held_dropped
                    replica.held_dropped = 0
            # Ack even what was known already: the sender may be waiting on our state.
            self._ack(source, name)
            if not fresh:
                continue
            self.stats["updates_applied"] += len(fresh)
            for link in self._links.values():
                if link is source:
                    continue
                # Relay what this peer applied (never the raw input, never parts it holds).
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
            if now - max(link.last_recv, link.last_alive) > config.dead_after:
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
            if link.backlog:
                continue  # still sending: what the peer lacks may be in the queue
            for name, replica in self._stores.items():
                local = replica.state_vector_dict()
                remote = self._settle(link).get(name)
                if remote is not None and sv.covers(remote, local):
                    link.suspect.pop(name, None)
                    if sv.covers(local, remote):
                        self._check_deletions(link, name, replica, remote)
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

    def _check_deletions(
        self, link: _Link, name: str, replica: StoreReplica, remote: sv.StateVector
    ) -> None:
        """Same state vectors: repair if the deletions differ (a diff carries all of ours).

        A first mismatch asks the peer for its digest now; one that persists with
        our digest unchanged is repaired, with backoff like other repairs.
        """
        ours = replica.delete_digest()
        theirs = link.remote_digests.get(name)
        if theirs is None or theirs == ours:
            link.digest_suspect.pop(name, None)
            return
        seen, repairs = link.digest_suspect.get(name, (b"", 0))
        if seen != ours:
            link.digest_suspect[name] = (ours, 0)
            link.states_now.add(name)
            link.want_ack = True
            return
        repairs += 1
        link.digest_suspect[name] = (ours, repairs)
        if repairs & (repairs - 1) == 0:
            self.stats["deletion_repairs"] += 1
            link.diffs[name] = replica.diff(sv.encode(remote))
            link.want_ack = True

    # -- output -------------------------------------------------------------------

    def data_to_send(self, now: float | None = None) -> list[tuple[str, bytes]]:
        """Frames to send now, coalesced: a few bounded messages per link."""
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
                merged = _merge(deltas, self.config.part_bytes, self.config.part_items)
                for link in self._links.values():
                    link.updates.setdefault(name, []).extend(merged)
        out: list[tuple[str, bytes]] = []
        # The same UPDATE usually goes to every link: encode (and compress) it once.
        shared: dict[tuple[Any, ...], list[bytes]] = {}
        self._split_cache = {}
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
                groups = list(self._state_groups(self._stores)) or [[]]
                for i, names in enumerate(groups):
                    more = i + 1 < len(groups)
                    messages.append(
                        wire.encode(
                            wire.SYNC,
                            self._states(names),
                            not link.synced_once,
                            more,
                            self._digests(names),
                        )
                    )
                link.sync = False
            states_for = link.states_now
            if link.diffs or link.updates or states_for:
                states_for |= link.states_later
                link.states_later = set()
                link.states_due = None
            if link.diffs:
                diffs = link.diffs
                link.diffs = {}
                for part in self._diff_messages(diffs):
                    messages.append(
                        wire.encode(wire.DIFF, part, self._states(part), self._digests(part))
                    )
                states_for.difference_update(diffs)
            want = self._eager or link.want_ack
            if link.updates:
                batch = link.updates
                link.updates = {}
                states_for.update(batch)
                for group in self._update_messages(batch):
                    attached = states_for.intersection(group)
                    key = (
                        tuple((name, tuple(map(id, deltas))) for name, deltas in group.items()),
                        frozenset(attached),
                        want,
                    )
                    frames = shared.get(key)
                    if frames is None:
                        message = wire.encode(wire.UPDATE, group, self._states(attached), want)
                        frames = shared[key] = wire.frames(
                            message, next(self._message_ids), self.config.max_frame_bytes
                        )
                    ready.extend(frames)
                    states_for.difference_update(attached)
                link.want_ack = False
            if states_for:
                for names in self._state_groups(states_for):
                    messages.append(
                        wire.encode(
                            wire.ACK, self._states(names), link.want_ack, self._digests(names)
                        )
                    )
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
        self._split_cache = {}
        return out

    def _states(self, names: Iterable[str]) -> dict[str, bytes]:
        stores = self._stores
        return {name: stores[name].state_vector() for name in names if name in stores}

    def _digests(self, names: Iterable[str]) -> dict[str, bytes]:
        stores = self._stores
        return {name: stores[name].delete_digest() for name in names if name in stores}

    def _state_groups(self, names: Iterable[str]) -> Iterator[list[str]]:
        """Store names in groups whose state vectors fit in one message."""
        group: list[str] = []
        items = 0
        size = 0
        for name in names:
            replica = self._stores.get(name)
            if replica is None:
                continue
            encoded = replica.state_vector()
            count = len(replica.state_vector_dict())
            if group and (
                items + count > self.config.max_message_items * _SV_ENTRIES_PER_ITEM // 4
                or size + len(encoded) + len(name) > self.config.part_bytes
            ):
                yield group
                group, items, size = [], 0, 0
            group.append(name)
            items += count
            size += len(encoded) + len(name)
        if group:
            yield group

    def _parts(self, update: bytes, items: int) -> list[tuple[bytes, int]]:
        """``update`` (of at most ``items`` Yjs items) as is if it fits in a message part,
        else cut into parts; each with a bound on its items."""
        config = self.config
        if len(update) <= config.part_bytes and items <= config.part_items:
            return [(update, items)]
        cached = self._split_cache.get(id(update))
        if cached is not None and cached[0] is update:
            return cached[1]
        read = updates.read(
            update,
            max_units=1 << 62,
            max_value_bytes=config.max_value_bytes,
            check_entries=False,
            keep_structs=True,
        )
        if len(update) <= config.part_bytes and read.units <= config.part_items:
            parts = [(update, read.units)]
        else:
            pieces = updates.split(read, config.part_bytes, config.part_items)
            parts = [(piece, config.part_items) for piece in pieces]
        self._split_cache[id(update)] = (update, parts)
        return parts

    def _diff_messages(self, diffs: dict[str, bytes]) -> Iterator[dict[str, bytes]]:
        """DIFF bodies: one update per store per message, each message within a part."""
        pending = {name: self._parts(diff, len(diff) // 2 + 1) for name, diff in diffs.items()}
        while pending:
            body: dict[str, bytes] = {}
            size = 0
            for name in list(pending):
                parts = pending[name]
                if body and size + len(parts[0]) > self.config.part_bytes:
                    continue
                body[name] = parts.pop(0)[0]
                size += len(body[name])
                if not parts:
                    del pending[name]
            yield body

    def _update_messages(
        self, batch: dict[str, list[tuple[bytes, int]]]
    ) -> Iterator[dict[str, list[bytes]]]:
        """UPDATE bodies: the deltas of a batch, in order, within a part per message."""
        config = self.config
        group: dict[str, list[bytes]] = {}
        size = 0
        items = 0
        for name, deltas in batch.items():
            for delta, bound in deltas:
                for part, cost in self._parts(delta, bound):
                    if group and (
                        size + len(part) > config.part_bytes or items + cost > config.part_items
                    ):
                        yield group
                        group, size, items = {}, 0, 0
                    group.setdefault(name, []).append(part)
                    size += len(part)
                    items += cost
        if group:
            yield group

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
        digests = link.remote_digests
        for name, remote in remote_states.items():
            replica = stores[name]
            local = replica.state_vector_dict()
            if not sv.covers(remote, local) or not sv.covers(local, remote):
                return False
            if name in digests and digests[name] != replica.delete_digest():
                return False
        return True

    def has_output(self) -> bool:
        """Whether ``data_to_send()`` has something to send now."""
        return bool(self._local_out) or any(link.pending() for link in self._links.values())

    def pending_bytes(self) -> int:
        """Bytes of local deltas queued for the next flush (for backpressure)."""
        return self._pending_bytes


_MERGE_CHUNK = 256  # pycrdt's merge slows down on very long lists of updates


def _merge(
    deltas: list[tuple[bytes, int]], max_bytes: int, max_items: int
) -> list[tuple[bytes, int]]:
    """Merge consecutive deltas into as few as possible, each of at most ``max_bytes``,
    ``max_items`` items (unless one alone is bigger) and ``_MERGE_CHUNK`` deltas."""
    if len(deltas) == 1:
        return deltas
    out: list[tuple[bytes, int]] = []
    run: list[bytes] = []
    size = 0
    items = 0
    for delta, bound in deltas:
        if run and (
            size + len(delta) > max_bytes or items + bound > max_items or len(run) >= _MERGE_CHUNK
        ):
            out.append((merge_updates(*run) if len(run) > 1 else run[0], items))
            run, size, items = [], 0, 0
        run.append(delta)
        size += len(delta)
        items += bound
    out.append((merge_updates(*run) if len(run) > 1 else run[0], items))
    return out


def _stuck(local_then: sv.StateVector, remote_then: sv.StateVector, remote: sv.StateVector) -> bool:
    """Did some writer's content we held at the last check fail to advance at the peer?"""
    return any(
        clock > remote_then.get(client, 0) and remote.get(client, 0) == remote_then.get(client, 0)
        for client, clock in local_then.items()
    )
