"""End-to-end sealed signaling (issue 9 row 1): a signaling server cannot read or swap an SDP.

The man-in-the-middle tests run their own tampering signaling server: it answers each
newcomer's offer with its own peer connection, offers its own to the other peer, and
relays (and records) the data channel in between. Without a room key this works and
it reads the stores, as the README says; with one, the peers refuse its descriptions.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
from typing import Any

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.server import ServerConnection, serve

from crdt_stores import Meeting
from crdt_stores.sealing import SealError, SignalSealer, derive_key, generate_room_key
from crdt_stores.transport import _aiortc
from signaling import SignalingServer

from .conftest import converge
from .netutil import LOOPBACK

pytestmark = pytest.mark.timeout(120)

KEY = "room-key-" + "42" * 16
PAYLOAD = {"kind": "offer", "session": "s1", "sdp": "v=0\r\na=fingerprint:sha-256 AA:BB\r\n"}


# -- the sealer alone -------------------------------------------------------------


def test_seal_round_trip_hides_the_sdp() -> None:
    alice, bob = SignalSealer(KEY, "room"), SignalSealer(KEY, "room")
    sealed = alice.seal("alice", "bob", PAYLOAD, now=1000.0)
    assert "fingerprint" not in json.dumps(sealed) and "v=0" not in json.dumps(sealed)
    assert bob.open("alice", "bob", sealed, now=1001.0) == PAYLOAD


def test_keys_differ_by_room_and_key() -> None:
    assert derive_key(KEY, "room") != derive_key(KEY, "other-room")
    assert derive_key(KEY, "room") != derive_key(KEY + "x", "room")
    assert len(generate_room_key()) >= 43 and generate_room_key() != generate_room_key()
    # 1 key in 64 started with "-", which "--room-key KEY" takes for an option
    assert not any(generate_room_key().startswith("-") for _ in range(2000))
    with pytest.raises(ValueError):
        derive_key("", "room")


@pytest.mark.parametrize(
    "label, opener, sender, recipient, fragment",
    [
        ("another key", SignalSealer("not-the-key", "room"), "alice", "bob", "does not verify"),
        ("another room", SignalSealer(KEY, "room-2"), "alice", "bob", "does not verify"),
        ("re-stamped sender", SignalSealer(KEY, "room"), "mallory", "bob", "does not verify"),
        ("re-addressed", SignalSealer(KEY, "room"), "alice", "carol", "does not verify"),
    ],
)
def test_forged_or_redirected_seals_are_refused(label, opener, sender, recipient, fragment) -> None:
    sealed = SignalSealer(KEY, "room").seal("alice", "bob", PAYLOAD, now=1000.0)
    with pytest.raises(SealError, match=fragment):
        opener.open(sender, recipient, sealed, now=1000.0)


def test_tampered_replayed_stale_and_plain_signals_are_refused() -> None:
    alice, bob = SignalSealer(KEY, "room"), SignalSealer(KEY, "room")
    sealed = alice.seal("alice", "bob", PAYLOAD, now=1000.0)
    raw = bytearray(base64.b64decode(sealed["sealed"]))
    raw[-20] ^= 1
    with pytest.raises(SealError, match="does not verify"):
        bob.open("alice", "bob", {"v": 1, "sealed": base64.b64encode(raw).decode()}, now=1000.0)
    assert bob.open("alice", "bob", sealed, now=1000.0) == PAYLOAD
    with pytest.raises(SealError, match="replayed"):
        bob.open("alice", "bob", sealed, now=1000.5)
    with pytest.raises(SealError, match="stale or replayed"):
        bob.open("alice", "bob", alice.seal("alice", "bob", PAYLOAD, now=1000.0), now=1500.0)
    with pytest.raises(SealError, match="stale or replayed"):  # from the future
        bob.open("alice", "bob", alice.seal("alice", "bob", PAYLOAD, now=2000.0), now=1500.0)
    with pytest.raises(SealError, match="unsealed"):
        bob.open("alice", "bob", PAYLOAD, now=1000.0)


def test_v_is_the_number_1_and_the_plaintext_strict_json() -> None:
    """As JavaScript reads JSON: 1.0 is the number 1; true is not; NaN is not JSON."""
    alice, bob = SignalSealer(KEY, "room"), SignalSealer(KEY, "room")
    sealed = alice.seal("alice", "bob", PAYLOAD, now=1000.0)
    for v in (True, "1", None, 2, [1]):
        with pytest.raises(SealError, match="unknown seal version"):
            bob.open("alice", "bob", {**sealed, "v": v}, now=1000.0)
    written_as_float = json.loads(json.dumps(sealed).replace('"v": 1', '"v": 1.0'))
    assert written_as_float["v"] == 1.0 and type(written_as_float["v"]) is float
    assert bob.open("alice", "bob", written_as_float, now=1000.0) == PAYLOAD
    for constant in ("NaN", "Infinity", "-Infinity"):
        nonce = secrets.token_bytes(12)
        plain = f'{{"ts":{constant},"payload":{{}}}}'.encode()
        raw = nonce + bob._aead.encrypt(nonce, plain, bob._associated("alice", "bob"))
        with pytest.raises(SealError, match="holds no payload"):
            bob.open("alice", "bob", {"v": 1, "sealed": base64.b64encode(raw).decode()}, 1000.0)


def test_replay_protection_is_bounded_and_still_holds() -> None:
    alice, bob = SignalSealer(KEY, "room"), SignalSealer(KEY, "room", max_seen=8)
    sealed = [alice.seal("alice", "bob", PAYLOAD, now=1000.0 + i) for i in range(40)]
    for i, item in enumerate(sealed):
        bob.open("alice", "bob", item, now=1000.0 + i)
    assert len(bob._seen) <= 8
    for item in sealed:  # forgotten or remembered, none opens twice
        with pytest.raises(SealError, match="replayed"):
            bob.open("alice", "bob", item, now=1040.0)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["v", "sealed", "kind", "x"]),
        st.one_of(st.none(), st.integers(), st.text(max_size=200), st.binary(max_size=64)),
    )
)
def test_any_input_opens_or_raises_seal_error(data: dict[str, Any]) -> None:
    bob = SignalSealer(KEY, "room")
    if isinstance(data.get("sealed"), bytes):
        data["sealed"] = base64.b64encode(data["sealed"]).decode()
    with pytest.raises(SealError):
        bob.open("alice", "bob", data, now=1000.0)


# -- a tampering signaling server ---------------------------------------------------


class TamperingServer:
    """A signaling server that puts itself between the peers (or, honest, just relays)."""

    def __init__(self, *, tamper: bool) -> None:
        self.tamper = tamper
        self.members: dict[str, ServerConnection] = {}
        self.signals_seen: list[dict[str, Any]] = []
        self.frames_seen: list[bytes] = []
        self.pcs: list[RTCPeerConnection] = []
        self.channels: dict[str, Any] = {}  # peer id -> the server's channel to that peer
        self.toward: dict[str, RTCPeerConnection] = {}  # peer id -> its pc offering to it
        self.url = ""
        self._server: Any = None

    async def __aenter__(self) -> TamperingServer:
        self._server = await serve(self._handle, "127.0.0.1", 0)
        port = next(iter(self._server.sockets)).getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()
        await asyncio.gather(*(pc.close() for pc in self.pcs), return_exceptions=True)

    async def _send(self, peer: str, message: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):
            await self.members[peer].send(json.dumps(message))

    async def _handle(self, ws: ServerConnection) -> None:
        join = json.loads(await ws.recv())
        me = join["peer_id"]
        others = list(self.members)
        self.members[me] = ws
        await ws.send(
            json.dumps(
                {
                    "type": "welcome",
                    "peer_id": me,
                    "room": join["room"],
                    "peers": others,
                    "auth": False,
                }
            )
        )
        for other in others:
            await self._send(other, {"type": "peer-joined", "peer_id": me})
        async for raw in ws:
            message = json.loads(raw)
            if message.get("type") != "signal":
                continue
            self.signals_seen.append(message["data"])
            if self.tamper:
                await self._intercept(me, message["to"], message["data"])
            else:
                await self._send(
                    message["to"], {"type": "signal", "from": me, "data": message["data"]}
                )

    async def _pc(self, peer: str) -> tuple[RTCPeerConnection, Any]:
        with _aiortc.ice_scope(tuple(LOOPBACK)):
            pc = RTCPeerConnection()
        self.pcs.append(pc)
        channel = pc.createDataChannel("crdt-stores", negotiated=True, id=0, ordered=True)
        self.channels[peer] = channel
        return pc, channel

    def _relay(self, channel: Any, to_peer: str) -> None:
        @channel.on("message")
        def forward(data: bytes) -> None:
            self.frames_seen.append(data)
            target = self.channels.get(to_peer)
            if target is not None and target.readyState == "open":
                target.send(data)

    async def _intercept(self, sender: str, recipient: str, data: dict[str, Any]) -> None:
        """Swap the descriptions for the server's own: what the seal has to stop."""
        kind = data.get("kind", "offer")  # a sealed signal hides its kind: treat it as an offer
        session = data.get("session") or secrets.token_hex(8)
        if kind == "offer":
            # Answer the sender ourselves...
            pc_in, channel_in = await self._pc(sender)
            self._relay(channel_in, recipient)
            sdp = data.get("sdp")
            if sdp is None:  # sealed: we cannot read it; answer with our own description
                with _aiortc.ice_scope(tuple(LOOPBACK)):
                    probe, _ = await self._pc(sender + "#probe")
                    await probe.setLocalDescription(await probe.createOffer())
                sdp = probe.localDescription.sdp
            with _aiortc.ice_scope(tuple(LOOPBACK)):
                await pc_in.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
                await pc_in.setLocalDescription(await pc_in.createAnswer())
            answer = {"kind": "answer", "session": session, "sdp": pc_in.localDescription.sdp}
            await self._send(sender, {"type": "signal", "from": recipient, "data": answer})
            # ...and offer our own connection to the recipient, in the sender's name.
            pc_out, channel_out = await self._pc(recipient)
            self._relay(channel_out, sender)
            self.toward[recipient] = pc_out
            with _aiortc.ice_scope(tuple(LOOPBACK)):
                await pc_out.setLocalDescription(await pc_out.createOffer())
            await self._send(
                recipient,
                {
                    "type": "signal",
                    "from": sender,
                    "data": {
                        "kind": "offer",
                        "session": secrets.token_hex(8),
                        "sdp": pc_out.localDescription.sdp,
                    },
                },
            )
        elif kind == "answer" and sender in self.toward:
            with _aiortc.ice_scope(tuple(LOOPBACK)):
                await self.toward[sender].setRemoteDescription(
                    RTCSessionDescription(data["sdp"], "answer")
                )


