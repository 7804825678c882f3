"""The signaling service (SPEC §6): rooms, routing, tokens, limits and bad input."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import jwt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from crdt_stores import AuthError, JoinError, Meeting
from signaling import Limits, SignalingServer, mint_token, verify_token
from signaling.tokens import TokenError

from .conftest import converge
from .netutil import LOOPBACK, free_port, read_line, spawn

SECRET = "test-secret-" + "0123456789abcdef" * 4


async def raw_join(url: str, room: str, peer_id: str | None = None, token: str | None = None):
    ws = await connect(url, open_timeout=5)
    await ws.send(json.dumps({"type": "join", "room": room, "peer_id": peer_id, "token": token}))
    return ws, json.loads(await asyncio.wait_for(ws.recv(), 5))


async def recv(ws, timeout: float = 5.0) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def expect_close(ws, timeout: float = 5.0) -> int:
    with pytest.raises(ConnectionClosed) as info:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    return info.value.rcvd.code if info.value.rcvd else -1


@pytest.fixture
async def server():
    async with SignalingServer("127.0.0.1", 0, limits=Limits(max_peers_per_room=3)) as running:
        yield running


@pytest.fixture
async def secured():
    async with SignalingServer("127.0.0.1", 0, secret=SECRET) as running:
        yield running


async def test_rooms_presence_and_routing(server) -> None:
    a, welcome_a = await raw_join(server.url, "r1", "a")
    resume = welcome_a.pop("resume")
    assert isinstance(resume, str) and len(resume) >= 32
    assert welcome_a == {
        "type": "welcome",
        "peer_id": "a",
        "room": "r1",
        "peers": [],
        "auth": False,
        "heartbeat": server.limits.idle_timeout / 3,
    }
    b, welcome_b = await raw_join(server.url, "r1", "b")
    assert welcome_b["peers"] == ["a"]
    assert await recv(a) == {"type": "peer-joined", "peer_id": "b"}
    c, welcome_c = await raw_join(server.url, "r2", "c")
    assert welcome_c["peers"] == []  # another room
    await b.send(
        json.dumps({"type": "signal", "to": "a", "data": {"kind": "offer", "from": "forged"}})
    )
    message = await recv(a)
    assert message == {"type": "signal", "from": "b", "data": {"kind": "offer", "from": "forged"}}
    await a.send(json.dumps({"type": "signal", "to": "c", "data": {}}))  # c is in another room
    assert (await recv(a))["code"] == "no-such-peer"
    await b.close()
    assert await recv(a) == {"type": "peer-left", "peer_id": "b"}
    auto, welcome = await raw_join(server.url, "r1")
    assert welcome["peer_id"] and welcome["peer_id"] != "a"
    for ws in (a, c, auto):
        await ws.close()


async def test_room_limit_and_taken_peer_id(server) -> None:
    first, _ = await raw_join(server.url, "r", "a")
    dup, reply = await raw_join(server.url, "r", "a")
    assert reply["code"] == "peer-id-taken"
    assert await expect_close(dup) == 4009
    others = [await raw_join(server.url, "r", f"p{i}") for i in range(2)]
    full, reply = await raw_join(server.url, "r", "late")
    assert reply["code"] == "room-full"
    assert await expect_close(full) == 4003
    for ws in [first, *(o[0] for o in others)]:
        await ws.close()


async def test_garbage_does_not_disturb_other_connections(server) -> None:
    # a working meeting pair in another room, over real WebRTC
    x = await Meeting.join(server.url, "calm", peer_id="x", ice_addresses=LOOPBACK)
    y = await Meeting.join(server.url, "calm", peer_id="y", ice_addresses=LOOPBACK)
    bystander, _ = await raw_join(server.url, "noisy", "bystander")
    vandal, _ = await raw_join(server.url, "noisy", "vandal")
    await recv(bystander)  # vandal joined
    try:
        for garbage in (
            "{not json",
            "[1, 2, 3]",
            '"text"',
            "null",
            '{"type": "nonsense"}',
            '{"type": "signal"}',
            '{"type": "signal", "to": "nobody", "data": {}}',
            '{"type": "signal", "to": "bystander", "data": "not an object"}',
            '{"type": "join", "room": "again"}',
        ):
            await vandal.send(garbage)
            reply = await recv(vandal)
            assert reply["type"] == "error", (garbage, reply)
        await vandal.send(b"\x00\xff binary")
        assert (await recv(vandal))["type"] == "error"
        await vandal.send(json.dumps({"type": "ping"}))
        assert await recv(vandal) == {"type": "pong"}
        # the vandal is still connected and can still signal correctly
        await vandal.send(json.dumps({"type": "signal", "to": "bystander", "data": {"ok": 1}}))
        assert (await recv(bystander))["data"] == {"ok": 1}
        # an oversize message closes only the vandal's connection
        await vandal.send("x" * (70 * 1024))
        assert await expect_close(vandal) == 1009
        assert await recv(bystander) == {"type": "peer-left", "peer_id": "vandal"}
        await x.stores.create("s").set("k", "still fine")
        await converge(x, y)
        assert y.stores["s"].get("k") == "still fine"
        late = await Meeting.join(server.url, "calm", peer_id="z", ice_addresses=LOOPBACK)
        await converge(x, y, late)
        assert late.stores["s"].get("k") == "still fine"
        await late.leave()
    finally:
        await bystander.close()
        await x.leave()
        await y.leave()


async def test_first_message_must_be_a_join(server) -> None:
    ws = await connect(server.url)
    await ws.send("hello")
    assert (await recv(ws))["code"] == "bad-request"
    assert await expect_close(ws) == 4000
    ws = await connect(server.url)
    await ws.send(json.dumps({"type": "join", "room": ""}))
    assert (await recv(ws))["code"] == "bad-request"
    assert await expect_close(ws) == 4000


async def test_rate_limit() -> None:
    limits = Limits(messages_per_second=5, burst=5, max_violations=3)
    async with SignalingServer("127.0.0.1", 0, limits=limits) as server:
        ws, _ = await raw_join(server.url, "r", "flood")
        for _ in range(20):
            try:
                await ws.send(json.dumps({"type": "ping"}))
            except ConnectionClosed:
                break
        replies = []
        with pytest.raises(ConnectionClosed) as info:
            while True:
                replies.append(await recv(ws))
        assert any(r.get("code") == "rate-limited" for r in replies)
        assert info.value.rcvd.code == 4008
        other, welcome = await raw_join(server.url, "r", "fine")
        assert welcome["type"] == "welcome"
        await other.close()


# -- tokens -----------------------------------------------------------------------


def test_token_round_trip_and_reasons() -> None:
    token = mint_token(SECRET, "room", "alice", ttl=60)
    assert verify_token(SECRET, token, "room", "alice") == "alice"
    assert verify_token(SECRET, token, "room", None) == "alice"
    cases = [
        (None, "room", "alice", "auth-required"),
        ("", "room", "alice", "auth-required"),
        (token, "other", "alice", "auth-room"),
        (token, "room", "mallory", "auth-peer"),
        (
            mint_token("wrong-secret-of-a-decent-length-0123456789abcdef", "room", "alice"),
            "room",
            "alice",
            "auth-invalid",
        ),
        ("not.a.jwt", "room", "alice", "auth-invalid"),
        (
            jwt.encode({"room": "room", "sub": "alice", "exp": int(time.time()) - 60}, SECRET),
            "room",
            "alice",
            "auth-expired",
        ),
        (jwt.encode({"room": "room", "sub": "alice"}, SECRET), "room", "alice", "auth-invalid"),
        (
            jwt.encode(
                {"room": "room", "sub": "alice", "exp": int(time.time()) + 60},
                SECRET,
                algorithm="HS512",
            ),
            "room",
            "alice",
            "auth-invalid",
        ),
    ]
    for candidate, room, peer, code in cases:
        with pytest.raises(TokenError) as info:
            verify_token(SECRET, candidate, room, peer)
        assert info.value.code == code, (candidate, info.value.reason)


@pytest.mark.parametrize(
    ("label", "claims", "fragment"),
    [
        ("expiry in year 9999", {"exp": 253402300799}, "more than 86400 s ahead"),
        ("expiry a day and an hour ahead", {"exp": 90000}, "more than 86400 s ahead"),
        ("expiry as a string", {"exp": "EXP"}, "must be a number"),
        ("peer id of 10 KB", {"sub": "x" * 10_000}, "peer id is not a name"),
        ("room of 10 KB", {"room": "r" * 10_000}, "room is not a name"),
        ("peer id not a string", {"sub": 42}, "must be a string"),  # (PyJWT checks this one)
    ],
)
def test_tokens_past_the_limits_are_refused(label, claims, fragment) -> None:
    """Signaling-trust row 5: PyJWT accepts all of these; the server must not."""
    now = int(time.time())
    base = {"room": "room", "sub": "alice", "exp": now + 60}
    base.update(claims)
    if base["exp"] == 90000:
        base["exp"] = now + 90000
    if base["exp"] == "EXP":
        base["exp"] = str(now + 60)
    token = jwt.encode(base, SECRET, algorithm="HS256")
    with pytest.raises(TokenError, match=fragment) as info:
        verify_token(SECRET, token, base["room"] if isinstance(base["room"], str) else "room", None)
    assert info.value.code == "auth-invalid"
    # the limit is the server's to set
    if label.startswith("expiry a day"):
        assert verify_token(SECRET, token, "room", None, max_ttl=2 * 86400) == "alice"


@pytest.mark.parametrize(
    ("label", "make_token", "fragment"),
    [
        ("missing", lambda: None, "requires a join token"),
        (
            "forged",
            lambda: mint_token("not-the-secret-but-long-enough-0123456789abcdef", "room", "alice"),
            "signature is invalid",
        ),
        (
            "expired",
            lambda: jwt.encode(
                {"room": "room", "sub": "alice", "exp": int(time.time()) - 3600}, SECRET
            ),
            "expired",
        ),
        ("other room", lambda: mint_token(SECRET, "elsewhere", "alice"), "for room 'elsewhere'"),
        ("other peer", lambda: mint_token(SECRET, "room", "bob"), "for peer id 'bob'"),
    ],
)
async def test_meeting_join_refused_fast_with_reason(secured, label, make_token, fragment) -> None:
    started = time.perf_counter()
    with pytest.raises(AuthError, match=fragment) as info:
        await Meeting.join(
            secured.url, "room", peer_id="alice", token=make_token(), ice_addresses=LOOPBACK
        )
    assert isinstance(info.value, JoinError)
    assert info.value.code == 4001 and info.value.reason.startswith("auth")
    assert time.perf_counter() - started < 2.0


async def test_a_garbage_token_is_called_malformed(secured) -> None:
    garbage = "\xb7not.a.token"
    with pytest.raises(AuthError, match="malformed token") as info:
        await Meeting.join(secured.url, "room", token=garbage, ice_addresses=LOOPBACK)
    assert "utf-8" not in str(info.value) and info.value.reason == "auth-invalid"
    with pytest.raises(TokenError, match="malformed token"):  # the server says the same
        verify_token(SECRET, "abc.def", "room", None)


async def test_a_token_names_the_peer_on_an_open_server_too(server) -> None:
    token = mint_token(SECRET, "r1", "carol")
    async with Meeting(server.url, "r1", token=token, ice_addresses=LOOPBACK) as carol:
        assert carol.peer_id == "carol"


async def test_join_errors_carry_the_close_code_and_the_reason_name(server) -> None:
    async with Meeting(server.url, "r2", peer_id="dup", ice_addresses=LOOPBACK):
        with pytest.raises(JoinError) as info:
            await Meeting.join(server.url, "r2", peer_id="dup", ice_addresses=LOOPBACK)
    assert info.value.code == 4009 and info.value.reason == "peer-id-taken"
    assert "already in the room" in str(info.value)


async def test_valid_tokens_join_and_sync(secured) -> None:
    a = await Meeting.join(
        secured.url,
        "room",
        peer_id="alice",
        token=mint_token(SECRET, "room", "alice"),
        ice_addresses=LOOPBACK,
    )
    # the token names the peer: no peer_id needed
    b = await Meeting.join(
        secured.url, "room", token=mint_token(SECRET, "room", "bob"), ice_addresses=LOOPBACK
    )
    try:
        assert b.peer_id == "bob" and a.peers == ["bob"]
        await a.stores.create("s").set("k", 1)
        await converge(a, b)
        assert b.stores["s"].get("k") == 1
    finally:
        await a.leave()
        await b.leave()


async def test_unreachable_server_raises_join_error_promptly() -> None:
    started = time.perf_counter()
    with pytest.raises(JoinError) as info:
        await Meeting.join(f"ws://127.0.0.1:{free_port()}", "room", ice_addresses=LOOPBACK)
    assert info.value.reason == "unreachable" and info.value.code is None
    assert not isinstance(info.value, AuthError)
    assert time.perf_counter() - started < 5.0


async def test_signaling_module_says_it_is_open_and_token_cli() -> None:
    port = free_port()
    proc = spawn("-m", "signaling", "--host", "127.0.0.1", "--port", str(port))
    try:
        line = await read_line(proc)
        assert "listening on ws://127.0.0.1" in line and "OPEN" in line
    finally:
        proc.kill()
        proc.wait()
    proc = spawn("-m", "crdt_stores.cli", "signaling", "--port", str(port), "--secret", SECRET)
    try:
        assert "tokens required" in await read_line(proc)
    finally:
        proc.kill()
        proc.wait()
    done = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "crdt_stores.cli",
            "token",
            "--secret",
            SECRET,
            "--room",
            "r",
            "--peer-id",
            "p",
            "--ttl",
            "30",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    out = done.stdout.strip()
    assert verify_token(SECRET, out, "r", "p") == "p"
