"""Contract tests of crdt_stores/_ydoc.py: what it relies on in pycrdt's private API.

Each test names one behaviour of pycrdt's Rust objects the adapter depends on; a pycrdt
release that changes it fails here first, by name, instead of somewhere deep in sync.
"""

from __future__ import annotations

from typing import Any

import pytest
from pycrdt import Array, Doc, Map

from crdt_stores import _statevector
from crdt_stores._ydoc import YDoc
from crdt_stores.replica import StoreReplica

from .test_hostile import PANICKING_UPDATE


class Recorder:
    """What the adapter's observers report, in order."""

    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []
        self.deletes: list[bytes | None] = []

    def on_transaction(self, update: bytes | None, deletes: bytes | None) -> None:
        self.log.append(("transaction", update))
        self.deletes.append(deletes)

    def on_array(self, writer: str, delta: list[dict[str, Any]]) -> None:
        self.log.append(("array", (writer, delta)))

    def on_writers(self, keys: dict[str, dict[str, Any]]) -> None:
        self.log.append(("writers", keys))

    def doc(self, client_id: int) -> YDoc:
        return YDoc(client_id, self.on_transaction, self.on_array, self.on_writers)


def write(doc: YDoc, writer: str, blobs: list[bytes]) -> None:
    txn = doc.begin()
    doc.local = True
    try:
        arrays = doc.arrays(txn)
        array = arrays[writer] if writer in arrays else doc.new_array(txn, writer)
        base = len(doc.items(txn, array))
        for offset, blob in enumerate(blobs):
            doc.insert(array, txn, base + offset, blob)
    finally:
        doc.end(txn)


def test_a_local_transaction_reports_its_update_and_no_events() -> None:
    seen = Recorder()
    doc = seen.doc(7)
    assert doc.client_id == 7
    write(doc, "7", [b"a", b"b"])
    assert [kind for kind, _ in seen.log] == ["transaction"]
    update = seen.log[0][1]
    assert isinstance(update, bytes) and len(update) > 2
    other = Doc()
    other.apply_update(update)  # a plain Yjs update: a map of arrays of byte strings
    assert list(other.get("writers", type=Map)["7"]) == [b"a", b"b"]


def test_a_local_transaction_reports_its_delete_set_encoded_as_in_an_update() -> None:
    seen = Recorder()
    doc = seen.doc(7)
    write(doc, "7", [b"a", b"b", b"c"])
    txn = doc.begin()
    doc.local = True
    try:
        doc.remove(doc.arrays(txn)["7"], txn, 0, 2)  # clocks 1 and 2
    finally:
        doc.end(txn)
        doc.local = False
    assert seen.deletes[0] == b"\x00"  # appends only: no deletions
    # The delete set alone, as it ends an update: one client, one range (1, 2).
    assert seen.deletes[1] == bytes([1, 7, 1, 1, 2])
    update = seen.log[1][1]
    assert update.endswith(seen.deletes[1])


def test_an_empty_transaction_reports_nothing() -> None:
    seen = Recorder()
    doc = seen.doc(7)
    txn = doc.begin()
    doc.local = True
    doc.end(txn)
    assert seen.log == []


def test_a_remote_update_reports_new_arrays_then_inserts_and_deletes() -> None:
    writer = Recorder().doc(5)
    write(writer, "5", [b"x", b"y", b"z"])
    seen = Recorder()
    doc = seen.doc(9)
    txn = doc.begin()
    doc.apply_update(txn, writer.update())
    doc.end(txn)
    # the deep events come first, then the transaction (remote: without its update)
    assert seen.log[-1] == ("transaction", None)
    assert "transaction" not in [kind for kind, _ in seen.log[:-1]]
    (keys,) = [value for kind, value in seen.log if kind == "writers"]
    assert list(keys) == ["5"] and keys["5"]["action"] == "add"
    assert YDoc.is_array(keys["5"]["newValue"])
    # deletion of the middle item, as a later remote update
    before = writer.state_vector()
    txn = writer.begin()
    writer.local = True
    writer.remove(writer.arrays(txn)["5"], txn, 1, 1)
    writer.end(txn)
    writer.local = False
    seen.log.clear()
    txn = doc.begin()
    doc.apply_update(txn, writer.update(before))
    doc.end(txn)
    assert ("array", ("5", [{"retain": 1}, {"delete": 1}])) in seen.log
    txn = doc.begin()
    try:
        items = doc.items(txn, doc.arrays(txn)["5"])
    finally:
        doc.end(txn)
    assert [bytes(item) for item in items] == [b"x", b"z"]


