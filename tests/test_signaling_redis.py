"""Signaling instances sharing rooms through a real Redis (SPEC §10), and clients that
fail over between them. Every test starts its own ``redis-server`` on a free loopback
port (Debian's binary: no mock); without one installed these tests fail, by design."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from signal import SIGKILL
from typing import Any

import pytest
import redis.asyncio as redis
from websockets.asyncio.server import ServerConnection, serve

from crdt_stores import JoinError, Meeting
from crdt_stores.signaling_client import MAX_MESSAGE_BYTES, SignalingClient
from signaling import Limits, PresenceError, SignalingServer, mint_token
from signaling.tokens import MAX_NAME_LENGTH

from .conftest import converge
from .netutil import LOOPBACK, ROOT, child_env, free_port, read_line, spawn, wait_until
from .test_cli import CliPeer
from .test_signaling import SECRET
from .test_signaling_abuse import (
    close_all,
    close_code_and_reason,
    join,
    old_token,
    recv,
    signal,
)

pytestmark = pytest.mark.timeout(120)

# Short presence times, so that a dead instance's peers leave in about two seconds.
FAST = Limits(presence_ttl=1.5, presence_refresh=0.25)


def redis_server_binary() -> str:
    path = shutil.which("redis-server")
    if path is None:
        pytest.fail(
            "redis-server is not installed: the Redis signaling tests need a real one "
            "(apt-get install -y redis-server; .ci/run installs it)",
            pytrace=False,
        )
    return path


def start_redis_server(port: int) -> subprocess.Popen[bytes]:
    options = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    return subprocess.Popen(
        [redis_server_binary(), *options], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


@contextlib.asynccontextmanager
async def running_redis() -> AsyncIterator[tuple[str, subprocess.Popen[bytes]]]:
    """A throwaway redis-server on a free loopback port, no persistence; stopped after."""
    port = free_port()
    proc = start_redis_server(port)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.from_url(url)
        try:
            async with asyncio.timeout(10):
                while True:
                    assert proc.poll() is None, "redis-server exited at start"
                    try:
                        if await client.ping():
                            break
                    except (redis.ConnectionError, OSError):
                        await asyncio.sleep(0.02)
        finally:
            await client.aclose()
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            await asyncio.to_thread(proc.wait, 5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    async with running_redis() as (url, _):
        yield url


@contextlib.asynccontextmanager
async def instances(
    url: str, count: int = 2, limits: Limits = FAST, **options: Any
) -> AsyncIterator[list[SignalingServer]]:
    """``count`` signaling servers on one Redis, stopped after."""
    servers = [
        SignalingServer("127.0.0.1", 0, redis_url=url, limits=limits, **options)
        for _ in range(count)
    ]
    try:
        for server in servers:
            await server.start()
        yield servers
    finally:
        for server in servers:
            await server.stop()


def spawn_instance(url: str, port: int, *extra: str) -> subprocess.Popen[str]:
    return spawn(
        "-m", "signaling", "--host", "127.0.0.1", "--port", str(port), "--redis", url, *extra
    )


# -- one room over two instances --------------------------------------------------------


async def test_a_room_spans_instances_presence_and_signals_cross(redis_url) -> None:
    async with instances(redis_url) as (one, two):
        a, welcome = await join(one.url, "r", "a")
        assert welcome["peers"] == []
        b, welcome = await join(two.url, "r", "b")
        assert welcome["peers"] == ["a"]  # a is on the other instance
        assert await recv(a) == {"type": "peer-joined", "peer_id": "b"}
        c, welcome = await join(one.url, "r", "c")
        assert sorted(welcome["peers"]) == ["a", "b"]
        assert await recv(a) == {"type": "peer-joined", "peer_id": "c"}
        assert await recv(b) == {"type": "peer-joined", "peer_id": "c"}
        other, welcome = await join(two.url, "elsewhere", "d")
        assert welcome["peers"] == []  # rooms stay apart

        # b (instance two) -> a (instance one): delivered to a only, stamped by the server
        await signal(b, "a", kind="offer", forged="x")
        assert await recv(a) == {
            "type": "signal",
            "from": "b",
            "data": {"kind": "offer", "forged": "x"},
        }
        await signal(a, "b", kind="answer")  # and back, paid by the credit b's offer earned
        assert await recv(b) == {"type": "signal", "from": "a", "data": {"kind": "answer"}}
        await signal(b, "d", kind="offer")  # d is in another room, on b's own instance
        assert (await recv(b))["code"] == "no-such-peer"
        await signal(b, "nobody", kind="offer")
        assert (await recv(b))["code"] == "no-such-peer"
        assert two.stats["signals_routed"] == 1 and one.stats["signals_routed"] == 1
        assert one.stats["replies_credited"] == 1

        await close_all([b])
        assert await recv(a) == {"type": "peer-left", "peer_id": "b"}
        assert await recv(c) == {"type": "peer-left", "peer_id": "b"}
        await close_all([a])
        assert await recv(c) == {"type": "peer-left", "peer_id": "a"}
        late, welcome = await join(two.url, "r")  # an id the server picks
        assert welcome["peers"] == ["c"] and welcome["peer_id"] not in ("a", "b", "c")
        await close_all([c, other, late])


async def test_a_join_racing_events_hears_each_exactly_once(redis_url) -> None:
    """Peers joining both instances at once: every peer ends up knowing exactly the
    others, from its welcome and the peer-joined messages that follow it."""
    async with instances(redis_url) as servers:
        names = [f"p{i}" for i in range(30)]
        joins = await asyncio.gather(
            *(join(servers[i % 2].url, "crowd", name) for i, name in enumerate(names))
        )
        known = {
            name: set(welcome["peers"]) for name, (_, welcome) in zip(names, joins, strict=True)
        }
        for name, (ws, _) in zip(names, joins, strict=True):
            while len(known[name]) < len(names) - 1:
                message = await recv(ws)
                assert message["type"] == "peer-joined", message
                assert message["peer_id"] not in known[name], f"{name} told twice"
                known[name].add(message["peer_id"])
            assert known[name] == set(names) - {name}
        await close_all([ws for ws, _ in joins])


async def test_a_recipient_flooded_from_another_instance_stays_and_senders_hear_why(
    redis_url,
) -> None:
    """The recipient's receive bucket is kept by its own instance: past it, signals from
    the other instance are dropped there and each sender gets its error back."""
    async with instances(redis_url) as (one, two):
        victim, _ = await join(one.url, "r", "victim")
        senders = [(await join(two.url, "r", f"s{n}"))[0] for n in range(8)]
        for ws in senders:
            for _ in range(8):  # the pair bucket's burst: only the receive bucket says no
                await signal(ws, "victim", kind="offer")
        limits = one.limits
        await wait_until(
            lambda: one.stats["signals"] + one.stats["signals_rate_limited_recipient"] == 64,
            10,
            "every signal to be delivered or refused at the victim's instance",
        )
        delivered = one.stats["signals"]
        refused = one.stats["signals_rate_limited_recipient"]
        assert limits.signals_received_burst <= delivered < 64 and refused == 64 - delivered
        errors: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def pump(ws: Any) -> None:
            while True:
                await errors.put(await recv(ws, timeout=30, skip=("peer-joined",)))

        readers = [asyncio.create_task(pump(ws)) for ws in senders]
        try:
            for _ in range(refused):  # each refusal reaches its sender, on the other instance
                message = await asyncio.wait_for(errors.get(), 5)
                assert message["code"] == "rate-limited", message
                assert "receiving too many signals" in message["reason"]
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
        assert errors.empty()
        for _ in range(delivered):  # what got through reached the victim, stamped
            message = await recv(victim, skip=("peer-joined",))
            assert message["type"] == "signal" and message["from"].startswith("s"), message
        await signal(victim, "s0", kind="answer")  # the victim still answers, for free
        assert (await recv(senders[0], skip=("peer-joined",)))["data"] == {"kind": "answer"}
        await close_all([victim, *senders])


async def test_peer_ids_are_unique_across_instances_and_resume_anywhere(redis_url) -> None:
    async with instances(redis_url) as (one, two):
        x, welcome = await join(one.url, "r", "x")
        resume = welcome["resume"]
        watcher, _ = await join(one.url, "r", "watcher")
        assert await recv(x) == {"type": "peer-joined", "peer_id": "watcher"}

        dup, reply = await join(two.url, "r", "x")  # live on the other instance
        assert reply["code"] == "peer-id-taken" and "already in the room" in reply["reason"]
        assert (await close_code_and_reason(dup))[0] == 4009
        guess, reply = await join(two.url, "r", "x", resume="y" * 43)
        assert reply["code"] == "peer-id-taken"
        assert (await close_code_and_reason(guess))[0] == 4009

        # The resume secret from instance one takes over at instance two (open mode:
        # the resume key is shared through Redis); the old socket is closed, quietly.
        moved, welcome = await join(two.url, "r", "x", resume=resume)
        assert welcome["type"] == "welcome" and welcome["resume"] == resume
        assert welcome["peers"] == ["watcher"]
        assert await close_code_and_reason(x) == (4009, "replaced by a resumed session")
        await signal(moved, "watcher", kind="offer")  # the next thing watcher hears
        assert await recv(watcher) == {"type": "signal", "from": "x", "data": {"kind": "offer"}}
        assert two.stats["resumed"] == 1 and one.stats["taken_over"] == 1

        # Gone: the id is reserved on every instance for its secret.
        await close_all([moved])
        assert await recv(watcher) == {"type": "peer-left", "peer_id": "x"}
        for server in (one, two):
            taker, reply = await join(server.url, "r", "x")
            assert reply["code"] == "peer-id-taken" and "reserved" in reply["reason"]
            assert (await close_code_and_reason(taker))[0] == 4009
        back, welcome = await join(one.url, "r", "x", resume=resume)
        assert welcome["type"] == "welcome"
        assert await recv(watcher) == {"type": "peer-joined", "peer_id": "x"}
        await close_all([back, watcher])


async def test_the_room_cap_holds_across_instances(redis_url) -> None:
    limits = Limits(max_peers_per_room=3, presence_ttl=1.5, presence_refresh=0.25)
    async with instances(redis_url, limits=limits) as (one, two):
        # Six joins at once over both instances for three places: exactly three get in.
        racers = await asyncio.gather(
            *(join((one, two)[i % 2].url, "race", f"r{i}") for i in range(6))
        )
        admitted = [ws for ws, reply in racers if reply["type"] == "welcome"]
        refused = [ws for ws, reply in racers if reply.get("code") == "room-full"]
        assert len(admitted) == 3 and len(refused) == 3, [reply for _, reply in racers]
        for ws in refused:
            assert (await close_code_and_reason(ws))[0] == 4003
        assert one.stats["refused_room_full"] + two.stats["refused_room_full"] == 3
        await close_all(admitted)

        a, _ = await join(one.url, "r", "a")
        b, _ = await join(one.url, "r", "b")
        c, _ = await join(two.url, "r", "c")
        for server in (one, two):
            full, reply = await join(server.url, "r", "late")
            assert reply["code"] == "room-full"
            assert (await close_code_and_reason(full))[0] == 4003
        await close_all([a])
        assert await recv(c) == {"type": "peer-left", "peer_id": "a"}  # released in Redis
        late, welcome = await join(two.url, "r", "late")
        assert welcome["type"] == "welcome" and sorted(welcome["peers"]) == ["b", "c"]
        await close_all([b, c, late])


async def test_tokens_and_resume_secrets_hold_across_instances(redis_url) -> None:
    async with instances(redis_url, secret=SECRET) as (one, two):
        token = mint_token(SECRET, "standup", "alice")
        alice, welcome = await join(one.url, "standup", token=token)
        assert welcome["peer_id"] == "alice" and welcome["auth"] is True
        resume = welcome["resume"]
        wrong, reply = await join(two.url, "standup", token=mint_token(SECRET, "other", "eve"))
        assert reply["code"] == "auth-room"
        assert (await close_code_and_reason(wrong))[0] == 4001
        forged, reply = await join(two.url, "standup", token=mint_token("x" * 40, "standup", "e"))
        assert reply["code"] == "auth-invalid"

        await close_all([alice])
        await wait_until(lambda: not one.rooms, 5, "alice to leave")
        replay, reply = await join(two.url, "standup", token=token)  # the same token, elsewhere
        assert reply["code"] == "peer-id-taken" and "reserved" in reply["reason"]
        # A new token and the secret instance one handed out: welcome at instance two.
        fresh = mint_token(SECRET, "standup", "alice")
        back, welcome = await join(two.url, "standup", token=fresh, resume=resume)
        assert welcome["type"] == "welcome" and welcome["peer_id"] == "alice"
        await close_all([back, forged, replay])

    # Instances must agree on the secret: one with another secret (or none) refuses to start.
    async with instances(redis_url, secret=SECRET):
        for other in ("another-secret-" + "9" * 32, None):
            stranger = SignalingServer("127.0.0.1", 0, secret=other, redis_url=redis_url)
            with pytest.raises(PresenceError, match="--secret"):
                await stranger.start()
            await stranger.stop()


async def test_the_restart_grace_counts_from_the_shared_start(redis_url) -> None:
    """Older tokens need the resume secret for reserve_seconds after the shared state
    began (Redis keeps the reservations), not after each instance's own start."""
    limits = Limits(reserve_seconds=1.0, presence_ttl=1.5, presence_refresh=0.25)
    async with instances(redis_url, count=1, secret=SECRET, limits=limits) as (first,):
        began = time.time()
        early, reply = await join(first.url, "r", token=old_token("r", "alice"))
        assert reply["code"] == "peer-id-taken" and "restarted" in reply["reason"]
        await wait_until(lambda: time.time() > began + 1.5, 5, "the grace to pass")
        async with instances(redis_url, count=1, secret=SECRET, limits=limits) as (later,):
            alice, welcome = await join(later.url, "r", token=old_token("r", "alice"))
            assert welcome["type"] == "welcome" and later.stats["refused_restart_grace"] == 0
            await close_all([early, alice])


