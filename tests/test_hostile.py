"""Hostile peers (SPEC §9): one test per row of the threat table, and the rules behind them.

Each row is an input that once crashed, exhausted or split a room. The inputs are
built from raw bytes (``tests/helpers/attacks.py``); ``benchmarks/hostile.py``
replays the same ones against a peer process and prints their effect.
"""

from __future__ import annotations

import asyncio
import json
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager

import cbor2
import pytest
from pycrdt import Doc, merge_updates

from crdt_stores import Meeting
from crdt_stores.entries import LAMPORT_MAX
from crdt_stores.link import Phase
from crdt_stores.memory import MemoryNetwork
from crdt_stores.protocol import SyncConfig, SyncEngine
from crdt_stores.replica import StoreReplica, UpdateError

from .conftest import FAST, assert_same_state, converge
from .helpers import attacks

MiB = 1 << 20


def victim(config: SyncConfig | None = None, *peers: str) -> SyncEngine:
    """A sans-IO peer with store "s" and links to ``peers`` (default: one, "m")."""
    engine = SyncEngine("v", config)
    for peer in peers or ("m",):
        engine.link_up(peer, 0.0)
    engine.create_store("s").set("k", 1)
    engine.commit("s")
    engine.data_to_send(0.0)
    return engine


@contextmanager
def measured() -> Iterator[dict[str, float]]:
    """Peak Python memory (MB) and CPU seconds of the block."""
    result: dict[str, float] = {}
    tracemalloc.start()
    started = time.process_time()
    try:
        yield result
    finally:
        result["cpu"] = time.process_time() - started
        result["peak_mb"] = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.stop()


def still_serves(engine: SyncEngine, peer: str = "m") -> None:
    """The victim still applies a correct update from ``peer`` afterwards."""
    honest = StoreReplica("s", client_id=4321)
    honest.set("after", "attack")
    for delta in honest.take_outbox():
        engine.receive(peer, attacks.message(attacks.UPDATE, {"s": [delta]}, {}), 1.0)
    assert engine.store("s").get("after") == "attack"


# -- row 1: nesting that crashed Yrs ------------------------------------------------------


def test_row1_deep_any_is_refused_before_yrs_decodes_it() -> None:
    engine = victim()
    engine.receive("m", attacks.deep_any_frame(), 0.0)  # compressed: 105 bytes
    engine.receive(
        "m", attacks.message(attacks.DIFF, {"s": attacks.deep_any_update(20_000)}, {}), 0.0
    )
    for frame in attacks.chunked(
        attacks.message(attacks.DIFF, {"s": attacks.deep_any_update(500_000)}, {}), 1
    ):
        engine.receive("m", frame, 0.0)
    # the 91-byte frame inflates past the ratio limit; the plain ones reach the checker
    assert engine.stats["oversize"] == 1 and engine.stats["bad_update"] == 2
    assert engine.store("s").get("k") == 1
    still_serves(engine)


# -- row 2: partial messages ------------------------------------------------------------------


SMALL = SyncConfig(
    max_value_bytes=256 * 1024,
    max_message_bytes=512 * 1024,
    max_link_buffer_bytes=1 * MiB,
    max_buffer_bytes=2 * MiB,
)


def test_row2_a_message_announced_huge_is_refused_at_its_first_chunk() -> None:
    engine = victim()
    frames = attacks.chunk_flood(1, announced=400_000_000, chunks=200)
    with measured() as cost:
        for frame in frames:
            engine.receive("m", frame, 0.0)
    assert engine.stats["oversize"] == 1  # later chunks of a refused message are ignored
    assert cost["peak_mb"] < 5
    still_serves(engine)


def test_row2_partial_messages_stay_within_the_link_and_meeting_budgets() -> None:
    engine = victim(SMALL, "m1", "m2", "m3")
    reassemblers = [engine._links[p].reassembler for p in ("m1", "m2", "m3")]
    frames = [attacks.chunk_flood(i, announced=500_000, chunks=8)[:-1] for i in range(20)]
    with measured() as cost:
        for message_frames in frames:  # many messages, each left one chunk short
            for peer in ("m1", "m2", "m3"):
                for frame in message_frames:
                    engine.receive(peer, frame, 0.0)
                    held = [r.held_bytes for r in reassemblers]
                    assert max(held) <= SMALL.max_link_buffer_bytes
                    assert sum(held) <= SMALL.max_buffer_bytes
    assert engine.stats["over_budget"] > 0
    assert cost["peak_mb"] < 3 * SMALL.max_buffer_bytes / 1e6
    for reassembler in reassemblers:
        reassembler.clear()
    assert engine._buffers.used == 0


