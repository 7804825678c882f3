"""The merge rules of a store, free of pycrdt: entries, their order, the fold that gives
a key's value, which entries a write makes dead (compaction), and how new and removed
entries change the values. Every peer applies them alike, so values converge.

A key's value is the fold of its entries in ``(lamport, writer)`` order: ``set`` and
``delete`` reset it, a dict ``update`` merges top-level fields, a list ``update``
appends. Entries of equal order (only a forging peer makes them) are ordered by
content, the same way everywhere.
"""

from __future__ import annotations

import bisect
import itertools
from typing import Any, Final

import cbor2

from .entries import APPEND, DELETE, LAMPORT_MAX, MERGE, SET, Op, ParsedEntry, encode_entry
from .values import same_value

__all__ = [
    "INERT",
    "MISSING",
    "Entry",
    "apply_op",
    "dead_entries",
    "dominated",
    "entry_order",
    "fold",
    "fold_local",
    "has_ties",
    "integrate",
    "make_entry",
    "order_ties",
    "plan_local",
    "tiebreak",
]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()
"""Marks a key without a value (never written, or deleted)."""


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


def entry_order(entry: Entry) -> tuple[int, int]:
    return entry.order


INERT: Final = (None, -1, None, 0)


def make_entry(parsed: ParsedEntry | tuple[None, int, None, int], writer: int) -> Entry:
    key, op, payload, lamport = parsed
    if key is None:
        return Entry(None, -1, None, (0, 0))
    return Entry(key, op, payload, (lamport, writer))


def apply_op(value: Any, entry: Entry) -> Any:
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


def fold(entries: list[Entry]) -> Any:
    start = 0
    for i in range(len(entries) - 1, -1, -1):
        if entries[i].op in (SET, DELETE):
            start = i
            break
    value: Any = MISSING
    for entry in entries[start:]:
        value = apply_op(value, entry)
    return value


def dead_entries(entries: list[Entry], author: int | None = None) -> list[Entry]:
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


def plan_local(
    ops: list[Op], order: tuple[int, int], lamport_cbor: bytes, by_key: dict[str, list[Entry]]
) -> tuple[list[Entry], list[bytes], list[Entry]]:
    """A local write of ``ops`` at ``order``: its entries, their encoded blobs, and the
    entries (of ``by_key``, each key's in merge order) they make dead; none at the
    saturated clock, where a forged entry may order after ours."""
    lamport, author = order
    compact = lamport < LAMPORT_MAX
    entries: list[Entry] = []
    blobs: list[bytes] = []
    dead: list[Entry] = []
    for key, op, payload, blob in ops:
        entry = Entry(key, op, payload, order)
        entries.append(entry)
        blobs.append(encode_entry(key, op, blob, lamport_cbor))
        existing = by_key.get(key)
        if existing and compact:
            if op in (SET, DELETE):
                dead.extend(existing)  # our own reset, ordered last: all of it is dead
            else:
                dead.extend(dead_entries([*existing, entry], author))
    return entries, blobs, dead


def fold_local(
    by_key: dict[str, list[Entry]], values: dict[str, Any], entries: list[Entry]
) -> dict[str, Any]:
    """Fold a local write's entries (its superseded ones already gone from ``by_key``)
    into ``by_key`` and ``values``; returns the changed values (MISSING: deleted)."""
    changes: dict[str, Any] = {}
    for entry in entries:
        written = entry.key
        assert written is not None
        keyed = by_key.setdefault(written, [])
        if keyed and keyed[-1].order >= entry.order:
            # Only at the saturated clock: a forged entry may order after ours
            # (a bigger writer id) or equal to it (then by content), as on every peer.
            keyed.append(entry)
            keyed.sort(key=entry_order)
            order_ties(keyed)
            value = fold(keyed)
        else:
            keyed.append(entry)  # the newest order: last
            # Dead entries never changed the fold, so the old value is the base.
            value = apply_op(values.get(written, MISSING), entry)
        if value is MISSING:
            values.pop(written, None)
        else:
            values[written] = value
        changes[written] = value
    return changes


def tiebreak(entry: Entry) -> tuple[tuple[int, int], bytes]:
    """A total order: only entries a peer forged share (lamport, writer)."""
    return entry.order, cbor2.dumps([entry.key, entry.op, entry.payload])


def has_ties(entries: list[Entry]) -> bool:
    return any(a.order == b.order for a, b in itertools.pairwise(entries))


def order_ties(entries: list[Entry]) -> None:
    """Sort entries of equal order by content, the same way on every peer."""
    if has_ties(entries):
        entries.sort(key=tiebreak)


def dominated(entries: list[Entry], entry: Entry) -> bool:
    """True when a set/delete ordered after ``entry`` hides it."""
    i = bisect.bisect_right(entries, entry.order, key=entry_order)
    return any(e.op == SET or e.op == DELETE for e in entries[i:])


def integrate(
    by_key: dict[str, list[Entry]],
    values: dict[str, Any],
    inserted: list[Entry],
    removed: list[Entry],
) -> dict[str, Any]:
    """Entries ``inserted`` into and ``removed`` from a store: update its per-key entry
    lists (``by_key``, each sorted by order) and folded ``values`` in place; returns
    the changed keys' values (``MISSING`` for a key now absent), in write order."""
    fresh: dict[str, list[Entry]] = {}
    for entry in inserted:
        if entry.key is not None:
            fresh.setdefault(entry.key, []).append(entry)
    losers: dict[str, list[Entry]] = {}
    for entry in removed:
        if entry.key is not None:
            losers.setdefault(entry.key, []).append(entry)
    changes: dict[str, Any] = {}
    for key in dict.fromkeys([*fresh, *losers]):  # in write order: callbacks follow it
        entries = by_key.get(key) or []
        new = fresh.get(key, ())
        gone = losers.get(key, ())
        at_tail = True
        if new:
            new.sort(key=entry_order)  # type: ignore[attr-defined]
            if len(new) > 1 and has_ties(new):  # type: ignore[arg-type]
                new.sort(key=tiebreak)  # type: ignore[attr-defined]
            if not entries or entries[-1].order < new[0].order:
                entries.extend(new)
            else:
                at_tail = False
                for entry in new:
                    bisect.insort(entries, entry, key=entry_order)
                order_ties(entries)
        # Removing superseded entries (what compaction does) cannot change the fold.
        harmless = True
        if gone:
            last = entries[-1]
            if (last.op == SET or last.op == DELETE) and all(e is not last for e in gone):
                pass  # a reset ordered last: everything before it is dead
            else:
                dead = {id(e) for e in dead_entries(entries)}
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
                value = apply_op(value, entry)
            effective = True
        else:
            value = fold(entries) if entries else MISSING
            if new:
                effective = any(not dominated(entries, entry) for entry in new)
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


if __name__ == "crdt_stores.merge":  # (not in the compiled copy, crdt_stores._c_merge)
    from ._compiled import adopt

    adopt(__name__, __file__)
