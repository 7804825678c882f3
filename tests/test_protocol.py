"""Wire protocol (SPEC §4): framing, chunking, and bad input that must never hurt a peer."""

from __future__ import annotations

import os
import random

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Array, Doc, Map

from crdt_stores import _statevector, wire
from crdt_stores.events import LinkDead, StoreAdded, StoreChanged
from crdt_stores.protocol import SyncConfig, SyncEngine
from crdt_stores.replica import StoreReplica

from .conftest import converge


def pump(engines: dict[str, SyncEngine], now: float = 0.0, rounds: int = 50) -> int:
    """Deliver frames between sans-IO engines until they go quiet; returns frames moved."""
    moved = 0
    for _ in range(rounds):
        batch = [
            (name, peer, frame)
            for name, e in engines.items()
            for peer, frame in e.data_to_send(now)
        ]
        if not batch:
            return moved
        for sender, peer, frame in batch:
            engines[peer].receive(sender, frame, now)
            moved += 1
    raise AssertionError("engines never went quiet")


def linked_pair() -> tuple[SyncEngine, SyncEngine]:
    a, b = SyncEngine("a"), SyncEngine("b")
    a.link_up("b", 0.0)
    b.link_up("a", 0.0)
    return a, b


# -- the sans-IO engine ---------------------------------------------------------


def test_engine_handshake_and_sync_without_any_io() -> None:
    a, b = linked_pair()
    replica = a.create_store("s")
    replica.set("k", {"v": 1})
    a.commit("s")
    assert not a.is_synced()
    pump({"a": a, "b": b})
    assert a.is_synced() and b.is_synced()
    assert b.store("s").get("k") == {"v": 1}


def test_a_late_joiner_gets_stores_whose_parts_add_up_past_the_item_budget() -> None:
    """Found by the JavaScript port: a DIFF packed several stores' parts by bytes only,
    so three stores of 8,000 keys made one DIFF over ``max_message_items``, refused
    whole by the late joiner at every repair."""
    a = SyncEngine("a")
    for name in ("s1", "s2", "s3"):
        a.create_store(name).bulk_set({f"k{i}": i for i in range(8_000)})
        a.commit(name)
    b = SyncEngine("b")
    a.link_up("b", 0.0)
    b.link_up("a", 0.0)
    pump({"a": a, "b": b})
    for name in ("s1", "s2", "s3"):
        assert len(b.store(name)) == 8_000
    assert b.stats["too_many_items"] == 0 and b.stats["violations"] == 0


def test_engine_counts_messages_per_tick() -> None:
    a, b = linked_pair()
    pump({"a": a, "b": b})
    replica = a.create_store("s")
    for i in range(1000):
        replica.set(f"k{i % 7}", i)
        a.commit("s")
    frames = a.data_to_send(0.0)
    # one UPDATE for all 1000 writes (chunked if large), not 1000 messages
    assert 1 <= len(frames) <= 3
    for _, frame in frames:
        b.receive("a", frame, 0.0)
    assert b.store("s").get("k5") == 999 and b.store("s").get("k6") == 993


def test_chunks_reassemble_in_any_order() -> None:
    a, b = linked_pair()
    pump({"a": a, "b": b})
    replica = a.create_store("big")
    replica.bulk_set({f"k{i}": os.urandom(200).hex() for i in range(2000)})
    a.commit("big")
    frames = a.data_to_send(0.0)
    assert len(frames) > 5 and all(len(f) <= wire.MAX_FRAME_BYTES for _, f in frames)
    random.Random(4).shuffle(frames)
    for _, frame in frames:
        b.receive("a", frame, 0.0)
    assert dict(b.store("big").items()) == dict(replica.items())


def dead_links(engine: SyncEngine, dead: list[str]) -> list[str]:
    """``dead`` extended with the links the engine reported dead since the last look."""
    dead.extend(e.peer for e in engine.take_events() if isinstance(e, LinkDead))
    return dead