async def test_bad_messages_from_redis_change_nothing(redis_url) -> None:
    async with instances(redis_url) as (one, two):
        a, _ = await join(one.url, "r", "a")
        b, _ = await join(two.url, "r", "b")
        assert await recv(a) == {"type": "peer-joined", "peer_id": "b"}
        client = redis.from_url(redis_url)
        try:
            instance = f"crdt-stores:instance:{one.instance}"
            good = {"kind": "signal", "room": "r", "from": "b", "to": "a", "data": {}}
            garbage: list[bytes | str] = [
                b"\xff\xfe not utf-8",
                "{not json",
                "[1, 2, 3]",
                "null",
                "9" * 5000,
                "[" * 100_000,
                json.dumps({"kind": "nonsense"}),
                json.dumps({**good, "data": "not an object"}),
                json.dumps({**good, "first": "yes", "credited": False, "origin": "z"}),
                json.dumps({**good, "to": "x" * (MAX_NAME_LENGTH + 1)}),
                json.dumps(
                    {"kind": "bounce", "room": "r", "to": "a", "code": "idle", "reason": "x"}
                ),
                json.dumps(
                    {**good, "first": False, "credited": False, "origin": "z", "pad": "x" * 300_000}
                ),
            ]
            room = "crdt-stores:room:r"
            events: list[bytes | str] = [
                "{}",
                json.dumps({"seq": "9", "event": "left", "peer": "b", "instance": ""}),
                json.dumps({"seq": True, "event": "left", "peer": "b", "instance": ""}),
                json.dumps({"seq": 10**6, "event": "exploded", "peer": "b", "instance": ""}),
                json.dumps({"seq": 10**6, "event": "left", "peer": 7, "instance": ""}),
                json.dumps({"seq": -1, "event": "left", "peer": "b", "instance": ""}),
                b"\x00" * 10_000,
            ]
            for message in garbage:
                await client.publish(instance, message)
            for message in events:
                await client.publish(room, message)
            await wait_until(
                lambda: one.stats["bus_ignored"] >= len(garbage) + len(events),
                5,
                "every bad message to be counted",
            )
        finally:
            await client.aclose()
        # Both instances still route, and nobody heard anything of it.
        await signal(b, "a", kind="offer")
        assert await recv(a) == {"type": "signal", "from": "b", "data": {"kind": "offer"}}
        c, welcome = await join(two.url, "r", "c")
        assert sorted(welcome["peers"]) == ["a", "b"]
        assert await recv(a) == {"type": "peer-joined", "peer_id": "c"}
        await close_all([a, b, c])