# -- row 3: inflation -------------------------------------------------------------------------


def test_row3_compression_bombs_are_refused_cheaply() -> None:
    engine = victim()
    bombs = [attacks.zero_bomb(477_000_000), attacks.list_bomb(15_000_000)]
    assert all(len(frame) < 600_000 for frame in bombs)
    frames = [part for bomb in bombs for part in attacks.chunked(bomb, 7)]
    with measured() as cost:
        for frame in frames:
            engine.receive("m", frame, 0.0)
    assert engine.stats["oversize"] == 2
    assert cost["peak_mb"] < 10 and cost["cpu"] < 1.0
    still_serves(engine)


def test_row3_a_message_of_tiny_items_is_cut_short_by_the_item_limit() -> None:
    engine = victim()
    frames = attacks.chunked(attacks.list_bomb(3_500_000, packed=False), 8)  # 3.5 MB
    with measured() as cost:
        for frame in frames:
            engine.receive("m", frame, 0.0)
    assert engine.stats["too_many_items"] == 1
    assert cost["peak_mb"] < 20 and cost["cpu"] < 1.0


# -- row 4: Lamport clocks ----------------------------------------------------------------------


async def mallory_room(**options: object) -> tuple[Meeting, Meeting, Meeting]:
    """alice and bob (honest, one store "s") and mallory, who sends raw frames."""
    net = MemoryNetwork(seed=3, **{**FAST, **options})
    alice = await net.join("room", peer_id="alice")
    bob = await net.join("room", peer_id="bob")
    mallory = await net.join("room", peer_id="mallory")
    await alice.stores.create("s").set("k", 1)
    await converge(alice, bob, mallory)
    return alice, bob, mallory


def send(mallory: Meeting, peer: str, *frames: bytes) -> None:
    assert mallory._transport is not None
    for frame in frames:
        mallory._transport.send(peer, frame)


async def test_row4_clocks_past_64_bits_are_refused_and_honest_writes_stay_small() -> None:
    alice, bob, mallory = await mallory_room()
    _, huge = attacks.own_entries(91, attacks.entry("clock", "bumped", attacks.huge_lamport()))
    _, over = attacks.own_entries(92, attacks.entry("clock", "bumped", 2**64))
    _, top = attacks.own_entries(94, attacks.entry("top", "mallory", LAMPORT_MAX))
    for update in (huge, over, top):
        send(
            mallory,
            "alice",
            *attacks.chunked(attacks.message(attacks.UPDATE, {"s": [update]}, {}), 3),
        )
    await converge(alice, bob)
    assert alice._engine.stats["bad_update"] == 2
    assert bob.stores["s"].get("top") == "mallory"  # the largest valid clock is a valid write
    received = bob._engine.stats["bytes_in"]
    for i in range(20):
        await alice.stores["s"].set("k", i)
        await converge(alice, bob)
    assert (bob._engine.stats["bytes_in"] - received) / 20 < 400  # bytes per write, acks included
    await alice.stores["s"].set("top", "alice")  # at the top clock, writes tie: by content
    await converge(alice, bob, mallory)
    assert_same_state(alice, bob, mallory)
    await asyncio.gather(*(m.leave() for m in (alice, bob, mallory)))


# -- row 5: stores ----------------------------------------------------------------------------


def test_row5_stores_named_by_a_peer_are_capped() -> None:
    engine = victim()
    frames = attacks.store_names_frames(50_000)
    with measured() as cost:
        for frame in frames:
            engine.receive("m", frame, 0.0)
    assert len(engine.stores) == engine.config.max_stores
    assert engine.stats["stores_refused"] == 50_000 + 1 - engine.config.max_stores
    assert cost["peak_mb"] < 100
    with pytest.raises(ValueError, match="at most"):
        engine.create_store("one-too-many")
    engine.link_up("late", 2.0)
    sync = sum(len(frame) for _, frame in engine.data_to_send(2.0))
    assert sync < 2 * MiB  # a late joiner's SYNC stays bounded


