"""The signaling service: introduces the peers of a room to each other, holds no data.

Protocol (JSON text messages over one WebSocket per peer):

* client ``{"type": "join", "room": R, "peer_id": P | null, "token": T | null}``,
  server ``{"type": "welcome", "peer_id": P, "room": R, "peers": [...], "auth": bool}``;
  the others in the room get ``{"type": "peer-joined", "peer_id": P}``;
* client ``{"type": "signal", "to": Q, "data": {...}}``, delivered to Q only as
  ``{"type": "signal", "from": P, "data": {...}}`` — the server stamps the sender;
* when a peer's socket closes the others get ``{"type": "peer-left", "peer_id": P}``;
* anything wrong gets ``{"type": "error", "code": C, "reason": "..."}``; a refused
  join also closes the socket with a 4xxx close code (see ``CLOSE_CODES``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from .tokens import DEFAULT_MAX_TTL, MAX_NAME_LENGTH, TokenError, verify_token

__all__ = ["CLOSE_CODES", "Limits", "SignalingServer"]

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
    "peer-id-taken": 4009,
    "join-timeout": 4010,
}


@dataclass(frozen=True)
class Limits:
    """What one connection may do."""

    max_message_bytes: int = 64 * 1024
    max_peers_per_room: int = 64
    messages_per_second: float = 20.0
    burst: int = 60
    max_violations: int = 20  # rate-limit or protocol errors before the socket is closed
    join_timeout: float = 10.0
    max_pending_sends: int = 256


class _Bucket:
    """Token bucket: ``rate`` messages per second, bursts of ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@dataclass(eq=False)
