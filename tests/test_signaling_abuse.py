"""The signaling server against abusive clients: id takeover, floods, idle and many sockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import jwt
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from signaling import Limits, SignalingServer, mint_token
from signaling.__main__ import build_parser
from signaling.tokens import TokenError, verify_token, verify_token_claims

from .netutil import free_port, wait_until
from .test_signaling import SECRET, expect_close

Message = dict[str, Any]


async def join(
    url: str,
    room: str,
    peer_id: str | None = None,
    *,
    token: str | None = None,
    resume: str | None = None,
    forwarded_for: str | None = None,
) -> tuple[ClientConnection, Message]:
    """Open a socket, send a join and return it with the server's first reply."""
    ws = await open_socket(url, forwarded_for)
    join_message: Message = {"type": "join", "room": room, "peer_id": peer_id, "token": token}
    if resume is not None:
        join_message["resume"] = resume
    await ws.send(json.dumps(join_message))
    return ws, await recv(ws)


async def open_socket(url: str, forwarded_for: str | None = None) -> ClientConnection:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else None
    return await connect(url, open_timeout=10, additional_headers=headers, ping_interval=None)


async def recv(ws: ClientConnection, timeout: float = 5.0, skip: Iterable[str] = ()) -> Message:
    """The next message, skipping those whose type is in ``skip`` (bounded)."""
    skipped = set(skip)
    async with asyncio.timeout(timeout):
        while True:
            message: Message = json.loads(await ws.recv())
            if message.get("type") not in skipped:
                return message


async def close_code_and_reason(ws: ClientConnection, timeout: float = 5.0) -> tuple[int, str]:
    """Read until the server closes; returns the close code and reason it sent."""
    with pytest.raises(ConnectionClosed) as info:
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    rcvd = info.value.rcvd
    return (rcvd.code, rcvd.reason) if rcvd else (-1, "")


async def signal(ws: ClientConnection, to: str, **data: Any) -> None:
    await ws.send(json.dumps({"type": "signal", "to": to, "data": data}))


async def close_all(sockets: Iterable[ClientConnection], timeout: float = 10.0) -> None:
    """Close many client sockets at once, bounded."""
    await asyncio.wait_for(
        asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True), timeout
    )


def old_token(room: str, peer_id: str, age: float = 60.0) -> str:
    """A valid token issued ``age`` seconds ago (as one in use before a restart)."""
    now = int(time.time())
    claims = {"room": room, "sub": peer_id, "iat": now - int(age), "exp": now + 3600}
    return jwt.encode(claims, SECRET, algorithm="HS256")