async def join(url: str, name: str, **options: Any) -> Meeting:
    return await Meeting.join(
        url,
        "vault",
        peer_id=name,
        ice_addresses=LOOPBACK,
        transport_options={"join_timeout": 5},
        **options,
    )


async def test_without_a_room_key_a_tampering_server_reads_and_relays() -> None:
    """What the README says: without a room key the signaling server is trusted."""
    async with TamperingServer(tamper=True) as mitm:
        alice = await join(mitm.url, "alice")
        bob = await join(mitm.url, "bob")
        try:
            await alice.stores.create("secrets").set("pin", "4711")
            await converge(alice, bob, timeout=15)
            assert bob.stores["secrets"].get("pin") == "4711"
            assert any(b"4711" in frame for frame in mitm.frames_seen)  # the server read it
            assert any("a=fingerprint" in json.dumps(s) for s in mitm.signals_seen)
        finally:
            await asyncio.gather(alice.leave(), bob.leave())


async def test_with_a_room_key_a_tampering_server_reads_nothing_and_links_are_refused() -> None:
    async with TamperingServer(tamper=True) as mitm:
        refused: list[tuple[str, str, str]] = []
        alice = Meeting(
            mitm.url,
            "vault",
            peer_id="alice",
            ice_addresses=LOOPBACK,
            room_key=KEY,
            transport_options={"join_timeout": 3},
        )
        bob = Meeting(
            mitm.url,
            "vault",
            peer_id="bob",
            ice_addresses=LOOPBACK,
            room_key=KEY,
            transport_options={"join_timeout": 3},
        )
        alice.on("signal_refused", lambda peer, why: refused.append(("alice", peer, why)))
        bob.on("signal_refused", lambda peer, why: refused.append(("bob", peer, why)))
        async with alice, bob:
            await alice.stores.create("secrets").set("pin", "4711")
            for _ in range(100):  # bounded: both swapped descriptions get refused
                if {who for who, _, _ in refused} == {"alice", "bob"}:
                    break
                await asyncio.sleep(0.05)
            assert {who for who, _, _ in refused} == {"alice", "bob"}, refused
            assert all("unsealed" in why for _, _, why in refused), refused
            assert alice.stats["signals_refused"] >= 1 and bob.stats["signals_refused"] >= 1
            assert alice.peers == [] and bob.peers == []
            assert mitm.frames_seen == []
            seen = json.dumps(mitm.signals_seen)
            assert "a=fingerprint" not in seen and "v=0" not in seen and "session" not in seen
            assert bob.stores.get("secrets") is None