async def test_a_socket_whose_presence_vanished_is_told_to_rejoin(redis_url) -> None:
    async with instances(redis_url) as (one, two):
        x, _ = await join(one.url, "r", "x")
        y, _ = await join(two.url, "r", "y")
        assert await recv(x) == {"type": "peer-joined", "peer_id": "y"}
        client = redis.from_url(redis_url)
        try:  # as if instance one had stalled past presence_ttl and been swept
            await client.zrem("crdt-stores:members:r", "x")
            await client.hdel("crdt-stores:owners:r", "x")
        finally:
            await client.aclose()
        code, reason = await close_code_and_reason(x, timeout=FAST.presence_refresh + 3)
        assert code == 4011 and "rejoin" in reason
        assert one.stats["presence_lost"] == 1
        await close_all([y])


async def test_joins_are_refused_not_crashed_while_redis_is_down() -> None:
    async with running_redis() as (url, proc), instances(url) as (one, _):
        a, _ = await join(one.url, "r", "a")
        proc.terminate()
        await asyncio.to_thread(proc.wait, 5)
        started = time.monotonic()
        b, reply = await join(one.url, "r", "b")
        assert reply["code"] == "unavailable", reply
        assert (await close_code_and_reason(b))[0] == 4013
        assert time.monotonic() - started < 6.0
        assert one.stats["presence_errors"] >= 1
        await close_all([a])


