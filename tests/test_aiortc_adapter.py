"""Contract tests of ``crdt_stores.transport._aiortc``: the private aiortc/aioice API it uses.

Each hook fails soft in production (a link then works as aiortc alone would), so
these tests are what notices when an aiortc or aioice release moves an attribute.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcsctptransport import RTCSctpTransport

from crdt_stores.transport import _aiortc

from .netutil import wait_until

LOOPBACK = ("127.0.0.1",)


def test_ice_address_override_is_scoped() -> None:
    _aiortc.install_address_hook()
    with _aiortc.ice_scope(LOOPBACK):
        assert _aiortc._get_host_addresses(True, True) == ["127.0.0.1"]
    # outside a scope aioice's own discovery runs unchanged (it never lists loopback)
    assert "127.0.0.1" not in _aiortc._get_host_addresses(True, False)


def _pc() -> RTCPeerConnection:
    with _aiortc.ice_scope(LOOPBACK):
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.createDataChannel("t", negotiated=True, id=0, ordered=True)
    return pc


def test_sctp_timer_uses_the_tuned_timeout() -> None:
    # aiortc arms its INIT (T1) and data (T3) timers with ``self._rto``, which
    # ``tune_sctp`` lowers before the association starts.
    for method in (RTCSctpTransport._t1_start, RTCSctpTransport._t3_start):
        assert "self._rto" in inspect.getsource(method)


def test_dtls_reads_through_the_hooked_receive() -> None:
    # ``take_turns`` wraps the ICE transport's ``_recv``, which aiortc's DTLS task calls
    # for every datagram.
    from aiortc.rtcdtlstransport import RTCDtlsTransport

    assert "self.transport._recv()" in inspect.getsource(RTCDtlsTransport._recv_next)


async def test_hooks_reach_a_real_connection() -> None:
    _aiortc.install_address_hook()
    a, b = _pc(), _pc()
    try:
        for pc in (a, b):
            assert _aiortc.ice_connection(pc) is not None
            assert pc.sctp is not None and pc.sctp._rto > _aiortc.SCTP_RTO_INITIAL
            assert _aiortc.tune_sctp(pc)
            assert pc.sctp._rto == _aiortc.SCTP_RTO_INITIAL
            assert _aiortc.take_turns(pc)  # (the association below reads through it)
        heard = {"a": 0, "b": 0}
        assert _aiortc.watch_datagrams(a, lambda: heard.__setitem__("a", heard["a"] + 1))
        assert _aiortc.watch_datagrams(b, lambda: heard.__setitem__("b", heard["b"] + 1))
        with _aiortc.ice_scope(LOOPBACK):
            await a.setLocalDescription(await a.createOffer())
            await b.setRemoteDescription(RTCSessionDescription(a.localDescription.sdp, "offer"))
            await b.setLocalDescription(await b.createAnswer())
            await a.setRemoteDescription(RTCSessionDescription(b.localDescription.sdp, "answer"))
        await wait_until(lambda: a.sctp.state == b.sctp.state == "connected", 20, "the association")
        # every datagram counted: STUN checks, DTLS handshake, SCTP setup
        assert heard["a"] >= 3 and heard["b"] >= 3
        # probes reach the peer's stack as consent checks it accepts and answers
        refused: list[Any] = []
        _aiortc.ice_connection(b).respond_error = lambda *args: refused.append(args)
        before = heard["b"]
        answers = await asyncio.gather(*(_aiortc.probe(a) for _ in range(5)))
        assert answers == [True] * 5
        assert heard["b"] >= before + 5 and refused == []
        # aioice's own consent checks stop; the caller's probes keep consent
        consent = _aiortc.ice_connection(a)._query_consent_task
        assert consent is not None and not consent.done()
        assert _aiortc.take_over_consent(a)
        await asyncio.sleep(0)
        assert consent.cancelled() and not _aiortc.take_over_consent(a)
        connection = _aiortc.ice_connection(a)
        sockets = [p.transport.get_extra_info("socket") for p in connection._protocols]
        assert sockets and all(s is not None for s in sockets)
        before = sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        _aiortc.enlarge_socket_buffers(a)
        assert sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) >= before
        await b.close()
        assert not await _aiortc.probe(a)  # nobody answers (False; None once a closes too)
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_hooks_fail_soft_without_a_connection() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no channel yet: no SCTP
    try:
        assert _aiortc.ice_connection(pc) is None
        assert not _aiortc.watch_datagrams(pc, lambda: None)
        assert await _aiortc.probe(pc) is None  # nothing sent: not held against the peer
        assert not _aiortc.take_over_consent(pc)
        assert not _aiortc.tune_sctp(pc)
        assert not _aiortc.take_turns(pc)
        _aiortc.enlarge_socket_buffers(pc)  # logs, does not raise
    finally:
        await pc.close()