def test_heartbeat_and_dead_link() -> None:
    dead: list[str] = []
    config = SyncConfig(heartbeat_interval=1.0, dead_after=3.0)
    a = SyncEngine("a", config)
    a.link_up("b", 0.0)
    a.receive("b", wire.encode(wire.SYNC, {}, False), 0.0)
    a.data_to_send(0.0)
    a.tick(1.5)
    kinds = [cbor2.loads(f)[1] for _, f in a.data_to_send(1.5)]
    assert kinds == [wire.HEARTBEAT]
    a.receive("b", wire.encode(wire.HEARTBEAT), 2.0)
    a.tick(4.0)
    assert dead_links(a, dead) == []
    a.tick(5.5)
    assert dead_links(a, dead) == ["b"] and a.peers == []


def test_no_repair_while_the_transport_still_holds_data_for_the_peer() -> None:
    """A reliable channel loses nothing while it lives: a gap behind a send queue is
    waited out, and repaired only once the queue has drained and the gap stays."""
    a, b = linked_pair()
    pump({"a": a, "b": b})
    replica = a.create_store("s")
    replica.set("k", "v")
    a.commit("s")
    a.data_to_send(0.0)  # the write goes out... and is lost on the way to b

    def repairs_after(seconds: range, backlog: int) -> int:
        for second in seconds:
            a.heard("b", float(second))
            a.receive("b", wire.encode(wire.HEARTBEAT), float(second))
            a.backlog("b", backlog)
            a.tick(float(second))
            a.data_to_send(float(second))
        return a.stats["repairs"]

    assert repairs_after(range(1, 6), backlog=50_000) == 0
    assert repairs_after(range(6, 10), backlog=0) >= 1


def test_a_peer_heard_below_the_frames_is_not_dead() -> None:
    """Under loss, frames wait behind retransmissions while datagrams still arrive:
    the transport's signs of life keep the link; silence of both ends it."""
    dead: list[str] = []
    config = SyncConfig(heartbeat_interval=1.0, dead_after=3.0)
    a = SyncEngine("a", config)
    a.link_up("b", 0.0)
    a.receive("b", wire.encode(wire.SYNC, {}, False), 0.0)  # the last frame for a while
    for second in range(1, 20):
        a.heard("b", second - 0.5)
        a.tick(float(second))
    assert dead_links(a, dead) == [] and a.peers == ["b"]
    a.heard("b", 1.0)  # an older sign of life changes nothing
    a.tick(22.0)
    assert dead_links(a, dead) == ["b"] and a.peers == []
    a.heard("b", 23.0)  # no link: nothing to keep alive, nothing raised
    assert a.peers == []


def test_engine_reports_what_happened_as_events_in_order() -> None:
    """Results leave the core as typed events (never callbacks into user code)."""
    a, b = linked_pair()
    a.create_store("s")
    a.write("s", "set", "k", 1)
    a.write("s", "bulk_set", {"x": [1], "y": {"z": None}})
    assert a.take_events() == [
        StoreAdded("s"),
        StoreChanged("s", {"k": 1}, True),
        StoreChanged("s", {"x": [1], "y": {"z": None}}, True),
    ]
    assert a.take_events() == []
    pump({"a": a, "b": b})
    events = b.take_events()
    assert events[0] == StoreAdded("s")
    changed = [e for e in events[1:] if isinstance(e, StoreChanged)]
    assert changed and all(not e.local and e.name == "s" for e in changed)
    merged: dict[str, object] = {}
    for event in changed:
        merged.update(event.changes)
    assert merged == {"k": 1, "x": [1], "y": {"z": None}}
    with pytest.raises(ValueError, match="unknown write operation"):
        a.write("s", "_append", [])
    with pytest.raises(KeyError):
        a.write("nope", "set", "k", 1)
    with pytest.raises(TypeError):
        a.write("s", "set", 5, 1)  # a bad key: raises, changes nothing, reports nothing
    assert a.take_events() == [] and a.store("s").get("k") == 1