@contextlib.asynccontextmanager
async def keepalive(*sockets: ClientConnection, every: float) -> AsyncIterator[None]:
    """Send an application ping on each socket every ``every`` seconds while inside."""

    async def beat(ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await ws.send(json.dumps({"type": "ping"}))
                await asyncio.sleep(every)

    tasks = [asyncio.create_task(beat(ws)) for ws in sockets]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# -- A: no identity takeover ----------------------------------------------------------


async def test_departed_id_is_reserved_for_its_resume_secret() -> None:
    async with SignalingServer("127.0.0.1", 0, limits=Limits(reserve_seconds=1.0)) as server:
        a, welcome = await join(server.url, "r", "a")
        assert welcome["type"] == "welcome" and isinstance(welcome["heartbeat"], float)
        resume = welcome["resume"]
        b, _ = await join(server.url, "r", "b")
        assert await recv(a) == {"type": "peer-joined", "peer_id": "b"}
        await close_all([a])
        assert await recv(b) == {"type": "peer-left", "peer_id": "a"}  # presence stays honest
        dropped_at = time.monotonic()

        mallory, reply = await join(server.url, "r", "a")
        assert reply["code"] == "peer-id-taken" and "reserved" in reply["reason"]
        assert await expect_close(mallory) == 4009
        guess, reply = await join(server.url, "r", "a", resume="x" * 43)
        assert reply["code"] == "peer-id-taken"
        assert await expect_close(guess) == 4009

        back, welcome = await join(server.url, "r", "a", resume=resume)
        assert welcome["type"] == "welcome" and welcome["peers"] == ["b"]
        assert welcome["resume"] == resume  # same room, id (and no token): same secret
        assert await recv(b) == {"type": "peer-joined", "peer_id": "a"}
        assert time.monotonic() - dropped_at < 1.0, "the steps above outlasted the reservation"
        await close_all([back])
        assert await recv(b) == {"type": "peer-left", "peer_id": "a"}

        # the reservation (1 s, renewed by the last drop) expires
        await wait_until(lambda: server._reservation("r", "a") is None, 5, "the reservation")
        taker, welcome = await join(server.url, "r", "a")
        assert welcome["type"] == "welcome"
        assert server.stats["refused_reserved"] == 2 and server.stats["resumed"] == 1
        await close_all([b, taker])


async def test_replayed_token_cannot_take_a_reserved_id() -> None:
    limits = Limits(reserve_seconds=1.0)
    async with SignalingServer("127.0.0.1", 0, secret=SECRET, limits=limits) as server:
        token = mint_token(SECRET, "r", "alice")
        alice, welcome = await join(server.url, "r", token=token)
        assert welcome["peer_id"] == "alice" and welcome["auth"] is True
        resume = welcome["resume"]
        await close_all([alice])
        await wait_until(lambda: "r" not in server.rooms, 5, "alice to leave")

        mallory, reply = await join(server.url, "r", token=token)  # the same token, replayed
        assert reply["code"] == "peer-id-taken" and "reserved" in reply["reason"]
        assert await expect_close(mallory) == 4009

        back, welcome = await join(server.url, "r", token=token, resume=resume)
        assert welcome["type"] == "welcome" and welcome["resume"] == resume
        await close_all([back])
        await wait_until(lambda: "r" not in server.rooms, 5, "alice to leave")
        # A new token (alice's old one expiring, say): the old secret still resumes and
        # the welcome hands out the secret of the new token.
        fresh = jwt.encode(
            {"room": "r", "sub": "alice", "iat": int(time.time()), "exp": int(time.time()) + 99},
            SECRET,
        )
        renewed, welcome = await join(server.url, "r", token=fresh, resume=resume)
        assert welcome["type"] == "welcome" and welcome["resume"] != resume
        await close_all([renewed])
        # the reservation expires: the token holder joins plainly
        await wait_until(lambda: server._reservation("r", "alice") is None, 5, "the reservation")
        later, welcome = await join(server.url, "r", token=token)
        assert welcome["type"] == "welcome"
        assert server.stats["refused_reserved"] == 1 and server.stats["resumed"] == 2
        await close_all([later])


async def test_restart_grace_needs_the_resume_secret_for_older_tokens() -> None:
    port = free_port()
    limits = Limits(reserve_seconds=4.0)
    first = SignalingServer("127.0.0.1", port, secret=SECRET, limits=limits)
    await first.start()
    try:
        token = mint_token(SECRET, "r", "alice")
        alice, welcome = await join(first.url, "r", token=token)
        assert welcome["type"] == "welcome"
        resume = welcome["resume"]
        # Tokens carry whole seconds (iat): restart in a later second than the token's.
        await asyncio.sleep(int(time.time()) + 1.02 - time.time())
    finally:
        await asyncio.wait_for(first.stop(), 15)
    assert await expect_close(alice) == 1001  # the server went away

    async with SignalingServer("127.0.0.1", port, secret=SECRET, limits=limits) as second:
        started = time.monotonic()
        mallory, reply = await join(second.url, "r", token=token)
        assert reply["code"] == "peer-id-taken" and "restarted" in reply["reason"]
        assert await expect_close(mallory) == 4009
        stale, reply = await join(second.url, "r", token=old_token("r", "carol"))
        assert reply["code"] == "peer-id-taken"  # any older token, not only reconnecting ones
        await expect_close(stale)

        back, welcome = await join(second.url, "r", token=token, resume=resume)
        assert welcome["type"] == "welcome" and welcome["resume"] == resume  # same secret
        bob, welcome = await join(second.url, "r", token=mint_token(SECRET, "r", "bob"))
        assert welcome["type"] == "welcome" and welcome["peers"] == ["alice"]
        assert time.monotonic() - started < 4.0, "the steps above outlasted the grace"
        assert second.stats["refused_restart_grace"] == 2 and second.stats["resumed"] == 1
        await close_all([back, bob])


async def test_resume_takes_over_a_live_socket_without_presence_noise() -> None:
    async with SignalingServer("127.0.0.1", 0) as server:
        old, welcome = await join(server.url, "r", "alice")
        resume = welcome["resume"]
        bob, _ = await join(server.url, "r", "bob")
        assert await recv(old) == {"type": "peer-joined", "peer_id": "bob"}

        plain, reply = await join(server.url, "r", "alice")  # no secret: refused as ever
        assert reply["code"] == "peer-id-taken"
        assert await expect_close(plain) == 4009

        new, welcome = await join(server.url, "r", "alice", resume=resume)
        assert welcome["type"] == "welcome" and welcome["peers"] == ["bob"]
        reply = await recv(old)
        assert reply["type"] == "error" and reply["code"] == "peer-id-taken"
        assert await close_code_and_reason(old) == (4009, "replaced by a resumed session")
        # bob hears nothing about it: the next thing he gets is alice's signal
        await signal(new, "bob", kind="offer")
        assert await recv(bob) == {"type": "signal", "from": "alice", "data": {"kind": "offer"}}
        await signal(bob, "alice", kind="answer")
        assert (await recv(new))["data"] == {"kind": "answer"}
        assert server.stats["taken_over"] == 1 and server.stats["refused_taken"] == 1
        await close_all([new])
        assert await recv(bob) == {"type": "peer-left", "peer_id": "alice"}
        await close_all([bob])


# -- B: rate limits that do not punish the receiver ------------------------------------


async def test_flooded_receiver_answers_everything_and_stays() -> None:
    limits = Limits(
        messages_per_second=10,
        burst=10,
        signals_per_peer_per_second=1000,
        signals_per_peer_burst=1000,
        signals_received_per_second=20,
        signals_received_burst=40,
        max_violations=100_000,
    )
    duration = 2.0
    async with SignalingServer("127.0.0.1", 0, limits=limits) as server:
        victim_joined = time.monotonic()
        victim, _ = await join(server.url, "r", "victim")
        flooders = [(await join(server.url, "r", f"f{i}"))[0] for i in range(5)]
        received: list[float] = []
        victim_errors: list[Message] = []
        flooder_errors: list[list[str]] = [[] for _ in flooders]

        async def answer_everything() -> None:
            with contextlib.suppress(ConnectionClosed):
                async for raw in victim:
                    message = json.loads(raw)
                    if message["type"] == "signal":
                        received.append(time.monotonic())
                        await signal(victim, message["from"], kind="answer")
                    elif message["type"] == "error":
                        victim_errors.append(message)

        async def read_errors(ws: ClientConnection, into: list[str]) -> None:
            with contextlib.suppress(ConnectionClosed):
                async for raw in ws:
                    message = json.loads(raw)
                    if message["type"] == "error":
                        into.append(message["code"])

        async def flood(ws: ClientConnection) -> None:
            while time.monotonic() < start + duration:
                for _ in range(2):
                    await signal(ws, "victim", kind="offer")
                await asyncio.sleep(0.01)

        readers = [asyncio.create_task(answer_everything())] + [
            asyncio.create_task(read_errors(ws, errors))
            for ws, errors in zip(flooders, flooder_errors, strict=True)
        ]
        start = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*(flood(ws) for ws in flooders)), duration + 5)
        await victim.send(json.dumps({"type": "ping"}))
        await wait_until(lambda: server.stats["signals"] >= 2 * len(received), 5, "answers")
        elapsed = time.monotonic() - victim_joined

        in_window = len(received)
        bound = limits.signals_received_burst + limits.signals_received_per_second * elapsed
        print(f"victim got {in_window} signals in {elapsed:.2f} s (bound {bound:.0f})")
        assert limits.signals_received_burst <= in_window <= bound + 1
        own_bucket = limits.burst + limits.messages_per_second * elapsed
        assert in_window > own_bucket  # answering them all needed the reply credits
        assert server.stats["replies_credited"] == in_window
        assert victim_errors == []
        assert all("rate-limited" in errors for errors in flooder_errors)
        assert server.stats["signals_rate_limited_recipient"] > 0
        assert server.rooms["r"]["victim"] is not None  # still joined
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await victim.send(json.dumps({"type": "ping"}))
        assert await recv(victim, skip={"signal"}) == {"type": "pong"}
        await close_all([victim, *flooders])


