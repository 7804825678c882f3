"""One store's CRDT: a Lamport-ordered log of writes kept in a Yjs document.

The layout (PROTOCOL.md §7): a root map ``writers`` holds one array per replica that
ever wrote, keyed by its client id; a replica only appends to its own. Items are
CBOR *entries* ``[key, op, payload, lamport]``; a key's value is the fold of its
entries in ``(lamport, writer)`` order (``merge``). A write deletes, in the same
transaction, the entries it supersedes, so a writer's deleted entries collapse into
one tombstone run of its array: history costs bytes per writer, not per write.

Nothing here does I/O: writes return Yjs deltas through ``take_outbox()``, remote
deltas go in through ``apply()``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

import cbor2
from pycrdt import merge_updates

from . import _statevector, updates
from ._ydoc import YDoc, YTransaction
from .budget import Budget
from .entries import (
    LAMPORT_MAX,
    WILDCARD,
    Op,
    ParsedEntry,
    delete_op,
    set_op,
    update_op,
    write_key,
)
from .held import HeldParts
from .merge import MISSING, Entry, fold_local, plan_local
from .merge import dead_entries as _dead
from .mirror import Mirror, runs
from .values import DEFAULT_MAX_VALUE_BYTES

__all__ = ["MISSING", "WILDCARD", "Entry", "StoreReplica", "UpdateError"]

log = logging.getLogger("crdt_stores")

_TXN_ENTRIES: Final = 64
"""Entries appended per Yrs transaction: Yrs appends one item at a time and walks every
item appended earlier in the same transaction (quadratic time and memory: 8,000 keys
in one transaction took 1.5 GB). Big bulk writes are split into such transactions,
merged into one delta per tick, and announced as one change."""
_TXN_BYTES: Final = 256 * 1024
_BATCH_MAX: Final = 4096
"""Local transactions remembered for ``squash`` (a replica no outbox flushes forgets)."""


Changes = tuple[dict[str, Any], bool]
"""What one transaction changed: ``({key: value or MISSING}, local)``."""


class UpdateError(ValueError):
    """A remote Yjs update could not be decoded or applied; nothing was changed."""


class StoreReplica:
    """The CRDT of one named store, held by one peer."""

    def __init__(
        self,
        name: str,
        *,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
        client_id: int | None = None,
        max_update_items: int = 1 << 20,
        held: Budget | None = None,
        track_changes: bool = False,
    ) -> None:
        self.name = name
        self.track_changes = track_changes
        self.max_value_bytes = max_value_bytes
        self.max_update_items = max_update_items
        # values changed by transactions since ``take_changes()``, if tracked (returned,
        # not called back: the driver runs user code after the engine call returns)
        self.changes: list[Changes] = []
        # What the replica knows of its document (mirrors, key lists, values).
        self._m = Mirror(max_value_bytes)
        # The document, through the adapter that holds pycrdt's private API (its
        # observers hold the replica and the mirror weakly).
        self._y = self._m.y = YDoc(
            client_id, self._on_transaction, self._m.on_array, self._m.on_writers
        )
        self._author = self._y.client_id
        self._me = str(self._author)
        self._outbox: list[tuple[bytes, int]] = []  # deltas, each with a bound on its items
        # Parts of remote updates that wait for a writer's earlier structs (never
        # handed to Yrs, whose own pending store is unbounded), charged to ``held``.
        self._held = HeldParts(held if held is not None else Budget(64 * 1024 * 1024), self.read)
        self._txn_update: bytes | None = None  # the delta of the local transaction just run
        self._txn_deletes: bytes | None = None  # and its encoded delete set
        # The local transactions since the last ``squash``: each delta with its delete
        # set, and this writer's clock before the first (None: unknown, do not squash).
        self._batch: list[tuple[bytes, bytes]] = []
        self._batch_start: int | None = None
        self._sv: bytes | None = None
        # Kept up to date by the code that changes it (decoding it again after every
        # transaction cost more than the rest of applying a small update).
        self._sv_dict: _statevector.StateVector | None = {}
        self._digest: bytes | None = None

    # -- reads -------------------------------------------------------------------

    def take_changes(self) -> list[Changes]:
        """Values changed since the last call, one ``(changes, local)`` per transaction."""
        changes = self.changes
        if changes:
            self.changes = []
        return changes

    @property
    def client_id(self) -> int:
        """This replica's Yjs client id (the ``author`` of its entries)."""
        return self._author

    def get(self, key: str) -> Any:
        """The live value of ``key`` (not a copy: callers copy), or ``MISSING``."""
        return self._m.values.get(key, MISSING)

    def items(self) -> Iterator[tuple[str, Any]]:
        return iter(self._m.values.items())

    def keys(self) -> list[str]:
        return list(self._m.values)

    def __contains__(self, key: object) -> bool:
        return key in self._m.values

    def __len__(self) -> int:
        return len(self._m.values)

    @property
    def entry_count(self) -> int:
        """Entries still held (live ones and not yet compacted ones)."""
        return sum(len(mirror) for mirror in self._m.mirrors.values())

    def state_vector(self) -> bytes:
        """Encoded Yjs state vector of this store."""
        if self._sv is None:
            self._sv = self._y.state_vector()
        return self._sv

    def state_vector_dict(self) -> _statevector.StateVector:
        """The state vector as a dict (this replica's own; do not modify)."""
        if self._sv_dict is None:
            self._sv_dict = _statevector.decode(self.state_vector())
        return self._sv_dict

    def delete_digest(self) -> bytes:
        """A digest of this store's deletions (its Yjs delete set), canonical.

        State vectors do not cover deletions: two replicas can hold the same
        structs and differ in what is deleted (a deletion sent to one peer only).
        Peers compare digests to notice it and repair with a diff, which carries
        every deletion.
        """
        if self._digest is None:
            own = self._y.update(self.state_vector())  # no structs: the delete set
            deletes = updates.read(own, max_units=1 << 62, max_value_bytes=0).deletes
            self._digest = _statevector.delete_digest(deletes)
        return self._digest

    def diff(self, state_vector: bytes | None = None) -> bytes:
        """Yjs update with everything a peer at ``state_vector`` lacks (all if None)."""
        return self._y.update(state_vector)

    def take_outbox(self) -> list[bytes]:
        """Deltas of local transactions since the last call (writes and compactions)."""
        return [delta for delta, _ in self.take_outbox_items()]

    def take_outbox_items(self) -> list[tuple[bytes, int]]:
        """``take_outbox()`` with a bound on the Yjs items of each delta (to pack messages)."""
        out = self._outbox
        self._outbox = []
        return out

    # -- local writes ------------------------------------------------------------

    def set(self, key: str, value: object) -> None:
        self._write([set_op(key, value, self.max_value_bytes)])

    def update(self, key: str, value: object) -> None:
        self._write([update_op(key, value, self.max_value_bytes)])

    def delete(self, key: str) -> None:
        self.bulk_delete([key])

    def bulk_set(self, mapping: Mapping[str, object]) -> None:
        if not isinstance(mapping, Mapping):
            raise TypeError(f"bulk_set takes a mapping, not {type(mapping).__name__}")
        ops = {op[0]: op for op in (set_op(k, v, self.max_value_bytes) for k, v in mapping.items())}
        self._write(list(ops.values()))

    def bulk_delete(self, keys: Iterable[str]) -> None:
        if isinstance(keys, (str, bytes)) or not isinstance(keys, Iterable):
            raise TypeError("bulk_delete takes an iterable of keys")
        wanted = dict.fromkeys(write_key(key) for key in keys)
        self._write([delete_op(key) for key in wanted if key in self._m.values])

    def clear(self) -> None:
        self._write([delete_op(key) for key in self._m.values])

    def _write(self, ops: list[Op]) -> None:
        """One write: append the entries, delete what they supersede.

        Usually one transaction. A big bulk write appends in several (see
        ``_TXN_ENTRIES``), the deletions in the last, so no peer ever sees a key
        lose its old entries before it has the new one; all share one Lamport clock.
        """
        if not ops:
            return
        m = self._m
        lamport = min(m.lamport + 1, LAMPORT_MAX)
        entries, blobs, dead = plan_local(
            ops, (lamport, self._author), cbor2.dumps(lamport), m.by_key
        )
        if len(blobs) == 1:  # the usual write
            doomed = self._append(blobs, entries, dead)
            if dead:
                m.forget(doomed, dead)
        else:
            for start, stop in _chunks(blobs):
                if stop < len(blobs):
                    self._append(blobs[start:stop], entries[start:stop], None)
                else:  # the deletions go last, with the last appends (indices stay valid)
                    doomed = self._append(blobs[start:stop], entries[start:stop], dead)
                    m.forget(doomed, dead)
        m.lamport = lamport
        # This replica knows what it changed: no need to decode its own observer events.
        changes = fold_local(m.by_key, m.values, entries)
        if changes and self.track_changes:
            self.changes.append((changes, True))
        if self._held:
            self._release_held()  # parts that waited for these clocks of ours

    def _append(
        self, blobs: list[bytes], entries: list[Entry], dead: list[Entry] | None
    ) -> dict[str, list[int]]:
        """One local transaction: append entries to this replica's array (created with
        its first write), delete ``dead``; returns the deleted indices, per writer."""
        y = self._y
        txn = y.begin()
        y.local = True
        try:
            mine = self._m.arrays.get(self._me)
            structs = len(blobs)
            if mine is None:  # the array comes first: it is this writer's struct 0
                mine = self._m.arrays[self._me] = y.new_array(txn, self._me)
                self._m.mirrors[self._me] = []
                structs += 1
            mirror = self._m.mirrors[self._me]
            base = len(mirror)
            insert = y.insert
            for offset, blob in enumerate(blobs):
                insert(mine, txn, base + offset, blob)
            doomed = self._delete(txn, dead) if dead else {}
        finally:
            y.end(txn)
        sv = self._sv_dict
        start = None
        if sv is not None:
            start = sv.get(self._author, 0)
            sv[self._author] = start + structs
        update, deletes = self._txn_update, self._txn_deletes
        if update is not None:
            self._txn_update = self._txn_deletes = None
            # items: a struct and a value per entry, the array, a delete range per dead entry
            self._outbox.append((update, 2 * len(blobs) + 1 + len(dead or ())))
            batch = self._batch
            if not batch:
                self._batch_start = start
            if len(batch) < _BATCH_MAX and deletes is not None:
                batch.append((update, deletes))
            else:
                self._batch_start = None  # not all remembered: this batch is not squashed
        for offset, entry in enumerate(entries):
            entry.writer = self._me
            entry.pos = base + offset
        mirror.extend(entries)
        return doomed

    def squash(self, deltas: list[tuple[bytes, int]]) -> tuple[bytes, int] | None:
        """``deltas`` as one update whose structs Yrs has squashed, if they are exactly
        the local transactions since the last call (else None: merge them instead).

        A writer's consecutive entries are one struct in its document; a batch encoded
        from the document carries them so (a third of the bytes of merged deltas, and
        much less work for every receiver), with the deletions of the batch only.
        """
        batch, start = self._batch, self._batch_start
        self._batch, self._batch_start = [], None
        if len(deltas) < 2 or start is None or len(batch) != len(deltas):
            return None
        items = 0
        for mine, given in zip(batch, deltas, strict=True):
            if mine[0] is not given[0]:
                return None
            items += given[1]
        since = dict(self.state_vector_dict())
        since[self._author] = start
        structs = self._y.update(_statevector.encode(since))  # this writer's structs, then
        everything = self._y.update(self.state_vector())  # every deletion: its tail, too
        tail = everything[1:]  # (no structs: a zero client count, then the delete set)
        if everything[:1] != b"\x00" or not structs.endswith(tail):
            return None
        deletes = merge_updates(*[b"\x00" + d for _, d in batch])  # the batch's only
        return structs[: len(structs) - len(tail)] + deletes[1:], items

    def _delete(self, txn: YTransaction, entries: list[Entry]) -> dict[str, list[int]]:
        """Delete entries from their writers' arrays; returns the indices, per writer."""
        if len(entries) == 1:  # the usual overwrite
            entry = entries[0]
            index = self._m.index_of(entry)
            self._y.remove(self._m.arrays[entry.writer], txn, index, 1)
            return {entry.writer: [index]}
        by_writer: dict[str, list[Entry]] = {}
        for entry in entries:
            by_writer.setdefault(entry.writer, []).append(entry)
        doomed: dict[str, list[int]] = {}
        for writer, doomed_entries in by_writer.items():
            array = self._m.arrays[writer]
            if len(doomed_entries) > 32:  # one pass over the mirror beats many searches
                wanted = {id(e) for e in doomed_entries}
                indices = [i for i, e in enumerate(self._m.mirrors[writer]) if id(e) in wanted]
            else:
                indices = sorted({self._m.index_of(e) for e in doomed_entries})
            doomed[writer] = indices
            for start, length in runs(indices):
                self._y.remove(array, txn, start, length)
        return doomed

    # -- remote updates ----------------------------------------------------------

    def read(self, update: bytes) -> updates.Update:
        """Read and check a remote update (``UpdateError`` if it is not one this layout allows)."""
        if type(update) is not bytes:
            raise UpdateError("update must be bytes")
        try:
            return updates.read(
                update, max_units=self.max_update_items, max_value_bytes=self.max_value_bytes
            )
        except updates.InvalidUpdate as exc:
            raise UpdateError(f"bad Yjs update: {exc}") from None

    def apply(self, update: bytes | updates.Update) -> list[bytes]:
        """Apply a remote update; returns what was applied (for relaying), empty if nothing new.

        (``apply_items`` also says how many Yjs items each part holds at most.)
        """
        return [applied for applied, _ in self.apply_items(update)]

    def apply_items(self, update: bytes | updates.Update) -> list[tuple[bytes, int]]:
        """Apply a remote update; returns the parts applied, each with a bound on its items.

        The update is read and checked first (``UpdateError``, nothing applied, if it
        is malformed or holds what the layout never contains). Structs that need a
        writer's earlier structs, and deletions of items not here yet, wait in this
        replica (within the ``held`` budget) until those arrive. Superseded entries
        this replica is responsible for are compacted in a follow-up local
        transaction, whose delta lands in the outbox.
        """
        if not isinstance(update, updates.Update):
            update = self.read(update)
        applied: list[tuple[bytes, int]] = []
        queue = [update]
        while queue:
            current = queue.pop(0)
            ready = self._held.admit(current, self.state_vector_dict())
            if ready is not None and self._apply_checked(*ready):
                applied.append((ready[0], current.units))
            if not queue and self._held:
                queue.extend(self._held.take_released(self.state_vector_dict()))
        return applied

    def _release_held(self) -> None:
        """After a local write: apply held parts it made integrable."""
        for update in self._held.take_released(self.state_vector_dict()):
            self.apply(update)

    @property
    def held_dropped(self) -> int:
        """Held parts refused for lack of budget (anti-entropy resends them)."""
        return self._held.dropped

    @held_dropped.setter
    def held_dropped(self, value: int) -> None:
        self._held.dropped = value

    def _apply_checked(
        self, update: bytes, entries: dict[bytes, ParsedEntry], ends: dict[int, int]
    ) -> bool:
        """Hand a checked update to Yrs; returns whether it changed anything here.

        If Yrs fails part way (it should not, given the checks), the transaction it
        started still commits: the replica is then rebuilt from its document, so its
        mirrors and values never disagree with it.
        """
        self._m.parsed = entries
        txn = self._y.begin()
        failure: BaseException | None = None
        try:
            self._y.apply_update(txn, update)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # pyo3 PanicException derives from BaseException
            failure = exc
        try:
            self._y.end(txn)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            failure = failure or exc
        if failure is not None:
            self._m.parsed = {}
            self._sv_dict = None  # read it from the document again
            self._txn_update = self._txn_deletes = None
            self._m.reset()
            changes = self._m.rebuild()
            if changes and self.track_changes:
                self.changes.append((changes, False))
            raise UpdateError(f"bad Yjs update: {type(failure).__name__}: {failure}")
        sv = self._sv_dict
        if sv is not None:
            for client, end in ends.items():  # checked: every ready block integrates
                if end > sv.get(client, 0):
                    sv[client] = end
        changed = self._m.changed()
        changes, keys = self._m.settle()
        if changes and self.track_changes:
            self.changes.append((changes, False))
        self._m.parsed = {}
        self._compact(keys)
        return changed

    def _compact(self, keys: Iterable[str]) -> None:
        """Delete entries of ``keys`` that this replica's own writes superseded.

        (A concurrent write that arrives already superseded by one of ours.)
        """
        dead: list[Entry] = []
        for key in keys:
            entries = self._m.by_key.get(key)
            if entries and len(entries) > 1:
                dead.extend(_dead(entries, self._author))
        if not dead:
            return
        self._m.forget(self._append([], [], dead), dead)  # dead entries: no value changes

    # -- observers (they run inside the transaction's commit) ----------------------

    def _on_transaction(self, update: bytes | None, deletes: bytes | None) -> None:
        if update is not None:  # a local transaction's delta
            self._txn_update = update
            self._txn_deletes = deletes
        self._sv = None
        self._digest = None


def _chunks(blobs: list[bytes]) -> list[tuple[int, int]]:
    """``[start, stop)`` runs of at most ``_TXN_ENTRIES`` entries and about ``_TXN_BYTES``."""
    runs = []
    start = 0
    while start < len(blobs):
        stop = start
        size = 0
        while stop < len(blobs) and stop - start < _TXN_ENTRIES and size < _TXN_BYTES:
            size += len(blobs[stop])
            stop += 1
        runs.append((start, stop))
        start = stop
    return runs
