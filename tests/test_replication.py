"""Replication (SPEC §3): late joiners, relays around missing links, faults, leaving."""

from __future__ import annotations

import asyncio
import random

from crdt_stores.memory import MemoryNetwork
from crdt_stores.values import same_value

from .conftest import FAST, assert_same_state, converge


async def test_late_joiner_receives_every_store(net) -> None:
    alice = await net.join("room", peer_id="alice")
    bob = await net.join("room", peer_id="bob")
    for s in range(3):
        store = alice.stores.create(f"store-{s}")
        await store.bulk_set({f"k{i}": {"i": i, "f": i / 3, "l": [i] * 3} for i in range(200)})
    await bob.stores.create("bobs").set("x", 1)
    bob.stores.create("empty")
    await converge(alice, bob)
    late = await net.join("room", peer_id="late")
    await converge(alice, bob, late)
    assert sorted(late.stores) == ["bobs", "empty", "store-0", "store-1", "store-2"]
    assert_same_state(alice, bob, late)


async def test_big_store_is_chunked_and_syncs(net) -> None:
    alice = await net.join("room", peer_id="alice")
    store = alice.stores.create("big")
    rng = random.Random(5)
    await store.bulk_set({f"k{i}": rng.randbytes(600).hex() for i in range(3000)})  # ~3.6 MB
    late = await net.join("room", peer_id="late")
    await converge(alice, late)
    assert late.stores["big"].get_all() == store.get_all()
    assert late._engine.stats["frames_in"] > 25  # compressed, still many 64 KiB chunks


async def test_missing_link_is_bridged_by_a_third_peer(net) -> None:
    a = await net.join("room", peer_id="a")
    b = await net.join("room", peer_id="b")
    c = await net.join("room", peer_id="c")
    await converge(a, b, c)
    net.cut("a", "b")
    for _ in range(5):
        await asyncio.sleep(0)
    assert "b" not in a.peers and "a" not in b.peers
    await a.stores.create("s").set("from-a", [1])
    await b.stores.create("s").set("from-b", {"x": 1})
    await b.stores["s"].update("from-a", [2])
    await converge(a, b, c)
    assert_same_state(a, b, c)
    assert a.stores["s"].get_all() == {"from-a": [1, 2], "from-b": {"x": 1}}
    assert "b" not in a.peers  # still no direct link: everything went through c


async def test_chain_topology_converges(net) -> None:
    peers = [await net.join("room", peer_id=f"p{i}") for i in range(5)]
    for i in range(5):
        for j in range(i + 2, 5):
            net.cut(f"p{i}", f"p{j}")  # only p0-p1-p2-p3-p4 remain
    for i, peer in enumerate(peers):
        await peer.stores.create("s").update("list", [i])
        await peer.stores["s"].set(f"own-{i}", i)
    await converge(*peers)
    assert_same_state(*peers)
    assert sorted(peers[0].stores["s"].get("list")) == [0, 1, 2, 3, 4]


async def test_partition_and_heal(net) -> None:
    peers = [await net.join("room", peer_id=f"p{i}") for i in range(4)]
    await converge(*peers)
    net.partition(["p0", "p1"], ["p2", "p3"])
    for i, peer in enumerate(peers):
        store = peer.stores.create("s")
        await store.update("doc", {f"field{i}": i})
        await store.update("log", [i])
        await store.set("winner", i)
    await converge(*peers)  # each side converges on its own
    assert peers[0].stores["s"].get("doc") == {"field0": 0, "field1": 1}
    net.heal()
    await converge(*peers)
    assert_same_state(*peers)
    doc = peers[3].stores["s"].get("doc")
    assert doc == {"field0": 0, "field1": 1, "field2": 2, "field3": 3}
    assert sorted(peers[3].stores["s"].get("log")) == [0, 1, 2, 3]


async def test_drops_duplicates_and_reorders(net) -> None:
    peers = [await net.join("room", peer_id=f"p{i}") for i in range(3)]
    net.set_faults(drop=0.3, duplicate=0.3, jitter=0.02)
    for round_ in range(30):
        for i, peer in enumerate(peers):
            store = peer.stores.create("s")
            await store.update("log", [f"{i}:{round_}"])
            await store.update("fields", {f"p{i}": round_})
            await store.set(f"k{round_ % 4}", [i, round_])
        await asyncio.sleep(0.002)
    net.heal()
    await converge(*peers)
    assert_same_state(*peers)
    log = peers[0].stores["s"].get("log")
    assert sorted(log) == sorted(f"{i}:{r}" for i in range(3) for r in range(30))
    assert peers[0].stores["s"].get("fields") == {"p0": 29, "p1": 29, "p2": 29}