# -- row 6: state vectors ------------------------------------------------------------------------


def test_row6_big_state_vectors_are_refused_before_decoding() -> None:
    engine = victim()
    ack = attacks.big_state_ack("s", 1_000_000)
    plain = attacks.chunked(attacks.message(attacks.ACK, {"s": attacks.state_vector(200_000)}), 9)
    sync = attacks.big_state_sync()
    with measured() as cost:
        for _ in range(192):
            engine.receive("m", ack, 0.0)
        engine.link_up("m2", 0.0)
        for frame in plain + sync:
            engine.receive("m2", frame, 0.0)
        engine.is_synced()
    assert engine.stats["too_many_items"] == 1 and engine.stats["oversize"] >= 17
    assert cost["cpu"] < 1.0 and cost["peak_mb"] < 20


def test_row6_reported_clients_we_do_not_know_are_not_kept() -> None:
    engine = victim()
    plain = attacks.message(attacks.ACK, {"s": attacks.state_vector(60_000)})
    for frame in attacks.chunked(plain, 9):
        engine.receive("m", frame, 0.0)
    started = time.perf_counter()
    engine._links["m"].phase = Phase.LIVE  # as if its SYNC had come
    assert not engine.is_synced()
    assert len(engine._links["m"].remote_states["s"]) <= 65  # ours, and 64 it does not know
    assert time.perf_counter() - started < 0.5


# -- row 7: ties ----------------------------------------------------------------------------------


async def test_row7_equal_orders_resolve_alike_however_they_are_batched() -> None:
    alice, bob, mallory = await mallory_room()
    first, second, both = attacks.equal_order_updates()
    send(mallory, "alice", attacks.message(attacks.UPDATE, {"s": [both]}, {}))
    send(mallory, "bob", attacks.message(attacks.UPDATE, {"s": [first]}, {}))
    send(mallory, "bob", attacks.message(attacks.UPDATE, {"s": [second]}, {}))
    await converge(alice, bob, mallory)
    assert alice.stores["s"].get("door") == bob.stores["s"].get("door") is not None
    assert_same_state(alice, bob, mallory)
    await asyncio.gather(*(m.leave() for m in (alice, bob, mallory)))


# -- row 8: foreign arrays ------------------------------------------------------------------------


async def test_row8_an_entry_in_another_writers_array_is_refused() -> None:
    alice, bob, mallory = await mallory_room()
    replica = alice._engine.store("s")
    forged = attacks.foreign_append(replica.diff(), replica.client_id, "k", "forged")
    send(mallory, "alice", attacks.message(attacks.UPDATE, {"s": [forged]}, {}))
    send(mallory, "bob", attacks.message(attacks.UPDATE, {"s": [forged]}, {}))
    await converge(alice, bob)
    assert alice.stores["s"].get("k") == bob.stores["s"].get("k") == 1
    assert alice._engine.stats["bad_update"] == bob._engine.stats["bad_update"] == 1
    await asyncio.gather(*(m.leave() for m in (alice, bob, mallory)))


# -- row 9: bulk writes -----------------------------------------------------------------------


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 1e6


@pytest.mark.parametrize("operation", ["bulk_set", "bulk_delete", "clear"])
def test_row9_bulk_writes_are_linear(operation: str) -> None:
    """8,000 keys in one bulk write took 1.47 GB (Yrs appends quadratically in one
    transaction); Rust memory is invisible to tracemalloc, so RSS is what is measured."""
    replica = StoreReplica("s")
    keys = {f"key-{i}": i for i in range(8_000)}
    if operation != "bulk_set":
        for key, value in keys.items():  # one write each: the heap stays as small as it can
            replica.set(key, value)
    before = rss_mb()
    if operation == "bulk_set":
        replica.bulk_set(keys)
    elif operation == "bulk_delete":
        replica.bulk_delete(keys)
    else:
        replica.clear()
    assert rss_mb() - before < 100
    late = StoreReplica("s")
    for delta in replica.take_outbox():
        late.apply(delta)
    assert dict(late.items()) == dict(replica.items())
    assert len(late) == (8_000 if operation == "bulk_set" else 0)


