"""One store's CRDT state: a Lamport-ordered log of writes kept in a pycrdt array.

Layout (the idea of Yjs' ``YKeyValue``, plus ordering and merge rules):

* A store is one pycrdt ``Doc``. Its root ``Map`` ("writers") holds one ``Array`` per
  replica that ever wrote, keyed by its client id; a replica only appends to its own.
  Items are CBOR-encoded *entries* ``[key, op, payload, lamport]``: ``set``
  (op 0), dict ``update`` (1, a shallow merge), list ``update`` (2, an append) and
  ``delete`` (3).
* A key's value is the fold of its entries in ``(lamport, writer)`` order, wherever
  they sit (the writer is the client id keying the array that holds the entry).
  Lamport clocks follow causality, so a write that saw another one comes after
  it; concurrent writes are ordered by replica id, the same on every peer.
* Entries that can no longer change any fold are deleted (a write deletes what it
  supersedes in the same transaction). A writer's entries form one chain in its own
  array, so its deleted entries collapse into a single tombstone run however writers
  interleave: history costs bytes per writer, not per write — unlike ``Y.Map``,
  which keeps one tombstone per overwrite.

Nothing here does I/O: writes return Yjs deltas through ``take_outbox()``, remote
deltas go in through ``apply()``.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import logging
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final

import cbor2
from pycrdt import Doc, Map
from pycrdt._pycrdt import Array as _RawArray
from pycrdt._pycrdt import ArrayEvent as _RawArrayEvent

from . import _statevector, updates
from .budget import Budget
from .entries import (
    APPEND,
    DELETE,
    LAMPORT_MAX,
    MERGE,
    SET,
    WILDCARD,
    EntryError,
    ParsedEntry,
    delete_payload,
    encode_entry,
    parse_entry,
)
from .values import DEFAULT_MAX_VALUE_BYTES, check_key, encode, normalize, same_value

__all__ = ["MISSING", "WILDCARD", "Entry", "StoreReplica", "UpdateError"]

log = logging.getLogger("crdt_stores")

_EMPTY_UPDATE: Final = b"\x00\x00"
_TXN_ENTRIES: Final = 64
"""Entries appended per Yrs transaction: Yrs appends one item at a time and walks every
item appended earlier in the same transaction (quadratic time and memory: 8,000 keys
in one transaction took 1.5 GB). Big bulk writes are split into such transactions,
merged into one delta per tick, and announced as one change."""
_TXN_BYTES: Final = 256 * 1024
_HELD_ENTRY_COST: Final = 24  # bytes charged to the budget per held delete range
_MAX_LENGTH: Final = updates.MAX_CLOCK


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()
"""Marks a key without a value (never written, or deleted)."""

ChangeListener = Callable[[dict[str, Any], bool], None]
"""Called after each transaction with ``{key: value or MISSING}`` and ``local``."""


class UpdateError(ValueError):
    """A remote Yjs update could not be decoded or applied; nothing was changed."""


class Entry:
    """One write in the log; compared by identity."""

    __slots__ = ("key", "op", "order", "payload", "pos", "writer")

    def __init__(self, key: str | None, op: int, payload: Any, order: tuple[int, int]):
        self.key = key  # None: an entry a peer wrote that we cannot use (kept inert)
        self.op = op
        self.payload = payload
        self.order = order
        self.writer = ""  # key of the writer array holding it
        self.pos = 0  # index hint into that array's mirror; may lag behind deletions

    def __repr__(self) -> str:
        return f"Entry({self.key!r}, op={self.op}, order={self.order})"


def _order(entry: Entry) -> tuple[int, int]:
    return entry.order


_INERT: Final = (None, -1, None, 0)


def _entry(parsed: ParsedEntry | tuple[None, int, None, int], writer: int) -> Entry:
    key, op, payload, lamport = parsed
    if key is None:
        return Entry(None, -1, None, (0, 0))
    return Entry(key, op, payload, (lamport, writer))


def _writer_id(writer: str) -> int | None:
    """The client id a writer array is keyed by; None for keys this library never writes."""
    if writer.isascii() and writer.isdecimal() and len(writer) < 20 and str(int(writer)) == writer:
        return int(writer)
    return None


def _apply_op(value: Any, entry: Entry) -> Any:
    """Apply one entry on top of ``value``; containers returned are owned by the caller."""
    op = entry.op
    payload = entry.payload
    if op == SET:
        kind = type(payload)
        if kind is dict:
            return dict(payload)
        if kind is list:
            return list(payload)
        return payload
    if op == MERGE:
        if type(value) is dict:
            value.update(payload)
            return value
        return dict(payload)
    if op == APPEND:
        if type(value) is list:
            value.extend(payload)
            return value
        return list(payload)
    return MISSING


def _fold(entries: list[Entry]) -> Any:
    start = 0
    for i in range(len(entries) - 1, -1, -1):
        if entries[i].op in (SET, DELETE):
            start = i
            break
    value: Any = MISSING
    for entry in entries[start:]:
        value = _apply_op(value, entry)
    return value


def _dead(entries: list[Entry], author: int | None = None) -> list[Entry]:
    """Entries whose removal cannot change the fold, whatever arrives later.

    Everything before a set/delete is dead. A dict update is dead when later dict
    updates overwrite all of its fields: with or without it, the fold differs at
    most in those fields (or in a list that a later dict update replaces), so the
    result is the same for any entries that may still arrive in between.

    With ``author``, only entries made dead by that writer's own entries count:
    a replica deletes only what its own writes superseded. Its deletion then
    travels after (or with) the write that justifies it, so no peer ever sees an
    entry vanish before the entry that supersedes it arrives.
    """
    dead: list[Entry] = []
    covered: set[str] = set()
    merges_after = False
    reset = False
    for entry in reversed(entries):
        witness = author is None or entry.order[1] == author
        if reset:
            dead.append(entry)
        elif entry.op == SET or entry.op == DELETE:
            reset = witness
        elif entry.op == MERGE:
            if merges_after and covered.issuperset(entry.payload):
                dead.append(entry)
            elif witness:
                covered.update(entry.payload)
                merges_after = True
    return dead


def _tiebreak(entry: Entry) -> tuple[tuple[int, int], bytes]:
    """A total order: only entries a peer forged share (lamport, writer)."""
    return entry.order, cbor2.dumps([entry.key, entry.op, entry.payload])


def _has_ties(entries: list[Entry]) -> bool:
    return any(a.order == b.order for a, b in itertools.pairwise(entries))


def _order_ties(entries: list[Entry]) -> None:
    """Sort entries of equal order by content, the same way on every peer."""
    if _has_ties(entries):
        entries.sort(key=_tiebreak)


def _dominated(entries: list[Entry], entry: Entry) -> bool:
    """True when a set/delete ordered after ``entry`` hides it."""
    i = bisect.bisect_right(entries, entry.order, key=_order)
    return any(e.op == SET or e.op == DELETE for e in entries[i:])


def _runs(indices: list[int]) -> list[tuple[int, int]]:
    """Sorted unique indices -> (start, length) runs, last run first."""
    runs: list[tuple[int, int]] = []
    for i in indices:
        if runs and runs[-1][0] + runs[-1][1] == i:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((i, 1))
    runs.reverse()
    return runs


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
    ) -> None:
        self.name = name
        self.max_value_bytes = max_value_bytes
        self.max_update_items = max_update_items
        self.on_change: ChangeListener | None = None
        self._doc: Doc = Doc(client_id=client_id)
        # Hot paths use pycrdt's Rust objects directly: its Python wrappers cost
        # more than the CRDT work itself (pycrdt is pinned below 0.15 for this).
        self._ydoc = self._doc._doc
        self._writers = self._doc.get("writers", type=Map).integrated
        self._author = self._doc.client_id
        self._me = str(self._author)
        self._arrays: dict[str, Any] = {}  # writer -> its (Rust) array
        self._mirrors: dict[str, list[Entry]] = {}  # writer -> its array's items, in order
        self._by_key: dict[str, list[Entry]] = {}  # each sorted by order
        self._values: dict[str, Any] = {}  # folded value of every present key
        self._lamport = 0
        self._outbox: list[tuple[bytes, int]] = []  # deltas, each with a bound on its items
        # Parts of remote updates that wait for a writer's earlier structs (never
        # handed to Yrs, whose own pending store is unbounded), charged to ``held``.
        self._held = held if held is not None else Budget(64 * 1024 * 1024)
        self._held_blocks: dict[int, list[tuple[int, int, bytes]]] = {}
        self._held_deletes: updates.DeleteSet = {}
        self.held_dropped = 0  # held parts refused for lack of budget (anti-entropy resends)
        # entries of the update being applied, checked before Yrs saw them
        self._parsed: dict[bytes, ParsedEntry] = {}
        # gathered by the observers during one transaction, used right after it
        self._local = False
        self._txn_update: bytes | None = None
        self._txn_inserted: list[Entry] = []
        self._txn_removed: list[Entry] = []
        self._txn_new_arrays: dict[str, Any] = {}
        self._txn_rebuild = False
        self._sv: bytes | None = None
        # Kept up to date by the code that changes it (decoding it again after every
        # transaction cost more than the rest of applying a small update).
        self._sv_dict: _statevector.StateVector | None = {}
        self._digest: bytes | None = None
        # Dropping a subscription unsubscribes it. The callbacks hold the replica
        # weakly: a cycle through pycrdt's Rust objects is invisible to Python's
        # garbage collector, and every replica (with its document) would leak.
        self._subscriptions = (
            self._ydoc.observe(_weakly(self._on_transaction)),
            self._writers.observe_deep(_weakly(self._on_events)),
        )

    # -- reads -------------------------------------------------------------------

    @property
    def client_id(self) -> int:
        """This replica's Yjs client id (the ``author`` of its entries)."""
        return self._author

    def get(self, key: str) -> Any:
        """The live value of ``key`` (not a copy: callers copy), or ``MISSING``."""
        return self._values.get(key, MISSING)

    def items(self) -> Iterator[tuple[str, Any]]:
        return iter(self._values.items())

    def keys(self) -> list[str]:
        return list(self._values)

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __len__(self) -> int:
        return len(self._values)

    @property
    def entry_count(self) -> int:
        """Entries still held (live ones and not yet compacted ones)."""
        return sum(len(mirror) for mirror in self._mirrors.values())

    def state_vector(self) -> bytes:
        """Encoded Yjs state vector of this store."""
        if self._sv is None:
            txn = self._ydoc.create_transaction()
            try:
                self._sv = self._ydoc.get_state(txn)
            finally:
                txn.commit()
                txn.drop()
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
            own = self._doc.get_update(self.state_vector())  # no structs: the delete set
            deletes = updates.read(own, max_units=1 << 62, max_value_bytes=0).deletes
            canonical = sorted((client, _merged(ranges)) for client, ranges in deletes.items())
            self._digest = hashlib.blake2b(cbor2.dumps(canonical), digest_size=8).digest()
        return self._digest

    def diff(self, state_vector: bytes | None = None) -> bytes:
        """Yjs update with everything a peer at ``state_vector`` lacks (all if None)."""
        return self._doc.get_update(state_vector)

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
        key = _write_key(key)
        self._write([self._op(key, SET, normalize(value))])

    def update(self, key: str, value: object) -> None:
        key = _write_key(key)
        norm = normalize(value)
        kind = type(norm)
        op = MERGE if kind is dict else APPEND if kind is list else SET
        self._write([self._op(key, op, norm)])

    def delete(self, key: str) -> None:
        self.bulk_delete([key])

    def bulk_set(self, mapping: Mapping[str, object]) -> None:
        if not isinstance(mapping, Mapping):
            raise TypeError(f"bulk_set takes a mapping, not {type(mapping).__name__}")
        ops: dict[str, tuple[str, int, Any, bytes]] = {}
        for key, value in mapping.items():
            key = _write_key(key)
            ops[key] = self._op(key, SET, normalize(value))
        self._write(list(ops.values()))

    def bulk_delete(self, keys: Iterable[str]) -> None:
        if isinstance(keys, (str, bytes)) or not isinstance(keys, Iterable):
            raise TypeError("bulk_delete takes an iterable of keys")
        wanted = {_write_key(key): None for key in keys}
        gone = delete_payload()
        self._write([(key, DELETE, None, gone) for key in wanted if key in self._values])

    def clear(self) -> None:
        gone = delete_payload()
        self._write([(key, DELETE, None, gone) for key in self._values])

    def _op(self, key: str, op: int, payload: Any) -> tuple[str, int, Any, bytes]:
        blob = encode(payload)
        if len(blob) > self.max_value_bytes:
            raise ValueError(
                f"value for {key!r} encodes to {len(blob)} bytes;"
                f" the limit is {self.max_value_bytes}"
            )
        return key, op, payload, blob

    def _write(self, ops: list[tuple[str, int, Any, bytes]]) -> None:
        """One write: append the entries, delete what they supersede.

        Usually one transaction. A big bulk write appends in several (see
        ``_TXN_ENTRIES``), the deletions in the last, so no peer ever sees a key
        lose its old entries before it has the new one; all share one Lamport clock.
        """
        if not ops:
            return
        lamport = min(self._lamport + 1, LAMPORT_MAX)
        order = (lamport, self._author)
        tail = cbor2.dumps(lamport)
        entries: list[Entry] = []
        blobs: list[bytes] = []
        dead: list[Entry] = []
        by_key = self._by_key
        for key, op, payload, blob in ops:
            entry = Entry(key, op, payload, order)
            entries.append(entry)
            blobs.append(encode_entry(key, op, blob, tail))
            existing = by_key.get(key)
            if existing and lamport < LAMPORT_MAX:  # (at the saturated clock: no compaction)
                if op in (SET, DELETE):
                    dead.extend(existing)  # our own reset, ordered last: all of it is dead
                else:
                    dead.extend(_dead([*existing, entry], self._author))
        for start, stop in _chunks(blobs):
            if stop < len(blobs):
                self._append(blobs[start:stop], entries[start:stop], None)
            else:  # the deletions go last, with the last appends (indices stay valid)
                self._forget(self._append(blobs[start:stop], entries[start:stop], dead), dead)
        self._lamport = lamport
        # This replica knows what it changed: no need to decode its own observer events.
        values = self._values
        changes: dict[str, Any] = {}
        for entry in entries:
            written = entry.key
            assert written is not None
            keyed = by_key.setdefault(written, [])
            if keyed and keyed[-1].order >= entry.order:
                # Only at the saturated clock: a forged entry may order after ours
                # (a bigger writer id) or equal to it (then by content), as on every peer.
                keyed.append(entry)
                keyed.sort(key=_order)
                _order_ties(keyed)
                value = _fold(keyed)
            else:
                keyed.append(entry)  # the newest order: last
                # Dead entries never changed the fold, so the old value is the base.
                value = _apply_op(values.get(written, MISSING), entry)
            if value is MISSING:
                values.pop(written, None)
            else:
                values[written] = value
            changes[written] = value
        self._local_done(changes)
        if self._held_blocks or self._held_deletes:
            self._release_held()  # parts that waited for these clocks of ours

    def _append(
        self, blobs: list[bytes], entries: list[Entry], dead: list[Entry] | None
    ) -> dict[str, list[int]]:
        """One local transaction: append entries to this replica's array (created with
        its first write), delete ``dead``; returns the deleted indices, per writer."""
        txn = self._ydoc.create_transaction()
        self._local = True
        try:
            mine = self._arrays.get(self._me)
            structs = len(blobs)
            if mine is None:  # the array comes first: it is this writer's struct 0
                mine = self._arrays[self._me] = self._writers.insert_array_prelim(txn, self._me)
                self._mirrors[self._me] = []
                structs += 1
            mirror = self._mirrors[self._me]
            base = len(mirror)
            for offset, blob in enumerate(blobs):
                mine.insert(txn, base + offset, blob)
            doomed = self._delete(txn, dead) if dead else {}
        finally:
            self._commit(txn)
        if structs and self._sv_dict is not None:
            self._sv_dict[self._author] = self._sv_dict.get(self._author, 0) + structs
        # items: a struct and a value per entry, the array, a delete range per dead entry
        self._take_txn_update(2 * len(blobs) + 1 + len(dead or ()))
        for offset, entry in enumerate(entries):
            entry.writer = self._me
            entry.pos = base + offset
        mirror.extend(entries)
        return doomed

    def _take_txn_update(self, items: int) -> None:
        update = self._txn_update
        self._txn_update = None
        if update is not None:
            self._outbox.append((update, items))

    def _delete(self, txn: Any, entries: list[Entry]) -> dict[str, list[int]]:
        """Delete entries from their writers' arrays; returns the indices, per writer."""
        if len(entries) == 1:  # the usual overwrite
            entry = entries[0]
            index = self._index_of(entry)
            self._arrays[entry.writer].remove_range(txn, index, 1)
            return {entry.writer: [index]}
        by_writer: dict[str, list[Entry]] = {}
        for entry in entries:
            by_writer.setdefault(entry.writer, []).append(entry)
        doomed: dict[str, list[int]] = {}
        for writer, doomed_entries in by_writer.items():
            array = self._arrays[writer]
            if len(doomed_entries) > 32:  # one pass over the mirror beats many searches
                wanted = {id(e) for e in doomed_entries}
                indices = [i for i, e in enumerate(self._mirrors[writer]) if id(e) in wanted]
            else:
                indices = sorted({self._index_of(e) for e in doomed_entries})
            doomed[writer] = indices
            for start, length in _runs(indices):
                array.remove_range(txn, start, length)
        return doomed

    def _forget(self, doomed: dict[str, list[int]], dead: list[Entry]) -> None:
        """Drop deleted entries from the mirrors and key lists (after a local delete)."""
        if len(dead) == 1:  # the usual overwrite
            entry = dead[0]
            (index,) = doomed[entry.writer]
            del self._mirrors[entry.writer][index]
            assert entry.key is not None
            entries = self._by_key[entry.key]
            entries.remove(entry)
            if not entries:
                del self._by_key[entry.key]
            return
        for writer, indices in doomed.items():
            mirror = self._mirrors[writer]
            for start, length in _runs(indices):  # last run first: indices stay valid
                del mirror[start : start + length]
        by_key = self._by_key
        for key, gone in _group_by_key(dead).items():
            entries = by_key[key]
            if len(gone) == 1:
                entries.remove(gone[0])
            else:
                ids = {id(e) for e in gone}
                entries[:] = [e for e in entries if id(e) not in ids]
            if not entries:
                del by_key[key]

    def _local_done(self, changes: dict[str, Any]) -> None:
        if changes and self.on_change is not None:
            self.on_change(changes, True)

    def _index_of(self, entry: Entry) -> int:
        mirror = self._mirrors[entry.writer]
        hint = min(entry.pos, len(mirror) - 1)
        try:
            # A writer only appends, so an entry only drifts left, by deletions.
            index = mirror.index(entry, max(0, hint - 256), hint + 1)
        except ValueError:
            index = mirror.index(entry)
        entry.pos = index
        return index

    def _commit(self, txn: Any) -> None:
        try:
            txn.commit()
        finally:
            txn.drop()
            self._local = False

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
            ready = self._admit(current)
            if ready is not None and self._apply_checked(*ready):
                applied.append((ready[0], current.units))
            if not queue and (self._held_blocks or self._held_deletes):
                queue.extend(self._take_released())
        return applied

    def _admit(
        self, update: updates.Update
    ) -> tuple[bytes, dict[bytes, ParsedEntry], dict[int, int]] | None:
        """What of ``update`` can be applied now; the rest is held (or dropped if over budget)."""
        have = self.state_vector_dict()
        known = dict(have)
        ready: list[updates.Block] = []
        whole = not update.clipped
        for block in update.blocks:
            at = have.get(block.client, 0)
            if block.end <= at:
                whole = False  # nothing new in it
            elif block.clock <= at:
                known[block.client] = block.end
                ready.append(block)
            else:
                whole = False
                self._hold_block(block.client, block.clock, block.end, update.block_bytes(block))
        deletes: updates.DeleteSet = {}
        for client, ranges in update.deletes.items():
            upto = known.get(client, 0)
            for clock, length in ranges:
                end = clock + length
                if clock < upto:
                    deletes.setdefault(client, []).append((clock, min(end, upto) - clock))
                if end > upto:
                    whole = False
                    self._hold_delete(client, max(clock, upto), end)
        ends = {block.client: block.end for block in ready}
        if whole:
            return update.data, update.entries, ends
        if not ready and not deletes:
            return None
        return updates.encode(map(update.block_bytes, ready), deletes), update.entries, ends

    def _hold_block(self, client: int, clock: int, end: int, block: bytes) -> None:
        data = updates.encode([block], {})
        if self._held.take(len(data)):
            self._held_blocks.setdefault(client, []).append((clock, end, data))
        else:
            self.held_dropped += 1

    def _hold_delete(self, client: int, clock: int, end: int) -> None:
        ranges = self._held_deletes.setdefault(client, [])  # sorted by clock
        i = bisect.bisect_right(ranges, (clock, _MAX_LENGTH))
        if i and ranges[i - 1][0] + ranges[i - 1][1] >= end:
            return  # held already (diffs carry every deletion, again and again)
        if self._held.take(_HELD_ENTRY_COST):
            ranges.insert(i, (clock, end - clock))
        else:
            self.held_dropped += 1
            if not ranges:
                del self._held_deletes[client]

    def _take_released(self) -> list[updates.Update]:
        """Held parts whose writer's earlier structs are here now, in clock order."""
        have = self.state_vector_dict()
        out: list[updates.Update] = []
        for client in list(self._held_blocks):
            at = have.get(client, 0)
            waiting = self._held_blocks[client]
            keep = []
            for held in sorted(waiting):
                clock, end, data = held
                if clock <= at < end:
                    out.append(self.read(data))
                    at = end
                if clock <= at:  # released, or made obsolete by what arrived
                    self._held.give(len(data))
                else:
                    keep.append(held)
            if keep:
                self._held_blocks[client] = keep
            else:
                del self._held_blocks[client]
        if out:
            return out  # in clock order per writer: each applies after the one before
        deletes: updates.DeleteSet = {}
        for client in list(self._held_deletes):
            at = have.get(client, 0)
            keep_ranges = []
            for clock, length in self._held_deletes[client]:
                if clock < at:
                    deletes.setdefault(client, []).append((clock, min(clock + length, at) - clock))
                    if clock + length > at:
                        keep_ranges.append((at, clock + length - at))
                    else:
                        self._held.give(_HELD_ENTRY_COST)
                else:
                    keep_ranges.append((clock, length))
            if keep_ranges:
                self._held_deletes[client] = sorted(keep_ranges)
            else:
                del self._held_deletes[client]
        if deletes:
            data = updates.encode([], deletes)
            out.append(updates.Update(data, [], deletes, sum(map(len, deletes.values()))))
        return out

    def _release_held(self) -> None:
        """After a local write: apply held parts it made integrable."""
        for update in self._take_released():
            self.apply(update)

    def _apply_checked(
        self, update: bytes, entries: dict[bytes, ParsedEntry], ends: dict[int, int]
    ) -> bool:
        """Hand a checked update to Yrs; returns whether it changed anything here.

        If Yrs fails part way (it should not, given the checks), the transaction it
        started still commits: the replica is then rebuilt from its document, so its
        mirrors and values never disagree with it.
        """
        self._parsed = entries
        txn = self._ydoc.create_transaction()
        failure: BaseException | None = None
        try:
            self._ydoc.apply_update(txn, update)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # pyo3 PanicException derives from BaseException
            failure = exc
        try:
            self._commit(txn)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            failure = failure or exc
        if failure is not None:
            self._parsed = {}
            self._sv_dict = None  # read it from the document again
            self._reset_transaction_state()
            changes = self._rebuild()
            if changes and self.on_change is not None:
                self.on_change(changes, False)
            raise UpdateError(f"bad Yjs update: {type(failure).__name__}: {failure}")
        sv = self._sv_dict
        if sv is not None:
            for client, end in ends.items():  # checked: every ready block integrates
                if end > sv.get(client, 0):
                    sv[client] = end
        changed = bool(
            self._txn_inserted or self._txn_removed or self._txn_new_arrays or self._txn_rebuild
        )
        keys = self._after_transaction()
        self._parsed = {}
        self._compact(keys)
        return changed

    def _compact(self, keys: Iterable[str]) -> None:
        """Delete entries of ``keys`` that this replica's own writes superseded.

        (A concurrent write that arrives already superseded by one of ours.)
        """
        dead: list[Entry] = []
        for key in keys:
            entries = self._by_key.get(key)
            if entries and len(entries) > 1:
                dead.extend(_dead(entries, self._author))
        if not dead:
            return
        self._forget(self._append([], [], dead), dead)  # dead entries: no value changes

    # -- observers (they run inside the transaction's commit) ----------------------

    def _on_transaction(self, event: Any) -> None:
        if self._local:
            update = event.update
            if update and update != _EMPTY_UPDATE:
                self._txn_update = update
        self._sv = None
        self._digest = None

    def _on_events(self, events: list[Any]) -> None:  # pycrdt's Rust event objects
        if self._local:
            return  # local transactions integrate what they did themselves
        event: Any
        for event in events:
            path = event.path
            if type(event) is _RawArrayEvent:
                if len(path) == 1:
                    self._on_array(str(path[0]), event.delta)  # type: ignore[attr-defined]
            elif not path:  # the writers map itself
                keys = event.keys
                if not keys:
                    self._txn_rebuild = True  # how pycrdt reports some out-of-order changes
                for writer, change in keys.items():
                    array = change.get("newValue")
                    if (
                        change.get("action") == "add"
                        and type(array) is _RawArray
                        and writer not in self._mirrors
                        and _writer_id(writer) is not None
                    ):
                        self._txn_new_arrays[writer] = array
                    else:
                        # Checked updates cannot replace or delete an array; follow the
                        # document as it is, reading it afresh, if it happens anyway.
                        self._txn_rebuild = True

    def _parse(self, blob: object, author: int) -> Entry:
        """The entry ``blob`` in ``author``'s array: checked before Yrs saw it, or now."""
        if type(blob) is bytearray:  # how pycrdt returns an item read from an array
            blob = bytes(blob)
        if type(blob) is bytes:
            parsed = self._parsed.get(blob)
            if parsed is not None:
                return _entry(parsed, author)
            try:
                return _entry(parse_entry(blob, self.max_value_bytes), author)
            except EntryError:
                pass
        return _entry(_INERT, author)  # never from a checked update; kept out of every fold

    def _on_array(self, writer: str, delta: list[dict[str, Any]]) -> None:
        mirror = self._mirrors.get(writer)
        if mirror is None:
            return
        inserted = self._txn_inserted
        index = 0
        for part in delta:
            if "retain" in part:
                index += part["retain"]
            elif "delete" in part:
                count = part["delete"]
                self._txn_removed.extend(mirror[index : index + count])
                del mirror[index : index + count]
            else:
                author = _writer_id(writer)
                assert author is not None  # only arrays with a client id key have mirrors
                new = [self._parse(blob, author) for blob in part["insert"]]
                for offset, entry in enumerate(new):
                    entry.writer = writer
                    entry.pos = index + offset
                mirror[index:index] = new
                index += len(new)
                inserted.extend(new)

    def _read_array(self, txn: Any, writer: str, array: Any) -> list[Entry]:
        author = _writer_id(writer)
        assert author is not None
        entries = [self._parse(array.get(txn, i), author) for i in range(array.len(txn))]
        for index, entry in enumerate(entries):
            entry.writer = writer
            entry.pos = index
        return entries

    def _read_new_arrays(self) -> None:
        """Fill the mirrors of writer arrays that appeared in the last transaction."""
        new_arrays = self._txn_new_arrays
        self._txn_new_arrays = {}
        txn = self._ydoc.create_transaction()
        try:
            for writer, array in new_arrays.items():
                entries = self._read_array(txn, writer, array)
                self._arrays[writer] = array
                self._mirrors[writer] = list(entries)
                self._txn_inserted.extend(entries)
        finally:
            txn.commit()
            txn.drop()

    def _rebuild(self) -> dict[str, Any]:
        """Re-read every writer array from the document; returns the values that changed."""
        arrays: dict[str, Any] = {}
        mirrors: dict[str, list[Entry]] = {}
        txn = self._ydoc.create_transaction()
        try:
            for writer in self._writers.keys(txn):
                array = self._writers.get(txn, writer)
                if _writer_id(writer) is not None and type(array) is _RawArray:
                    arrays[writer] = array
                    mirrors[writer] = self._read_array(txn, writer, array)
        finally:
            txn.commit()
            txn.drop()
        by_key: dict[str, list[Entry]] = {}
        for mirror in mirrors.values():
            for entry in mirror:
                if entry.key is not None:
                    by_key.setdefault(entry.key, []).append(entry)
                    self._lamport = max(self._lamport, entry.order[0])
        values: dict[str, Any] = {}
        for key, entries in by_key.items():
            entries.sort(key=_order)
            _order_ties(entries)
            value = _fold(entries)
            if value is not MISSING:
                values[key] = value
        old = self._values
        changes = {
            key: values.get(key, MISSING)
            for key in dict.fromkeys([*old, *values])
            if key not in old or key not in values or not same_value(old[key], values[key])
        }
        self._arrays, self._mirrors, self._by_key, self._values = arrays, mirrors, by_key, values
        return changes

    def _reset_transaction_state(self) -> None:
        self._txn_update = None
        self._txn_inserted = []
        self._txn_removed = []
        self._txn_new_arrays = {}
        self._txn_rebuild = False

    def _after_transaction(self) -> list[str]:
        """Integrate what the observers saw of a remote update; returns keys with new entries."""
        if self._txn_rebuild:
            self._reset_transaction_state()
            changes = self._rebuild()
            keys = list(self._by_key)
        else:
            if self._txn_new_arrays:
                self._read_new_arrays()
            inserted = self._txn_inserted
            removed = self._txn_removed
            self._reset_transaction_state()
            changes = self._integrate(inserted, removed) if inserted or removed else {}
            keys = list(dict.fromkeys(e.key for e in inserted if e.key is not None))
        if changes and self.on_change is not None:
            self.on_change(changes, False)
        return keys

    def _integrate(self, inserted: list[Entry], removed: list[Entry]) -> dict[str, Any]:
        """Update per-key entry lists and folded values; returns the changed keys' values."""
        fresh: dict[str, list[Entry]] = {}
        for entry in inserted:
            if entry.key is not None:
                if entry.order[0] > self._lamport:
                    self._lamport = entry.order[0]
                fresh.setdefault(entry.key, []).append(entry)
        losers: dict[str, list[Entry]] = {}
        for entry in removed:
            if entry.key is not None:
                losers.setdefault(entry.key, []).append(entry)
        by_key = self._by_key
        values = self._values
        changes: dict[str, Any] = {}
        for key in dict.fromkeys([*fresh, *losers]):  # in write order: callbacks follow it
            entries = by_key.get(key) or []
            new = fresh.get(key, ())
            gone = losers.get(key, ())
            at_tail = True
            if new:
                new.sort(key=_order)  # type: ignore[attr-defined]
                if len(new) > 1 and _has_ties(new):  # type: ignore[arg-type]
                    new.sort(key=_tiebreak)  # type: ignore[attr-defined]
                if not entries or entries[-1].order < new[0].order:
                    entries.extend(new)
                else:
                    at_tail = False
                    for entry in new:
                        bisect.insort(entries, entry, key=_order)
                    _order_ties(entries)
            # Removing superseded entries (what compaction does) cannot change the fold.
            harmless = True
            if gone:
                dead = {id(e) for e in _dead(entries)}
                harmless = all(id(e) in dead for e in gone)
                if len(gone) == 1:
                    entries.remove(gone[0])
                else:
                    ids = {id(e) for e in gone}
                    entries = [e for e in entries if id(e) not in ids]
            if entries:
                by_key[key] = entries
            else:
                by_key.pop(key, None)
            old = values.get(key, MISSING)
            if harmless and at_tail:
                if not new:
                    continue
                value = old
                for entry in new:
                    value = _apply_op(value, entry)
                effective = True
            else:
                value = _fold(entries) if entries else MISSING
                if new:
                    effective = any(not _dominated(entries, entry) for entry in new)
                else:
                    effective = (value is MISSING) != (old is MISSING) or (
                        value is not MISSING and not same_value(old, value)
                    )
            if value is MISSING:
                values.pop(key, None)
            else:
                values[key] = value
            if effective and (value is not MISSING or old is not MISSING):
                changes[key] = value  # (absent before and after is no change: a delete
                # marker of a key this replica never showed notifies nobody)
        return changes