async def test_pair_bucket_and_answers_earn_nothing() -> None:
    limits = Limits(signals_per_peer_per_second=0.1, signals_per_peer_burst=3)
    async with SignalingServer("127.0.0.1", 0, limits=limits) as server:
        p, _ = await join(server.url, "r", "p")
        q, _ = await join(server.url, "r", "q")
        await recv(p)  # q joined
        for i in range(5):
            await signal(p, "q", n=i)
        replies = [await recv(p) for _ in range(2)]
        assert all(r["code"] == "rate-limited" and "'q'" in r["reason"] for r in replies)
        assert [(await recv(q))["data"]["n"] for _ in range(3)] == [0, 1, 2]
        # q answers all three (credited), and one more is not an answer any more
        for i in range(3):
            await signal(q, "p", n=i)
        assert [(await recv(p))["data"]["n"] for _ in range(3)] == [0, 1, 2]
        # p got answers, not credits: its next signal to q is still over its pair bucket
        await signal(p, "q", n=5)
        assert (await recv(p))["code"] == "rate-limited"
        assert server.stats["signals_rate_limited_pair"] == 3
        assert server.stats["replies_credited"] == 3
        await close_all([p, q])


# -- C: connection abuse ------------------------------------------------------------------


async def test_idle_sockets_are_closed_and_pings_keep_one_open() -> None:
    limits = Limits(idle_timeout=0.6)
    # protocol-level pings every 0.1 s: their pongs must not count as activity
    async with SignalingServer("127.0.0.1", 0, limits=limits, ping_interval=0.1) as server:
        watcher, welcome = await join(server.url, "r", "watcher")
        assert welcome["heartbeat"] == pytest.approx(0.2)
        pinger, _ = await join(server.url, "r", "pinger")
        sleeper, _ = await join(server.url, "r", "sleeper")
        joined_at = time.monotonic()
        async with keepalive(watcher, pinger, every=0.15):
            assert await recv(sleeper, skip={"peer-joined"}) == {
                "type": "error",
                "code": "idle",
                "reason": "no message for 0.6 s (send a ping at least every heartbeat)",
            }
            assert await close_code_and_reason(sleeper) == (4010, "idle")
            idle_for = time.monotonic() - joined_at
            assert 0.55 <= idle_for < 2.0
            left = await recv(watcher, skip={"pong", "peer-joined"})
            assert left == {"type": "peer-left", "peer_id": "sleeper"}
            # What is asserted is an absence over time (the kept-alive sockets are not
            # closed), so a bounded wait, not an event, is the way to observe it.
            await asyncio.sleep(1.0)  # well past the idle timeout again
            assert set(server.rooms["r"]) == {"watcher", "pinger"}
        assert server.stats["idle_closed"] == 1
        await close_all([watcher, pinger])