# -- instances that go away ---------------------------------------------------------


async def test_the_peers_of_a_killed_instance_leave_within_the_bound(redis_url) -> None:
    """SIGKILL: nothing releases the dead instance's peers; their presence expires and
    the others hear peer-left within presence_ttl + presence_refresh (defaults: 6 s)."""
    limits = Limits()
    bound = limits.presence_ttl + limits.presence_refresh
    port = free_port()
    doomed = spawn_instance(redis_url, port)  # the default presence times
    try:
        line = await read_line(doomed, 20)
        assert "listening" in line and "Redis at redis://127.0.0.1" in line, line
        async with instances(redis_url, count=1, limits=limits) as (survivor,):
            x, welcome = await join(f"ws://127.0.0.1:{port}", "r", "x")
            resume = welcome["resume"]
            y, welcome = await join(survivor.url, "r", "y")
            assert welcome["peers"] == ["x"]
            doomed.send_signal(SIGKILL)
            await asyncio.to_thread(doomed.wait, 5)
            killed = time.monotonic()
            assert await recv(y, timeout=bound + 3) == {"type": "peer-left", "peer_id": "x"}
            elapsed = time.monotonic() - killed
            print(f"peer-left {elapsed:.2f} s after the SIGKILL (bound {bound:g} s)")
            assert elapsed <= bound + 0.5
            # Its id is reserved for its secret, as after any drop.
            taker, reply = await join(survivor.url, "r", "x")
            assert reply["code"] == "peer-id-taken" and "reserved" in reply["reason"]
            back, welcome = await join(survivor.url, "r", "x", resume=resume)
            assert welcome["type"] == "welcome" and welcome["peers"] == ["y"]
            await close_all([x, y, taker, back])
    finally:
        if doomed.poll() is None:
            doomed.kill()
        doomed.wait()