def _weakly(method: Callable[[Any], None]) -> Callable[[Any], None]:
    """``method`` as a callback that does not keep its object alive."""
    ref = weakref.ref(method.__self__)  # type: ignore[attr-defined]
    function = method.__func__  # type: ignore[attr-defined]

    def call(arg: Any) -> None:
        target = ref()
        if target is not None:
            function(target, arg)

    return call


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Delete ranges sorted, with overlapping and touching ones joined."""
    out: list[tuple[int, int]] = []
    for clock, length in sorted(ranges):
        if out and clock <= out[-1][0] + out[-1][1]:
            start, size = out[-1]
            out[-1] = (start, max(size, clock + length - start))
        else:
            out.append((clock, length))
    return out


def _chunks(blobs: list[bytes]) -> list[tuple[int, int]]:
    """``[start, stop)`` runs of at most ``_TXN_ENTRIES`` entries and about ``_TXN_BYTES``."""
    if len(blobs) == 1:
        return [(0, 1)]
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


def _group_by_key(entries: list[Entry]) -> dict[str, list[Entry]]:
    grouped: dict[str, list[Entry]] = {}
    for entry in entries:
        assert entry.key is not None
        grouped.setdefault(entry.key, []).append(entry)
    return grouped


def _write_key(key: object) -> str:
    key = check_key(key)
    if key == WILDCARD:
        raise ValueError('the key "*" is reserved for subscribing to every key')
    return key  # type: ignore[return-value]
