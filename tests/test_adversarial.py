"""Peers that misbehave, and orders of delivery that honest peers produce.

Found by review: each test reproduces a scenario that once went wrong.
"""

from __future__ import annotations

import cbor2
import pytest
from pycrdt import Array, Doc, Map, merge_updates

from crdt_stores import wire
from crdt_stores.protocol import SyncEngine
from crdt_stores.replica import StoreReplica, UpdateError


def deliver(source: StoreReplica, *targets: StoreReplica) -> list[bytes]:
    deltas = source.take_outbox()
    for delta in deltas:
        for target in targets:
            target.apply(delta)
    return deltas


def test_no_peer_sees_a_value_that_never_existed() -> None:
    """A peer must not delete an entry before the write that supersedes it arrives.

    C holds A's set, B's concurrent set (ordered after A's) and its own update.
    If C deleted A's entry (superseded by B's, not by C's own write), A could get
    that deletion before B's set and show {"c": 3}: a value no peer ever had.
    """
    a, b, c = (StoreReplica("s", client_id=i) for i in (1, 2, 3))
    a.set("k", {"a": 1})
    deliver(a, c)
    b.set("k", {"b": 2})
    from_b = b.take_outbox()  # delayed
    c.update("k", {"c": 3})
    deliver(c, a)
    assert a.get("k") == {"a": 1, "c": 3}
    a.track_changes = True
    for delta in from_b:
        c.apply(delta)
    deliver(c, a)  # whatever C sends now reaches A before B's set
    for delta in from_b:
        a.apply(delta)
    for _ in range(2):  # then everyone syncs fully (B compacts A's set: its own superseded it)
        for x in (a, b, c):
            for y in (a, b, c):
                if x is not y:
                    y.apply(x.diff(y.state_vector()))
        for x in (a, b, c):
            deliver(x, a, b, c)
    assert a.get("k") == b.get("k") == c.get("k") == {"b": 2, "c": 3}
    seen = [changes for changes, _ in a.take_changes()]
    assert seen and {"c": 3} not in [change.get("k") for change in seen]
    for replica in (a, b, c):
        assert replica.entry_count <= 3


def _evil_updates(honest: StoreReplica) -> list[bytes]:
    """Updates that tamper with the layout or another writer's array, made with pycrdt."""
    made = []
    for change in (
        lambda writers: writers.__setitem__("5", "not an array"),
        lambda writers: writers.__setitem__("1", Array([cbor2.dumps(["k", 0, "evil", 9])])),
        lambda writers: writers["1"].append(cbor2.dumps(["k", 0, "appended by 99", 9])),
        lambda writers: writers.__setitem__("77", Array([cbor2.dumps(["k", 0, "as 77", 9])])),
        lambda writers: writers.__setitem__("99", Map({"nested": Array([1])})),
        lambda writers: writers.__setitem__("99", Array([Array([cbor2.dumps(["k", 0, 1, 9])])])),
    ):
        evil = Doc(client_id=99)
        evil.apply_update(honest.diff())
        state = evil.get_state()
        change(evil.get("writers", type=Map))
        made.append(evil.get_update(state))
    return made


def test_tampering_with_another_writers_array_is_refused_by_every_peer() -> None:
    honest = StoreReplica("s", client_id=1)
    honest.set("k", 1)
    honest.take_outbox()
    p, q = StoreReplica("s", client_id=2), StoreReplica("s", client_id=3)
    for replica in (p, q):
        replica.apply(honest.diff())
    for update in _evil_updates(honest):
        for replica in (p, q):
            with pytest.raises(UpdateError):
                replica.apply(update)
    assert dict(p.items()) == dict(q.items()) == {"k": 1}
    assert p.state_vector_dict() == q.state_vector_dict() == honest.state_vector_dict()


def test_deleting_a_writers_array_deletes_nothing_but_its_entries() -> None:
    """Clock 0 (the array) is clipped out of delete ranges; the entries' deletion stands."""
    honest = StoreReplica("s", client_id=1)
    honest.bulk_set({"a": 1, "b": 2})
    evil = Doc(client_id=99)
    evil.apply_update(honest.diff())
    state = evil.get_state()
    del evil.get("writers", type=Map)["1"]  # deletes the array and, with it, every entry
    erase = evil.get_update(state)
    p = StoreReplica("s", client_id=2)
    p.apply(honest.diff())
    p.apply(erase)
    assert dict(p.items()) == {}  # a member may delete what others wrote...
    honest.set("c", 3)  # ...but the writer's array stays, so its next writes replicate
    for delta in honest.take_outbox():
        p.apply(delta)
    assert dict(p.items()) == {"c": 3}


