"""The bounded-degree mesh: whom a peer links to (``mesh.Topology``), and rooms that use it."""

from __future__ import annotations

import asyncio
import json
import random
import sys
from collections import deque
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdt_stores import Meeting, MeshConfig
from crdt_stores.memory import MemoryNetwork
from crdt_stores.mesh import Topology

CONFIG = MeshConfig(full_mesh_max=8)  # degrees 4 / 6 / 12
ROOT = Path(__file__).resolve().parent.parent


def peers(n: int) -> list[str]:
    return [f"p{i:03d}" for i in range(n)]


# -- Topology, plain state -----------------------------------------------------------------


def test_a_small_room_is_a_full_mesh() -> None:
    topology = Topology(CONFIG, random.Random(1))
    assert topology.choose(peers(7), now=0.0) == peers(7)
    assert all(topology.accepts(p, room_size=8) for p in peers(7))
    assert topology.to_dial(set(peers(7)), now=0.0) == []  # a full mesh links itself


def test_a_newcomer_to_a_large_room_dials_degree_peers() -> None:
    topology = Topology(CONFIG, random.Random(1))
    chosen = topology.choose(peers(100), now=0.0)
    assert len(chosen) == CONFIG.degree == len(set(chosen))
    assert topology.degree == CONFIG.degree  # dials count until they open or time out


def test_a_peer_accepts_links_up_to_twice_degree_high() -> None:
    topology = Topology(CONFIG, random.Random(1))
    for peer in peers(2 * CONFIG.degree_high):
        assert topology.accepts(peer, room_size=100)
        topology.link_up(peer)
    assert not topology.accepts("other", room_size=100)
    assert topology.accepts("p000", room_size=100)  # a reconnect of a link it has
    assert topology.accepts("other", room_size=8)  # a full mesh takes everyone


def test_under_degree_low_a_peer_dials_back_up_to_degree() -> None:
    topology = Topology(CONFIG, random.Random(1))
    present = set(peers(100))
    for peer in peers(6):
        topology.link_up(peer)
    assert topology.to_dial(present, now=0.0) == []  # at degree: nothing to do
    for peer in peers(3):
        topology.link_down(peer)  # three neighbours left: 3 < degree_low
    dialed = topology.to_dial(present, now=0.0)
    assert len(dialed) == 3 and not set(dialed) & {"p003", "p004", "p005"}
    assert topology.to_dial(present, now=1.0) == []  # dials pending count as links


def test_dials_time_out_and_refusals_cool_down() -> None:
    config = MeshConfig(full_mesh_max=8, dial_timeout=5.0, refused_cooldown=30.0)
    topology = Topology(config, random.Random(1))
    present = set(peers(10))
    first = topology.choose(sorted(present), now=0.0)
    assert topology.next_deadline() == 5.0
    topology.refused(first[0], now=1.0)
    again = topology.to_dial(present, now=6.0)  # the other five timed out: dial anew
    assert first[0] not in again and len(again) == config.degree
    assert topology.needs_attention(room_size=11, now=6.0) is False  # dialing: wait
    assert topology.needs_attention(room_size=11, now=11.5) is True  # they timed out


def test_a_refusal_from_a_bounded_room_ends_once_it_shrinks_to_a_full_mesh() -> None:
    """Found by the JavaScript port: a refusal kept after the room shrank back to a full
    mesh left next_deadline() in the past forever, and the driver's timer spun."""
    config = MeshConfig(full_mesh_max=8, refused_cooldown=5.0)
    topology = Topology(config, random.Random(1))
    first = topology.choose(peers(10), now=0.0)  # bounded
    topology.refused(first[0], now=1.0)
    for peer in first[1:]:
        topology.link_down(peer)  # under degree_low: the refusal counts as a deadline
    small = set(peers(4))  # the room shrank to a full mesh
    topology.to_dial(small, now=2.0)
    assert topology.needs_attention(room_size=5, now=7.0) is True  # the refusal ended
    topology.to_dial(small, now=7.0)
    deadline = topology.next_deadline()
    assert deadline is None or deadline > 7.0


def test_past_degree_high_the_best_linked_neighbours_are_dropped() -> None:
    topology = Topology(CONFIG, random.Random(1))
    topology.choose(peers(100), now=0.0)  # bounded from now on
    for peer in peers(20):
        topology.link_up(peer)
    degrees = {peer: (20 if i % 2 else 5) for i, peer in enumerate(peers(20))}
    dropped = topology.to_drop(room_size=101, degrees=degrees)
    assert len(dropped) == 8 and all(degrees[p] == 20 for p in dropped)
    assert len(topology.linked) == CONFIG.degree_high
    assert topology.to_drop(room_size=101, degrees=degrees) == []