async def test_reconnect_is_a_new_link(net) -> None:
    a = await net.join("room", peer_id="a")
    b = await net.join("room", peer_id="b")
    await converge(a, b)
    net.cut("a", "b")
    await a.stores.create("s").set("while-cut", 1)
    await b.stores.create("t").set("also", 2)
    net.restore("a", "b")
    await converge(a, b)
    assert_same_state(a, b)
    assert a.stores["t"].get("also") == 2 and b.stores["s"].get("while-cut") == 1


async def test_a_reconnect_sends_the_gap_not_the_store(net) -> None:
    """A link that comes back exchanges state vectors and sends only what the other
    side lacks: no storm of full state after a flap, however big the stores."""
    a = await net.join("room", peer_id="a")
    b = await net.join("room", peer_id="b")
    store = a.stores.create("s")
    await store.bulk_set({f"k{i}": "x" * 10_000 for i in range(100)})
    await converge(a, b)
    net.cut("a", "b")
    await store.set("while-cut", 1)
    before = a.stats["bytes_out"] + b.stats["bytes_out"]
    net.restore("a", "b")
    await converge(a, b)
    assert b.stores["s"].get("while-cut") == 1
    sent = a.stats["bytes_out"] + b.stats["bytes_out"] - before
    print(f"{sent} bytes to resume a 1 MB store")
    assert sent < 5_000, f"{sent} bytes to resume a 1 MB store"


async def test_a_late_joiner_is_not_told_of_keys_it_never_had(net) -> None:
    a = await net.join("room", peer_id="a")
    store = a.stores.create("s")
    await store.set("gone", 1)
    await store.delete("gone")
    await store.set("kept", 2)
    b = await net.join("room", peer_id="b")
    calls: list[tuple[str, object]] = []
    b.stores.create("s").subscribe("*", lambda key, value: calls.append((key, value)))
    await converge(a, b)
    assert calls == [("kept", 2)]


async def test_leave_and_rejoin(net) -> None:
    a = await net.join("room", peer_id="a")
    b = await net.join("room", peer_id="b")
    await a.stores.create("s").set("k", 1)
    await converge(a, b)
    await b.leave()
    await a.stores["s"].set("k", 2)
    b2 = await net.join("room", peer_id="b")
    await converge(a, b2)
    assert b2.stores["s"].get("k") == 2
    await b2.stores["s"].update("k", 5)
    await converge(a, b2)
    assert a.stores["s"].get("k") == 5


async def test_leave_delivers_queued_writes(net) -> None:
    a = await net.join("room", peer_id="a")
    b = await net.join("room", peer_id="b")
    store = a.stores.create("s")
    await converge(a, b)
    for i in range(100):
        await store.set(f"k{i}", i)
    await a.leave()  # no synced() first: leaving must not lose what was written
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(b.stores["s"]) == 100


async def test_data_is_gone_when_the_last_peer_leaves(net) -> None:
    a = await net.join("room", peer_id="a")
    await a.stores.create("s").set("k", 1)
    await a.leave()
    b = await net.join("room", peer_id="b")
    await converge(b)
    assert len(b.stores) == 0


async def test_synced_does_not_wait_for_a_peer_that_left(net) -> None:
    a = await net.join("room", peer_id="a")
    b = await net.join("room", peer_id="b")
    net.set_faults(drop=1.0, between=("a", "b"))
    await a.stores.create("s").set("k", 1)
    waiter = asyncio.ensure_future(a.synced(timeout=10))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await b.leave()
    await asyncio.wait_for(waiter, 5)


async def test_dead_link_is_detected_by_heartbeat() -> None:
    net = MemoryNetwork(seed=3, **{**FAST, "heartbeat_interval": 0.05, "dead_after": 0.3})
    a = await net.join("room", peer_id="a")
    b = await net.join("room", peer_id="b")
    left: list = []
    a.on("peer_left", left.append)
    await converge(a, b)
    net.set_faults(drop=1.0)  # b goes silent, but its link never closes
    for _ in range(100):
        if left:
            break
        await asyncio.sleep(0.02)
    assert left == ["b"]
    net.heal()
    await converge(a, b)  # the link comes back, as a reconnect would
    assert "b" in a.peers