# -- row 10: a failing apply --------------------------------------------------------------------


def panic_class() -> type[BaseException]:
    """pyo3's PanicException, from a real panic of pycrdt on a malformed update."""
    honest = StoreReplica("s", client_id=5)
    honest.bulk_set({f"k{i}": i for i in range(5)})
    honest.set("k1", {"a": 1})
    honest.delete("k2")
    doc = Doc()
    doc.apply_update(honest.diff())
    try:
        doc.apply_update(bytes.fromhex(PANICKING_UPDATE))
    except Exception as exc:  # pragma: no cover - pycrdt changed
        raise AssertionError(f"no panic but {exc!r}") from None
    except BaseException as exc:
        return type(exc)
    raise AssertionError("pycrdt no longer panics on this input")


# Found by fuzzing Doc.apply_update with mutated updates (BlockSet::exclude unwraps None).
PANICKING_UPDATE = (
    "02020600270107777269746572730136000800060002740884617a008201020474190784626b31000305"
    "0605002701077772697465ce730135000800050001740784626b30000001810501028805030274078462"
    "6b33000301740784626b340004018105050188050601740784626b3203f60301050202020601"
)


class _PanicsAfterApplying:
    """A pycrdt document that applies an update and then panics (as Yrs can, mid-way)."""

    def __init__(self, doc: object, panic: type[BaseException]) -> None:
        self._doc = doc
        self._panic = panic

    def apply_update(self, txn: object, update: bytes) -> None:
        self._doc.apply_update(txn, update)  # type: ignore[attr-defined]
        raise self._panic("injected after applying")

    def __getattr__(self, name: str) -> object:
        return getattr(self._doc, name)


def test_row10_an_apply_that_fails_leaves_the_replica_rebuilt_from_its_document() -> None:
    writer = StoreReplica("s", client_id=11)
    writer.bulk_set({"a": 1, "b": {"x": 1}})
    victim_replica = StoreReplica("s", client_id=12)
    victim_replica.apply(writer.diff())
    victim_replica.track_changes = True
    writer.set("a", 2)
    writer.update("b", {"y": 2})
    writer.delete("gone")
    deltas = writer.take_outbox()
    victim_replica._y = _PanicsAfterApplying(victim_replica._y, panic_class())
    with pytest.raises(UpdateError, match="injected"):
        victim_replica.apply(merge_updates(*deltas))
    victim_replica._y = victim_replica._y._doc
    fresh = StoreReplica("s", client_id=13)
    fresh.apply(victim_replica.diff())
    assert dict(victim_replica.items()) == dict(fresh.items())  # consistent with its document
    assert victim_replica.entry_count == fresh.entry_count
    assert victim_replica.take_changes()  # subscribers hear what the partial apply changed
    for delta in deltas:  # and it carries on normally
        victim_replica.apply(delta)
    assert dict(victim_replica.items()) == dict(writer.items())


# -- row 11: remote entries over the local limits ----------------------------------------------


async def test_row11_entries_over_the_key_and_value_limits_are_refused() -> None:
    alice, bob, mallory = await mallory_room()
    send(mallory, "alice", *attacks.oversized_entry())  # 5 MB: over the message limit
    _, long_key = attacks.own_entries(95, attacks.entry("K" * 100_000, "v", 1))
    _, big_value = attacks.own_entries(96, attacks.entry("k", "v" * 1_500_000, 1))
    for i, update in enumerate((long_key, big_value)):
        whole = attacks.message(attacks.UPDATE, {"s": [update]}, {})
        send(mallory, "alice", *attacks.chunked(whole, 10 + i))
    await converge(alice, bob)
    assert alice._engine.stats["oversize"] == 1 and alice._engine.stats["bad_update"] == 2
    assert alice.stores["s"].get_all() == {"k": 1}
    await asyncio.gather(*(m.leave() for m in (alice, bob, mallory)))