def test_a_rewiring_swaps_one_link_for_a_random_one() -> None:
    config = MeshConfig(full_mesh_max=8, rewire_interval=10.0)
    topology = Topology(config, random.Random(1))
    present = set(peers(100))
    for peer in topology.choose(present, now=0.0):
        topology.link_up(peer)
    assert topology.to_dial(present, now=1.0) == []  # not due yet
    deadline = topology.next_deadline()
    assert deadline is not None and 5.0 <= deadline <= 15.0
    (new,) = topology.to_dial(present, now=deadline)
    assert new not in topology.linked
    topology.link_up(new)
    degrees = {peer: 6 for peer in topology.linked}
    (old,) = topology.to_drop(room_size=101, degrees=degrees)
    assert old != new and new in topology.linked and len(topology.linked) == config.degree
    assert topology.to_drop(room_size=101, degrees=degrees) == []  # one swap, one drop


def test_a_room_that_shrank_back_links_everyone() -> None:
    topology = Topology(CONFIG, random.Random(1))
    chosen = topology.choose(peers(30), now=0.0)  # bounded: six dials
    for peer in chosen:
        topology.link_up(peer)
    small = set(chosen[:3]) | {"x", "y"}  # six peers with this one: a full mesh again
    for peer in set(chosen) - small:
        topology.link_down(peer)
    assert topology.needs_attention(room_size=6, now=1.0)
    assert sorted(topology.to_dial(small, now=1.0)) == ["x", "y"]
    assert not topology.needs_attention(room_size=6, now=1.0)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=9, max_value=120),
    seed=st.integers(min_value=0, max_value=2**32),
    leave=st.floats(min_value=0.0, max_value=0.3),
)
def test_the_dial_rules_keep_a_random_room_connected_within_its_degrees(
    n: int, seed: int, leave: float
) -> None:
    """Peers join one by one (each dials per ``choose``, dialed peers accept or refuse),
    some leave, the rest repair: every peer ends within its degrees and the graph is
    connected. (The rules alone, without a network: a thousand rooms a second.)"""
    rng = random.Random(seed)
    tops: dict[str, Topology] = {}
    graph: dict[str, set[str]] = {}

    def dial(a: str, b: str) -> None:
        if tops[b].accepts(a, room_size=len(tops)):
            link(a, b)
            for victim in tops[b].to_drop(len(tops), {p: len(graph[p]) for p in graph}):
                unlink(b, victim)
        else:
            tops[a].refused(b, now=0.0)

    def link(a: str, b: str) -> None:
        tops[a].link_up(b)
        tops[b].link_up(a)
        graph[a].add(b)
        graph[b].add(a)

    def unlink(a: str, b: str) -> None:
        graph[a].discard(b)
        graph[b].discard(a)
        tops[b].link_down(a)

    for peer in peers(n):
        tops[peer] = Topology(CONFIG, random.Random(rng.random()))
        graph[peer] = set()
        for other in tops[peer].choose([p for p in tops if p != peer], now=0.0):
            dial(peer, other)
    for peer in rng.sample(sorted(tops), int(leave * n)):
        for other in graph.pop(peer):
            graph[other].discard(peer)
            tops[other].link_down(peer)
        del tops[peer]
    for _ in range(5):  # repair rounds (the driver's timer)
        for peer, topology in tops.items():
            for other in topology.to_dial(set(tops) - {peer}, now=0.0):
                dial(peer, other)
    degrees = [len(links) for links in graph.values()]
    assert max(degrees) <= CONFIG.degree_high
    assert min(degrees) >= min(CONFIG.degree_low, len(tops) - 1)
    assert _connected(graph)


def _connected(graph: dict[str, set[str]]) -> bool:
    start = next(iter(graph))
    seen = {start}
    queue = deque([start])
    while queue:
        for there in graph[queue.popleft()]:
            if there not in seen:
                seen.add(there)
                queue.append(there)
    return len(seen) == len(graph)


# -- rooms on MemoryNetwork ----------------------------------------------------------------