async def test_many_rooms_are_isolated(net) -> None:
    a1 = await net.join("one", peer_id="a")
    b1 = await net.join("one", peer_id="b")
    a2 = await net.join("two", peer_id="a")
    await a1.stores.create("s").set("room", "one")
    await a2.stores.create("s").set("room", "two")
    await converge(a1, b1, a2)
    assert b1.stores["s"].get("room") == "one" and a2.stores["s"].get("room") == "two"
    assert a2.peers == []


# -- concurrency rules (SPEC §2) ------------------------------------------------


async def concurrently(net, *writes):
    """Run each peer's writes while the peers cannot see each other, then reconnect."""
    peers = [await net.join("room", peer_id=f"p{i}") for i in range(len(writes))]
    for peer in peers:
        peer.stores.create("s")
    await converge(*peers)
    names = [p.peer_id for p in peers]
    net.partition(*[[name] for name in names])
    for peer, write in zip(peers, writes, strict=True):
        await write(peer.stores["s"])
    net.heal()
    await converge(*peers)
    assert_same_state(*peers)
    return [peer.stores["s"] for peer in peers]


async def test_concurrent_updates_of_different_fields_keep_all(net) -> None:
    async def base(store):
        pass

    peers = [await net.join("room", peer_id=f"q{i}") for i in range(3)]
    await peers[0].stores.create("s").set("doc", {"title": "t"})
    await converge(*peers)
    net.partition(["q0"], ["q1"], ["q2"])
    for i, peer in enumerate(peers):
        await peer.stores["s"].update("doc", {f"f{i}": i})
    net.heal()
    await converge(*peers)
    assert_same_state(*peers)
    assert peers[0].stores["s"].get("doc") == {"title": "t", "f0": 0, "f1": 1, "f2": 2}


async def test_concurrent_appends_keep_all_items_in_one_order(net) -> None:
    async def writer(i):
        async def write(store):
            await store.update("list", [f"{i}a", f"{i}b"])
            await store.update("list", [f"{i}c"])

        return write

    stores = await concurrently(net, *[await writer(i) for i in range(3)])
    lists = [s.get("list") for s in stores]
    assert lists[0] == lists[1] == lists[2]
    assert sorted(lists[0]) == sorted(f"{i}{x}" for i in range(3) for x in "abc")
    for i in range(3):  # each writer's own items stay in its order
        mine = [x for x in lists[0] if x.startswith(str(i))]
        assert mine == [f"{i}a", f"{i}b", f"{i}c"]


async def test_concurrent_writes_of_one_key_pick_one_winner(net) -> None:
    async def setter(value):
        async def write(store):
            await store.set("k", value)
            await store.update("d", {"same": value})

        return write

    stores = await concurrently(net, *[await setter(v) for v in (1, 1.0, "one", [1])])
    winner = stores[0].get("k")
    assert any(same_value(winner, v) for v in (1, 1.0, "one", [1]))
    assert all(same_value(s.get("k"), winner) for s in stores)
    assert all(same_value(s.get("d"), {"same": winner}) for s in stores)


async def test_set_concurrent_with_update_resolves_the_same_everywhere(net) -> None:
    async def do_set(store):
        await store.set("k", {"from": "set"})

    async def do_update(store):
        await store.update("k", {"extra": 1})

    stores = await concurrently(net, do_set, do_update)
    value = stores[0].get("k")
    # Ordered by (Lamport clock, replica id): the update lands on top of the set,
    # or the set replaces the updated dict. Either way, the same on both peers.
    assert value in ({"from": "set", "extra": 1}, {"from": "set"})


async def test_delete_concurrent_with_update(net) -> None:
    async def do_delete(store):
        await store.delete("k")

    async def do_update(store):
        await store.update("k", [1])

    stores = await concurrently(net, do_delete, do_update)
    assert stores[0].get("k") in (None, [1])


async def test_causally_later_write_wins_regardless_of_replica_id(net) -> None:
    peers = [await net.join("room", peer_id=f"p{i}") for i in range(2)]
    store0 = peers[0].stores.create("s")
    for i in range(20):  # alternate writers, each seeing the previous write
        writer = peers[i % 2].stores.create("s")
        await writer.set("k", i)
        await converge(*peers)
        assert store0.get("k") == i