async def test_per_address_caps_keep_honest_clients_fast() -> None:
    limits = Limits(join_timeout=60.0)  # the idle sockets stay for the whole test
    async with SignalingServer(
        "127.0.0.1", 0, limits=limits, trusted_proxies={"127.0.0.1"}
    ) as server:
        url = server.url
        hoarded: list[ClientConnection] = []
        squatters: list[ClientConnection] = []
        squat_replies: list[Message] = []

        async def hoard() -> None:  # 203.0.113.7: 1,000 idle sockets, 100 at a time
            for _ in range(10):
                batch = await asyncio.gather(
                    *(open_socket(url, "203.0.113.7") for _ in range(100)),
                    return_exceptions=True,
                )
                hoarded.extend(ws for ws in batch if isinstance(ws, ClientConnection))

        async def squat_one(i: int) -> None:  # 203.0.113.8: 64 idle joins in the room
            ws, reply = await join(url, "busy", f"squat{i}", forwarded_for="203.0.113.8")
            squatters.append(ws)
            squat_replies.append(reply)

        async def squat() -> None:
            for first in range(0, 64, 16):
                await asyncio.gather(*(squat_one(i) for i in range(first, first + 16)))

        churned = 0

        async def churn() -> None:  # 203.0.113.9: connect and close, bounded
            nonlocal churned
            for _ in range(100):
                ws = await open_socket(url, "203.0.113.9")
                await close_all([ws])
                churned += 1

        abuse = [asyncio.create_task(job()) for job in (hoard, squat, churn, churn)]
        latencies: list[float] = []
        try:
            for i in range(8):
                began = time.monotonic()
                one, _ = await join(url, "busy", f"honest{i}a")
                two, welcome = await join(url, "busy", f"honest{i}b")
                assert welcome["type"] == "welcome", welcome
                await signal(one, f"honest{i}b", kind="offer")
                assert (await recv(two, skip={"peer-joined", "peer-left"}))["data"] == {
                    "kind": "offer"
                }
                await signal(two, f"honest{i}a", kind="answer")
                got = await recv(one, skip={"peer-joined", "peer-left"})
                assert got["data"] == {"kind": "answer"}
                latencies.append(time.monotonic() - began)
                await close_all([one, two])
            busy_during = sum(not task.done() for task in abuse)
            await asyncio.wait_for(asyncio.gather(*abuse), 30)
            print(
                "honest join+round trip under abuse: "
                + ", ".join(f"{t * 1000:.0f}" for t in latencies)
                + f" ms ({busy_during} abuse jobs still running after them)"
            )
            assert max(latencies) < 2.0
            assert busy_during > 0  # the honest rounds did overlap the abuse

            assert server.connections_from("203.0.113.7") == 128
            await wait_until(
                lambda: server.stats["refused_per_address"] == 1000 - 128, 10, "refusals"
            )
            await wait_until(
                lambda: sum(ws.close_code == 4008 for ws in hoarded) == 1000 - 128,
                10,
                "refused hoard sockets closed with 4008",
            )
            welcomed = [r for r in squat_replies if r["type"] == "welcome"]
            refused = [r for r in squat_replies if r.get("code") == "too-many-connections"]
            assert (len(welcomed), len(refused)) == (32, 32)
            assert server.joined_from("203.0.113.8") == 32
            assert server.stats["refused_joined_per_address"] == 32
            assert len(hoarded) == 1000 and churned == 200
            await wait_until(
                lambda: (
                    server.connections_from("203.0.113.9") == 0
                    and server.connections_from("127.0.0.1") == 0
                ),
                5,
                "churned and honest sockets to be gone",
            )
        finally:
            for task in abuse:
                task.cancel()
            await asyncio.gather(*abuse, return_exceptions=True)
            # The squatters never read, so a close handshake with them would hang: cut them.
            for ws in squatters:
                ws.transport.abort()
            await close_all([*hoarded, *squatters])
        await wait_until(lambda: not server.rooms, 5, "the room to empty")


