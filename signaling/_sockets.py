"""One socket each: what the server tracks for it, its ordered outbox, errors counted
against its violation budget, and closing it with the 4xxx code of the refusal."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from ._budgets import Bucket
from .limits import CLOSE_CODES, Limits

__all__ = ["Client", "Sockets", "parse"]

log = logging.getLogger("signaling")

REFUSE_CLOSE_TIMEOUT = 1.0  # a socket refused at the door gets this long to close, then cut


@dataclass(eq=False)
class Client:
    """One socket and what the server tracks for it: room, id, budgets, closing state."""

    ws: ServerConnection
    address: str = ""
    room: str = ""
    peer_id: str = ""
    resume: str = ""
    session: str = ""  # this socket's hold on its peer id (a resumed socket gets a new one)
    seen: int = 0  # with Redis: the room's last event this socket has been told (or needs not)
    violations: int = 0
    joined: bool = False
    closing: bool = False  # the server is closing it: it no longer speaks in its room
    counted: bool = False  # counted in its address's open sockets
    outbox: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    writer: asyncio.Task[None] | None = None
    close_task: asyncio.Task[None] | None = None
    inbound: Bucket | None = None  # signals it may receive
    pair_buckets: dict[str, Bucket] = field(default_factory=dict)  # signals it may send, per peer
    credits: dict[str, int] = field(default_factory=dict)  # answers it may send, per peer


class Sockets:
    """The socket layer of ``SignalingServer`` (state set up by its ``__init__``)."""

    limits: Limits
    stats: dict[str, int]
    _pending: dict[Client, None]  # not yet joined, oldest first
    _tasks: set[asyncio.Task[None]]

    def _admit_pending(self, client: Client) -> None:
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

    async def _stop_writer(self, client: Client) -> None:
        """Let the writer send what is queued (bounded), then stop it."""
        client.outbox.put_nowait(None)
        writer = client.writer
        if writer is not None and not writer.done():
            try:
                await asyncio.wait_for(asyncio.shield(writer), 1.0)
            except TimeoutError:
                writer.cancel()

    async def _writer(self, client: Client) -> None:
        """Sends queued messages in order; a slow reader never blocks other peers."""
        while True:
            message = await client.outbox.get()
            if message is None:
                return
            try:
                await client.ws.send(message)
            except ConnectionClosed:
                return

    def _send(self, client: Client, message: dict[str, Any]) -> None:
        if client.closing:
            return
        if client.outbox.qsize() >= self.limits.max_pending_sends:
            self.stats["send_queue_full"] += 1
            log.warning("peer %s is not reading its messages; closing it", client.peer_id)
            self._close_later(client, "rate-limited", "send queue full")
            return
        client.outbox.put_nowait(json.dumps(message, separators=(",", ":")))

    async def _error(
        self, client: Client, code: str, reason: str, *, violation: bool = True
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

    def _evict(self, client: Client) -> None:
        """Take a socket the server is closing out of the join queue (and its room), now."""
        client.closing = True
        self._pending.pop(client, None)

    async def _refuse(
        self,
        client: Client,
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
        self, client: Client, code: str, reason: str, close_reason: str | None = None
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
        self, client: Client, code: str, reason: str, close_reason: str | None, quick: bool
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


def parse(raw: str | bytes) -> dict[str, Any] | None:
    """A client's message as a JSON object, or None if it is not one."""
    try:
        message = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return message if isinstance(message, dict) else None


def _close_text(reason: str) -> str:
    """A close reason within the 123 bytes a close frame has room for."""
    return reason.encode()[:120].decode(errors="ignore")
