"""The WebRTC mesh: one aiortc ``RTCPeerConnection`` and data channel per pair of peers.

* The newcomer offers to every peer the signaling server lists; those answer
  (no glare). Re-offers after a failure come from the peer with the smaller id,
  and an offer crossing ours is settled the same way.
* ICE uses no STUN/TURN server unless ``ice_servers`` is given (aiortc alone would
  contact a public STUN server). The host addresses ICE offers can be restricted
  (``ice_addresses`` or ``CRDT_STORES_ICE_ADDRESSES``); aioice has no option for
  it, so its address discovery is overridden only inside calls made for
  connections that asked for it (a context variable, not a global switch).
* Under loss, DTLS and SCTP back off their retransmissions: while no attempt has
  opened, the offerer starts another one every ``spare_after`` seconds (for
  ``connect_timeout``), with fresh timers; at most ``MAX_ATTEMPTS`` run at once
  (the oldest that has not got through DTLS gives way), the first to open is
  the link and the others are closed.
* Leaving closes the data channels first: aiortc sends what is queued before the
  stream reset, whereas ``pc.close()`` alone aborts SCTP and drops it.
* Every open link sends an ICE consent check (outside SCTP) every
  ``probe_interval`` (0.5 s; 0 leaves aioice's checks, every ~5 s): the peer's
  dead-link check counts any datagram, and under heavy loss SCTP's backoff can
  be silent for longer than ``dead_after`` between two live peers. Consent
  (RFC 7675) expires after 30 s with no check answered, not after aioice's 6
  unanswered in a row (which a 40%-loss link hits in ~30 s 7% of the time).
* Frame handlers are guarded: an exception never reaches aiortc, which would
  otherwise tear the connection down.
* Offers are answered only from peers signaling listed in the room, at most
  ``max_negotiations`` at a time and a few per peer per second, with a bounded
  number of ICE candidates: a flood of offers cannot make this peer send ICE
  checks wherever the flooder points. With a room key every signal is sealed
  (``crdt_stores.sealing``); one that does not open is refused and reported.

The attempts behind each link are in ``_links`` (the base class), the ICE
configuration in ``_ice_config``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

from aiortc import RTCDataChannel

from ..sealing import ROOM_KEY_ENV, SealError, SignalSealer
from ..signaling_client import SignalingClient
from ._aiortc import install_address_hook
from ._ice_config import ICE_ADDRESSES_ENV, host_addresses, parse_ice_servers
from ._links import MAX_ATTEMPTS as MAX_ATTEMPTS
from ._links import Links
from .base import Transport, TransportHandler

__all__ = ["ICE_ADDRESSES_ENV", "WebRTCTransport", "parse_ice_servers"]

log = logging.getLogger("crdt_stores.webrtc")

MAX_NEGOTIATIONS = 64
"""Negotiations at once (links not yet open): a room of 64 may all join at the same time;
past it the oldest one whose ICE has not connected gives way."""
OFFERS_PER_SECOND = 0.5
OFFER_BURST = 4
"""Offers answered per peer: an honest peer offers once, and re-offers with backoff."""
MAX_CANDIDATES = 16
"""ICE candidates accepted in one description (each one is a target for ICE checks)."""
MAX_SDP_CHARS = 32 * 1024
_ICE_UP = ("connected", "completed")


class WebRTCTransport(Links, Transport):
    """Links to the other peers of a room over aiortc data channels."""

    def __init__(
        self,
        url: str | Sequence[str],  # several: instances sharing rooms, failed over in turn
        room: str,
        *,
        token: str | None = None,
        peer_id: str | None = None,
        ice_servers: Sequence[Any] | None = None,
        ice_addresses: Sequence[str] | None = None,
        connect_timeout: float = 20.0,
        spare_after: float = 2.0,
        join_timeout: float = 15.0,
        left_grace: float = 2.5,
        retry_backoff: float = 1.0,
        room_key: str | bytes | None = None,
        max_negotiations: int = MAX_NEGOTIATIONS,
        probe_interval: float = 0.5,
    ) -> None:
        self.url = url
        self.room = room
        self.peer_id = peer_id or ""
        self._token = token
        self._ice_servers = parse_ice_servers(ice_servers)
        self._ice_addresses = host_addresses(ice_addresses)
        self._connect_timeout = connect_timeout
        self._spare_after = spare_after
        self._join_timeout = join_timeout
        self._left_grace = left_grace
        self._retry_backoff = retry_backoff
        self._probe_interval = probe_interval
        if room_key is None:
            room_key = os.environ.get(ROOM_KEY_ENV) or None
        self._sealer = SignalSealer(room_key, room) if room_key else None
        self._max_negotiations = max_negotiations
        self._offer_budget: dict[str, tuple[float, float]] = {}  # peer -> (tokens, stamp)
        self.stats: dict[str, int] = {}
        self._refusals_logged: set[tuple[str, str]] = set()
        # The state of the links (declared, with what it holds, in ``Links``):
        self._handler = None
        self._signaling = None
        self._peers = {}
        self._spares = {}
        self._rolling = set()
        self._present = set()
        self._attempts = {}
        self._tasks = set()
        self._closing = False

    # -- Transport ----------------------------------------------------------------

    async def start(self, handler: TransportHandler) -> None:
        install_address_hook()
        self._handler = handler
        self._signaling = SignalingClient(
            self.url, self.room, self, peer_id=self.peer_id or None, token=self._token
        )
        peers = await self._signaling.join()
        self.peer_id = self._signaling.peer_id or ""
        self._present.update(peers)
        for peer in handler.choose_links(peers):  # all of a small room, a few of a large one
            self._connect(peer)
        waiting = [p.ready for p in self._peers.values()]
        if waiting:
            # Return with the links to the peers already here open (or given up on).
            await asyncio.wait(waiting, timeout=self._join_timeout)

    def send(self, peer: str, data: bytes) -> None:
        link = self._peers.get(peer)
        if link is None or not link.opened or link.channel.readyState != "open":
            return
        try:
            link.channel.send(data)
        except Exception as exc:  # InvalidStateError, ConnectionError, ValueError
            log.debug("could not send to %s: %s", peer, exc)

    def present_peers(self) -> set[str]:
        return self._present - {self.peer_id}

    def last_heard(self, peer: str) -> float | None:
        link = self._peers.get(peer)
        if link is None or not link.opened or not link.last_heard:
            return None
        return link.last_heard

    def buffered_to(self, peer: str) -> int:
        link = self._peers.get(peer)
        return link.channel.bufferedAmount if link is not None and link.opened else 0

    def buffered_amount(self) -> int:
        return sum(p.channel.bufferedAmount for p in self._peers.values() if p.opened)

    async def drain(self, low_water: int) -> None:
        """Wait until every channel's queue is at most its share of ``low_water``."""
        links = [p for p in self._peers.values() if p.opened]
        if not links:
            return
        share = max(low_water // len(links), 1)
        waits = []
        for link in links:
            if link.channel.bufferedAmount > share:
                link.channel.bufferedAmountLowThreshold = share
                waits.append(_event(link.channel, "bufferedamountlow"))
        if waits:
            await asyncio.wait([asyncio.ensure_future(w) for w in waits], timeout=30.0)

    def room_size(self) -> int:
        return len(self._present - {self.peer_id}) + 1

    def dial(self, peer: str) -> None:
        if peer in self._present and peer not in self._peers:
            self._connect(peer)

    def drop_link(self, peer: str) -> None:
        self._drop_spares(peer)
        link = self._peers.get(peer)
        if link is not None:
            self._teardown(link, retry=False)

    def close_link(self, peer: str) -> None:
        self._drop_spares(peer)
        link = self._peers.get(peer)
        if link is not None:
            self._teardown(link)

    async def close(self) -> None:
        self._closing = True
        for peer in list(self._spares):
            self._drop_spares(peer)
        links = list(self._peers.values())
        for link in links:
            if link.channel.readyState == "open":
                link.channel.close()  # queued frames go out before the stream reset
        closing = [_closed(link.channel) for link in links if link.opened]
        if closing:
            await asyncio.wait([asyncio.ensure_future(c) for c in closing], timeout=5.0)
        for link in links:
            self._teardown(link, close_pc=False)
        await asyncio.gather(*(link.pc.close() for link in links), return_exceptions=True)
        if self._signaling is not None:
            await self._signaling.close()
        for task in list(self._tasks):
            task.cancel()
        self._handler = None

    # -- SignalingHandler ---------------------------------------------------------

    def peer_joined(self, peer: str) -> None:
        self._present.add(peer)  # the newcomer offers; nothing to do here

    def peer_left(self, peer: str) -> None:
        self._present.discard(peer)
        self._attempts.pop(peer, None)
        self._offer_budget.pop(peer, None)
        self._drop_spares(peer)
        link = self._peers.get(peer)
        if link is None:
            return
        if not link.opened:
            self._teardown(link)
            return
        # Signaling losing a peer does not mean the mesh did (its link may be fine):
        # close only if the peer stays silent for a heartbeat or two.
        noticed = asyncio.get_running_loop().time()
        self._spawn(self._close_if_silent(link, noticed))

    def signal(self, peer: str, data: dict[str, Any]) -> None:
        if self._sealer is not None:
            try:
                data = self._sealer.open(peer, self.peer_id, data, time.time())
            except SealError as exc:
                self._refuse(peer, exc.reason)
                return
        elif "sealed" in data:
            self._refuse(peer, "sealed signal, but this peer has no room key")
            return
        kind = data.get("kind")
        session = data.get("session")
        sdp = data.get("sdp")
        if kind == "busy" and isinstance(session, str):
            self._busy(peer, session)
            return
        if not isinstance(session, str) or not isinstance(sdp, str) or len(session) > 64:
            self._refuse(peer, "malformed signal")
            return
        if len(sdp) > MAX_SDP_CHARS or sdp.count("a=candidate:") > MAX_CANDIDATES:
            self._refuse(peer, f"description too large (over {MAX_CANDIDATES} ICE candidates)")
            return
        if kind == "offer":
            self._offered(peer, session, sdp)
        elif kind == "answer":
            offering = next(
                (
                    attempt
                    for attempt in self._tries(peer)
                    if attempt.offerer and attempt.session == session and not attempt.closed
                ),
                None,
            )
            if offering is not None:
                self._spawn(self._accept_answer(offering, sdp), offering)
            else:
                self._count("answers_ignored")

    def _offered(self, peer: str, session: str, sdp: str) -> None:
        """Answer an offer, unless it comes from outside the room or too often."""
        if peer not in self._present:
            self._refuse(peer, "offer from a peer signaling did not list in the room")
            return
        existing = self._peers.get(peer)
        if existing is not None:
            crossing = existing.offerer and not existing.opened and not existing.closed
            if crossing and self.peer_id < peer:
                return  # offers crossed: the smaller id's offer wins, this one is dropped
        if not self._take_offer_budget(peer):
            self._refuse(peer, "offers too often")
            return
        if self._handler is not None and not self._handler.accepts_link(peer):
            # A large room's peer at its degree_high: say so, the offerer tries another.
            self._count("offers_declined")
            self._spawn(self._send_signal(peer, {"kind": "busy", "session": session, "sdp": ""}))
            return
        # A new offer while we answer an older one, or while our side of a link is
        # open: the peer started a further attempt (its side had not opened, or it
        # lost the link). Keep what we have until the new one opens: tearing down
        # an open side would abort an association the peer was about to finish.
        spare = existing is not None and (existing.opened or not existing.offerer)
        if not spare and existing is not None:
            self._drop_spares(peer)
            self._teardown(existing, retry=False)
        self._make_room_for_a_negotiation()
        self._count("offers_answered")
        answering = self._new_peer(peer, offerer=False, session=session, spare=spare)
        self._spawn(self._answer(answering, sdp), answering)

    def _busy(self, peer: str, session: str) -> None:
        """``peer`` declined our offer (it has all the links it takes): no retry."""
        for attempt in self._tries(peer):
            if attempt.offerer and attempt.session == session and not attempt.opened:
                self._count("offers_declined_by_peer")
                self._teardown(attempt, retry=False)
                if self._handler is not None and peer not in self._peers:
                    self._handler.link_refused(peer)
                return

    def _make_room_for_a_negotiation(self) -> None:
        """At the cap, give up the oldest negotiation whose ICE has not connected.

        Links whose ICE checks succeeded are kept (an honest peer gets there in a
        round trip or two); those stuck in checking are what a flood of offers
        with made-up candidates leaves behind, and the offerer retries if honest.
        """
        negotiating = [p for p in self._peers.values() if not p.opened]
        negotiating += [p for spares in self._spares.values() for p in spares]
        if len(negotiating) < self._max_negotiations:
            return
        stuck = [p for p in negotiating if p.pc.iceConnectionState not in _ICE_UP]
        if stuck:
            self._count("negotiations_evicted")
            self._teardown(min(stuck, key=lambda p: p.started))

    def _take_offer_budget(self, peer: str) -> bool:
        now = time.monotonic()
        tokens, stamp = self._offer_budget.get(peer, (float(OFFER_BURST), now))
        tokens = min(float(OFFER_BURST), tokens + (now - stamp) * OFFERS_PER_SECOND)
        if tokens < 1:
            self._offer_budget[peer] = (tokens, now)
            return False
        self._offer_budget[peer] = (tokens - 1, now)
        return True

    def _refuse(self, peer: str, reason: str) -> None:
        """A signal not acted on: counted, logged, and reported to the meeting."""
        self._count("signals_refused")
        # A flood must not become a flood of log lines: the first of each kind is a warning.
        first = (peer, reason) not in self._refusals_logged and len(self._refusals_logged) < 1024
        if first:
            self._refusals_logged.add((peer, reason))
        log.log(
            logging.WARNING if first else logging.DEBUG,
            "refused a signal from %s: %s",
            peer,
            reason,
        )
        if self._handler is not None:
            self._handler.signal_refused(peer, reason)

    def signaling_restored(self, peers: list[str]) -> None:
        self._present = set(peers)
        if self._handler is None:
            return
        # Registered again as a newcomer: offer to whom we lack (all of a small room;
        # in a large one, only if this peer is short of links).
        for peer in self._handler.choose_links(sorted(self._present - {self.peer_id})):
            if peer not in self._peers:
                self._connect(peer)


async def _closed(channel: RTCDataChannel) -> None:
    if channel.readyState != "closed":
        await _event(channel, "close")


async def _event(channel: RTCDataChannel, name: str) -> None:
    """Wait for one ``name`` event of ``channel`` (or for it to close)."""
    done = asyncio.get_running_loop().create_future()

    def fire() -> None:
        if not done.done():
            done.set_result(None)

    channel.once(name, fire)
    if name != "close":
        channel.once("close", fire)
    await done