async def test_a_stopped_instance_releases_its_peers_at_once(redis_url) -> None:
    async with instances(redis_url) as (one, two):
        x, _ = await join(one.url, "r", "x")
        y, _ = await join(two.url, "r", "y")
        assert await recv(x) == {"type": "peer-joined", "peer_id": "y"}
        await one.stop()
        assert await recv(y, timeout=3) == {"type": "peer-left", "peer_id": "x"}
        await close_all([x, y])


# -- real meetings over two instances -------------------------------------------------


async def test_a_meeting_pair_across_instances_replicates(redis_url) -> None:
    async with instances(redis_url) as (one, two):
        alice = await Meeting.join(one.url, "room", peer_id="alice", ice_addresses=LOOPBACK)
        bob = await Meeting.join(two.url, "room", peer_id="bob", ice_addresses=LOOPBACK)
        try:
            assert bob.peers == ["alice"]
            await alice.stores.create("s").set("k", {"from": "alice"})
            await converge(alice, bob)
            assert bob.stores["s"].get("k") == {"from": "alice"}
        finally:
            await asyncio.gather(alice.leave(), bob.leave())


async def test_meetings_fail_over_to_another_instance_and_lose_no_write(redis_url) -> None:
    async with instances(redis_url, count=3) as (one, two, three):
        alice = await Meeting.join(
            [one.url, two.url], "room", peer_id="alice", ice_addresses=LOOPBACK
        )
        bob = await Meeting.join([two.url, one.url], "room", peer_id="bob", ice_addresses=LOOPBACK)
        newcomer = None
        left: list[str] = []
        for meeting in (alice, bob):
            meeting.on("peer_left", left.append)
        try:
            assert alice._transport._signaling.url == one.url
            await converge(alice, bob)
            store = alice.stores.create("s")
            mine = bob.stores.create("b")
            written = 0

            async def write_through(stop: asyncio.Event) -> None:
                nonlocal written
                while not stop.is_set():  # a write every few ms, during the failover
                    await store.set(f"k{written}", written)
                    await mine.set(f"k{written}", -written)
                    written += 1
                    await asyncio.sleep(0.005)

            stop = asyncio.Event()
            writer = asyncio.create_task(write_through(stop))
            await one.stop()  # alice's instance goes
            signaling = alice._transport._signaling
            await wait_until(
                lambda: signaling.connected and signaling.url == two.url,
                10,
                "alice to register at the other instance",
            )
            stop.set()
            await asyncio.wait_for(writer, 10)
            assert alice.peer_id == "alice"
            newcomer = await Meeting.join(
                three.url, "room", peer_id="carol", ice_addresses=LOOPBACK
            )
            assert sorted(newcomer._transport.present_peers()) == ["alice", "bob"]
            await converge(alice, bob, newcomer)
            expected = {f"k{n}": n for n in range(written)}
            for meeting in (alice, bob, newcomer):
                assert meeting.stores["s"].get_all() == expected
                assert meeting.stores["b"].get_all() == {k: -v for k, v in expected.items()}
            assert left == [], "the mesh went down with the instance"
            print(f"{written} writes each through the failover; none lost")
        finally:
            await asyncio.gather(*(m.leave() for m in (alice, bob, newcomer) if m is not None))


