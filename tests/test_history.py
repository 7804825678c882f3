"""History stays small (SPEC §3): a late joiner downloads the live data, not every write."""

from __future__ import annotations

import cbor2
from pycrdt import Doc, Map

from .conftest import converge

WRITES = 100_000
KEYS = 10


def plain_map_bytes(writes: int) -> int:
    doc = Doc()
    data = doc.get("data", type=Map)
    for i in range(writes):
        data[f"k{i % KEYS}"] = cbor2.dumps(i)
    return len(doc.get_update())


async def test_late_joiner_download_does_not_grow_with_writes(net) -> None:
    writer = await net.join("room", peer_id="writer")
    store = writer.stores.create("counters")
    for i in range(WRITES):
        await store.set(f"k{i % KEYS}", i)
    await converge(writer)
    late = await net.join("room", peer_id="late")
    await converge(writer, late)
    assert late.stores["counters"].get_all() == {f"k{k}": WRITES - KEYS + k for k in range(KEYS)}
    downloaded = late._engine.stats["bytes_in"]
    state = len(writer._engine.store("counters").diff())
    baseline = plain_map_bytes(WRITES)
    print(
        f"late joiner downloaded {downloaded} B (store update {state} B); plain Y.Map: {baseline} B"
    )
    assert downloaded < 10_000
    assert baseline > 1_000_000  # the problem this layout solves is real
    assert writer._engine.store("counters").entry_count == KEYS


async def test_interleaved_writers_keep_history_bounded(net) -> None:
    """Three peers taking strict turns: each writer's tombstones collapse into one run."""
    peers = [await net.join("room", peer_id=f"p{i}") for i in range(3)]
    stores = [peer.stores.create("s") for peer in peers]
    await converge(*peers)
    sizes = []
    for i in range(1200):
        await stores[i % 3].set(f"k{i % KEYS}", i)
        await converge(*peers)
        if i in (119, 1199):
            sizes.append(len(peers[0]._engine.store("s").diff()))
    print(f"3 writers in strict turns: {sizes[0]} B after 120 writes, {sizes[1]} B after 1200")
    assert sizes[1] < 2_000
    assert sizes[1] - sizes[0] < 200  # does not grow with the number of writes
    assert all(s._replica.entry_count == KEYS for s in stores)