def _own_array_update(client: int, *blobs: bytes, base: Doc | None = None) -> tuple[Doc, bytes]:
    """An update from writer ``client`` appending ``blobs`` to its own array (valid layout)."""
    doc = base or Doc(client_id=client)
    writers = doc.get("writers", type=Map)
    state = doc.get_state()
    if str(client) not in writers:
        writers[str(client)] = Array(list(blobs))
    else:
        writers[str(client)].extend(list(blobs))
    return doc, doc.get_update(state)


def test_forged_equal_orders_fold_the_same_everywhere() -> None:
    """Entries sharing (lamport, writer) are ordered by content, not by arrival or batching."""
    # the first in the array sorts last by content: arrival order and content order differ
    doc, u1 = _own_array_update(7, cbor2.dumps(["k", 0, "OPENED", 1]))
    _, u2 = _own_array_update(7, cbor2.dumps(["k", 0, "LOCKED", 1]), base=doc)
    both = merge_updates(u1, u2)
    one, two, reordered = (StoreReplica("s", client_id=i) for i in (1, 2, 3))
    one.apply(both)  # alice: one update
    two.apply(u1)  # bob: two updates
    two.apply(u2)
    reordered.apply(u2)  # held until u1 arrives
    reordered.apply(u1)
    assert one.get("k") == two.get("k") == reordered.get("k")
    assert one.get("k") in ("LOCKED", "OPENED")


def test_unknown_kinds_do_not_grow_the_counters() -> None:
    engine = SyncEngine("b")
    engine.link_up("a", 0.0)
    for kind in range(1000, 3000):
        engine.receive("a", cbor2.dumps([wire.PROTOCOL_VERSION, kind]), 0.0)
    engine.receive("a", cbor2.dumps([wire.PROTOCOL_VERSION, wire.CHUNK, 1]), 0.0)
    assert engine.stats["unknown_kind"] == 2000
    assert engine.stats["malformed"] == 1
    assert engine.stats["handler_error"] == 0
    assert len(engine.stats) < 20


def test_parts_that_wait_for_earlier_structs_are_all_released_when_these_come() -> None:
    a, b = StoreReplica("s", client_id=1), StoreReplica("s", client_id=2)
    a.set("a", 1)
    b.set("b", 1)
    first = merge_updates(*a.take_outbox(), *b.take_outbox())
    a.set("a", 2)
    b.set("b", 2)
    a.delete("a")
    later = [*a.take_outbox(), *b.take_outbox()]
    c = StoreReplica("s", client_id=3)
    for update in later:
        assert c.apply(update) == []  # held: their writers' earlier structs are missing
    assert dict(c.items()) == {}
    applied = c.apply(first)
    assert len(applied) > len(later)  # the first, then every held part (for relaying)
    assert dict(c.items()) == {"b": 2}
    assert not c._held  # nothing left waiting
    assert c.state_vector_dict() == merge_sv(a, b)


def merge_sv(*replicas: StoreReplica) -> dict[int, int]:
    out: dict[int, int] = {}
    for replica in replicas:
        out.update(replica.state_vector_dict())
    return out


def test_deletions_of_items_not_here_yet_wait_once_and_apply_when_they_come() -> None:
    """A deletion ahead of its item is held (once, however often it is resent), then
    applied when the item arrives: on every peer, the writer included."""
    writer = StoreReplica("s", client_id=21)
    writer.set("a", 1)
    ahead = b"\x00\x01\x15\x01\x02\x01"  # delete (21, 2): the writer's next entry
    receiver = StoreReplica("s", client_id=22)
    receiver.apply(writer.diff())
    for replica in (writer, receiver):
        for _ in range(50):
            assert replica.apply(ahead) == []
        assert replica._held._deletes == {21: [(2, 1)]}
    writer.set("b", 2)  # entry (21, 2): the held deletion applies at the writer too
    for delta in writer.take_outbox():
        receiver.apply(delta)
    assert dict(writer.items()) == dict(receiver.items()) == {"a": 1}
    assert not writer._held and not receiver._held


def test_the_kept_state_vector_follows_the_document() -> None:
    """The replica keeps its state vector up to date itself (decoding it after every
    transaction was the costliest part of applying a small update)."""
    from crdt_stores import _statevector

    a, b = StoreReplica("s", client_id=41), StoreReplica("s", client_id=42)
    a.bulk_set({f"k{i}": i for i in range(200)})
    b.set("x", 1)
    for delta in b.take_outbox():
        a.apply(delta)
    a.clear()
    for replica in (a, b):
        for delta in a.take_outbox() if replica is b else []:
            replica.apply(delta)
        assert replica.state_vector_dict() == _statevector.decode(replica.state_vector())
