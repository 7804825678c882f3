"""One benchmark peer in its own process, driven over JSON lines on stdin/stdout.

``python -m benchmarks.worker ROLE PARAMS_JSON`` where ROLE is ``crdt`` (a
crdt-stores meeting), ``raw`` (plain aiortc data channels) or ``pycrdt`` (a
pycrdt-websocket client). Commands arrive as ``{"op": ...}``; results go out as
``{"event": ...}``. Times are ``time.monotonic()``, shared by every process.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import random
import sys
from typing import Any

from crdt_stores import Meeting, _statevector
from crdt_stores.protocol import SyncEngine

from .baselines import PycrdtClient, RawPeer
from .common import ICE_ADDRESSES, latency_value, now

FLOOD_KEYS = 100


def say(event: str, **data: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **data}) + "\n")
    sys.stdout.flush()


def covers(have: dict[int, int], want: dict[str, int]) -> bool:
    return all(have.get(int(client), 0) >= clock for client, clock in want.items())


async def _commands() -> Any:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        yield json.loads(line)


def latency_frames(count: int) -> list[bytes]:
    """The frames crdt-stores puts on the wire for the latency writes (for ``raw``)."""
    writer, reader = SyncEngine("writer"), SyncEngine("reader")
    writer.link_up("reader", 0.0)
    reader.link_up("writer", 0.0)
    for _ in range(3):
        for _, frame in writer.data_to_send(0.0):
            reader.receive("writer", frame, 0.0)
        for _, frame in reader.data_to_send(0.0):
            writer.receive("reader", frame, 0.0)
    store = writer.create_store("bench")
    frames = []
    for i in range(count):
        store.set("k", latency_value(i))
        writer.commit("bench")
        out = writer.data_to_send(0.0)
        frames.append(b"".join(frame for _, frame in out))
    return frames


def settle() -> None:
    """Collect garbage before a measured window, in every worker of every implementation.

    The window then starts from the same collector state everywhere: otherwise where
    each process's first full collection (of everything imported at startup, ~0.1 s)
    falls is an accident of its import-time allocations, inside a 0.5 s window for
    one implementation and just after it for another.
    """
    gc.collect()
    say("settled")


async def flood(write: Any, name: str, seconds: float, seed: int) -> tuple[int, float, float]:
    """Write set/update mixed as fast as possible for ``seconds``; yields every 50."""
    rng = random.Random(seed)
    ops = 0
    start = now()
    while now() - start < seconds:
        for _ in range(50):
            await write(f"{name}-{rng.randrange(FLOOD_KEYS)}", ops)
            ops += 1
        await asyncio.sleep(0)
    return ops, start, now()


# -- roles ------------------------------------------------------------------------------


async def crdt(params: dict[str, Any]) -> None:
    name = params["name"]
    meeting: Meeting | None = None
    store: Any = None
    async for command in _commands():
        op = command["op"]
        if op == "join":
            started = now()
            meeting = await Meeting.join(
                params["url"],
                params.get("room", "bench"),
                peer_id=name,
                ice_addresses=ICE_ADDRESSES,
            )
            store = meeting.stores.create("bench")
            if command.get("subscribe"):
                store.subscribe("k", lambda key, value: say("fired", i=value["i"], t=now()))
            say("joined", t0=started, t1=now(), peers=meeting.peers)
        elif op == "wait_peers":
            assert meeting is not None
            while len(meeting.peers) < command["count"]:  # noqa: ASYNC110 - setup only
                await asyncio.sleep(0.01)
            await meeting.synced(timeout=60)
            say("ready")
        elif op == "write":
            started = now()
            await store.set("k", latency_value(command["i"]))
            say("sent", i=command["i"], t=started)
        elif op == "settle":
            settle()
        elif op == "flood":

            async def write(key: str, n: int, store: Any = store) -> None:
                if n % 2:
                    await store.set(key, {"n": n, "by": name})
                else:
                    await store.update(key, {"u": n})

            ops, t0, t1 = await flood(write, name, command["seconds"], command["seed"])
            say("written", ops=ops, t0=t0, t1=t1, sv=_sv(store))
        elif op == "await_state":
            # Polled every millisecond: the same method for every implementation.
            while not covers(store._replica.state_vector_dict(), command["target"]):  # noqa: ASYNC110
                await asyncio.sleep(0.001)
            say("covered", t=now(), stats=meeting.stats if meeting else {})
        elif op == "fill":
            rng = random.Random(7)
            total = int(command["megabytes"] * 1_000_000)
            batch: dict[str, Any] = {}
            size = 0
            n = 0
            while size < total:
                text = base64.b64encode(rng.randbytes(750)).decode()  # 1000 characters
                batch[f"k{n}"] = {"n": n, "text": text}
                size += len(text) + 40
                n += 1
                if len(batch) == 500:
                    await store.bulk_set(batch)
                    batch = {}
            if batch:
                await store.bulk_set(batch)
            say("filled", keys=n, update_bytes=len(store._replica.diff()), sv=_sv(store))
        elif op == "bulk":
            keys = command["keys"]
            before = rss_mb()
            started = now()
            if command["kind"] == "set":
                await store.bulk_set({f"b{i}": {"n": i, "tag": "bulk"} for i in range(keys)})
            else:
                await store.clear()
            say("bulked", t0=started, t1=now(), rss_mb=rss_mb() - before, sv=_sv(store))
        elif op == "rss":
            say("rss", rss_mb=rss_mb())
        elif op == "stats":
            say("stats", stats=meeting.stats if meeting else {})
        elif op == "quit":
            break
    if meeting is not None:
        await meeting.leave()


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 1e6


def _sv(store: Any) -> dict[str, int]:
    return {str(k): v for k, v in store._replica.state_vector_dict().items()}


async def raw(params: dict[str, Any]) -> None:
    received = {"messages": 0, "bytes": 0}
    expected_bytes: list[int] = [0]
    done = asyncio.Event()

    def on_message(peer: str, data: bytes) -> None:
        received["messages"] += 1
        received["bytes"] += len(data)
        if params.get("subscribe"):
            say("fired", i=received["messages"] - 1, t=now())
        if expected_bytes[0] and received["bytes"] >= expected_bytes[0]:
            done.set()

    peer = RawPeer(params["name"], on_message)
    frames: list[bytes] = []
    started = now()
    async for command in _commands():
        op = command["op"]
        if op == "offer":
            started = now()
            say("sdp", sdp=await peer.offer(command["peer"]))
        elif op == "answer":
            started = now()
            say("sdp", sdp=await peer.answer(command["peer"], command["sdp"]))
        elif op == "accept":
            await peer.accept(command["peer"], command["sdp"])
            say("accepted")
        elif op == "wait_open":
            await peer.wait_open()
            say("ready")
        elif op == "prepare":
            frames = latency_frames(command["count"])
            say("prepared", frame_bytes=len(frames[0]))
        elif op == "write":
            started = now()
            peer.broadcast(frames[command["i"]])
            say("sent", i=command["i"], t=started)
        elif op == "expect_bytes":
            expected_bytes[0] = command["bytes"]
            if received["bytes"] >= expected_bytes[0]:
                done.set()
            await done.wait()
            say("received", t0=started, t1=now(), bytes=received["bytes"])
        elif op == "blast":
            # The same number of bytes as crdt-stores moved, in 64 KiB messages.
            remaining = command["bytes"]
            chunk = random.Random(3).randbytes(64 * 1024 - 64)
            while remaining > 0:
                piece = chunk[: min(len(chunk), remaining)]
                peer.send(command["peer"], piece)
                remaining -= len(piece)
                if peer.buffered() > 4 * 1024 * 1024:
                    while peer.buffered() > 1024 * 1024:  # noqa: ASYNC110 - backpressure
                        await asyncio.sleep(0.001)
            say("blasted")
        elif op == "quit":
            break
    await peer.close()


async def pycrdt(params: dict[str, Any]) -> None:
    from pycrdt import Map

    client = PycrdtClient(params["url"], params.get("room", "bench"))
    name = params["name"]
    subscription = None
    async for command in _commands():
        op = command["op"]
        if op == "join":
            await client.start()
            if command.get("subscribe"):

                def on_change(event: Any) -> None:
                    if "k" in event.keys:
                        say("fired", i=int(client.data["k"]["i"]), t=now())

                subscription = client.data.observe(on_change)
            say("joined")
        elif op == "write":
            started = now()
            client.data["k"] = latency_value(command["i"])
            say("sent", i=command["i"], t=started)
        elif op == "settle":
            settle()
        elif op == "flood":
            data = client.data

            async def write(key: str, n: int, data: Any = data) -> None:
                if n % 2:
                    data[key] = Map({"n": n, "by": name})
                else:
                    current = data.get(key)
                    if isinstance(current, Map):
                        current["u"] = n
                    else:
                        data[key] = Map({"u": n})

            ops, t0, t1 = await flood(write, name, command["seconds"], command["seed"])
            sv = _statevector.decode(client.doc.get_state())
            say("written", ops=ops, t0=t0, t1=t1, sv={str(k): v for k, v in sv.items()})
        elif op == "await_state":
            state = client.doc.get_state
            while not covers(_statevector.decode(state()), command["target"]):  # noqa: ASYNC110
                await asyncio.sleep(0.001)
            say("covered", t=now())
        elif op == "state":
            sv = _statevector.decode(client.doc.get_state())
            say("state", sv={str(k): v for k, v in sv.items()})
        elif op == "quit":
            break
    del subscription
    await client.stop()


ROLES = {"crdt": crdt, "raw": raw, "pycrdt": pycrdt}

if __name__ == "__main__":
    asyncio.run(ROLES[sys.argv[1]](json.loads(sys.argv[2])))
