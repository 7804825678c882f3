"""What a replica knows of its document, kept in step with it: each writer array's
entries in order (its *mirror*), each key's entries in merge order and folded value,
and the highest Lamport clock seen.

Remote transactions reach it through the document's observers (``on_array``,
``on_writers``), and ``settle()`` folds what they saw into the values with the merge
rules; local writes, which know what they did, update it directly.
"""

from __future__ import annotations

from typing import Any

from ._ydoc import ArrayDelta, YArray, YDoc, YTransaction
from .entries import EntryError, ParsedEntry, parse_entry
from .merge import (
    INERT,
    MISSING,
    Entry,
    entry_order,
    fold,
    integrate,
    make_entry,
    order_ties,
)
from .values import same_value

__all__ = ["Mirror", "group_by_key", "runs", "writer_id"]


class Mirror:
    """The mirrors, key lists and values of one replica's document."""

    def __init__(self, max_value_bytes: int) -> None:
        self.max_value_bytes = max_value_bytes
        self.y: YDoc | None = None  # set once the document exists (its observers call us)
        self.arrays: dict[str, YArray] = {}  # writer -> its array
        self.mirrors: dict[str, list[Entry]] = {}  # writer -> its array's items, in order
        self.by_key: dict[str, list[Entry]] = {}  # each sorted by order
        self.values: dict[str, Any] = {}  # folded value of every present key
        self.lamport = 0
        # entries of the update being applied, checked before Yrs saw them
        self.parsed: dict[bytes, ParsedEntry] = {}
        # gathered by the observers during one remote transaction, used right after it
        self.inserted: list[Entry] = []
        self.removed: list[Entry] = []
        self.new_arrays: dict[str, YArray] = {}
        self.needs_rebuild = False

    def changed(self) -> bool:
        """Whether the observers saw anything in the last remote transaction."""
        return bool(self.inserted or self.removed or self.new_arrays or self.needs_rebuild)

    def forget(self, doomed: dict[str, list[int]], dead: list[Entry]) -> None:
        """Drop entries a local transaction deleted (at ``doomed``, per writer) from the
        mirrors and key lists."""
        if len(dead) == 1:  # the usual overwrite
            entry = dead[0]
            (index,) = doomed[entry.writer]
            del self.mirrors[entry.writer][index]
            assert entry.key is not None
            entries = self.by_key[entry.key]
            entries.remove(entry)
            if not entries:
                del self.by_key[entry.key]
            return
        for writer, indices in doomed.items():
            mirror = self.mirrors[writer]
            for start, length in runs(indices):  # last run first: indices stay valid
                del mirror[start : start + length]
        by_key = self.by_key
        for key, gone in group_by_key(dead).items():
            entries = by_key[key]
            if len(gone) == 1:
                entries.remove(gone[0])
            else:
                ids = {id(e) for e in gone}
                entries[:] = [e for e in entries if id(e) not in ids]
            if not entries:
                del by_key[key]

    def index_of(self, entry: Entry) -> int:
        """Where ``entry`` is in its writer's array now."""
        mirror = self.mirrors[entry.writer]
        hint = min(entry.pos, len(mirror) - 1)
        try:
            # A writer only appends, so an entry only drifts left, by deletions.
            index = mirror.index(entry, max(0, hint - 256), hint + 1)
        except ValueError:
            index = mirror.index(entry)
        entry.pos = index
        return index

    def on_writers(self, keys: dict[str, dict[str, Any]]) -> None:
        """Arrays added to (or, never from a checked update, changed in) the writers map."""
        if not keys:
            self.needs_rebuild = True  # how pycrdt reports some out-of-order changes
        for writer, change in keys.items():
            array = change.get("newValue")
            if (
                change.get("action") == "add"
                and YDoc.is_array(array)
                and writer not in self.mirrors
                and writer_id(writer) is not None
            ):
                self.new_arrays[writer] = array
            else:
                # Checked updates cannot replace or delete an array; follow the
                # document as it is, reading it afresh, if it happens anyway.
                self.needs_rebuild = True

    def parse(self, blob: object, author: int) -> Entry:
        """The entry ``blob`` in ``author``'s array: checked before Yrs saw it, or now."""
        if type(blob) is bytearray:  # how pycrdt returns an item read from an array
            blob = bytes(blob)
        if type(blob) is bytes:
            parsed = self.parsed.get(blob)
            if parsed is not None:
                return make_entry(parsed, author)
            try:
                return make_entry(parse_entry(blob, self.max_value_bytes), author)
            except EntryError:
                pass
        return make_entry(INERT, author)  # never from a checked update; kept out of every fold

    def on_array(self, writer: str, delta: ArrayDelta) -> None:
        mirror = self.mirrors.get(writer)
        if mirror is None:
            return
        inserted = self.inserted
        index = 0
        for part in delta:
            if "retain" in part:
                index += part["retain"]
            elif "delete" in part:
                count = part["delete"]
                self.removed.extend(mirror[index : index + count])
                del mirror[index : index + count]
            else:
                author = writer_id(writer)
                assert author is not None  # only arrays with a client id key have mirrors
                new = [self.parse(blob, author) for blob in part["insert"]]
                for offset, entry in enumerate(new):
                    entry.writer = writer
                    entry.pos = index + offset
                mirror[index:index] = new
                index += len(new)
                inserted.extend(new)

    def read_array(self, txn: YTransaction, writer: str, array: YArray) -> list[Entry]:
        author = writer_id(writer)
        assert author is not None
        entries = [self.parse(blob, author) for blob in self._y().items(txn, array)]
        for index, entry in enumerate(entries):
            entry.writer = writer
            entry.pos = index
        return entries

    def _read_new_arrays(self) -> None:
        """Fill the mirrors of writer arrays that appeared in the last transaction."""
        new_arrays = self.new_arrays
        self.new_arrays = {}
        txn = self._y().begin()
        try:
            for writer, array in new_arrays.items():
                entries = self.read_array(txn, writer, array)
                self.arrays[writer] = array
                self.mirrors[writer] = list(entries)
                self.inserted.extend(entries)
        finally:
            self._y().end(txn)

    def rebuild(self) -> dict[str, Any]:
        """Re-read every writer array from the document; returns the values that changed."""
        arrays: dict[str, YArray] = {}
        mirrors: dict[str, list[Entry]] = {}
        txn = self._y().begin()
        try:
            for writer, array in self._y().arrays(txn).items():
                if writer_id(writer) is not None:
                    arrays[writer] = array
                    mirrors[writer] = self.read_array(txn, writer, array)
        finally:
            self._y().end(txn)
        by_key: dict[str, list[Entry]] = {}
        for mirror in mirrors.values():
            for entry in mirror:
                if entry.key is not None:
                    by_key.setdefault(entry.key, []).append(entry)
                    self.lamport = max(self.lamport, entry.order[0])
        values: dict[str, Any] = {}
        for key, entries in by_key.items():
            entries.sort(key=entry_order)
            order_ties(entries)
            value = fold(entries)
            if value is not MISSING:
                values[key] = value
        old = self.values
        changes = {
            key: values.get(key, MISSING)
            for key in dict.fromkeys([*old, *values])
            if key not in old or key not in values or not same_value(old[key], values[key])
        }
        self.arrays, self.mirrors, self.by_key, self.values = arrays, mirrors, by_key, values
        return changes

    def reset(self) -> None:
        """Forget what the observers gathered (after using it, or after a failure)."""
        self.inserted = []
        self.removed = []
        self.new_arrays = {}
        self.needs_rebuild = False

    def _integrate(self, inserted: list[Entry], removed: list[Entry]) -> dict[str, Any]:
        """The merge rules applied to what a transaction inserted and removed."""
        for entry in inserted:
            if entry.key is not None and entry.order[0] > self.lamport:
                self.lamport = entry.order[0]
        return integrate(self.by_key, self.values, inserted, removed)

    def settle(self) -> tuple[dict[str, Any], list[str]]:
        """Integrate what the observers saw of a remote transaction; returns the changed
        values and the keys with new entries."""
        if self.needs_rebuild:
            self.reset()
            changes = self.rebuild()
            keys = list(self.by_key)
        else:
            if self.new_arrays:
                self._read_new_arrays()
            inserted = self.inserted
            removed = self.removed
            self.reset()
            changes = self._integrate(inserted, removed) if inserted or removed else {}
            keys = list(dict.fromkeys(e.key for e in inserted if e.key is not None))
        return changes, keys

    def _y(self) -> YDoc:
        assert self.y is not None, "the replica sets its document first"
        return self.y


def writer_id(writer: str) -> int | None:
    """The client id a writer array is keyed by; None for keys this library never writes."""
    if writer.isascii() and writer.isdecimal() and len(writer) < 20 and str(int(writer)) == writer:
        return int(writer)
    return None


def runs(indices: list[int]) -> list[tuple[int, int]]:
    """Sorted unique indices -> (start, length) runs, last run first."""
    runs: list[tuple[int, int]] = []
    for i in indices:
        if runs and runs[-1][0] + runs[-1][1] == i:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((i, 1))
    runs.reverse()
    return runs


def group_by_key(entries: list[Entry]) -> dict[str, list[Entry]]:
    grouped: dict[str, list[Entry]] = {}
    for entry in entries:
        assert entry.key is not None
        grouped.setdefault(entry.key, []).append(entry)
    return grouped