async def test_a_server_that_alters_or_redirects_sealed_signals_gets_refused() -> None:
    """Sealed signals re-addressed to another peer, or with a flipped byte, do not open."""

    class Redirecting(TamperingServer):
        async def _intercept(self, sender: str, recipient: str, data: dict[str, Any]) -> None:
            raw = bytearray(base64.b64decode(data["sealed"]))
            raw[len(raw) // 2] ^= 0x40
            altered = {"v": 1, "sealed": base64.b64encode(raw).decode()}
            await self._send(recipient, {"type": "signal", "from": sender, "data": altered})
            for other in self.members:  # the original, to a peer it was not meant for
                if other not in (sender, recipient):
                    await self._send(other, {"type": "signal", "from": sender, "data": data})

    async with Redirecting(tamper=True) as server:
        refused: list[str] = []
        peers = [
            Meeting(
                server.url,
                "vault",
                peer_id=name,
                ice_addresses=LOOPBACK,
                room_key=KEY,
                transport_options={"join_timeout": 2},
            )
            for name in ("a", "b", "c")
        ]
        for peer in peers:
            peer.on("signal_refused", lambda p, why: refused.append(why))
        async with peers[0], peers[1], peers[2]:
            for _ in range(100):
                if len(refused) >= 4:
                    break
                await asyncio.sleep(0.05)
            assert any("does not verify" in why for why in refused), refused
            assert all(p.peers == [] for p in peers)


async def test_room_key_peers_link_and_sync_through_an_honest_server() -> None:
    async with SignalingServer("127.0.0.1", 0) as server:
        alice = await join(server.url, "alice", room_key=KEY)
        bob = await join(server.url, "bob", room_key=KEY)
        carol = await join(server.url, "carol")  # no key: the keyed peers refuse her
        try:
            await alice.stores.create("secrets").set("pin", "4711")
            await converge(alice, bob, timeout=15)
            assert bob.stores["secrets"].get("pin") == "4711"
            assert alice.peers == ["bob"] and carol.peers == []
            assert alice.stats["signals_refused"] >= 1  # carol's unsealed offer
            assert carol.stats.get("offers_answered", 0) == 0
        finally:
            await asyncio.gather(alice.leave(), bob.leave(), carol.leave())
