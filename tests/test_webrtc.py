"""Peers over real WebRTC (aiortc) on loopback, introduced by a real signaling server."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time

import pytest

from crdt_stores import Meeting
from crdt_stores.transport import webrtc
from signaling import SignalingServer

from .conftest import assert_same_state, converge
from .netutil import LOOPBACK, free_port, read_line, spawn, wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def server():
    async with SignalingServer("127.0.0.1", 0) as running:
        yield running


async def join(url: str, peer_id: str, room: str = "room", **options) -> Meeting:
    return await Meeting.join(url, room, peer_id=peer_id, ice_addresses=LOOPBACK, **options)


async def leave_all(*meetings: Meeting) -> None:
    await asyncio.gather(*(m.leave() for m in meetings))


async def test_three_peers_converge_under_concurrent_writes(server) -> None:
    started = time.perf_counter()
    peers = [await join(server.url, name) for name in ("a", "b", "c")]
    joined = time.perf_counter() - started
    print(f"3-peer join took {joined:.2f} s")
    try:
        for peer in peers:
            assert sorted(peer.peers) == sorted(p.peer_id for p in peers if p is not peer)
        seen: list = []
        peers[2].stores.create("shared").subscribe("*", lambda k, v: seen.append(k))

        async def writer(i: int, meeting: Meeting) -> None:
            store = meeting.stores.create("shared")
            other = meeting.stores.create(f"own-{i}")
            for n in range(50):
                await store.update("doc", {f"field-{i}": n})
                await store.update("log", [f"{i}:{n}"])
                await store.set(f"key-{n % 5}", {"by": i, "n": n, "f": n / 7})
                await other.bulk_set({"a": n, "b": [n]})
                if n % 10 == 0:
                    await store.delete(f"key-{(n + 1) % 5}")
                    await other.bulk_delete(["b"])
                await asyncio.sleep(0)

        await asyncio.gather(*(writer(i, m) for i, m in enumerate(peers)))
        await converge(*peers)
        assert_same_state(*peers)
        shared = peers[0].stores["shared"]
        assert shared.get("doc") == {"field-0": 49, "field-1": 49, "field-2": 49}
        assert sorted(shared.get("log")) == sorted(f"{i}:{n}" for i in range(3) for n in range(50))
        assert sorted(peers[1].stores) == ["own-0", "own-1", "own-2", "shared"]
        assert seen  # remote writes reached a subscriber
    finally:
        await leave_all(*peers)


async def test_late_joiner_gets_a_megabyte_and_leavers_disappear(server) -> None:
    a = await join(server.url, "a")
    b = await join(server.url, "b")
    try:
        store = a.stores.create("big")
        rng = random.Random(3)
        await store.bulk_set({f"k{i}": rng.randbytes(500).hex() for i in range(1000)})  # ~1 MB
        await converge(a, b)
        late = await join(server.url, "late")
        await converge(a, b, late)
        assert late.stores["big"].get_all() == store.get_all()
        assert late._engine.stats["bytes_in"] > 500_000  # hex compresses about 2:1
        await b.leave()
        await wait_until(lambda: "b" not in a.peers and "b" not in late.peers, 10, "b to be gone")
        await a.stores["big"].set("after", 1)
        await converge(a, late)  # synced() does not wait for b
        assert late.stores["big"].get("after") == 1
        await late.leave()
    finally:
        await leave_all(a, b)


async def test_killed_peer_process_is_dropped_and_others_keep_syncing(server) -> None:
    a = await join(server.url, "a")
    b = await join(server.url, "b")
    proc = spawn("-m", "tests.helpers.peer_process", server.url, "room", "doomed", "s", "k", '"v"')
    try:
        assert await read_line(proc) == "ready"
        await wait_until(lambda: "doomed" in a.peers and "doomed" in b.peers, 20, "links to doomed")
        await converge(a, b)
        assert a.stores["s"].get("k") == "v"
        store = a.stores["s"]
        await store.set("before", 1)
        # A write just before the kill: its ack from "doomed" may never come.
        killed_at = time.monotonic()
        os.kill(proc.pid, signal.SIGKILL)
        await wait_until(
            lambda: "doomed" not in a.peers and "doomed" not in b.peers, 10, "doomed to leave"
        )
        print(f"killed peer dropped after {time.monotonic() - killed_at:.2f} s")
        await store.update("after", [1])
        await asyncio.wait_for(converge(a, b), 10)  # synced() does not hang on the dead peer
        assert b.stores["s"].get("after") == [1]
    finally:
        proc.kill()
        proc.wait()
        await leave_all(a, b)


async def test_heartbeat_drops_a_killed_peer_when_signaling_cannot_tell() -> None:
    """With the signaling server gone, only the heartbeat can notice a dead peer."""
    port = free_port()
    url = f"ws://127.0.0.1:{port}"
    server = spawn("-m", "signaling", "--host", "127.0.0.1", "--port", str(port))
    proc = None
    a = None
    try:
        assert "listening" in await read_line(server)
        a = await join(url, "a")
        proc = spawn("-m", "tests.helpers.peer_process", url, "room", "doomed", "s", "k", "1")
        assert await read_line(proc) == "ready"
        await wait_until(lambda: "doomed" in a.peers, 20, "link to doomed")
        server.send_signal(signal.SIGKILL)
        server.wait()
        await wait_until(lambda: not a._transport._signaling.connected, 10, "signaling gone")
        killed_at = time.monotonic()
        os.kill(proc.pid, signal.SIGKILL)
        await wait_until(lambda: "doomed" not in a.peers, 10, "the heartbeat to drop doomed")
        print(f"heartbeat dropped the killed peer after {time.monotonic() - killed_at:.2f} s")
        await a.stores["s"].set("after", 1)
        await asyncio.wait_for(a.synced(), 5)
    finally:
        for process in (proc, server):
            if process is not None:
                process.kill()
                process.wait()
        if a is not None:
            await a.leave()


async def test_mesh_survives_signaling_outage_and_newcomer_finds_peers_after_restart() -> None:
    port = free_port()
    url = f"ws://127.0.0.1:{port}"
    server = spawn("-m", "signaling", "--host", "127.0.0.1", "--port", str(port))
    a = b = newcomer = None
    try:
        assert "listening" in await read_line(server)
        a = await join(url, "a")
        b = await join(url, "b")
        await converge(a, b)
        server.send_signal(signal.SIGKILL)
        server.wait()
        await wait_until(
            lambda: not a._transport._signaling.connected and not b._transport._signaling.connected,
            10,
            "both peers to notice the server is gone",
        )
        store = a.stores.create("s")
        await store.set("during-outage", {"ok": True})
        await converge(a, b)
        assert b.stores["s"].get("during-outage") == {"ok": True}
        server = spawn("-m", "signaling", "--host", "127.0.0.1", "--port", str(port))
        assert "listening" in await read_line(server)
        await wait_until(
            lambda: a._transport._signaling.connected and b._transport._signaling.connected,
            20,
            "both peers to register again",
        )
        newcomer = await join(url, "newcomer")
        assert sorted(newcomer.peers) == ["a", "b"]
        await converge(a, b, newcomer)
        assert newcomer.stores["s"].get("during-outage") == {"ok": True}
    finally:
        server.kill()
        server.wait()
        await leave_all(*(m for m in (a, b, newcomer) if m is not None))


async def test_handler_exception_does_not_close_the_connection(server, monkeypatch) -> None:
    a = await join(server.url, "a")
    b = await join(server.url, "b")
    try:
        original = b._driver.frame
        calls = {"n": 0}

        def flaky(peer: str, data: bytes) -> None:
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("handler bug")
            original(peer, data)

        monkeypatch.setattr(b._driver, "frame", flaky)
        await a.stores.create("s").set("k", 1)  # the first frame hits the bug
        await a.stores["s"].set("k", 2)
        await converge(a, b)  # anti-entropy repairs what the failed frame carried
        assert b.stores["s"].get("k") == 2 and "a" in b.peers and calls["n"] > 1
    finally:
        await leave_all(a, b)


async def test_awaiting_a_write_waits_while_the_send_queues_are_full(server) -> None:
    """Flow control: a writer that awaits its writes never has more than
    ``max_buffered_bytes`` queued on its links when an await returns."""
    limit = 256 * 1024
    a = await join(server.url, "a", max_buffered_bytes=limit)
    b = await join(server.url, "b")
    try:
        store = a.stores.create("s")
        await converge(a, b)
        transport = a._driver.transport
        assert transport is not None
        waited = 0
        for i in range(24):  # ~12 MB in all: far more than the limit
            write = store.set(f"k{i}", f"{i}" + "y" * 500_000)
            waited += a._driver.congested
            await write
            assert transport.buffered_amount() <= limit, i
        assert waited, "no write found the queues full: the test did not test waiting"
        await converge(a, b)
        assert b.stores["s"].get("k23", "")[:3] == "23y"
    finally:
        await leave_all(a, b)


async def test_leave_delivers_queued_writes(server) -> None:
    a = await join(server.url, "a")
    b = await join(server.url, "b")
    try:
        store = a.stores.create("s")
        await converge(a, b)
        for i in range(3000):
            await store.set(f"k{i}", "y" * 100)  # ~300 KB queued, never awaited
        await a.leave()
        await wait_until(lambda: len(b.stores["s"]) == 3000, 10, "all writes at b")
    finally:
        await leave_all(a, b)


def test_ice_servers_parsing_and_no_implicit_stun() -> None:
    servers = webrtc.parse_ice_servers(
        [
            "stun:127.0.0.1:3478",  # allowed: only parsed, never contacted
            {"urls": "turn:127.0.0.1:3478", "username": "u", "credential": "p"},  # allowed: parsed
        ]
    )
    urls = [s.urls for s in servers]
    assert urls == ["stun:127.0.0.1:3478", "turn:127.0.0.1:3478"]  # allowed: parsed only
    assert webrtc.parse_ice_servers(None) == []
    with pytest.raises(TypeError):
        webrtc.parse_ice_servers([42])


async def test_ice_addresses_from_environment(monkeypatch) -> None:
    monkeypatch.setenv(webrtc.ICE_ADDRESSES_ENV, "127.0.0.1, ")
    transport = webrtc.WebRTCTransport("ws://127.0.0.1:1", "room")
    assert transport._ice_addresses == ("127.0.0.1",)
    explicit = webrtc.WebRTCTransport("ws://127.0.0.1:1", "room", ice_addresses=["127.0.0.1"])
    assert explicit._ice_addresses == ("127.0.0.1",)


async def test_a_dozen_peers_joining_at_once_form_the_mesh_promptly(server) -> None:
    """Offer-flood limits must not throttle honest simultaneous joins (each peer answers 11)."""
    started = time.perf_counter()
    peers = await asyncio.gather(*(join(server.url, f"p{i:02d}") for i in range(12)))
    try:
        await wait_until(lambda: all(len(p.peers) == 11 for p in peers), 15, "a full mesh")
        print(f"12-peer mesh in {time.perf_counter() - started:.2f} s")
        assert all(p.stats.get("signals_refused", 0) == 0 for p in peers)
    finally:
        await leave_all(*peers)


async def test_leave_while_joining_sticks(server) -> None:
    a = await join(server.url, "a")
    b = Meeting(server.url, "room", peer_id="b", ice_addresses=LOOPBACK)
    joining = asyncio.create_task(b.__aenter__())
    try:
        await wait_until(lambda: b._state == "joining" and b._transport is not None, 5, "joining")
        await asyncio.sleep(0)
        await b.leave()
        await asyncio.wait_for(joining, 10)
        assert not b.joined and b._driver._timer is None
        with pytest.raises(RuntimeError):
            b.stores.create("s").set("k", 1)
        await wait_until(lambda: "b" not in a.peers, 10, "b gone from a's links")
    finally:
        await leave_all(a, b)


async def test_a_cancelled_join_leaves_no_socket_open() -> None:
    """A server that never welcomes: the join is cancelled, and its socket closes."""
    from websockets.asyncio.server import serve

    opened: list[object] = []
    closed = asyncio.Event()

    async def silent(ws) -> None:
        opened.append(ws)
        try:
            await ws.wait_closed()
        finally:
            closed.set()

    async with serve(silent, "127.0.0.1", 0) as listener:
        port = listener.sockets[0].getsockname()[1]
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(
                Meeting.join(f"ws://127.0.0.1:{port}", "room", ice_addresses=LOOPBACK), 0.5
            )
        assert opened
        await asyncio.wait_for(closed.wait(), 5)


async def test_consent_expires_when_no_probe_is_answered(server, monkeypatch) -> None:
    """Consent (RFC 7675) is kept by the link's probes: with none answered for the
    expiry, the link closes (and is dialled again, as after any failure)."""
    from crdt_stores.transport import _links

    a = await join(server.url, "a")
    b = await join(server.url, "b")
    left: list[str] = []
    try:
        await wait_until(lambda: "b" in a.peers and "a" in b.peers, 20, "the link")
        a.on("peer_left", left.append)

        async def unanswered(pc: object) -> bool:
            return False

        monkeypatch.setattr(_links, "CONSENT_EXPIRY", 1.0)
        monkeypatch.setattr(_links, "probe", unanswered)
        await wait_until(lambda: "b" in left, 10, "consent to expire")
        assert a.stats.get("links_dead", 0) == 0  # (b's frames kept coming: not dead)
        monkeypatch.undo()
        await wait_until(lambda: "b" in a.peers, 20, "a new link")
        await a.stores.create("s").set("k", 1)
        await wait_until(
            lambda: b.stores.get("s") is not None and b.stores["s"].get("k") == 1,
            10,
            "a write over it",
        )
    finally:
        await leave_all(a, b)