def test_inserts_into_a_known_array_arrive_as_an_insert_delta_of_byte_arrays() -> None:
    writer = Recorder().doc(5)
    write(writer, "5", [b"x"])
    seen = Recorder()
    doc = seen.doc(9)
    txn = doc.begin()
    doc.apply_update(txn, writer.update())
    doc.end(txn)
    before = writer.state_vector()
    write(writer, "5", [b"y", b"z"])
    seen.log.clear()
    txn = doc.begin()
    doc.apply_update(txn, writer.update(before))
    doc.end(txn)
    (change,) = [value for kind, value in seen.log if kind == "array"]
    name, delta = change
    assert name == "5" and delta[0] == {"retain": 1}
    assert [bytes(v) for v in delta[1]["insert"]] == [b"y", b"z"]
    assert all(type(v) in (bytes, bytearray) for v in delta[1]["insert"])


def test_arrays_lists_only_arrays_and_the_state_vector_is_yjs_encoded() -> None:
    plain = Doc(client_id=3)
    writers = plain.get("writers", type=Map)
    writers["3"] = Array([b"e"])
    writers["note"] = "not an array"
    doc = Recorder().doc(4)
    txn = doc.begin()
    doc.apply_update(txn, plain.get_update())
    doc.end(txn)
    txn = doc.begin()
    try:
        assert list(doc.arrays(txn)) == ["3"]
    finally:
        doc.end(txn)
    state = doc.state_vector()
    assert isinstance(state, bytes)
    assert _statevector.decode(state) == _statevector.decode(plain.get_state())


def test_a_yrs_panic_is_a_base_exception_the_replica_can_catch() -> None:
    """Yrs may panic on input the checks should never let through: pyo3's
    PanicException derives from BaseException, not Exception, so the replica catches
    BaseException around ``apply_update`` (and re-raises only KeyboardInterrupt and
    SystemExit)."""
    honest = StoreReplica("s", client_id=5)
    honest.bulk_set({f"k{i}": i for i in range(5)})
    honest.set("k1", {"a": 1})
    honest.delete("k2")
    doc = Recorder().doc(4)
    txn = doc.begin()
    doc.apply_update(txn, honest.diff())
    doc.end(txn)
    txn = doc.begin()
    with pytest.raises(BaseException) as caught:
        doc.apply_update(txn, bytes.fromhex(PANICKING_UPDATE))
    doc.end(txn)
    assert not issubclass(caught.type, Exception), caught.type
    assert caught.type is not KeyboardInterrupt and caught.type is not SystemExit


def test_observers_hold_their_owner_weakly() -> None:
    """A replica and its document must be collectable: no cycle through Rust objects."""
    import gc
    import weakref

    class Owner:
        def __init__(self) -> None:
            self.doc = YDoc(1, self.on_transaction, self.on_array, self.on_writers)

        def on_transaction(self, update: bytes | None, deletes: bytes | None) -> None: ...

        def on_array(self, writer: str, delta: list[dict[str, Any]]) -> None: ...

        def on_writers(self, keys: dict[str, dict[str, Any]]) -> None: ...

    owner = Owner()
    write(owner.doc, "1", [b"a"])
    ref = weakref.ref(owner)
    del owner
    gc.collect()
    assert ref() is None


def test_end_leaves_the_next_transaction_not_local() -> None:
    """A replica marks only its own writes local; ``end`` clears the mark, even when
    the commit raises (else a remote update would be taken for a local write)."""

    class Failing(Recorder):
        def on_transaction(self, update: bytes | None, deletes: bytes | None) -> None:
            raise RuntimeError("observer failed")

    seen = Recorder()
    doc = seen.doc(3)
    write(doc, "3", [b"a"])
    assert doc.local is False
    failing = Failing()
    doc = failing.doc(4)
    with pytest.raises(RuntimeError, match="observer failed"):  # (pycrdt passes it on)
        write(doc, "4", [b"a"])
    assert doc.local is False