class _Client:
    ws: ServerConnection
    room: str = ""
    peer_id: str = ""
    violations: int = 0
    outbox: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    writer: asyncio.Task[None] | None = None


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
    ) -> None:
        self.host = host
        self.port = port
        self.secret = secret or None
        self.max_token_ttl = max_token_ttl
        self.limits = limits or Limits()
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.rooms: dict[str, dict[str, _Client]] = {}
        self.stats: dict[str, int] = {"connections": 0, "joins": 0, "errors": 0, "signals": 0}
        self._server: Server | None = None
        self._closing: set[asyncio.Future[None]] = set()

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    async def start(self) -> None:
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

    # -- one connection -----------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        self.stats["connections"] += 1
        client = _Client(ws)
        client.writer = asyncio.create_task(self._writer(client))
        bucket = _Bucket(self.limits.messages_per_second, self.limits.burst)
        try:
            try:
                first = await asyncio.wait_for(ws.recv(), self.limits.join_timeout)
            except TimeoutError:
                await self._refuse(client, "join-timeout", "no join message in time")
                return
            if not await self._join(client, first):
                return
            async for raw in ws:
                if not bucket.take():
                    if await self._error(client, "rate-limited", "too many messages; slow down"):
                        return
                    continue
                await self._message(client, raw)
                if client.violations > self.limits.max_violations:
                    await self._refuse(client, "bad-request", "too many bad messages")
                    return
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("signaling connection failed")
        finally:
            self._leave(client)
            await self._stop_writer(client)

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
        if client.outbox.qsize() >= self.limits.max_pending_sends:
            log.warning("peer %s is not reading its messages; closing it", client.peer_id)
            closing = asyncio.ensure_future(
                client.ws.close(CLOSE_CODES["rate-limited"], "send queue full")
            )
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
            return
        client.outbox.put_nowait(json.dumps(message, separators=(",", ":")))

    async def _error(self, client: _Client, code: str, reason: str) -> bool:
        """Reply with an error; returns True when the connection got closed for it."""
        self.stats["errors"] += 1
        client.violations += 1
        self._send(client, {"type": "error", "code": code, "reason": reason})
        if client.violations > self.limits.max_violations:
            await self._refuse(client, code, "too many errors: " + reason)
            return True
        return False

    async def _refuse(self, client: _Client, code: str, reason: str) -> None:
        self.stats["errors"] += 1
        self._send(client, {"type": "error", "code": code, "reason": reason})
        await self._stop_writer(client)  # the error reply goes out before the close frame
        await client.ws.close(CLOSE_CODES.get(code, 4000), reason[:120])

    async def _join(self, client: _Client, raw: str | bytes) -> bool:
        message = _parse(raw)
        if message is None or message.get("type") != "join":
            await self._refuse(client, "bad-request", "the first message must be a JSON join")
            return False
        room = message.get("room")
        peer_id = message.get("peer_id")
        if not isinstance(room, str) or not _name(room):
            await self._refuse(client, "bad-request", "join needs a room (a non-empty string)")
            return False
        if peer_id is not None and (not isinstance(peer_id, str) or not _name(peer_id)):
            await self._refuse(client, "bad-request", "peer_id must be a non-empty string")
            return False
        if self.secret is not None:
            try:
                peer_id = verify_token(
                    self.secret, message.get("token"), room, peer_id, self.max_token_ttl
                )
            except TokenError as exc:
                log.info("refused a join of room %r: %s", room, exc.reason)
                await self._refuse(client, exc.code, exc.reason)
                return False
        members = self.rooms.setdefault(room, {})
        if peer_id is None:
            peer_id = secrets.token_hex(6)
        if peer_id in members:
            await self._refuse(
                client, "peer-id-taken", f"peer id {peer_id!r} is already in the room"
            )
            self._drop_empty(room)
            return False
        if len(members) >= self.limits.max_peers_per_room:
            await self._refuse(client, "room-full", f"room {room!r} is full")
            self._drop_empty(room)
            return False
        client.room = room
        client.peer_id = peer_id
        peers = list(members)
        members[peer_id] = client
        self.stats["joins"] += 1
        self._send(
            client,
            {
                "type": "welcome",
                "peer_id": peer_id,
                "room": room,
                "peers": peers,
                "auth": self.secret is not None,
            },
        )
        for other in peers:
            self._send(members[other], {"type": "peer-joined", "peer_id": peer_id})
        log.info("%s joined room %r (%d peers)", peer_id, room, len(members))
        return True

    async def _message(self, client: _Client, raw: str | bytes) -> None:
        message = _parse(raw)
        if message is None:
            await self._error(client, "bad-request", "messages must be JSON objects")
            return
        kind = message.get("type")
        if kind == "signal":
            target = message.get("to")
            data = message.get("data")
            if not isinstance(target, str) or not isinstance(data, dict):
                await self._error(
                    client, "bad-request", "signal needs 'to' (a peer id) and 'data' (an object)"
                )
                return
            members = self.rooms.get(client.room, {})
            recipient = members.get(target)
            if recipient is None or recipient is client:
                await self._error(client, "no-such-peer", f"no peer {target!r} in this room")
                return
            self.stats["signals"] += 1
            self._send(recipient, {"type": "signal", "from": client.peer_id, "data": data})
        elif kind == "ping":
            self._send(client, {"type": "pong"})
        elif kind == "join":
            await self._error(client, "bad-request", "already joined")
        else:
            await self._error(client, "bad-request", f"unknown message type {kind!r}")

    def _leave(self, client: _Client) -> None:
        members = self.rooms.get(client.room)
        if not members or members.get(client.peer_id) is not client:
            return
        del members[client.peer_id]
        for other in members.values():
            self._send(other, {"type": "peer-left", "peer_id": client.peer_id})
        log.info("%s left room %r (%d peers)", client.peer_id, client.room, len(members))
        self._drop_empty(client.room)

    def _drop_empty(self, room: str) -> None:
        if not self.rooms.get(room):
            self.rooms.pop(room, None)


def _parse(raw: str | bytes) -> dict[str, Any] | None:
    try:
        message = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return message if isinstance(message, dict) else None


def _name(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_NAME_LENGTH