async def test_a_meeting_fails_over_from_a_killed_instance(redis_url) -> None:
    port = free_port()
    doomed = spawn_instance(redis_url, port, "--presence-ttl", "1.5", "--presence-refresh", "0.25")
    alice = bob = newcomer = None
    try:
        assert "listening" in await read_line(doomed, 20)
        async with instances(redis_url, count=1) as (survivor,):
            urls = [f"ws://127.0.0.1:{port}", survivor.url]
            alice = await Meeting.join(urls, "room", peer_id="alice", ice_addresses=LOOPBACK)
            bob = await Meeting.join(survivor.url, "room", peer_id="bob", ice_addresses=LOOPBACK)
            await alice.stores.create("s").set("before", 1)
            await converge(alice, bob)
            doomed.send_signal(SIGKILL)
            await asyncio.to_thread(doomed.wait, 5)
            await alice.stores["s"].set("during", 2)  # the mesh carries it
            signaling = alice._transport._signaling
            await wait_until(
                lambda: signaling.connected and signaling.url == survivor.url,
                10,
                "alice to register at the survivor",
            )
            newcomer = await Meeting.join(
                survivor.url, "room", peer_id="carol", ice_addresses=LOOPBACK
            )
            assert sorted(newcomer._transport.present_peers()) == ["alice", "bob"]
            await converge(alice, bob, newcomer)
            for meeting in (bob, newcomer):
                assert meeting.stores["s"].get_all() == {"before": 1, "during": 2}
    finally:
        if doomed.poll() is None:
            doomed.kill()
        doomed.wait()
        await asyncio.gather(*(m.leave() for m in (alice, bob, newcomer) if m is not None))


# -- clients with several URLs, and the CLI ------------------------------------------


async def test_a_client_tries_each_url_in_turn(redis_url) -> None:
    dead = f"ws://127.0.0.1:{free_port()}"
    async with instances(redis_url, count=1) as (live,):
        meeting = await Meeting.join([dead, live.url], "r", peer_id="a", ice_addresses=LOOPBACK)
        try:
            assert meeting._transport._signaling.url == live.url
        finally:
            await meeting.leave()
        # A refusal every instance would give is not retried elsewhere.
        holder = await Meeting.join(live.url, "r", peer_id="taken", ice_addresses=LOOPBACK)
        try:
            with pytest.raises(JoinError) as info:
                await Meeting.join([live.url, dead], "r", peer_id="taken", ice_addresses=LOOPBACK)
            assert info.value.reason == "peer-id-taken"
        finally:
            await holder.leave()
    with pytest.raises(JoinError) as info:
        await Meeting.join([dead, f"ws://127.0.0.1:{free_port()}"], "r", ice_addresses=LOOPBACK)
    assert info.value.reason == "unreachable" and str(info.value).count("cannot reach") == 2
    with pytest.raises(TypeError):
        await Meeting.join([], "r")


