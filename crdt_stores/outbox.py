"""What a sync engine sends: each link's pending output turned into bounded, coalesced frames.

Local deltas of a tick are merged once per store and go to every link; the same
UPDATE is encoded (and compressed) once for all links that get it; acks ride on
updates and diffs when they can; syncs, diffs and batches are cut into parts of
at most ``part_bytes`` and ``part_items`` so no message has to be large.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from pycrdt import merge_updates

from . import updates, wire
from .config import SyncConfig
from .link import Link, Outgoing, Phase
from .messages import SV_ENTRIES_PER_ITEM, Ack, Diff, Heartbeat, Hello, Links, Sync, Update
from .replica import StoreReplica
from .wire import encode_message

__all__ = ["Outbox"]

_MERGE_CHUNK = 256  # pycrdt's merge slows down on very long lists of updates

Frames = list[tuple[str, bytes]]


class Outbox:
    """The output side of one ``SyncEngine``: local deltas queued, frames built."""

    def __init__(
        self, config: SyncConfig, stores: dict[str, StoreReplica], stats: Counter[str]
    ) -> None:
        self.config = config
        self._stores = stores  # the engine's own dict: stores added later are seen
        self.stats = stats
        self._message_ids = itertools.count()
        # local deltas of this tick, per store, each with a bound on its Yjs items
        self._local: dict[str, list[tuple[bytes, int]]] = {}
        self.last_batch = 0  # how many local deltas the last flush carried
        self.pending_bytes = 0  # bytes of local deltas queued (for backpressure)
        self._split_cache: dict[int, tuple[bytes, list[tuple[bytes, int]]]] = {}  # one flush
        self._shared: dict[tuple[Any, ...], list[bytes]] = {}  # one flush

    def queue(self, name: str, deltas: list[tuple[bytes, int]]) -> None:
        """Local deltas of store ``name``, for every link at the next flush."""
        self._local.setdefault(name, []).extend(deltas)
        for delta, _ in deltas:  # (usually one: a loop costs less than sum() of a generator)
            self.pending_bytes += len(delta)

    def has_local(self) -> bool:
        return bool(self._local)

    def flush(self, links: dict[str, Link], peer_id: str, eager: bool, now: float) -> Frames:
        """Frames to send now, coalesced: a few bounded messages per link."""
        self.pending_bytes = 0
        self.last_batch = sum(len(deltas) for deltas in self._local.values())
        if self._local:
            # One merged delta per store and tick (merged once, sent on every link):
            # smaller on the wire and much cheaper to apply than many tiny ones.
            local, self._local = self._local, {}
            for name, deltas in local.items():
                replica = self._stores.get(name)
                squashed = replica.squash(deltas) if replica is not None else None
                merged = (
                    [squashed]
                    if squashed is not None
                    else _merge(deltas, self.config.part_bytes, self.config.part_items)
                )
                for link in links.values():
                    link.out.updates.setdefault(name, []).extend(merged)
        out: Frames = []
        self._split_cache = {}
        self._shared = {}
        for link in links.values():
            if not link.out.pending():
                continue
            ready = self._link_frames(link, links, peer_id, eager)
            link.last_sent = now
            out.extend((link.peer, frame) for frame in ready)
            self.stats["frames_out"] += len(ready)
            self.stats["bytes_out"] += sum(map(len, ready))
        self._split_cache = {}
        self._shared = {}
        return out

    def _link_frames(
        self, link: Link, links: dict[str, Link], peer_id: str, eager: bool
    ) -> list[bytes]:
        """Everything ``link`` has pending, as frames: its UPDATEs (shared with other
        links), then HELLO or LINKS, SYNC, DIFFs, ACKs, or else a HEARTBEAT if one is due."""
        out = link.out
        messages: list[bytes] = []
        others = (
            [peer for peer in links if peer != link.peer] if out.hello or out.announce_links else []
        )
        if out.hello:
            messages.append(encode_message(Hello(peer_id, others)))
            out.hello = out.announce_links = False
        if out.announce_links:
            messages.append(encode_message(Links(others)))
            out.announce_links = False
        if out.sync:
            messages.extend(self._sync_messages(link.phase is Phase.HANDSHAKE))
            out.sync = False
        states_for = out.states_now
        if out.diffs or out.updates or states_for:
            states_for = out.promote_acks()  # acks that could wait ride along now
        if out.diffs:
            diffs, out.diffs = out.diffs, {}
            for part in self._diff_messages(diffs):
                messages.append(encode_message(Diff(part, self._states(part), self._digests(part))))
            states_for.difference_update(diffs)
        frames: list[bytes] = []
        if out.updates:
            frames.extend(self._update_frames(out, states_for, eager or out.want_ack))
            out.want_ack = False
        if states_for:
            for names in self._state_groups(states_for):
                messages.append(
                    encode_message(Ack(self._states(names), out.want_ack, self._digests(names)))
                )
            out.want_ack = False
        out.states_now = set()
        if out.heartbeat and not messages and not frames:
            messages.append(encode_message(Heartbeat()))
        out.heartbeat = False
        for message in messages:
            frames.extend(self._frames(message))
        return frames

    def _sync_messages(self, first: bool) -> list[bytes]:
        """Our SYNC: every store's state vector, in parts (``more`` on all but the last)."""
        groups = list(self._state_groups(self._stores)) or [[]]
        return [
            encode_message(
                Sync(self._states(names), first, i + 1 < len(groups), self._digests(names))
            )
            for i, names in enumerate(groups)
        ]

    def _update_frames(self, out: Outgoing, states_for: set[str], want: bool) -> list[bytes]:
        """The link's batch as UPDATE frames, acks attached; encoded once per flush for
        every link that gets the same deltas with the same acks."""
        batch, out.updates = out.updates, {}
        states_for.update(batch)
        frames: list[bytes] = []
        for group in self._update_messages(batch):
            attached = states_for.intersection(group)
            key = (
                tuple((name, tuple(map(id, deltas))) for name, deltas in group.items()),
                frozenset(attached),
                want,
            )
            shared = self._shared.get(key)
            if shared is None:
                message = encode_message(Update(group, self._states(attached), want))
                shared = self._shared[key] = self._frames(message)
            frames.extend(shared)
            states_for.difference_update(attached)
        return frames

    def _frames(self, message: bytes) -> list[bytes]:
        return wire.frames(message, next(self._message_ids), self.config.max_frame_bytes)

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
                items + count > self.config.max_message_items * SV_ENTRIES_PER_ITEM // 4
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
        config = self.config
        pending = {name: self._parts(diff, len(diff) // 2 + 1) for name, diff in diffs.items()}
        while pending:
            body: dict[str, bytes] = {}
            size = 0
            items = 0
            for name in list(pending):
                parts = pending[name]
                part, cost = parts[0]
                if body and (
                    size + len(part) > config.part_bytes or items + cost > config.part_items
                ):
                    continue  # (bytes and items both: several stores' parts could
                    # add up past the receiver's item budget, and be refused whole)
                body[name] = part
                size += len(part)
                items += cost
                parts.pop(0)
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
