"""Peers that misbehave, and orders of delivery that honest peers produce.

Found by review: each test reproduces a scenario that once went wrong.
"""

from __future__ import annotations

from typing import Any

import cbor2
from pycrdt import Array, Doc, Map

from crdt_stores import wire
from crdt_stores.protocol import SyncEngine
from crdt_stores.replica import StoreReplica


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
    seen: list[Any] = []
    a.on_change = lambda changes, local: seen.append(dict(changes))
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
    assert {"c": 3} not in [change.get("k") for change in seen]
    for replica in (a, b, c):
        assert replica.entry_count <= 3


def _evil_updates(honest: StoreReplica) -> list[bytes]:
    evil = Doc(client_id=99)
    evil.apply_update(honest.diff())
    writers = evil.get("writers", type=Map)
    updates = []
    for change in (
        lambda: writers.__setitem__("5", "not an array"),
        lambda: writers.__setitem__("1", Array([cbor2.dumps(["k", 0, "evil", 9])])),
        lambda: writers.__delitem__("1"),
    ):
        state = evil.get_state()
        change()
        updates.append(evil.get_update(state))
    return updates


def test_replaced_and_deleted_writer_arrays_in_any_order_converge() -> None:
    honest = StoreReplica("s", client_id=1)
    honest.set("k", 1)
    honest.take_outbox()
    u0, u1, u2 = _evil_updates(honest)
    p, q = StoreReplica("s", client_id=2), StoreReplica("s", client_id=3)
    for replica in (p, q):
        replica.apply(honest.diff())
    for update in (u0, u1, u2):
        p.apply(update)
    for update in (u1, u2, u0):  # the deletion arrives before what it depends on
        q.apply(update)
    assert p.state_vector_dict() == q.state_vector_dict()
    assert dict(p.items()) == dict(q.items())
    # both keep working: writes after the tampering replicate and fold the same
    q.update("k", {"q": 1})
    p.set("other", 2)
    for delta in q.take_outbox():
        p.apply(delta)
    for delta in p.take_outbox():
        q.apply(delta)
    late = StoreReplica("s", client_id=4)
    late.apply(q.diff())
    assert dict(p.items()) == dict(q.items()) == dict(late.items())
    assert q.get("k") == {"q": 1}


def test_forged_equal_orders_fold_the_same_everywhere() -> None:
    """Entries sharing (lamport, writer) are ordered by content, not by arrival."""
    evil = Doc(client_id=99)
    writers = evil.get("writers", type=Map)
    s0 = evil.get_state()
    writers["7"] = Array([cbor2.dumps(["k", 0, "first", 1])])
    u1 = evil.get_update(s0)
    s1 = evil.get_state()
    writers["7"].append(cbor2.dumps(["k", 0, "second", 1]))
    writers["0007"] = Array([cbor2.dumps(["k", 0, "not a writer key", 5])])
    u2 = evil.get_update(s1)
    p, q = StoreReplica("s", client_id=1), StoreReplica("s", client_id=2)
    p.apply(u1)
    p.apply(u2)
    q.apply(u2)  # pending until u1 arrives
    q.apply(u1)
    assert p.get("k") == q.get("k")
    assert p.get("k") in ("first", "second")


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
