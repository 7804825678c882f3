"""The peer-to-peer sync state machine: bytes in, bytes out, no I/O.

One ``SyncEngine`` per meeting participant holds every store replica and the
state of every link to another peer. The driver feeds it ``link_up``,
``link_down``, ``receive`` and local ``write``s; it calls ``tick`` at
``next_deadline()``; it hands back frames through ``data_to_send`` and reports
what happened (stores added or changed, links dead or closed for misbehaving)
as typed events through ``take_events``, never by calling back. Time is always
an argument (``now``). The same object runs over the in-memory network and over
WebRTC.

The replication rules (handshake, live updates, lazy acks, relay, anti-entropy,
deletion digests, bounded messages) are specified in PROTOCOL.md §6.

Hostile input (SPEC §9): every frame is decoded strictly and bounded before use,
every Yjs update is checked against the store layout before pycrdt sees it
(``updates``), and memory a link can make this peer hold is charged to budgets.
Input a correct peer never sends counts against the link's ``violation_budget``;
past it the link is closed and a ``PeerMisbehaved`` event reports it.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from . import _statevector as sv
from . import updates, wire
from .budget import Budget
from .config import VIOLATIONS, SyncConfig
from .events import EngineEvent, LinkDead, PeerMisbehaved
from .link import Link, Phase
from .messages import (
    SV_ENTRIES_PER_ITEM,
    Ack,
    Diff,
    Heartbeat,
    Hello,
    Links,
    Message,
    ProtocolError,
    Sync,
    Update,
    state_items,
)
from .outbox import Outbox
from .repair import answer_sync, anti_entropy, link_agrees
from .replica import StoreReplica, UpdateError
from .replicas import WRITE_OPERATIONS, Replicas

__all__ = ["WRITE_OPERATIONS", "PeerMisbehaved", "SyncConfig", "SyncEngine"]

log = logging.getLogger("crdt_stores")


class SyncEngine:
    """Replicates a set of named stores with every linked peer."""

    def __init__(self, peer_id: str, config: SyncConfig | None = None) -> None:
        self.peer_id = peer_id
        self.config = config or SyncConfig()
        self.stats: Counter[str] = Counter()
        self._links: dict[str, Link] = {}
        self._events: list[EngineEvent] = []
        self._stores = Replicas(self.config, self._events, self.stats)
        self._now = 0.0
        self._next_sync_check = 0.0
        self._eager = False
        self._soonest: float | None = None  # earliest due time set since next_deadline()
        self._outbox = Outbox(self.config, self._stores, self.stats)
        self._buffers = Budget(self.config.max_buffer_bytes)  # partial messages, all links

    # -- stores -------------------------------------------------------------------

    def store(self, name: str) -> StoreReplica | None:
        return self._stores.get(name)

    @property
    def stores(self) -> dict[str, StoreReplica]:
        return self._stores

    def create_store(self, name: str) -> StoreReplica:
        """Get or create a store; a new one is announced to every linked peer."""
        replica, new = self._stores.create(name)
        if new:
            for link in self._links.values():
                link.out.states_now.add(name)
        return replica

    def _remote_store(self, link: Link, name: str) -> StoreReplica | None:
        """Store ``name`` as ``link``'s peer names it (created here if new and allowed)."""
        replica = self._stores.get(name)
        if replica is not None:
            return replica
        try:
            replica = self._stores.add_named_by_peer(name)
        except ValueError:
            self._violation(link, "bad_store_name")
            return None
        if replica is not None:  # tell the other links too: store existence spreads
            for other in self._links.values():
                self._ack(other, name)
        return replica

    def write(self, name: str, operation: str, *args: Any) -> None:
        """A local write to store ``name``: ``operation`` is one of ``WRITE_OPERATIONS``
        with that method's arguments. Bad input raises and changes nothing; the delta
        is queued for every link and the change reported as a ``StoreChanged`` event."""
        self._commit(self._stores.write(name, operation, args))

    def commit(self, name: str) -> None:
        """Queue the local deltas of store ``name`` for every link (and report its changes)."""
        self._commit(self._stores[name])

    def _commit(self, replica: StoreReplica) -> None:
        if replica.changes:  # (no call when nothing changed)
            self._stores.collect(replica)
        deltas = replica.take_outbox_items()
        if deltas:
            self._outbox.queue(replica.name, deltas)

    # -- links --------------------------------------------------------------------

    @property
    def peers(self) -> list[str]:
        return list(self._links)

    def link_degrees(self) -> dict[str, int]:
        """How many links each linked peer reported having (0 before its HELLO)."""
        return {peer: len(link.remote_links or ()) for peer, link in self._links.items()}

    def link_up(self, peer: str, now: float) -> None:
        """A data channel to ``peer`` opened (a reconnect is just a new link)."""
        self._now = now
        self._drop(peer)
        config = self.config
        self._links[peer] = Link(
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
        due = now + config.heartbeat_interval
        if self._soonest is None or due < self._soonest:
            self._soonest = due

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
                link.out.announce_links = True

    def take_events(self) -> list[EngineEvent]:
        """What happened since the last call, in order: stores added and changed, links
        found dead or closed for misbehaving."""
        events = self._events
        if not events:
            return []
        taken = events[:]
        events.clear()  # (in place: the replicas report into the same list)
        return taken

    def _violation(self, link: Link, reason: str) -> None:
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
            message = link.reassembler.complete(frame)
            if message is not None:
                self._handle(link, message)
        except ProtocolError as exc:
            log.debug("dropped frame from %s: %s", peer, exc)
            self._violation(link, exc.reason)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException:  # a bug here must not take the peer down
            self.stats["handler_error"] += 1
            log.exception("error handling a frame from %s", peer)

    def _handle(self, link: Link, message: Message) -> None:
        kind = message.kind
        if kind in wire.KIND_NAMES:  # counters never grow with what a peer invents
            self.stats[f"in:{wire.KIND_NAMES[kind]}"] += 1
        match message:
            case Hello(links=links) | Links(links=links):
                link.remote_links = set(links)
            case Sync():
                self._check_items(message.states)
                self._handle_sync(link, message)
            case Ack():
                self._check_items(message.states)
                self._learn_states(link, message.states, message.digests)
                if message.want_ack:
                    link.out.states_now.update(self._stores)
            case Diff():
                items = self._check_items(message.states)
                self._apply(link, {name: [diff] for name, diff in message.diffs.items()}, items)
                self._learn_states(link, message.states, message.digests)
                # Always answer a diff, even a useless one: the sender is waiting on our
                # state, and a lost ack would otherwise make it resend forever.
                link.out.states_now.update(name for name in message.diffs if name in self._stores)
            case Update():
                items = self._check_items(message.states)
                self._apply(link, message.updates, items)
                self._learn_states(link, message.states, None)  # (UPDATEs carry no digests)
                if message.want_ack:
                    link.out.states_now.update(n for n in message.updates if n in self._stores)
            case Heartbeat():
                pass
            case _:
                self.stats["unknown_kind"] += 1

    def _check_items(self, states: dict[str, bytes]) -> int:
        """Items of the state vectors a message carries; refused past ``max_message_items``.
        (Its updates are counted as they are read, against what is left.)"""
        items = state_items(states)
        if items > self.config.max_message_items:
            raise ProtocolError("too_many_items", "state vectors too large")
        return items

    def _handle_sync(self, link: Link, message: Sync) -> None:
        """A SYNC (or one part of it): send the diffs of what the peer lacks."""
        if message.want_sync:
            link.out.sync = True
        states_in = message.states
        self._learn_states(link, states_in, message.digests)
        named = set(states_in)
        if message.more:  # more parts follow: stores not named yet may come in them
            link.sync_seen |= named
        else:
            link.phase = Phase.LIVE
            unnamed = set(self._stores) - named - link.sync_seen
            named |= unnamed  # not named in any part: the peer lacks them entirely
            link.sync_seen = set()
        answer_sync(link, named, self._stores, self._settle(link))

    def _learn_states(
        self, link: Link, states: dict[str, bytes], digests: dict[str, bytes] | None = None
    ) -> None:
        """Note the peer's reported state vectors and deletion digests (stores it names
        exist here from now on)."""
        for name, encoded in states.items():
            if self._remote_store(link, name) is not None:
                link.learn(name, encoded, digests)

    def _settle(self, link: Link) -> dict[str, sv.StateVector]:
        """What ``link``'s peer holds per store, the reports received since the last look
        decoded (lazily: most are never looked at, and the last one says it all)."""
        max_entries = self.config.max_message_items * SV_ENTRIES_PER_ITEM
        for _ in range(link.settle(self._stores, max_entries)):
            self._violation(link, "malformed_state")
        return link.remote_states

    def _apply(self, source: Link, incoming: dict[str, list[bytes]], used: int) -> None:
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
                self._stores.collect(replica)
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
                    link.out.updates.setdefault(name, []).extend(fresh)
                else:
                    self._ack(link, name)
            self.commit(name)  # compaction deltas, if this replica made any

    def _ack(self, link: Link, name: str) -> None:
        """Tell ``link`` our state of ``name``: now if someone awaits synced(), else soon."""
        if self._eager:
            link.out.states_now.add(name)
            return
        due = link.out.ack_later(name, self._now + self.config.ack_delay)
        if due is not None and (self._soonest is None or due < self._soonest):
            self._soonest = due

    def want_acks(self, eager: bool) -> None:
        """Someone awaits ``synced()`` (or stopped): ask linked peers for their state."""
        if eager and not self._eager:
            for link in self._links.values():
                link.out.promote_acks().update(self._stores)
                link.out.want_ack = True
        self._eager = eager

    # -- timers -------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Heartbeats, dead-link detection, delayed acks and anti-entropy."""
        self._now = now
        config = self.config
        for link in list(self._links.values()):
            if link.dead(now, config.dead_after):
                self.stats["links_dead"] += 1
                self.link_down(link.peer)
                self._events.append(LinkDead(link.peer))
            else:
                link.tick(now, config.heartbeat_interval)
        if now >= self._next_sync_check:
            self._next_sync_check = now + config.sync_interval
            anti_entropy(self._links.values(), self._stores, self._settle, now, config, self.stats)

    def next_deadline(self) -> float | None:
        """When ``tick`` next has work: a heartbeat, a delayed ack, a link to declare
        dead, anti-entropy; None without links. (The driver sleeps until then.)"""
        self._soonest = None
        if not self._links:
            return None
        heartbeat, dead_after = self.config.heartbeat_interval, self.config.dead_after
        return min(
            self._next_sync_check,
            *(link.deadline(heartbeat, dead_after) for link in self._links.values()),
        )

    def deadline_moved(self, scheduled: float | None) -> bool:
        """Whether something since ``next_deadline()`` falls due before ``scheduled``
        (an ack delayed by a frame): a cheap check for after each frame."""
        soonest = self._soonest
        return soonest is not None and (scheduled is None or soonest < scheduled)

    # -- output -------------------------------------------------------------------

    def data_to_send(self, now: float) -> list[tuple[str, bytes]]:
        """Frames to send now, coalesced: a few bounded messages per link."""
        self._now = now
        return self._outbox.flush(self._links, self.peer_id, self._eager, now)

    @property
    def last_batch(self) -> int:
        """How many local deltas the last ``data_to_send()`` carried."""
        return self._outbox.last_batch

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
            if not link_agrees(link, self._stores, self._settle):
                out.append(peer)
                if first_only:
                    break
        return out

    def has_output(self) -> bool:
        """Whether ``data_to_send()`` has something to send now."""
        return self._outbox.has_local() or any(link.out.pending() for link in self._links.values())

    def pending_bytes(self) -> int:
        """Bytes of local deltas queued for the next flush (for backpressure)."""
        return self._outbox.pending_bytes