# -- misbehaviour is visible and ends -------------------------------------------------------------


async def test_a_link_that_keeps_misbehaving_is_closed_reported_and_treated_the_same_again() -> (
    None
):
    alice, bob, mallory = await mallory_room(violation_budget=4)
    reports: list[tuple[str, str]] = []
    alice.on("peer_misbehaved", lambda peer, reason: reports.append((peer, reason)))
    left: list[str] = []
    alice.on("peer_left", left.append)
    for _ in range(5):
        send(mallory, "alice", b"\xff garbage")
    await converge(alice, bob)
    assert reports == [("mallory", "malformed")] and left == ["mallory"]
    assert alice.stats["malformed"] == 5 and alice.stats["links_closed_misbehaving"] == 1
    assert "mallory" not in alice.peers or alice._engine._links["mallory"].violations == 0
    await converge(alice, bob, mallory)  # it may come back: a new link, a fresh budget
    for _ in range(5):
        send(mallory, "alice", attacks.message(attacks.UPDATE, {"s": [b"\x01\x02junk"]}, {}))
    await converge(alice, bob)
    assert reports[-1] == ("mallory", "bad_update") and len(reports) == 2
    assert bob.stats.get("violations", 0) == 0  # nobody else was disturbed
    await asyncio.gather(*(m.leave() for m in (alice, bob, mallory)))


async def test_unknown_message_kinds_are_not_misbehaviour() -> None:
    alice, bob, mallory = await mallory_room(violation_budget=2)
    for kind in range(100, 120):
        send(mallory, "alice", attacks.message(kind, "from a newer version"))
    await converge(alice, mallory)
    assert alice.stats["unknown_kind"] == 20 and "mallory" in alice.peers
    assert alice.stats.get("violations", 0) == 0
    await asyncio.gather(*(m.leave() for m in (alice, bob, mallory)))


def test_honest_deltas_pass_the_checks_they_are_held_to() -> None:
    """Everything a replica sends (writes, compactions, diffs, split parts) is accepted."""
    a, b = StoreReplica("s", client_id=1), StoreReplica("s", client_id=2)
    a.bulk_set({f"k{i}": {"v": i} for i in range(300)})
    a.update("k1", {"w": 1})
    a.update("list", [1, 2])
    a.clear()
    a.set("big", "x" * 900_000)
    for delta in a.take_outbox():
        b.read(delta)
        b.apply(delta)
    b.set("big", "y")
    for delta in b.take_outbox():
        a.read(delta)
        a.apply(delta)
    a.read(a.diff())
    assert dict(a.items()) == dict(b.items())
    assert cbor2.loads(cbor2.dumps(dict(a.items()))) == {"big": "y"}


# -- against a real peer process, over WebRTC --------------------------------------------------


@pytest.fixture
async def server():
    from signaling import SignalingServer

    async with SignalingServer("127.0.0.1", 0) as running:
        yield running


async def ping(meeting: Meeting, value: int, timeout: float) -> float:
    """Seconds until the echo peer answers a write of "ping" (TimeoutError past ``timeout``)."""
    store = meeting.stores.create("s")
    answered = asyncio.get_running_loop().create_future()

    def on_pong(key: str, pong: object) -> None:
        if pong == value and not answered.done():
            answered.set_result(None)

    store.subscribe("pong", on_pong)
    started = time.perf_counter()
    try:
        await store.set("ping", value)
        await asyncio.wait_for(answered, timeout)
    finally:
        store.unsubscribe("pong", on_pong)
    return time.perf_counter() - started


@pytest.mark.timeout(120)
async def test_row1_a_peer_process_survives_the_frame_that_crashed_every_peer(server) -> None:
    from .netutil import LOOPBACK, read_line, spawn, wait_until

    proc = spawn("-m", "tests.helpers.echo_peer", server.url, "room", "victim")
    mallory = None
    try:
        assert await read_line(proc) == "ready"
        mallory = await Meeting.join(server.url, "room", peer_id="mallory", ice_addresses=LOOPBACK)
        await wait_until(lambda: "victim" in mallory.peers, 20, "a link to the victim")
        await ping(mallory, 0, 20)
        send(mallory, "victim", attacks.deep_any_frame())
        send(
            mallory,
            "victim",
            attacks.message(attacks.DIFF, {"s": attacks.deep_any_update(20_000)}, {}),
        )
        deep = attacks.message(attacks.DIFF, {"s": attacks.deep_any_update(1_000_000)}, {})
        send(mallory, "victim", *attacks.chunked(deep, 1))
        assert await ping(mallory, 1, 10) < 5  # frames on a channel are handled in order
        assert proc.poll() is None
    finally:
        if mallory is not None:
            await mallory.leave()
        proc.kill()
        proc.wait()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["fresh", "replay", "garbage"])
