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

``SignalingServer`` is built in layers, each a base class of the next: ``_sockets``
(each socket's outbox and closing), ``_rooms`` (joins and leaves), ``_signals`` (routing
signals), and here the server's life cycle and each connection's loop. Who else is in a
room, and which ids are reserved, is a presence: ``_presence`` (this process only) or,
with ``redis_url``, ``_redis`` (any number of instances share the rooms through Redis).
The limits, close codes and counters are in ``limits``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Iterable
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from ._addresses import canonical_ip, client_address, decrement, limit_key
from ._budgets import Bucket
from ._presence import LocalPresence, Presence, PresenceError
from ._signals import Signals
from ._sockets import Client, parse
from .limits import CLOSE_CODES, STAT_NAMES, Limits
from .tokens import DEFAULT_MAX_TTL

__all__ = ["CLOSE_CODES", "STAT_NAMES", "Limits", "PresenceError", "SignalingServer"]

log = logging.getLogger("signaling")

RESUME_KEY_LABEL = b"crdt-stores resume key"


class SignalingServer(Signals):
    """A WebSocket signaling server: embeddable (``async with``), or ``python -m signaling``.

    With ``redis_url`` (``redis://host:port/db``) any number of servers share their rooms
    through that Redis (keys under ``redis_prefix``): presence, the per-room cap, peer ids,
    reservations and resume secrets hold across them, and signals reach a peer on any
    of them. The peers of one that dies leave within ``presence_ttl`` +
    ``presence_refresh`` (``Limits``). Without it the server is the only instance.
    """

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
        redis_url: str | None = None,
        redis_prefix: str = "crdt-stores:",
    ) -> None:
        self.host = host
        self.port = port
        self.secret = secret or None
        self.max_token_ttl = max_token_ttl
        self.limits = limits or Limits()
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.trusted_proxies = frozenset(
            canonical_ip(addr, strict=True) for addr in trusted_proxies
        )
        self.rooms = {}
        self.stats = dict.fromkeys(STAT_NAMES, 0)
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
        self._joined_by_address = {}
        self._pending = {}  # not yet joined, oldest first
        self._tasks = set()
        self.redis_url = redis_url
        if redis_url is None:
            self._presence: Presence = LocalPresence(self.rooms, self.limits, self.stats)
        else:
            if not 0 < self.limits.presence_refresh < self.limits.presence_ttl:
                raise ValueError("Limits.presence_refresh must be positive and under presence_ttl")
            from ._redis import RedisPresence  # the redis package is needed only here

            self._presence = RedisPresence(redis_url, self.limits, self.stats, prefix=redis_prefix)

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    async def start(self) -> None:
        """Listen (with Redis: after joining the shared state; raises ``PresenceError``
        when Redis cannot be used)."""
        self._started_wall = time.time()
        self._started = time.monotonic()
        self._resume_key = await self._presence.start(
            self, self._resume_key, derived=self.secret is not None
        )
        try:
            self._server = await serve(
                self._handle,
                self.host,
                self.port,
                max_size=self.limits.max_message_bytes,
                ping_interval=self.ping_interval,
                ping_timeout=self.ping_timeout,
                compression=None,
            )
        except BaseException:
            await self._presence.stop()
            raise
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
        """Close every socket (its peers leave their rooms), then the presence."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
            await self._presence.stop()
        self.rooms.clear()

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

    @property
    def instance(self) -> str | None:
        """This instance's id among those sharing Redis (None without Redis)."""
        return self._presence.instance

    def connections_from(self, address: str) -> int:
        """Open sockets counted for a client address (as the limits see it)."""
        return self._sockets_by_address.get(limit_key(address), 0)

    def joined_from(self, address: str) -> int:
        """Joined peer ids counted for a client address (as the limits see it)."""
        return self._joined_by_address.get(limit_key(address), 0)

    # -- what a shared presence asks of this instance ---------------------------------

    def _replaced(self, client: Client) -> None:
        """A resumed session of its peer id opened on another instance: this one goes."""
        self.stats["taken_over"] += 1
        self._leave(client, announce=False)
        self._close_later(client, "peer-id-taken", "replaced by a resumed session")

    def _lost(self, client: Client) -> None:
        """Redis no longer holds this socket's presence (this instance stalled past
        ``presence_ttl`` and was swept, or Redis lost it): close it, and it rejoins."""
        if client.closing:
            return
        self.stats["presence_lost"] += 1
        log.warning(
            "%s lost its presence in room %r; closing it to rejoin", client.peer_id, client.room
        )
        self._close_later(client, "presence-lost", "presence expired; rejoin")

    def _set_epoch(self, started_wall: float) -> None:
        """The shared state began at ``started_wall``: the restart grace counts from then."""
        started_wall = min(started_wall, time.time())
        self._started_wall = started_wall
        self._started = time.monotonic() - (time.time() - started_wall)

    # -- one connection -----------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        """One socket from handshake to close: address caps, join, then its messages."""
        self.stats["connections"] += 1
        client = Client(ws, address=client_address(ws, self.trusted_proxies))
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
                decrement(self._sockets_by_address, client.address)
            if client.close_task is not None:
                # The closing task sends the close code; returning first would send 1000.
                with contextlib.suppress(Exception):
                    await asyncio.shield(client.close_task)
            await self._stop_writer(client)

    async def _serve_joined(self, client: Client) -> None:
        """Read a joined peer's messages until it goes, falls idle or misbehaves."""
        bucket = Bucket(self.limits.messages_per_second, self.limits.burst)
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
            message = parse(raw)
            credited = self._credited(client, message)
            if not credited and not bucket.take():
                self.stats["rate_limited"] += 1
                await self._error(client, "rate-limited", "too many messages; slow down")
                continue
            await self._message(client, message, credited)

    async def _message(
        self, client: Client, message: dict[str, Any] | None, credited: bool
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
