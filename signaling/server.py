"""The signaling service: introduces the peers of a room to each other, holds no data.

Protocol (JSON text messages over one WebSocket per peer):

* client ``{"type": "join", "room": R, "peer_id": P | null, "token": T | null,
  "resume": S | absent}``, server ``{"type": "welcome", "peer_id": P, "room": R,
  "peers": [...], "auth": bool, "resume": S, "heartbeat": seconds}``; the others in
  the room get ``{"type": "peer-joined", "peer_id": P}``;
* ``resume`` in the welcome is the secret that gets this peer id back after a drop:
  a departed peer's id stays reserved for ``Limits.reserve_seconds``, and a join that
  carries the secret takes over even a socket the server still thinks is live;
* the client sends some message (``{"type": "ping"}``, answered ``{"type": "pong"}``)
  at least every ``heartbeat`` seconds, or is closed as idle (4010);
* client ``{"type": "signal", "to": Q, "data": {...}}``, delivered to Q only as
  ``{"type": "signal", "from": P, "data": {...}}`` — the server stamps the sender;
* when a peer's socket closes (or the server closes it) the others get
  ``{"type": "peer-left", "peer_id": P}`` at once;
* anything wrong gets ``{"type": "error", "code": C, "reason": "..."}``; a refused
  join also closes the socket with a 4xxx close code (see ``CLOSE_CODES``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from .tokens import DEFAULT_MAX_TTL, MAX_NAME_LENGTH, TokenError, verify_token_claims

__all__ = ["CLOSE_CODES", "STAT_NAMES", "Limits", "SignalingServer"]

log = logging.getLogger("signaling")

CLOSE_CODES = {
    "bad-request": 4000,
    "auth-required": 4001,
    "auth-invalid": 4001,
    "auth-expired": 4001,
    "auth-room": 4001,
    "auth-peer": 4001,
    "room-full": 4003,
    "rate-limited": 4008,
    "too-many-connections": 4008,
    "peer-id-taken": 4009,
    "join-timeout": 4010,
    "idle": 4010,
}

STAT_NAMES = (
    "connections",  # sockets accepted (the WebSocket handshake done)
    "joins",  # welcomes sent, resumed sessions included
    "errors",  # error messages sent
    "signals",  # signals delivered
    "resumed",  # joins let in by their resume secret
    "taken_over",  # live sockets replaced by a resumed session of the same peer
    "refused_taken",  # joins for a live peer id without its resume secret
    "refused_reserved",  # joins for a reserved (recently departed) id without its secret
    "refused_restart_grace",  # token joins issued before the start, without the secret
    "refused_per_address",  # sockets over max_connections_per_address
    "refused_joined_per_address",  # joins over max_joined_per_address
    "refused_room_full",
    "refused_auth",
    "refused_bad_request",  # bad joins, and sockets closed for too many bad messages
    "join_timeouts",
    "pending_evicted",  # not-yet-joined sockets closed for max_pending_joins
    "idle_closed",
    "rate_limited",  # messages over the per-connection bucket
    "signals_rate_limited",  # signals dropped: the two below together
    "signals_rate_limited_recipient",  # ... the recipient's receive bucket was empty
    "signals_rate_limited_pair",  # ... the (sender, recipient) bucket was empty
    "replies_credited",  # signals sent as answers, outside the sender's buckets
    "closed_violations",  # sockets closed for too many errors
    "send_queue_full",  # sockets closed for not reading their messages
    "reservations_evicted",  # reservations dropped early by the reservation caps
)

RESUME_KEY_LABEL = b"crdt-stores resume key"
MAX_RESUME_LENGTH = 128
REFUSE_CLOSE_TIMEOUT = 1.0  # a socket refused at the door gets this long to close, then cut


@dataclass(frozen=True)
class Limits:
    """What one connection, one client address and one peer may do."""

    max_message_bytes: int = 64 * 1024
    max_peers_per_room: int = 64
    messages_per_second: float = 20.0
    burst: int = 60
    max_violations: int = 20  # rate-limit or protocol errors before the socket is closed
    join_timeout: float = 10.0
    max_pending_sends: int = 256
    reserve_seconds: float = 30.0
    """A departed peer's id is kept this long for its resume secret; in token mode,
    tokens issued before the server started need the secret this long after the start."""
    idle_timeout: float = 30.0
    """A joined socket that sends no message for this long is closed (4010 "idle")."""
    signals_received_per_second: float = 20.0
    signals_received_burst: int = 40
    signals_per_peer_per_second: float = 1.0
    signals_per_peer_burst: int = 8
    max_reply_credits: int = 16
    """Answers a peer may owe another: each signal received earns one, up to this."""
    max_connections_per_address: int = 128  # open sockets, joined or not
    max_joined_per_address: int = 32  # joined peer ids, all rooms together
    max_pending_joins: int = 1024  # not-yet-joined sockets in all; the oldest goes first
    max_reserved_per_address: int = 128  # past it an address's oldest reservation goes
    max_reserved: int = 100_000  # reservations in all; past it the oldest goes


class _Bucket:
    """Token bucket: ``rate`` messages per second, bursts of ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def ready(self) -> bool:
        """Whether a token is there, without taking it."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return self.tokens >= 1

    def take(self) -> bool:
        if not self.ready():
            return False
        self.tokens -= 1
        return True


@dataclass(eq=False)
class _Client:
    """One socket and what the server tracks for it: room, id, budgets, closing state."""

    ws: ServerConnection
    address: str = ""
    room: str = ""
    peer_id: str = ""
    resume: str = ""
    violations: int = 0
    joined: bool = False
    closing: bool = False  # the server is closing it: it no longer speaks in its room
    counted: bool = False  # counted in its address's open sockets
    outbox: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    writer: asyncio.Task[None] | None = None
    close_task: asyncio.Task[None] | None = None
    inbound: _Bucket | None = None  # signals it may receive
    pair_buckets: dict[str, _Bucket] = field(default_factory=dict)  # signals it may send, per peer
    credits: dict[str, int] = field(default_factory=dict)  # answers it may send, per peer


@dataclass
class _Reservation:
    """A departed peer's id, kept for whoever holds its resume secret until ``expires``."""

    expires: float
    secret: str
    address: str


