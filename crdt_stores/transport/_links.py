"""The connection attempts behind each link of the mesh: creating and negotiating one,
racing spare attempts under loss, promoting the first to open, tearing down, retrying.

``Links`` is the connection half of ``WebRTCTransport`` (which adds the ``Transport``
API and the handling of signals); its state is set up by ``WebRTCTransport.__init__``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)

from ..sealing import SignalSealer
from ..signaling_client import SignalingClient
from ._aiortc import (
    CONSENT_EXPIRY,
    enlarge_socket_buffers,
    ice_scope,
    probe,
    take_over_consent,
    take_turns,
    tune_sctp,
    watch_datagrams,
)
from .base import TransportHandler

__all__ = ["MAX_ATTEMPTS", "Links"]

log = logging.getLogger("crdt_stores.webrtc")

_CHANNEL_ID = 0
MAX_ATTEMPTS = 3
"""Attempts at one link running at once (see ``spare_after``)."""


@dataclass(eq=False)
class _Peer:
    """One peer connection attempt (a reconnect makes a new one)."""

    id: str
    pc: RTCPeerConnection
    channel: RTCDataChannel
    offerer: bool
    session: str
    ready: asyncio.Future[bool]
    opened: bool = False
    closed: bool = False
    last_frame: float = 0.0
    last_heard: float = 0.0  # any datagram from the peer's stack (time.monotonic())
    started: float = field(default_factory=time.monotonic)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)


class Links:
    """Attempts at a link to each peer; the first to open is the link."""

    peer_id: str
    stats: dict[str, int]
    _ice_servers: list[RTCIceServer]
    _ice_addresses: tuple[str, ...] | None
    _connect_timeout: float
    _spare_after: float
    _left_grace: float
    _retry_backoff: float
    _probe_interval: float
    _sealer: SignalSealer | None
    _handler: TransportHandler | None
    _signaling: SignalingClient | None
    _peers: dict[str, _Peer]  # the link, or the first attempt at one
    _spares: dict[str, list[_Peer]]  # further attempts, oldest first
    _rolling: set[str]  # peers we are starting further attempts to
    _present: set[str]  # in the room according to signaling
    _attempts: dict[str, int]  # retries since the link last opened, per peer (the backoff)
    _tasks: set[asyncio.Task[Any]]
    _closing: bool

    def _count(self, name: str) -> None:
        self.stats[name] = self.stats.get(name, 0) + 1

    def _new_peer(self, peer: str, *, offerer: bool, session: str, spare: bool = False) -> _Peer:
        with ice_scope(self._ice_addresses):
            pc = RTCPeerConnection(RTCConfiguration(iceServers=list(self._ice_servers)))
        channel = pc.createDataChannel("crdt-stores", negotiated=True, id=_CHANNEL_ID, ordered=True)
        link = _Peer(
            peer,
            pc,
            channel,
            offerer=offerer,
            session=session,
            ready=asyncio.get_running_loop().create_future(),
        )
        if spare:
            self._spares.setdefault(peer, []).append(link)
            self._trim_tries(peer)
        else:
            self._peers[peer] = link
        tune_sctp(pc)
        take_turns(pc)  # (a flooded link must not hold the others up)

        def heard() -> None:
            link.last_heard = time.monotonic()

        watch_datagrams(pc, heard)

        @channel.on("open")
        def on_open() -> None:
            self._opened(link)

        @channel.on("message")
        def on_message(data: bytes | str) -> None:
            # Guarded: an exception escaping here would make aiortc drop the connection.
            try:
                self._frame(link, data)
            except Exception:
                log.exception("error handling a frame from %s", link.id)

        @channel.on("close")
        def on_close() -> None:
            self._teardown(link)

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                self._teardown(link)

        self._spawn(self._deadline(link), link)
        return link

    def _connect(self, peer: str, *, spare: bool = False) -> None:
        if self._closing or peer == self.peer_id:
            return
        link = self._new_peer(peer, offerer=True, session=secrets.token_hex(8), spare=spare)
        self._spawn(self._offer(link), link)
        if not spare and peer not in self._rolling:
            self._rolling.add(peer)
            self._spawn(self._roll(peer))

    async def _roll(self, peer: str) -> None:
        """While no attempt at ``peer`` has opened, start another every ``spare_after``
        seconds, for ``connect_timeout`` (then retries with backoff take over)."""
        try:
            for _ in range(max(int(self._connect_timeout / self._spare_after), 0)):
                await asyncio.sleep(self._spare_after)
                first = self._peers.get(peer)
                if (
                    first is None
                    or first.opened
                    or not first.offerer
                    or peer not in self._present
                    or self._closing
                ):
                    return
                self._count("spare_attempts")
                self._connect(peer, spare=True)
        finally:
            self._rolling.discard(peer)

    def _tries(self, peer: str) -> list[_Peer]:
        """Every live attempt at a link to ``peer``, oldest first."""
        first = self._peers.get(peer)
        return ([first] if first is not None else []) + self._spares.get(peer, [])

    def _trim_tries(self, peer: str) -> None:
        """Past ``MAX_ATTEMPTS``, the oldest attempt that has not got through DTLS goes
        (its timers have backed off the most); the newest always stays."""
        while len(tries := self._tries(peer)) > MAX_ATTEMPTS:
            older = tries[:-1]
            stuck = [t for t in older if _dtls_state(t.pc) != "connected"]
            self._teardown((stuck or older)[0], retry=False)

    def _drop_spares(self, peer: str) -> None:
        for spare in self._spares.pop(peer, []):
            self._teardown(spare, retry=False)  # unlisted first: closed, never promoted

    async def _offer(self, link: _Peer) -> None:
        with ice_scope(self._ice_addresses):
            await link.pc.setLocalDescription(await link.pc.createOffer())
        await self._send_description(link, "offer")

    async def _answer(self, link: _Peer, sdp: str) -> None:
        with ice_scope(self._ice_addresses):
            await link.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            await link.pc.setLocalDescription(await link.pc.createAnswer())
        await self._send_description(link, "answer")

    async def _send_description(self, link: _Peer, kind: str) -> None:
        """Signal our offer or answer (ICE candidates included: aiortc does not trickle)."""
        payload = {"kind": kind, "session": link.session, "sdp": link.pc.localDescription.sdp}
        if not await self._send_signal(link.id, payload):
            self._teardown(link)

    async def _send_signal(self, peer: str, payload: dict[str, Any]) -> bool:
        """Signal ``payload`` to ``peer``, sealed when there is a room key."""
        assert self._signaling is not None
        if self._sealer is not None:
            payload = self._sealer.seal(self.peer_id, peer, payload, time.time())
        return await self._signaling.signal(peer, payload)

    async def _accept_answer(self, link: _Peer, sdp: str) -> None:
        if link.pc.signalingState != "have-local-offer":
            return
        with ice_scope(self._ice_addresses):
            await link.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    async def _deadline(self, link: _Peer) -> None:
        await asyncio.sleep(self._connect_timeout)
        if not link.opened and not link.closed:
            log.warning(
                "no connection to %s after %.0f s; starting over", link.id, self._connect_timeout
            )
            self._teardown(link)

    async def _close_if_silent(self, link: _Peer, since: float) -> None:
        await asyncio.sleep(self._left_grace)
        if not link.closed and link.last_frame < since:
            log.info("%s left the room and went silent; closing its link", link.id)
            self._teardown(link, retry=False)

    def _opened(self, link: _Peer) -> None:
        if link.closed:
            return
        spares = self._spares.get(link.id, [])
        if link in spares:  # a further attempt won: it becomes the link
            spares.remove(link)
            first = self._peers.get(link.id)
            self._peers[link.id] = link
            if first is not None:
                if not first.ready.done():
                    first.ready.set_result(True)  # join() waits on the first attempt
                self._teardown(first, retry=False)
        elif self._peers.get(link.id) is not link:
            return
        self._drop_spares(link.id)
        enlarge_socket_buffers(link.pc)
        link.opened = True
        link.last_frame = asyncio.get_running_loop().time()
        self._attempts.pop(link.id, None)
        if not link.ready.done():
            link.ready.set_result(True)
        if self._probe_interval > 0:
            self._spawn(self._probe(link), link)
        if self._handler is not None:
            self._handler.link_up(link.id)

    async def _probe(self, link: _Peer) -> None:
        """Probe the peer every ``probe_interval`` while the link is open; consent
        (RFC 7675) expires when no probe was answered for ``CONSENT_EXPIRY``.

        The peer counts any datagram as a sign of life (``last_heard``); under heavy
        loss SCTP may send nothing for longer than ``dead_after`` (its timeout
        doubles with every lost retransmission) while both ends are alive, and
        aioice's own consent checks came every ~5 s (they are replaced). With a
        probe every 0.5 s a live link goes 6 s unheard only if 12 in a row are lost
        (0.4**12 = 2e-5 at 40% loss); a stopped peer sends none.
        """
        # (if aioice's checks could not be stopped, they keep consent, not the probes)
        keeps_consent = take_over_consent(link.pc)
        loop = asyncio.get_running_loop()
        answered = loop.time()

        def renewed(task: asyncio.Task[bool | None]) -> None:
            nonlocal answered
            # an answer renews consent; so does a probe that could not be sent at all
            # (fail soft: that is this side's limitation, not the peer's silence)
            if not task.cancelled() and task.exception() is None and task.result() is not False:
                answered = loop.time()

        while not link.closed:
            await asyncio.sleep(self._probe_interval)
            if link.closed:
                return
            if keeps_consent and loop.time() - answered > CONSENT_EXPIRY:
                log.info("consent to send to %s expired: no probe answered", link.id)
                self._teardown(link)
                return
            self._spawn(probe(link.pc), link).add_done_callback(renewed)

    def _frame(self, link: _Peer, data: bytes | str) -> None:
        if link.closed or self._handler is None:
            return
        link.last_frame = asyncio.get_running_loop().time()
        if isinstance(data, str):
            data = data.encode()
        self._handler.frame(link.id, data)

    def _teardown(self, link: _Peer, *, retry: bool = True, close_pc: bool = True) -> None:
        """Forget a connection (idempotent); tell the meeting if it was a link."""
        if link.closed:
            return
        link.closed = True
        if not link.ready.done():
            link.ready.set_result(False)
        for task in link.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        if close_pc:
            self._spawn(link.pc.close())
        spares = self._spares.get(link.id, [])
        if link in spares:  # never a link: nothing to report, nothing to retry
            spares.remove(link)
            if not spares:
                del self._spares[link.id]
            return
        current = self._peers.get(link.id) is link
        if current:
            del self._peers[link.id]
            if spares and not self._closing:
                # The link or first attempt failed; the next oldest goes on.
                self._peers[link.id] = spares.pop(0)
                if not spares:
                    del self._spares[link.id]
                retry = False
        if link.opened and current and self._handler is not None:
            self._handler.link_down(link.id)
        if retry and current and not self._closing:
            self._schedule_retry(link.id)

    def _schedule_retry(self, peer: str) -> None:
        # One side re-offers, so retries cannot cross: the smaller peer id.
        if peer not in self._present or not self.peer_id < peer:
            return
        if self._handler is not None and not self._handler.retries_link(peer):
            return
        attempt = self._attempts.get(peer, 0) + 1
        self._attempts[peer] = attempt
        delay = min(self._retry_backoff * 2 ** (attempt - 1), 30.0)
        self._spawn(self._retry(peer, delay))

    async def _retry(self, peer: str, delay: float) -> None:
        await asyncio.sleep(delay)
        if peer in self._present and peer not in self._peers and not self._closing:
            log.info("reconnecting to %s", peer)
            self._connect(peer)

    def _spawn(self, coro: Any, link: _Peer | None = None) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        owner = link.tasks if link is not None else self._tasks
        owner.add(task)
        task.add_done_callback(owner.discard)

        def done(task: asyncio.Task[Any]) -> None:
            if task.cancelled() or task.exception() is None:
                return
            log.warning("WebRTC task failed: %r", task.exception())
            if link is not None:
                self._teardown(link)  # a failed negotiation step ends this attempt

        task.add_done_callback(done)
        return task


def _dtls_state(pc: RTCPeerConnection) -> str | None:
    sctp = pc.sctp
    return None if sctp is None else sctp.transport.state
