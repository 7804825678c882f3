"""Identity takeover over real WebRTC (issue 9 rows 2 and 3).

Before the fix, mallory flooded alice with offers until the server closed alice's
socket for *answering* too much, then registered as ``alice``: bob and the
newcomer carol linked to mallory-as-alice. Now answers never count against
alice, and a dropped id stays reserved for its owner, who gets it back with the
resume secret from its welcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import jwt
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from benchmarks.offer_flood import _forged_offer
from crdt_stores import JoinError, Meeting
from signaling import Limits, SignalingServer, mint_token

from .conftest import converge
from .netutil import LOOPBACK, free_port

pytestmark = pytest.mark.timeout(120)

SECRET = "trust-secret-" + "0123456789abcdef" * 4


async def raw_join(url: str, room: str, peer_id: str, token: str | None = None):
    ws = await connect(url, open_timeout=5)
    await ws.send(json.dumps({"type": "join", "room": room, "peer_id": peer_id, "token": token}))
    return ws, json.loads(await asyncio.wait_for(ws.recv(), 5))


async def join(url: str, name: str, **options) -> Meeting:
    return await Meeting.join(url, "room", peer_id=name, ice_addresses=LOOPBACK, **options)


def signaling_of(meeting: Meeting):
    return meeting._transport._signaling  # type: ignore[union-attr]


async def _refused_as(url: str, name: str, token: str | None = None) -> str:
    """Join as ``name``; returns the error code (fails the test if it got in)."""
    ws, reply = await raw_join(url, "room", name, token)
    await ws.close()
    assert reply.get("type") == "error", f"{name} was taken over: {reply}"
    return reply["code"]


async def test_an_offer_flood_does_not_push_alice_out_and_her_id_cannot_be_taken() -> None:
    async with SignalingServer("127.0.0.1", 0, limits=Limits(reserve_seconds=5.0)) as server:
        alice = await join(server.url, "alice")
        bob = await join(server.url, "bob")
        left: list[str] = []
        bob.on("peer_left", left.append)
        flooders: list[ClientConnection] = []
        try:
            sdp = await _forged_offer(free_port())
            for i in range(5):
                ws, welcome = await raw_join(server.url, "room", f"mallory-{i}")
                assert welcome["type"] == "welcome"
                flooders.append(ws)
            started = time.perf_counter()
            sent = 0
            while time.perf_counter() - started < 4.0:  # ~200 offers/s at alice
                for n, ws in enumerate(flooders):
                    data = {"kind": "offer", "session": f"s{sent}-{n}", "sdp": sdp}
                    with contextlib.suppress(ConnectionClosed):
                        await ws.send(json.dumps({"type": "signal", "to": "alice", "data": data}))
                    sent += 1
                await asyncio.sleep(0.025)
            assert signaling_of(alice).connected  # never closed for answering
            assert server.rooms["room"]["alice"] is not None
            assert await _refused_as(server.url, "alice") == "peer-id-taken"

            # Alice's signaling socket drops: her id waits for her, not for mallory.
            signaling_of(alice)._ws.transport.abort()
            refusals = 0
            deadline = time.perf_counter() + 10
            while time.perf_counter() < deadline:  # bounded: until alice is back under her id
                member = server.rooms.get("room", {}).get("alice")
                if member is not None and signaling_of(alice).connected and refusals:
                    break
                assert await _refused_as(server.url, "alice") == "peer-id-taken"
                refusals += 1
            assert signaling_of(alice).connected and refusals >= 1, (refusals, server.stats)
            assert server.stats.get("resumed", 0) >= 1

            # The newcomer links to the real alice, and the data flows.
            carol = await join(server.url, "carol", transport_options={"join_timeout": 3})
            try:
                await alice.stores.create("s").set("from", "the real alice")
                await converge(alice, bob, carol, timeout=15)
                assert carol.stores["s"].get("from") == "the real alice"
                assert sorted(carol.peers) == ["alice", "bob"]
            finally:
                await carol.leave()
            assert "alice" not in left  # bob's link to alice never broke
        finally:
            for ws in flooders:
                await ws.close()
            await asyncio.gather(alice.leave(), bob.leave())


async def test_after_a_restart_a_replayed_token_does_not_take_alices_id() -> None:
    port = free_port()
    now = int(time.time())  # alice has been in the room a while: her token is older
    token = jwt.encode(
        {"room": "room", "sub": "alice", "iat": now - 60, "exp": now + 600}, SECRET, "HS256"
    )
    limits = Limits(reserve_seconds=5.0)
    # The first server admits old tokens at once (no grace); the restarted one has a grace.
    server = SignalingServer("127.0.0.1", port, secret=SECRET, limits=Limits(reserve_seconds=0))
    await server.start()
    alice = await join(server.url, "alice", token=token)
    bob = await join(server.url, "bob", token=mint_token(SECRET, "room", "bob", ttl=600))
    try:
        await server.stop()
        server = SignalingServer("127.0.0.1", port, secret=SECRET, limits=limits)
        await server.start()
        # Mallory replays alice's token before alice is back: refused, again and again.
        deadline = time.perf_counter() + 10
        while time.perf_counter() < deadline and "alice" not in server.rooms.get("room", {}):
            assert await _refused_as(server.url, "alice", token) == "peer-id-taken"
        for _ in range(200):  # bounded: alice's client reconnects with its resume secret
            if signaling_of(alice).connected and "alice" in server.rooms.get("room", {}):
                break
            await asyncio.sleep(0.05)
        assert "alice" in server.rooms["room"] and signaling_of(alice).connected
        # A newcomer with a fresh token finds the real alice.
        carol = await join(server.url, "carol", token=mint_token(SECRET, "room", "carol"))
        try:
            await alice.stores.create("s").set("k", 1)
            await converge(alice, carol, timeout=15)
            assert carol.stores["s"].get("k") == 1
        finally:
            await carol.leave()
    finally:
        await asyncio.gather(alice.leave(), bob.leave())
        await server.stop()


BAD_WELCOMES = [
    {"type": "welcome"},
    {"type": "welcome", "peer_id": 7, "peers": []},
    {"type": "welcome", "peer_id": "x" * 300, "peers": []},
    {"type": "welcome", "peer_id": "someone-else", "peers": []},
    {"type": "welcome", "peer_id": "alice", "peers": 5},
    {"type": "welcome", "peer_id": "alice", "peers": "bob"},
]


@pytest.mark.parametrize("welcome", BAD_WELCOMES, ids=range(len(BAD_WELCOMES)))
async def test_a_hostile_welcome_is_a_join_error(welcome) -> None:
    async def handle(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.send(json.dumps(welcome))
        with contextlib.suppress(ConnectionClosed):
            await ws.recv()

    async with serve(handle, "127.0.0.1", 0) as fake:
        url = f"ws://127.0.0.1:{next(iter(fake.sockets)).getsockname()[1]}"
        with pytest.raises(JoinError):
            await Meeting.join(url, "room", peer_id="alice", ice_addresses=LOOPBACK)


async def test_hostile_signaling_messages_change_nothing() -> None:
    """After a good welcome the server sends garbage: the peer ignores it and keeps working."""
    garbage = [
        [1, 2],
        "text",
        {"type": ["peer-joined"]},
        {"type": "peer-joined", "peer_id": 5},
        {"type": "peer-joined", "peer_id": "alice"},  # itself
        {"type": "peer-left", "peer_id": {"a": 1}},
        {"type": "signal", "from": None, "data": {}},
        {"type": "signal", "from": "bob", "data": []},
        {"type": "signal", "from": "bob", "data": {"kind": "offer", "session": 1, "sdp": 2}},
        {"type": "signal", "from": "bob", "data": {"sealed": "!!!", "v": 1}},
        {"type": "signal", "from": "nobody", "data": {"kind": "offer", "session": "s", "sdp": ""}},
        {"type": "welcome", "peer_id": "mallory", "peers": ["x"]},
    ]
    done = asyncio.get_running_loop().create_future()

    async def handle(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.send(json.dumps({"type": "welcome", "peer_id": "alice", "peers": []}))
        for message in garbage:
            await ws.send(json.dumps(message))
        await ws.send(b"\xff\xfe binary")
        done.set_result(None)
        with contextlib.suppress(ConnectionClosed):
            async for _ in ws:
                pass

    async with serve(handle, "127.0.0.1", 0) as fake:
        url = f"ws://127.0.0.1:{next(iter(fake.sockets)).getsockname()[1]}"
        async with Meeting(url, "room", peer_id="alice", ice_addresses=LOOPBACK) as alice:
            await asyncio.wait_for(done, 5)
            for _ in range(100):
                if alice.stats.get("signals_refused", 0) >= 2:
                    break
                await asyncio.sleep(0.02)
            refused = alice.stats
            assert refused.get("signals_refused", 0) >= 2
            assert alice.peer_id == "alice" and alice.peers == []
            await alice.stores.create("s").set("k", 1)  # still a working peer
            assert alice.stores["s"].get("k") == 1