async def test_untrusted_forwarded_for_is_ignored() -> None:
    async with SignalingServer("127.0.0.1", 0) as server:
        ws, _ = await join(server.url, "r", "x", forwarded_for="198.51.100.1")
        assert server.joined_from("127.0.0.1") == 1
        assert server.joined_from("198.51.100.1") == 0
        await close_all([ws])
    with pytest.raises(ValueError, match="not an IP address"):
        SignalingServer(trusted_proxies=["proxy.example"])


async def test_pending_sockets_are_capped_oldest_first() -> None:
    async with SignalingServer("127.0.0.1", 0, limits=Limits(max_pending_joins=4)) as server:
        waiting = [await open_socket(server.url) for _ in range(4)]
        await wait_until(lambda: server.connections_from("127.0.0.1") == 4, 5, "4 sockets")
        honest, welcome = await join(server.url, "r", "honest")  # pushes out the oldest
        assert welcome["type"] == "welcome"
        await wait_until(
            lambda: [ws.close_code for ws in waiting].count(4008) == 1, 5, "one evicted"
        )
        assert server.stats["pending_evicted"] == 1
        await wait_until(  # three waiting, one joined
            lambda: server.connections_from("127.0.0.1") == 4, 5, "the evicted one to go"
        )
        await close_all([*waiting, honest])