class SignalingServer:
    """A WebSocket signaling server: embeddable (``async with``), or ``python -m signaling``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8787,
        *,
        secret: str | None = None,
        max_token_ttl: float = DEFAULT_MAX_TTL,
        limits: Limits | None = None,
        ping_interval: float = 5.0,
        ping_timeout: float = 10.0,
        trusted_proxies: Iterable[str] = (),
    ) -> None:
        self.host = host
        self.port = port
        self.secret = secret or None
        self.max_token_ttl = max_token_ttl
        self.limits = limits or Limits()
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.trusted_proxies = frozenset(
            _canonical_ip(addr, strict=True) for addr in trusted_proxies
        )
        self.rooms: dict[str, dict[str, _Client]] = {}
        self.stats: dict[str, int] = dict.fromkeys(STAT_NAMES, 0)
        self._server: Server | None = None
        # The resume key: from the secret in token mode (so secrets survive a restart),
        # else random (an open server cannot protect ids across a restart anyway).
        if self.secret is not None:
            key = hmac.new(self.secret.encode(), RESUME_KEY_LABEL, hashlib.sha256).digest()
        else:
            key = secrets.token_bytes(32)
        self._resume_key = key
        self._started_wall = time.time()
        self._started = time.monotonic()
        self._sockets_by_address: dict[str, int] = {}
        self._joined_by_address: dict[str, int] = {}
        self._pending: dict[_Client, None] = {}  # not yet joined, oldest first
        self._reserved: dict[tuple[str, str], _Reservation] = {}  # oldest first
        self._reserved_by_address: dict[str, dict[tuple[str, str], None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    async def start(self) -> None:
        self._started_wall = time.time()
        self._started = time.monotonic()
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            max_size=self.limits.max_message_bytes,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
            compression=None,
        )
        sockets = list(self._server.sockets)
        if sockets:
            self.port = sockets[0].getsockname()[1]
        if self.secret is None:
            log.warning(
                "signaling server on %s is OPEN: no secret, anyone can join any room", self.url
            )
        else:
            log.info("signaling server on %s requires join tokens", self.url)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self.rooms.clear()
        self._reserved.clear()
        self._reserved_by_address.clear()

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    async def __aenter__(self) -> SignalingServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def connections_from(self, address: str) -> int:
        """Open sockets counted for a client address (as the limits see it)."""
        return self._sockets_by_address.get(_limit_key(address), 0)

    def joined_from(self, address: str) -> int:
        """Joined peer ids counted for a client address (as the limits see it)."""
        return self._joined_by_address.get(_limit_key(address), 0)

    # -- one connection -----------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        """One socket from handshake to close: address caps, join, then its messages."""
        self.stats["connections"] += 1
        client = _Client(ws, address=self._client_address(ws))
        client.writer = asyncio.create_task(self._writer(client))
        try:
            sockets = self._sockets_by_address.get(client.address, 0)
            if sockets >= self.limits.max_connections_per_address:
                self.stats["refused_per_address"] += 1
                log.info("refused a socket from %s: %d open already", client.address, sockets)
                await self._refuse(
                    client,
                    "too-many-connections",
                    f"too many connections from {client.address}",
                    quick=True,
                )
                return
            self._sockets_by_address[client.address] = sockets + 1
            client.counted = True
            self._admit_pending(client)
            try:
                first = await asyncio.wait_for(ws.recv(), self.limits.join_timeout)
            except TimeoutError:
                self.stats["join_timeouts"] += 1
                await self._refuse(client, "join-timeout", "no join message in time")
                return
            if client.closing or not await self._join(client, first):
                return
            await self._serve_joined(client)
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("signaling connection failed")
        finally:
            self._pending.pop(client, None)
            self._leave(client)
            if client.counted:
                client.counted = False
                _decrement(self._sockets_by_address, client.address)
            if client.close_task is not None:
                # The closing task sends the close code; returning first would send 1000.
                with contextlib.suppress(Exception):
                    await asyncio.shield(client.close_task)
            await self._stop_writer(client)

    async def _serve_joined(self, client: _Client) -> None:
        """Read a joined peer's messages until it goes, falls idle or misbehaves."""
        bucket = _Bucket(self.limits.messages_per_second, self.limits.burst)
        idle = self.limits.idle_timeout
        while not client.closing:
            try:
                # Only application messages count: protocol pongs do not reset this.
                async with asyncio.timeout(idle):
                    raw = await client.ws.recv()
            except TimeoutError:
                if not client.closing:
                    self.stats["idle_closed"] += 1
                    await self._refuse(
                        client,
                        "idle",
                        f"no message for {idle:g} s (send a ping at least every heartbeat)",
                        close_reason="idle",
                    )
                return
            if client.closing:
                return
            message = _parse(raw)
            credited = self._credited(client, message)
            if not credited and not bucket.take():
                self.stats["rate_limited"] += 1
                await self._error(client, "rate-limited", "too many messages; slow down")
                continue
            await self._message(client, message, credited)

    def _admit_pending(self, client: _Client) -> None:
        """Count a socket that has not joined yet; past the cap the oldest such one goes."""
        while len(self._pending) >= self.limits.max_pending_joins:
            oldest = next(iter(self._pending))
            self.stats["pending_evicted"] += 1
            log.info(
                "closing a socket from %s that has not joined: too many waiting", oldest.address
            )
            self._close_later(
                oldest, "too-many-connections", "server busy: too many sockets waiting to join"
            )
        self._pending[client] = None

    async def _stop_writer(self, client: _Client) -> None:
        """Let the writer send what is queued (bounded), then stop it."""
        client.outbox.put_nowait(None)
        writer = client.writer
        if writer is not None and not writer.done():
            try:
                await asyncio.wait_for(asyncio.shield(writer), 1.0)
            except TimeoutError:
                writer.cancel()

    async def _writer(self, client: _Client) -> None:
        """Sends queued messages in order; a slow reader never blocks other peers."""
        while True:
            message = await client.outbox.get()
            if message is None:
                return
            try:
                await client.ws.send(message)
            except ConnectionClosed:
                return

    def _send(self, client: _Client, message: dict[str, Any]) -> None:
        if client.closing:
            return
        if client.outbox.qsize() >= self.limits.max_pending_sends:
            self.stats["send_queue_full"] += 1
            log.warning("peer %s is not reading its messages; closing it", client.peer_id)
            self._close_later(client, "rate-limited", "send queue full")
            return
        client.outbox.put_nowait(json.dumps(message, separators=(",", ":")))

    async def _error(
        self, client: _Client, code: str, reason: str, *, violation: bool = True
    ) -> bool:
        """Reply with an error; returns True when the connection got closed for it."""
        self.stats["errors"] += 1
        if violation:
            client.violations += 1
        self._send(client, {"type": "error", "code": code, "reason": reason})
        if client.violations > self.limits.max_violations:
            self.stats["closed_violations"] += 1
            await self._refuse(client, code, "too many errors: " + reason)
            return True
        return False

    def _evict(self, client: _Client) -> None:
        """Take a socket the server is closing out of its room and the join queue, now."""
        client.closing = True
        self._pending.pop(client, None)
        self._leave(client)

    async def _refuse(
        self,
        client: _Client,
        code: str,
        reason: str,
        *,
        close_reason: str | None = None,
        quick: bool = False,
    ) -> None:
        """Leave the room at once, send the error, then close with the code's 4xxx."""
        if client.closing:
            return
        self._evict(client)
        await self._close(client, code, reason, close_reason, quick)

    def _close_later(
        self, client: _Client, code: str, reason: str, close_reason: str | None = None
    ) -> None:
        """``_refuse`` from code that cannot wait: leaves now, closes in a task."""
        if client.closing:
            return
        self._evict(client)
        task = asyncio.create_task(self._close(client, code, reason, close_reason, True))
        client.close_task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _close(
        self, client: _Client, code: str, reason: str, close_reason: str | None, quick: bool
    ) -> None:
        """Send the error, flush, close; ``quick`` cuts a client that does not answer."""
        self.stats["errors"] += 1
        error = {"type": "error", "code": code, "reason": reason}
        client.outbox.put_nowait(json.dumps(error, separators=(",", ":")))
        await self._stop_writer(client)  # the error reply goes out before the close frame
        close_code = CLOSE_CODES.get(code, 4000)
        text = _close_text(close_reason or reason)
        if not quick:
            await client.ws.close(close_code, text)
            return
        # A client that does not answer the close frame is cut off instead of held.
        closing = asyncio.ensure_future(client.ws.close(close_code, text))
        try:
            await asyncio.wait_for(asyncio.shield(closing), REFUSE_CLOSE_TIMEOUT)
        except TimeoutError:
            client.ws.transport.abort()
            with contextlib.suppress(Exception):
                await closing

    async def _join(self, client: _Client, raw: str | bytes) -> bool:
        """Admit or refuse a join; a reserved or live id needs its resume secret."""
        message = _parse(raw)
        if message is None or message.get("type") != "join":
            return await self._bad_join(client, "the first message must be a JSON join")
        room = message.get("room")
        peer_id = message.get("peer_id")
        resume = message.get("resume")
        if not isinstance(room, str) or not _name(room):
            return await self._bad_join(client, "join needs a room (a non-empty string)")
        if peer_id is not None and (not isinstance(peer_id, str) or not _name(peer_id)):
            return await self._bad_join(client, "peer_id must be a non-empty string")
        if resume is not None and (
            not isinstance(resume, str) or not 0 < len(resume) <= MAX_RESUME_LENGTH
        ):
            return await self._bad_join(client, "resume must be the secret from a welcome")
        token: str | None = None
        issued_before_start = False
        if self.secret is not None:
            try:
                claims = verify_token_claims(
                    self.secret, message.get("token"), room, peer_id, self.max_token_ttl
                )
            except TokenError as exc:
                log.info("refused a join of room %r: %s", room, exc.reason)
                self.stats["refused_auth"] += 1
                await self._refuse(client, exc.code, exc.reason)
                return False
            peer_id = claims.peer_id
            token = str(message["token"])
            # iat has one-second resolution: a token of the start's second counts as after.
            issued_before_start = claims.issued_at is None or claims.issued_at < int(
                self._started_wall
            )
        members = self.rooms.get(room, {})
        if peer_id is None:
            peer_id = secrets.token_hex(6)
            while peer_id in members or self._reservation(room, peer_id) is not None:
                peer_id = secrets.token_hex(6)
        secret = self._resume_secret(room, peer_id, token)
        live = members.get(peer_id)
        reservation = self._reservation(room, peer_id) if live is None else None
        accepted = [secret]
        if live is not None:
            accepted.append(live.resume)
        if reservation is not None:
            accepted.append(reservation.secret)
        resumed = resume is not None and any(_same(resume, s) for s in accepted)
        if live is not None and not resumed:
            self.stats["refused_taken"] += 1
            await self._refuse(
                client, "peer-id-taken", f"peer id {peer_id!r} is already in the room"
            )
            return False
        if reservation is not None and not resumed:
            self.stats["refused_reserved"] += 1
            left = max(0.0, reservation.expires - time.monotonic())
            await self._refuse(
                client,
                "peer-id-taken",
                f"peer id {peer_id!r} is reserved for its previous session for {left:.0f} s"
                " more; rejoin with its resume secret",
            )
            return False
        if (
            live is None
            and reservation is None
            and not resumed
            and self.secret is not None
            and issued_before_start
            and time.monotonic() < self._started + self.limits.reserve_seconds
        ):
            self.stats["refused_restart_grace"] += 1
            await self._refuse(
                client,
                "peer-id-taken",
                f"peer id {peer_id!r} is reserved: the server restarted moments ago and this"
                " token is older; rejoin with the resume secret or a new token",
            )
            return False
        freed = 1 if live is not None and live.address == client.address else 0
        joined = self._joined_by_address.get(client.address, 0) - freed
        if joined >= self.limits.max_joined_per_address:
            self.stats["refused_joined_per_address"] += 1
            await self._refuse(
                client,
                "too-many-connections",
                f"too many peers joined from {client.address}",
            )
            return False
        if live is None and len(members) >= self.limits.max_peers_per_room:
            self.stats["refused_room_full"] += 1
            await self._refuse(client, "room-full", f"room {room!r} is full")
            return False
        # Admitted.
        members = self.rooms.setdefault(room, members)
        self._pending.pop(client, None)
        self._unreserve((room, peer_id))
        client.room = room
        client.peer_id = peer_id
        client.resume = secret
        client.joined = True
        client.inbound = _Bucket(
            self.limits.signals_received_per_second, self.limits.signals_received_burst
        )
        self._joined_by_address[client.address] = joined + freed + 1
        members[peer_id] = client
        if resumed:
            self.stats["resumed"] += 1
        peers = [other for other in members if other != peer_id]
        self.stats["joins"] += 1
        self._send(
            client,
            {
                "type": "welcome",
                "peer_id": peer_id,
                "room": room,
                "peers": peers,
                "auth": self.secret is not None,
                "resume": secret,
                "heartbeat": self.limits.idle_timeout / 3,
            },
        )
        if live is not None:
            # Same peer, new socket: nobody else needs to hear about it.
            self.stats["taken_over"] += 1
            client.credits = live.credits
            client.pair_buckets = live.pair_buckets
            self._leave(live, announce=False)
            self._close_later(live, "peer-id-taken", "replaced by a resumed session")
            log.info("%s resumed in room %r on a new socket", peer_id, room)
            return True
        for other in [members[p] for p in peers]:
            self._send(other, {"type": "peer-joined", "peer_id": peer_id})
        log.info("%s joined room %r (%d peers)", peer_id, room, len(members))
        return True

    async def _bad_join(self, client: _Client, reason: str) -> bool:
        """Refuse a malformed join (always returns False, for ``return await``)."""
        self.stats["refused_bad_request"] += 1
        await self._refuse(client, "bad-request", reason)
        return False

    def _credited(self, client: _Client, message: dict[str, Any] | None) -> bool:
        """Whether this is an answer: a signal to a peer that signalled this one first."""
        if message is None or message.get("type") != "signal":
            return False
        target = message.get("to")
        return isinstance(target, str) and client.credits.get(target, 0) > 0

    async def _message(
        self, client: _Client, message: dict[str, Any] | None, credited: bool
    ) -> None:
        if message is None:
            await self._error(client, "bad-request", "messages must be JSON objects")
            return
        kind = message.get("type")
        if kind == "signal":
            await self._signal(client, message, credited)
        elif kind == "ping":
            self._send(client, {"type": "pong"})
        elif kind == "join":
            await self._error(client, "bad-request", "already joined")
        else:
            await self._error(client, "bad-request", f"unknown message type {kind!r}")

    async def _signal(self, client: _Client, message: dict[str, Any], credited: bool) -> None:
        """Route one signal: answers are free, anything else pays the pair and the recipient."""
        target = message.get("to")
        data = message.get("data")
        if not isinstance(target, str) or not isinstance(data, dict):
            await self._error(
                client, "bad-request", "signal needs 'to' (a peer id) and 'data' (an object)"
            )
            return
        if credited:
            _spend(client.credits, target)
        recipient = self.rooms.get(client.room, {}).get(target)
        if recipient is None or recipient is client:
            # An answer to a peer that just left is a race, not a fault.
            recent = credited or self._reservation(client.room, target) is not None
            await self._error(
                client, "no-such-peer", f"no peer {target!r} in this room", violation=not recent
            )
            return
        if credited:
            self.stats["replies_credited"] += 1
        else:
            pair = client.pair_buckets.get(target)
            # A first contact (a newcomer's offer) is never starved by others' floods of
            # the recipient: it skips the receive bucket. Another costs a new peer id.
            first_contact = pair is None
            if pair is None:
                self._prune_peer_map(client, client.pair_buckets)
                pair = client.pair_buckets[target] = _Bucket(
                    self.limits.signals_per_peer_per_second, self.limits.signals_per_peer_burst
                )
            inbound = recipient.inbound
            if not pair.ready():
                self.stats["signals_rate_limited"] += 1
                self.stats["signals_rate_limited_pair"] += 1
                await self._error(
                    client, "rate-limited", f"too many signals to {target!r}; slow down"
                )
                return
            if inbound is not None and not inbound.ready() and not first_contact:
                self.stats["signals_rate_limited"] += 1
                self.stats["signals_rate_limited_recipient"] += 1
                await self._error(
                    client, "rate-limited", f"{target!r} is receiving too many signals; retry later"
                )
                return
            pair.take()
            if inbound is not None:
                inbound.take()
            if client.peer_id not in recipient.credits:
                self._prune_peer_map(recipient, recipient.credits)
            owed = recipient.credits.get(client.peer_id, 0) + 1
            recipient.credits[client.peer_id] = min(owed, self.limits.max_reply_credits)
        self.stats["signals"] += 1
        self._send(recipient, {"type": "signal", "from": client.peer_id, "data": data})

    def _prune_peer_map(self, client: _Client, mapping: dict[str, Any]) -> None:
        """Keep a per-peer map to about a room's size: forget peers no longer there."""
        if len(mapping) < 2 * self.limits.max_peers_per_room:
            return
        members = self.rooms.get(client.room, {})
        for peer in [p for p in mapping if p not in members]:
            del mapping[peer]

    def _leave(self, client: _Client, *, announce: bool = True) -> None:
        """Take a joined peer out of its room; ``announce`` tells the others and reserves the id."""
        if not client.joined:
            return
        client.joined = False
        _decrement(self._joined_by_address, client.address)
        members = self.rooms.get(client.room)
        if not members or members.get(client.peer_id) is not client:
            return
        del members[client.peer_id]
        if announce:
            self._reserve(client)
            for other in list(members.values()):
                other.credits.pop(client.peer_id, None)
                self._send(other, {"type": "peer-left", "peer_id": client.peer_id})
        log.info("%s left room %r (%d peers)", client.peer_id, client.room, len(members))
        self._drop_empty(client.room)

    def _drop_empty(self, room: str) -> None:
        if not self.rooms.get(room):
            self.rooms.pop(room, None)

    # -- reserved ids and resume secrets ----------------------------------------------

    def _resume_secret(self, room: str, peer_id: str, token: str | None) -> str:
        """HMAC of room, peer id and (token mode) the token: a new token, a new secret."""
        fields = [room, peer_id] if token is None else [room, peer_id, token]
        data = json.dumps(fields, separators=(",", ":")).encode()
        digest = hmac.new(self._resume_key, data, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def _reserve(self, client: _Client) -> None:
        """Keep a departed peer's id for its secret; the caps drop the oldest first."""
        if self.limits.reserve_seconds <= 0:
            return
        key = (client.room, client.peer_id)
        self._unreserve(key)
        expires = time.monotonic() + self.limits.reserve_seconds
        self._reserved[key] = _Reservation(expires, client.resume, client.address)
        mine = self._reserved_by_address.setdefault(client.address, {})
        mine[key] = None
        while len(mine) > self.limits.max_reserved_per_address:
            self.stats["reservations_evicted"] += 1
            self._unreserve(next(iter(mine)))
        while len(self._reserved) > self.limits.max_reserved:
            self.stats["reservations_evicted"] += 1
            self._unreserve(next(iter(self._reserved)))

    def _reservation(self, room: str, peer_id: str) -> _Reservation | None:
        """The live reservation of an id, if any (expired ones are dropped here)."""
        now = time.monotonic()
        while self._reserved:
            key, oldest = next(iter(self._reserved.items()))
            if oldest.expires > now:
                break
            self._unreserve(key)
        return self._reserved.get((room, peer_id))

    def _unreserve(self, key: tuple[str, str]) -> None:
        reservation = self._reserved.pop(key, None)
        if reservation is None:
            return
        mine = self._reserved_by_address.get(reservation.address)
        if mine is not None:
            mine.pop(key, None)
            if not mine:
                del self._reserved_by_address[reservation.address]

    def _client_address(self, ws: ServerConnection) -> str:
        """The address limits count: the TCP peer's, or a trusted proxy's X-Forwarded-For."""
        remote = ws.remote_address
        address = _canonical_ip(str(remote[0])) if remote else "unknown"
        if address in self.trusted_proxies and ws.request is not None:
            forwarded = ws.request.headers.get_all("X-Forwarded-For")
            if forwarded:
                last = forwarded[-1].split(",")[-1].strip()
                if last:
                    address = _canonical_ip(last)
        return _limit_key(address)


def _parse(raw: str | bytes) -> dict[str, Any] | None:
    try:
        message = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return message if isinstance(message, dict) else None


def _name(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_NAME_LENGTH


def _same(given: str, expected: str) -> bool:
    """Constant-time comparison of a resume secret (any text, compared as UTF-8)."""
    return hmac.compare_digest(given.encode(), expected.encode())


def _spend(credits: dict[str, int], peer: str) -> None:
    left = credits.get(peer, 0) - 1
    if left > 0:
        credits[peer] = left
    else:
        credits.pop(peer, None)


def _decrement(counts: dict[str, int], key: str) -> None:
    left = counts.get(key, 0) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)


def _close_text(reason: str) -> str:
    """A close reason within the 123 bytes a close frame has room for."""
    return reason.encode()[:120].decode(errors="ignore")


def _canonical_ip(text: str, *, strict: bool = False) -> str:
    """One spelling per IP address (IPv4-mapped IPv6 as IPv4); not an IP: kept, cut short."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        if strict:
            raise ValueError(f"not an IP address: {text!r}") from None
        return text.strip()[:64]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _limit_key(address: str) -> str:
    """IPv6 clients are counted per /64 (one host usually holds a whole /64)."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return address