async def _settled(meetings: list[Meeting], low: int, high: int, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            degrees = [len(m.peers) for m in meetings]
            graph = {m.peer_id: set(m.peers) for m in meetings}
            if min(degrees) >= low and max(degrees) <= high and _connected(graph):
                await asyncio.gather(*(m.synced(timeout=timeout) for m in meetings))
                return
            await asyncio.sleep(0.02)


async def test_a_large_room_keeps_bounded_links_and_every_write_reaches_every_peer() -> None:
    net = MemoryNetwork(seed=3)
    meetings = [await net.join("big", peer_id=p, mesh=CONFIG) for p in peers(40)]
    try:
        await _settled(meetings, CONFIG.degree_low, CONFIG.degree_high)
        stores = [m.stores.create("s") for m in meetings]
        for i, store in enumerate(stores[::7]):
            await store.set(f"k{i}", i)
            await store.update("log", [i])
        await asyncio.gather(*(m.synced(timeout=30) for m in meetings))
        expected = stores[0].get_all()
        assert len(expected) == 7 and sorted(expected["log"]) == list(range(6))
        assert all(s.get_all() == expected for s in stores)
        # Relayed, not sent by the writer to everyone: a write costs each peer its degree.
        assert max(len(m.peers) for m in meetings) <= CONFIG.degree_high < len(meetings) - 1
    finally:
        await asyncio.gather(*(m.leave() for m in meetings))


async def test_a_large_room_repairs_itself_when_a_tenth_leave_at_once() -> None:
    net = MemoryNetwork(seed=4)
    meetings = [await net.join("big", peer_id=p, mesh=CONFIG) for p in peers(50)]
    try:
        await _settled(meetings, CONFIG.degree_low, CONFIG.degree_high)
        leaving = random.Random(4).sample(meetings, 5)
        staying = [m for m in meetings if m not in leaving]
        await asyncio.gather(*(m.leave() for m in leaving))
        store = staying[0].stores.create("after")
        await store.set("k", "written after they left")
        await _settled(staying, CONFIG.degree_low, CONFIG.degree_high)
        for m in staying:
            got = m.stores.get("after")
            assert got is not None and got.get("k") == "written after they left"
    finally:
        await asyncio.gather(*(m.leave() for m in meetings))


async def test_a_full_mesh_that_outgrows_full_mesh_max_becomes_bounded() -> None:
    config = MeshConfig(full_mesh_max=16)
    net = MemoryNetwork(seed=5)
    meetings = [await net.join("grow", peer_id=p, mesh=config) for p in peers(16)]
    try:
        await _settled(meetings, 15, 15)  # a full mesh: everyone linked to everyone
        store = meetings[0].stores.create("s")
        await store.set("before", 1)
        meetings += [await net.join("grow", peer_id=f"q{i:02d}", mesh=config) for i in range(24)]
        await _settled(meetings, config.degree_low, config.degree_high)
        await store.set("after", 2)
        await asyncio.gather(*(m.synced(timeout=30) for m in meetings))
        for m in meetings:
            got = m.stores.get("s")
            assert got is not None and got.get_all() == {"before": 1, "after": 2}
    finally:
        await asyncio.gather(*(m.leave() for m in meetings))


def test_mesh_options_are_checked() -> None:
    with pytest.raises(ValueError):
        MeshConfig(degree_low=7, degree=6)
    with pytest.raises(ValueError):
        MeshConfig(full_mesh_max=1)


async def test_a_bounded_mesh_over_real_webrtc_32_peers_in_4_processes() -> None:
    """Four processes of eight WebRTC peers each (loopback only), ``full_mesh_max=8``:
    every peer holds every peer's write, through at most ``degree_high`` links."""
    from signaling import SignalingServer

    async with SignalingServer("127.0.0.1", 0) as server:
        workers = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.room_worker",
                server.url,
                "big",
                f"w{i}",
                "8",
                "32",
                "8",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                cwd=ROOT,
            )
            for i in range(4)
        ]
        try:
            reports = []
            async with asyncio.timeout(150):
                for worker in workers:
                    assert worker.stdout is not None
                    reports.append(json.loads(await worker.stdout.readline() or b"{}"))
            assert all("converged" in r for r in reports), reports
            links = [n for r in reports for n in r["links"]]
            assert max(links) <= CONFIG.degree_high and min(links) >= 1
            assert all(n == 31 for r in reports for n in r["room"])  # signaling lists all
        finally:
            for worker in workers:
                assert worker.stdin is not None
                worker.stdin.write(b"leave\n")
                await worker.stdin.drain()
            async with asyncio.timeout(60):
                for worker in workers:
                    await worker.wait()


async def test_a_room_of_256_converges_in_few_hops_at_a_cost_per_peer_independent_of_n() -> None:
    """The large-room benchmark's simulation at N = 256 (20 ms per link): every write,
    a late joiner and a tenth leaving at once all converge (``room`` raises if not)."""
    from benchmarks.large_room import room

    row = await room(256, 2, latency=0.02, writes=2, seed=256)
    degree_high = MeshConfig().degree_high
    assert row.links_max <= degree_high and row.hops_max <= 6, row
    # The busiest peer sends a write on each of its links, plus acks, link lists and
    # the odd rewiring's handshake: nowhere near the N-1 copies a full mesh's writer sends.
    assert row.frames_max_peer <= 4 * degree_high < 255, row
    assert row.write_max_ms < 10_000 and row.late_join_s < 10 and row.leave_converge_s < 10, row
