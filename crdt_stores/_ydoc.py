"""pycrdt's private API, confined to this adapter: the Rust objects under ``Doc`` and
``Map`` (their Python wrappers cost more than the CRDT work on a replica's hot paths)
and the raw shapes of their events. A replica reaches Yrs only through ``YDoc``.

What it relies on is pinned by tests/test_pycrdt_adapter.py, which fails loudly on a
pycrdt release that changes it (pycrdt is also pinned below 0.15):

* ``Doc._doc``: ``create_transaction()``, ``apply_update(txn, bytes)``,
  ``get_state(txn)``, ``observe(callback)`` (events with ``.update``, ``.delete_set``);
* ``Map.integrated``: ``insert_array_prelim(txn, key)``, ``keys(txn)``, ``get(txn, key)``,
  ``observe_deep(callback)`` (events with ``.path``, ``.keys`` for the map itself);
* ``pycrdt._pycrdt.Array``: ``insert(txn, index, value)``, ``remove_range(txn, start,
  length)``, ``get(txn, index)``, ``len(txn)``; ``ArrayEvent.delta``: a list of
  ``{"retain": n}``, ``{"delete": n}``, ``{"insert": [values]}``;
* a transaction's ``commit()`` and ``drop()``; panics derive from ``BaseException``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from pycrdt import Doc, Map
from pycrdt._pycrdt import Array as _RawArray
from pycrdt._pycrdt import ArrayEvent as _RawArrayEvent

__all__ = ["ArrayDelta", "YArray", "YDoc", "YTransaction"]

YArray = Any
"""A writer's array (pycrdt's Rust ``Array``): a handle only ``YDoc`` operates on."""
YTransaction = Any
"""An open Yrs transaction (Rust), from ``YDoc.begin``, closed by ``YDoc.end``."""
ArrayDelta = list[dict[str, Any]]
"""A change of one array: ``{"retain": n}``, ``{"delete": n}``, ``{"insert": [values]}``."""

OnTransaction = Callable[[bytes | None, bytes | None], None]
OnArray = Callable[[str, ArrayDelta], None]
OnWriters = Callable[[dict[str, dict[str, Any]]], None]

_EMPTY_UPDATE = b"\x00\x00"


class YDoc:
    """One Yrs document whose root map ``"writers"`` holds one array per writer.

    Observers, run when a transaction that changed something commits: for a remote
    one, ``on_array(writer, delta)`` for each changed writer array and
    ``on_writers(keys)`` for changes of the map itself (pycrdt's ``{key: {"action",
    "newValue"...}}``); then, for every one, ``on_transaction`` with its Yjs update and
    encoded delete set if it was local (``local`` set while it ran), else None and None.
    They must be bound methods; they are held weakly (``_weak_parts``).
    """

    __slots__ = (
        "__weakref__",
        "_doc",
        "_raw",
        "_subscriptions",
        "_writers",
        "begin",
        "client_id",
        "local",
    )

    def __init__(
        self,
        client_id: int | None,
        on_transaction: OnTransaction,
        on_array: OnArray,
        on_writers: OnWriters,
    ) -> None:
        self._doc: Any = Doc(client_id=client_id)
        self._raw = self._doc._doc
        self._writers = self._doc.get("writers", type=Map).integrated
        self.client_id: int = self._doc.client_id
        self.local = False  # the running transaction is a local write: report its update
        # Open a transaction: pycrdt's own method (no Python frame on the hot path).
        self.begin: Callable[[], YTransaction] = self._raw.create_transaction

        this = weakref.ref(self)
        # (the owners' functions and weak references, unpacked: one frame per call)
        transaction_owner, transaction_done = _weak_parts(on_transaction)
        array_owner, array_changed = _weak_parts(on_array)
        writers_owner, writers_changed = _weak_parts(on_writers)

        def transaction(event: Any) -> None:
            doc = this()
            owner = transaction_owner()
            if doc is None or owner is None:
                return
            if doc.local:
                update = event.update
                if update and update != _EMPTY_UPDATE:
                    transaction_done(owner, update, event.delete_set)
                    return
            transaction_done(owner, None, None)

        def deep(events: list[Any]) -> None:
            doc = this()
            if doc is None or doc.local:
                return  # local transactions integrate what they did themselves
            for event in events:
                path = event.path
                if type(event) is _RawArrayEvent:
                    owner = array_owner()
                    if len(path) == 1 and owner is not None:
                        array_changed(owner, str(path[0]), event.delta)  # type: ignore[attr-defined]
                elif not path:  # the writers map itself
                    owner = writers_owner()
                    if owner is not None:
                        writers_changed(owner, event.keys)

        # Dropping a subscription unsubscribes it: they live as long as the document.
        self._subscriptions = (
            self._raw.observe(transaction),
            self._writers.observe_deep(deep),
        )

    # -- transactions ---------------------------------------------------------------

    def end(self, txn: YTransaction) -> None:
        """Commit (observers run now) and release the transaction, even if commit
        raises; the next one is not ``local`` unless marked so."""
        try:
            txn.commit()
        finally:
            txn.drop()
            self.local = False

    # -- the document ---------------------------------------------------------------

    def state_vector(self) -> bytes:
        txn = self.begin()
        try:
            return bytes(self._raw.get_state(txn))
        finally:
            self.end(txn)

    def apply_update(self, txn: YTransaction, update: bytes) -> None:
        """Integrate a checked remote update (may raise, even a pyo3 panic: BaseException)."""
        self._raw.apply_update(txn, update)

    def update(self, state_vector: bytes | None = None) -> bytes:
        """Everything a peer at ``state_vector`` lacks (all of it if None)."""
        return self._doc.get_update(state_vector)

    # -- writer arrays --------------------------------------------------------------

    def new_array(self, txn: YTransaction, writer: str) -> YArray:
        return self._writers.insert_array_prelim(txn, writer)

    def arrays(self, txn: YTransaction) -> dict[str, YArray]:
        """Every array in the writers map, by key (other values are left out)."""
        out: dict[str, YArray] = {}
        for key in self._writers.keys(txn):
            value = self._writers.get(txn, key)
            if type(value) is _RawArray:
                out[key] = value
        return out

    @staticmethod
    def is_array(value: object) -> bool:
        return type(value) is _RawArray

    # ``insert(array, txn, index, value)`` and ``remove(array, txn, start, length)``:
    # pycrdt's own methods (a writer's every write calls them).
    insert: Callable[[YArray, YTransaction, int, bytes], None] = staticmethod(_RawArray.insert)
    remove: Callable[[YArray, YTransaction, int, int], None] = staticmethod(_RawArray.remove_range)

    @staticmethod
    def items(txn: YTransaction, array: YArray) -> list[Any]:
        """An array's items (byte strings come back as ``bytearray``)."""
        return [array.get(txn, i) for i in range(array.len(txn))]


def _weak_parts(method: Callable[..., None]) -> tuple[weakref.ref[Any], Callable[..., None]]:
    """A bound method as a weak reference to its object and its function: observers
    must not keep their owner alive (a cycle through pycrdt's Rust objects is
    invisible to Python's garbage collector, and every replica would leak)."""
    return weakref.ref(method.__self__), method.__func__  # type: ignore[attr-defined]