def test_next_deadline_says_when_the_engine_next_needs_to_run() -> None:
    config = SyncConfig(heartbeat_interval=1.0, dead_after=3.0, sync_interval=2.0, ack_delay=0.25)
    a = SyncEngine("a", config)
    assert a.next_deadline() is None  # no links: nothing to time
    a.link_up("b", 10.0)
    assert a.deadline_moved(None) and a.deadline_moved(12.0)
    assert a.next_deadline() == 0.0  # the first anti-entropy check is due at once
    a.tick(10.0)
    a.data_to_send(10.0)
    assert a.next_deadline() == 11.0  # the heartbeat
    assert not a.deadline_moved(11.0)
    a.receive("b", wire.encode(wire.SYNC, {}, False), 10.5)
    a.data_to_send(10.5)
    # the SYNC is answered at once; then an update arrives, whose ack may wait 0.25 s
    b = SyncEngine("b", config)
    b.link_up("a", 10.5)
    b.create_store("s").set("k", 1)
    b.commit("s")
    frames = b.data_to_send(10.5)
    for _, frame in frames:
        a.receive("b", frame, 10.6)
    assert a.deadline_moved(11.0 + 1.0)
    assert a.next_deadline() == pytest.approx(10.85)
    a.tick(10.85)
    a.data_to_send(10.85)
    assert a.next_deadline() == pytest.approx(11.85)  # heartbeat again, after the ack
    a.tick(11.85)
    a.data_to_send(11.85)
    assert a.next_deadline() == pytest.approx(12.0)  # anti-entropy (sync_interval)
    a.tick(12.0)
    a.data_to_send(12.0)
    assert a.next_deadline() == pytest.approx(12.85)
    a.tick(13.6)  # nothing from b since 10.6: dead at 13.6
    assert any(isinstance(e, LinkDead) for e in a.take_events()) and a.next_deadline() is None


def test_state_vector_codec() -> None:
    doc = Doc()
    doc.get("a", type=Array).append(1)
    encoded = doc.get_state()
    decoded = _statevector.decode(encoded)
    assert decoded == {doc.client_id: 1}
    assert _statevector.encode(decoded) == encoded
    for bad in (b"", b"\x05\x01", b"\x01\xff", b"\x01\x01\x01\x00"):
        with pytest.raises(ValueError):
            _statevector.decode(bad)


# -- bad input through a live peer ----------------------------------------------


@pytest.fixture
async def pair(net):
    alice = await net.join("room", peer_id="alice")
    bob = await net.join("room", peer_id="bob")
    store = alice.stores.create("s")
    await store.set("k", [1])
    await converge(alice, bob)
    yield alice, bob
    await alice.leave()
    await bob.leave()


async def still_works(alice, bob) -> None:
    await alice.stores["s"].update("k", [2])
    await converge(alice, bob)
    assert bob.stores["s"].get("k")[-1] == 2


BAD_FRAMES = [
    ("not cbor", b"\xff\xfe\xfd", "malformed"),
    ("empty", b"", "malformed"),
    ("truncated", cbor2.dumps([1, 3, {"s": [b"x"]}, {}])[:-3], "malformed"),
    ("not an array", cbor2.dumps({"kind": 3}), "malformed"),
    ("wrong version", cbor2.dumps([99, 3, {}, {}]), "unsupported_version"),
    ("version true", cbor2.dumps([True, 5]), "malformed"),
    ("version 1.0", b"\x82\xfb\x3f\xf0" + bytes(6) + b"\x05", "malformed"),
    ("update not a map", cbor2.dumps([1, 3, [b"x"], {}]), "malformed"),
    ("delta not bytes", cbor2.dumps([1, 3, {"s": ["text"]}, {}]), "malformed"),
    ("bad state vector", cbor2.dumps([1, 4, {"s": b"\xff\xff"}]), "malformed_state"),
    ("hello without id", cbor2.dumps([1, 0, 5, []]), "malformed"),
    ("too short", cbor2.dumps([1, 2]), "malformed"),
    ("chunk bad header", cbor2.dumps([1, 7, 1, 5, 2, b"x"]), "malformed"),
    ("oversize frame", cbor2.dumps([1, 5, b"x" * 70_000]), "oversize"),
    ("unknown kind", cbor2.dumps([1, 42, "future"]), "unknown_kind"),
    ("nested too deep", b"\x81" * 100 + b"\x00", "malformed"),
]