async def test_a_closed_violator_leaves_the_room_at_once() -> None:
    async with SignalingServer("127.0.0.1", 0, limits=Limits(max_violations=3)) as server:
        bystander, _ = await join(server.url, "r", "bystander")
        vandal, _ = await join(server.url, "r", "vandal")
        assert await recv(bystander) == {"type": "peer-joined", "peer_id": "vandal"}
        # The vandal stops reading: the server's close handshake with it cannot finish
        # (up to 10 s), and the others must not wait for that.
        vandal.transport.pause_reading()
        started = time.monotonic()
        for _ in range(5):
            await vandal.send("{not json")
        assert await recv(bystander, timeout=1.0) == {"type": "peer-left", "peer_id": "vandal"}
        print(f"peer-left after {(time.monotonic() - started) * 1000:.0f} ms")
        assert server.stats["closed_violations"] == 1
        assert "vandal" not in server.rooms["r"]
        vandal.transport.abort()
        await close_all([bystander])


async def test_a_peer_that_does_not_read_leaves_at_once() -> None:
    limits = Limits(
        max_pending_sends=4,
        signals_per_peer_per_second=1000,
        signals_per_peer_burst=1000,
        signals_received_per_second=1000,
        signals_received_burst=1000,
        messages_per_second=1000,
        burst=1000,
    )
    async with SignalingServer("127.0.0.1", 0, limits=limits) as server:
        deaf, _ = await join(server.url, "r", "deaf")
        sender, _ = await join(server.url, "r", "sender")
        watcher, _ = await join(server.url, "r", "watcher")
        deaf.transport.pause_reading()
        chunk = "x" * 60_000
        async with asyncio.timeout(10):
            while server.stats["send_queue_full"] == 0:
                await signal(sender, "deaf", blob=chunk)
                await asyncio.sleep(0)
        queue_full_at = time.monotonic()
        left = await recv(watcher, timeout=1.0, skip={"peer-joined"})
        assert left == {"type": "peer-left", "peer_id": "deaf"}
        print(f"peer-left {(time.monotonic() - queue_full_at) * 1000:.0f} ms after queue full")
        deaf.transport.abort()
        await close_all([sender, watcher])


# -- E and tokens -------------------------------------------------------------------------


def test_cli_flags() -> None:
    args = build_parser().parse_args(
        [
            "--reserve",
            "5",
            "--idle-timeout",
            "12",
            "--max-per-address",
            "3",
            "--trust-proxy",
            "127.0.0.2",
            "--trust-proxy",
            "::1",
        ]
    )
    assert (args.reserve, args.idle_timeout, args.max_per_address) == (5.0, 12.0, 3)
    assert args.trust_proxy == ["127.0.0.2", "::1"]
    defaults = build_parser().parse_args([])
    assert (defaults.reserve, defaults.idle_timeout, defaults.max_per_address) == (30.0, 30.0, 32)
    assert defaults.trust_proxy == []
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--trust-proxy", "not-an-ip"])


def test_token_claims_give_the_issue_time() -> None:
    token = mint_token(SECRET, "room", "alice", ttl=60)
    claims = verify_token_claims(SECRET, token, "room", None)
    assert claims.peer_id == "alice" and claims.room == "room"
    assert claims.issued_at is not None and abs(claims.issued_at - time.time()) < 5
    assert verify_token(SECRET, token, "room", "alice") == "alice"
    no_iat = jwt.encode({"room": "room", "sub": "a", "exp": int(time.time()) + 60}, SECRET)
    assert verify_token_claims(SECRET, no_iat, "room", None).issued_at is None
    text_iat = jwt.encode(
        {"room": "room", "sub": "a", "iat": "1", "exp": int(time.time()) + 60}, SECRET
    )
    with pytest.raises(TokenError, match="issue time"):
        verify_token_claims(SECRET, text_iat, "room", None)