async def test_cli_peers_fail_over_between_signaling_urls(redis_url) -> None:
    async with instances(redis_url) as (one, two):
        alice = CliPeer(one.url, "alice", "--signaling", two.url)
        bob = CliPeer(two.url, "bob")
        try:
            assert await alice.run("create notes") == "ok"
            assert await alice.run("set notes k 1") == "ok"
            assert await alice.run("sync") == "synced"
            await one.stop()
            await wait_until(lambda: "alice" in two.rooms.get("r", {}), 15, "alice at two")
            assert await alice.run("set notes k 2") == "ok"
            assert await alice.run("sync") == "synced"
            assert await bob.run("get notes k") == "2"
        finally:
            alice.close()
            bob.close()


async def test_python_m_signaling_without_redis_needs_no_redis_package() -> None:
    program = (
        "import asyncio, sys\n"
        "sys.modules['redis'] = None  # any import of it fails\n"
        "from signaling import SignalingServer\n"
        "async def main():\n"
        "    async with SignalingServer('127.0.0.1', 0) as server:\n"
        "        assert server.instance is None\n"
        "    assert 'signaling._redis' not in sys.modules\n"
        "    print('ok')\n"
        "asyncio.run(main())\n"
    )
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", program],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip() == "ok", done.stderr[-2000:]


async def test_python_m_signaling_with_an_unreachable_redis_says_so() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "signaling", "--port", "0", "--redis", url],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "cannot use Redis at" in done.stderr and url in done.stderr
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "signaling", "--redis", url, "--presence-refresh", "9"],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "presence_refresh" in done.stderr


# -- a room of 1,000 ----------------------------------------------------------------


def test_the_default_room_cap_and_presence_times() -> None:
    limits = Limits()
    assert limits.max_peers_per_room >= 1000
    assert (limits.presence_ttl, limits.presence_refresh) == (5.0, 1.0)


async def test_a_welcome_listing_a_full_room_of_the_longest_ids_reaches_the_client() -> None:
    """The worst case: the default cap of peers, each id 256 astral characters, which
    JSON escapes to 12 bytes each; built and sent exactly as the server does."""
    cap = Limits().max_peers_per_room

    def longest(n: int) -> str:  # 256 astral characters, n spelt in the last four
        digits = "".join(chr(0x1F601 + (n >> shift) % 16) for shift in (12, 8, 4, 0))
        return "\U0001f600" * (MAX_NAME_LENGTH - 4) + digits

    peers = [longest(n) for n in range(cap - 1)]
    welcome = {
        "type": "welcome",
        "peer_id": "\U0001f600" * MAX_NAME_LENGTH,
        "room": "\U0001f600" * MAX_NAME_LENGTH,
        "peers": peers,
        "auth": True,
        "resume": "r" * 43,
        "heartbeat": 10.0,
    }
    text = json.dumps(welcome, separators=(",", ":"))  # as signaling._sockets sends it
    assert 3_000_000 < len(text) <= MAX_MESSAGE_BYTES
    print(f"worst-case welcome for {cap} peers: {len(text):,} bytes of {MAX_MESSAGE_BYTES:,}")

    async def server(ws: ServerConnection) -> None:
        json.loads(await ws.recv())
        await ws.send(text)
        await ws.wait_closed()

    class Handler:
        def peer_joined(self, peer: str) -> None: ...
        def peer_left(self, peer: str) -> None: ...
        def signal(self, peer: str, data: dict[str, Any]) -> None: ...
        def signaling_restored(self, peers: list[str]) -> None: ...

    async with serve(server, "127.0.0.1", 0, max_size=None) as running:
        port = next(iter(running.sockets)).getsockname()[1]
        client = SignalingClient(
            f"ws://127.0.0.1:{port}",
            "\U0001f600" * MAX_NAME_LENGTH,
            Handler(),
            peer_id="\U0001f600" * MAX_NAME_LENGTH,
        )
        try:
            assert await asyncio.wait_for(client.join(), 20) == peers
        finally:
            await client.close()


def test_ci_installs_redis_server() -> None:
    """CI runs on fresh machines: .ci/run installs Debian's redis-server (and chromium,
    for js/test/browser.test.js) when missing, before the test command."""
    script = (ROOT / ".ci" / "run").read_text()
    assert 'command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"' in script
    assert 'missing="$missing chromium' in script
    assert "apt-get install -y --no-install-recommends $missing" in script
    assert script.index("apt-get install") < script.index("exec bash")