def test_the_version_is_an_unsigned_integer_of_any_length() -> None:
    for version in ("01", "1801", "190001", "1b0000000000000001"):
        assert wire.decode_frame(bytes.fromhex(f"82{version}05")).kind == wire.HEARTBEAT
    for version in ("02", "1bffffffffffffffff"):
        with pytest.raises(wire.ProtocolError) as refused:
            wire.decode_frame(bytes.fromhex(f"82{version}05"))
        assert refused.value.reason == "unsupported_version"
    for version in ("f5", "f93c00", "fa3f800000", "fb3ff0000000000000", "e1", "20", "6131"):
        with pytest.raises(wire.ProtocolError, match="not an unsigned integer") as refused:
            wire.decode_frame(bytes.fromhex(f"82{version}05"))
        assert refused.value.reason == "malformed"


@pytest.mark.parametrize(("label", "frame", "counter"), BAD_FRAMES, ids=[b[0] for b in BAD_FRAMES])
async def test_bad_frames_are_dropped_and_counted(pair, label, frame, counter) -> None:
    alice, bob = pair
    before = dict(bob.stores["s"].get_all())
    bob._driver.frame("alice", frame)
    bob._engine.is_synced()  # state vectors are decoded (and checked) when looked at
    assert bob._engine.stats[counter] == 1
    assert bob.stores["s"].get_all() == before
    assert "alice" in bob.peers
    await still_works(alice, bob)


async def test_bad_yjs_update_is_dropped_not_applied_in_part(pair) -> None:
    alice, bob = pair
    good = StoreReplica("s")
    good.set("fresh", 1)
    delta = good.take_outbox()[0]
    corrupt = delta[:5] + b"\xff" * 8
    bob._driver.frame(
        "alice", wire.encode(wire.UPDATE, {"s": [b"\x07garbage", corrupt, delta]}, {})
    )
    assert bob._engine.stats["bad_update"] >= 1
    assert bob.stores["s"].get("fresh") == 1  # the good delta of the same message applied
    await still_works(alice, bob)


async def test_oversize_chunked_message_is_dropped(net) -> None:
    alice = await net.join("room", peer_id="alice")
    small = await net.join(
        "room", peer_id="small", max_message_bytes=200_000, max_value_bytes=100_000
    )
    store = alice.stores.create("s")
    await converge(alice, small)
    chunks = wire.frames(wire.encode(wire.UPDATE, {"s": [os.urandom(300_000)]}, {}), 77)
    for chunk in chunks:
        small._driver.frame("alice", chunk)
    assert small._engine.stats["oversize"] == 1
    await store.set("after", 1)
    await converge(alice, small)
    assert small.stores["s"].get("after") == 1


BAD_ENTRIES = [
    "not bytes",
    42,
    b"\xff\xff",
    cbor2.dumps(["k", 0, b"bytes-value", 5]),
    cbor2.dumps(["k", 0, {1: 2}, 5]),
    cbor2.dumps(["*", 0, 1, 5]),
    cbor2.dumps(["", 0, 1, 5]),
    cbor2.dumps(["x" * 1025, 0, 1, 5]),
    cbor2.dumps(["k", 9, 1, 5]),
    cbor2.dumps(["k", 0, 2**70, 5]),
    cbor2.dumps(["k", 1, [1], 5]),
    cbor2.dumps(["k", 2, {"not": "a list"}, 5]),
    cbor2.dumps(["k", 3, "delete has no payload", 5]),
    cbor2.dumps(["k", 0, 1, -5]),
    cbor2.dumps(["k", 0, 1, 2**64]),
    cbor2.dumps(["k", 0, 1, 5, "extra"]),
    cbor2.dumps(["k", 0, "x" * (1 << 20), 5]),  # over the 1 MiB value limit
    b"\x84\x61k\x00\xc1\x00\x05",  # a CBOR tag (a date) as the value
]