async def test_a_flood_from_one_link_leaves_the_others_answered_within_a_second(
    server, mode: str
) -> None:
    from .netutil import LOOPBACK, read_line, spawn, wait_until

    victim_proc = spawn("-m", "tests.helpers.echo_peer", server.url, "room", "victim")
    flooder = None
    alice = None
    try:
        assert await read_line(victim_proc) == "ready"
        # alice holds only the store "s", so the flood's data (store "flood") never
        # costs her anything: what is measured is how fast the victim answers.
        alice = await Meeting.join(
            server.url, "room", peer_id="alice", ice_addresses=LOOPBACK, max_stores=1
        )
        alice.stores.create("s")
        await wait_until(lambda: "victim" in alice.peers, 20, "a link to the victim")
        flooder = spawn(
            "-m", "tests.helpers.flooder", server.url, "room", "zflood", "victim", "4", mode
        )
        assert await read_line(flooder) == "ready"
        waits = []
        started = time.perf_counter()
        done = False
        while time.perf_counter() - started < (6 if done else 30):
            waits.append(await ping(alice, len(waits), 5))
            done = done or _finished(flooder)
        print(
            f"{mode}: {len(waits)} pings in {time.perf_counter() - started:.1f} s,"
            f" slowest {max(waits):.3f} s"
        )
        assert len(waits) > 10
        assert max(waits) < 1.0
        assert victim_proc.poll() is None
        assert victim_proc.stdin is not None
        victim_proc.stdin.close()
        stats = json.loads(await read_line(victim_proc))
        print(mode, {k: v for k, v in stats.items() if not k.startswith("frames")})
        if mode == "garbage":
            assert stats["malformed"] > 16 and stats["links_closed_misbehaving"] >= 1
        else:
            # The flood did reach the victim. ("fresh" is about 5.5 MB; on a loaded machine
            # runs have counted as little as 3.35 MB of it when the victim reported, cause
            # not yet known: the bound asks for most of it, not all.)
            assert stats["bytes_in"] > 2_500_000
    finally:
        for meeting in (alice,):
            if meeting is not None:
                await meeting.leave()
        for proc in (victim_proc, flooder):
            if proc is not None:
                proc.kill()
                proc.wait()


def _finished(proc) -> bool:
    """Whether the flooder printed "done" (non-blocking check of its output)."""
    import select

    ready, _, _ = select.select([proc.stdout], [], [], 0)
    return bool(ready) and proc.stdout.readline().strip() == "done"


def test_a_dropped_replica_is_freed() -> None:
    """Found by the fuzzer (a worker grew to 24 GB): pycrdt's observers held the replica
    through Rust objects, a cycle Python's garbage collector cannot see."""
    import gc
    import weakref

    replica = StoreReplica("s")
    replica.bulk_set({f"k{i}": i for i in range(100)})
    ref = weakref.ref(replica)
    del replica
    gc.collect()
    assert ref() is None


def test_a_message_over_the_item_budget_is_refused_whole() -> None:
    engine = victim(SyncConfig(max_message_items=2_000))
    _, small = attacks.own_entries(31, attacks.entry("small", 1, 1))
    _, big = attacks.own_entries(32, *(attacks.entry(f"k{i}", i, 1) for i in range(1_500)))
    message = attacks.message(attacks.UPDATE, {"s": [small], "t": [big, big]}, {})
    for frame in attacks.chunked(message, 5):
        engine.receive("m", frame, 0.0)
    assert engine.stats["too_many_items"] == 1
    assert "small" not in engine.store("s")  # nothing of it applied, not even the first
