"""Every use of aiortc's and aioice's private API, in one place (contract-tested).

aiortc offers no way to restrict ICE host addresses, to size UDP socket
buffers, to see datagrams arrive below SCTP, to probe the peer outside SCTP,
to let links take turns, or to choose SCTP's initial retransmission timeout.
Each hook here reaches one private attribute, fails soft (the link works as
aiortc alone would), and has a contract test in ``tests/test_aiortc_adapter.py``
that fails when a release moves what it uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import socket
from collections.abc import Callable, Iterator
from typing import Any

import aioice.ice
import aioice.stun
from aiortc import RTCPeerConnection

__all__ = [
    "CONSENT_EXPIRY",
    "SCTP_RTO_INITIAL",
    "SOCKET_BUFFER_BYTES",
    "enlarge_socket_buffers",
    "ice_connection",
    "ice_scope",
    "install_address_hook",
    "probe",
    "take_over_consent",
    "take_turns",
    "tune_sctp",
    "watch_datagrams",
]

log = logging.getLogger("crdt_stores.webrtc")

# -- host addresses offered by ICE ---------------------------------------------------

_ice_addresses: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "crdt_stores_ice_addresses", default=None
)
_original_get_host_addresses = aioice.ice.get_host_addresses


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    addresses = _ice_addresses.get()
    if addresses is None:
        return _original_get_host_addresses(use_ipv4, use_ipv6)
    return list(addresses)


def install_address_hook() -> None:
    """Route aioice's host discovery through a context variable (idempotent).

    Only calls made inside ``ice_scope(addresses)`` see the restriction: other
    users of aioice in the process are unaffected.
    """
    if aioice.ice.get_host_addresses is not _get_host_addresses:
        aioice.ice.get_host_addresses = _get_host_addresses


@contextlib.contextmanager
def ice_scope(addresses: tuple[str, ...] | None) -> Iterator[None]:
    token = _ice_addresses.set(addresses)
    try:
        yield
    finally:
        _ice_addresses.reset(token)


# -- the ICE connection under a peer connection ----------------------------------------


def ice_connection(pc: RTCPeerConnection) -> Any | None:
    """The ``aioice.Connection`` carrying ``pc``'s data channels (None if unreachable).

    It exists from ``createDataChannel`` on: the SCTP transport is created with it.
    """
    try:
        return pc.sctp.transport.transport.iceGatherer._connection  # type: ignore[union-attr]
    except AttributeError:
        return None


SOCKET_BUFFER_BYTES = 4 * 1024 * 1024


def enlarge_socket_buffers(pc: RTCPeerConnection) -> None:
    """Give ``pc``'s UDP sockets big buffers (the kernel caps them).

    A peer busy applying a burst of changes reads its sockets late; with aioice's
    256 KiB receive buffer, loopback drops datagrams and SCTP then stalls for a
    whole retransmission timeout (at least 1 s in aiortc).
    """
    connection = ice_connection(pc)
    try:
        for protocol in connection._protocols:  # type: ignore[union-attr]
            sock = protocol.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER_BYTES)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER_BYTES)
    except (AttributeError, OSError) as exc:
        log.debug("could not enlarge socket buffers: %r", exc)


def watch_datagrams(pc: RTCPeerConnection, callback: Callable[[], None]) -> bool:
    """Call ``callback()`` for every datagram the remote end's stack sends ``pc``.

    DTLS/SCTP records (retransmissions and SACKs included) and STUN requests
    (connectivity and consent checks) both count: they prove the peer's process
    runs even while SCTP holds its messages back behind lost packets. Returns
    False when the hook could not be installed.
    """
    connection = ice_connection(pc)
    if connection is None:
        return False
    try:
        data_received = connection.data_received
        request_received = connection.request_received
    except AttributeError:
        return False

    def on_data(data: bytes, component: int) -> None:
        callback()
        data_received(data, component)

    def on_request(message: Any, addr: Any, protocol: Any) -> None:
        callback()
        request_received(message, addr, protocol)

    # Instance attributes: aioice's StunProtocol calls ``self.receiver.data_received``.
    connection.data_received = on_data
    connection.request_received = on_request
    return True


def take_turns(pc: RTCPeerConnection) -> bool:
    """Make ``pc``'s DTLS reader give the event loop a turn before each datagram.

    aioice queues what arrives and aiortc's DTLS task takes it with ``await
    queue.get()``, which does not yield while the queue holds anything: a link with
    a backlog (a flood of big messages) was read, and every message handled, in one
    step, while the other links waited (their answers took 0.5-1 s here). With a
    turn per datagram, links take turns. Call after ``createDataChannel``.
    """
    try:
        ice = pc.sctp.transport.transport  # type: ignore[union-attr]
        recv = ice._recv
    except AttributeError:
        return False

    async def after_a_turn() -> Any:
        await asyncio.sleep(0)
        return await recv()

    ice._recv = after_a_turn
    return True


CONSENT_EXPIRY = 30.0
"""Seconds without an answer to any consent check before a link's consent expires
(RFC 7675's 30 s)."""


def take_over_consent(pc: RTCPeerConnection) -> bool:
    """Stop aioice's consent checks on ``pc``: the caller keeps consent with ``probe``.

    aioice sends one request every ~5 s, never resent, and closes the connection
    after 6 unanswered in a row: under 40% loss (a request and its answer both have
    to arrive: 36%) a live link expires in ~30 s 7% of the time. Call once ICE has
    connected (the task starts then). Returns False if there was nothing to stop.
    """
    connection = ice_connection(pc)
    try:
        task = connection._query_consent_task  # type: ignore[union-attr]
    except AttributeError:
        return False
    if task is None or task.done():
        return False
    task.cancel()
    return True


async def probe(pc: RTCPeerConnection) -> bool | None:
    """Send ``pc``'s remote end a consent check (a STUN Binding request, RFC 7675) on
    each nominated pair; True when one is answered (within aioice's 0.5 s), False
    when none is, None when none could be sent (no connection yet or any more, or
    aioice moved what this uses: the caller must not hold that against the peer).

    It travels outside SCTP, so a lossy link's retransmission backoff (the timeout
    doubles with every lost retry) does not hold it back: the peer's
    ``watch_datagrams`` counts it as a sign of life, and its answer renews consent.
    """
    connection = ice_connection(pc)
    if connection is None:
        return None
    try:
        password = connection.remote_password
        pairs = list(connection._nominated.values())
        if password is None or not pairs:
            return None
        key = password.encode("utf8")
        for pair in pairs:
            request = connection.build_request(pair, nominate=False)
            try:
                await pair.protocol.request(
                    request, pair.remote_addr, integrity_key=key, retransmissions=0
                )
            except aioice.stun.TransactionError:
                continue
            return True
    except (AttributeError, OSError, RuntimeError) as exc:
        log.debug("could not send an ICE probe: %r", exc)
        return None
    return False


# -- SCTP ----------------------------------------------------------------------------

SCTP_RTO_INITIAL = 1.0
"""Seconds before a lost SCTP INIT, COOKIE ECHO or first DATA is resent: RFC 9260 lowered
RTO.Initial from 3 s (aiortc's value, from RFC 4960) to 1 s. aiortc resends INIT and
COOKIE ECHO at this fixed interval (no doubling); under 20% loss, 3 s per lost handshake
packet was most of the time a link took to open, and doubling (tried) made a lost COOKIE
ACK cost more. An association whose INIT keeps failing closes after 9 tries; the
transport's second attempt (``spare_after``) covers that."""


def tune_sctp(pc: RTCPeerConnection) -> bool:
    """Use RFC 9260's 1 s initial retransmission timeout on ``pc``'s SCTP association.

    Call after ``createDataChannel`` and before the association starts; once a
    round trip is measured, aiortc computes the timeout from it as before.
    """
    sctp = pc.sctp
    if sctp is None or not isinstance(getattr(sctp, "_rto", None), float | int):
        return False
    sctp._rto = min(float(sctp._rto), SCTP_RTO_INITIAL)
    return True