@pytest.mark.parametrize("bad", BAD_ENTRIES, ids=range(len(BAD_ENTRIES)))
async def test_entries_a_write_cannot_make_are_refused_with_their_update(pair, bad) -> None:
    """An update carrying one entry no local write could make is refused whole."""
    alice, bob = pair
    rogue = Doc(client_id=4242)
    rogue.get("writers", type=Map)["4242"] = Array([cbor2.dumps(["valid", 0, 1, 5]), bad])
    before = bob._engine.stats["bad_update"]
    for frame in wire.frames(wire.encode(wire.UPDATE, {"s": [rogue.get_update()]}, {}), 9):
        bob._driver.frame("alice", frame)
    assert bob._engine.stats["bad_update"] == before + 1
    assert bob.stores["s"].get_all() == {"k": [1]}
    assert 4242 not in bob._engine.store("s").state_vector_dict()
    await still_works(alice, bob)


async def test_a_valid_update_from_a_peer_lands(pair) -> None:
    alice, bob = pair
    rogue = Doc(client_id=4242)
    rogue.get("writers", type=Map)["4242"] = Array([cbor2.dumps(["valid", 0, {"a": 1}, 5])])
    bob._driver.frame("alice", wire.encode(wire.UPDATE, {"s": [rogue.get_update()]}, {}))
    assert bob.stores["s"].get_all() == {"k": [1], "valid": {"a": 1}}
    await converge(alice, bob)
    assert alice.stores["s"].get_all() == bob.stores["s"].get_all()


async def test_bad_store_name_from_a_peer_is_refused(pair) -> None:
    _, bob = pair
    bob._driver.frame("alice", wire.encode(wire.ACK, {"x" * 5000: b"\x00"}))
    assert bob._engine.stats["bad_store_name"] == 1
    assert sorted(bob.stores) == ["s"]


def _valid_frames() -> list[bytes]:
    a, _ = linked_pair()
    replica = a.create_store("s")
    replica.bulk_set({"k": [1, 2.0, "x"], "d": {"a": None}})
    a.commit("s")
    return [frame for _, frame in a.data_to_send(0.0)]


VALID_FRAMES = _valid_frames()  # built once: hypothesis needs the same inputs every run


@settings(max_examples=300, deadline=None)
@given(
    frames=st.lists(
        st.one_of(
            st.binary(max_size=300),
            st.tuples(
                st.sampled_from(range(len(VALID_FRAMES))),
                st.lists(
                    st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4
                ),
            ),
        ),
        max_size=10,
    )
)
def test_fuzzed_frames_never_raise(frames) -> None:
    """Random bytes and mutated valid frames: no exception (PanicException included)."""
    b = SyncEngine("b")
    b.link_up("a", 0.0)
    for item in frames:
        if isinstance(item, bytes):
            frame = item
        else:
            mutated = bytearray(VALID_FRAMES[item[0]])
            for position, byte in item[1]:
                mutated[position % len(mutated)] = byte
            frame = bytes(mutated)
        b.receive("a", frame, 0.0)  # must not raise
    b.tick(0.5)
    b.data_to_send(0.5)
    assert b.stats["handler_error"] == 0


def test_every_message_kind_round_trips_through_its_typed_class() -> None:
    from crdt_stores.messages import (
        Ack,
        Chunk,
        Compressed,
        Diff,
        Heartbeat,
        Hello,
        Links,
        Sync,
        Unknown,
        Update,
    )

    examples = [
        Hello("alice", ["bob"]),
        Sync({"s": b"\x00"}, want_sync=True, more=False, digests={"s": b"12345678"}),
        Sync({}),  # no digests sent: not the same as empty ones
        Diff({"s": b"\x00\x00"}, {"s": b"\x00"}),
        Update({"s": [b"\x00\x00", b"\x00\x00"]}, {}, want_ack=True),
        Ack({"s": b"\x00"}, want_ack=False, digests={}),
        Heartbeat(),
        Links([]),
        Chunk(7, 1, 3, b"part"),
        Compressed(b"x\x9c\x03\x00\x00\x00\x00\x01"),
    ]
    for message in examples:
        assert wire.decode_frame(wire.encode_message(message)) == message
    assert wire.decode_frame(wire.encode(42, "future")) == Unknown(42)
    assert Sync({}).digests is None and wire.decode_frame(wire.encode(wire.SYNC, {})) == Sync({})
