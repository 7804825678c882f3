"""Client of the signaling service: joins a room, relays offers and answers, reconnects.

The mesh does not depend on it once links are up: when the server goes away the
client keeps trying to reconnect (with exponential backoff) and registers again
under the same peer id, so newcomers after a restart still find this peer. Given
several URLs (instances sharing rooms through Redis) it tries them in turn: the
next one when the one in use drops or cannot be reached, with the same peer id and
resume secret (valid at every instance).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Sequence
from typing import Any, Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from .errors import AuthError, JoinError

__all__ = ["MAX_MESSAGE_BYTES", "SignalingClient", "SignalingHandler"]

log = logging.getLogger("crdt_stores.signaling")

_AUTH_CLOSE_CODE = 4001
_MAX_NAME = 256  # the signaling server's limit on peer ids
_MAX_PEERS = 10_000  # peers a welcome may list (a room holds far fewer)
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""The largest message taken from the signaling server: a welcome lists the whole room.
Worst case at the server's default cap of 1,000 peers: 999 other ids of 256 characters
(the longest allowed), each character astral, which JSON spells in 12 bytes
(``\\ud83d\\ude00``): 999 x (256 x 12 + 3) = 3,071,925 bytes, plus the room name and
the own id (2 x 3,074) and the fixed fields (about 130): 3,078,204 bytes, 2.94 MiB
(``tests/test_signaling_redis.py`` builds that welcome and checks it fits)."""
_ROOM_REFUSALS = frozenset({"peer-id-taken", "room-full", "bad-request", "bad-url"})
"""Refusals every instance would give alike: trying another URL cannot help."""


class SignalingHandler(Protocol):
    def peer_joined(self, peer: str) -> None: ...
    def peer_left(self, peer: str) -> None: ...
    def signal(self, peer: str, data: dict[str, Any]) -> None: ...
    def signaling_restored(self, peers: list[str]) -> None: ...


class SignalingClient:
    """One peer's connection to the signaling server (to one of several instances)."""

    def __init__(
        self,
        url: str | Sequence[str],
        room: str,
        handler: SignalingHandler,
        *,
        peer_id: str | None = None,
        token: str | None = None,
        open_timeout: float = 10.0,
        max_backoff: float = 5.0,
    ) -> None:
        urls = [url] if isinstance(url, str) else list(url)
        if not urls or not all(isinstance(u, str) and u for u in urls):
            raise TypeError("the signaling URL must be a str or a non-empty list of them")
        self.urls = urls
        self._index = 0  # the URL in use (or last tried)
        self.room = room
        self.handler = handler
        self.peer_id = peer_id
        self.token = token
        self.open_timeout = open_timeout
        self.max_backoff = max_backoff
        self.connected = False
        self.resume: str | None = None  # from the welcome: proves a reconnect is this client
        self.heartbeat: float | None = None  # the server closes sockets silent for longer
        self._ws: ClientConnection | None = None
        self._runner: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def url(self) -> str:
        """The signaling URL in use (or tried last)."""
        return self.urls[self._index]

    async def join(self) -> list[str]:
        """Join the room; returns the peers already there. Raises ``JoinError``/``AuthError``.

        With several URLs each is tried once, in order, until one welcomes this peer; a
        refusal any instance would give (a token, a taken id, a full room) ends it."""
        self._ws, peers = await self._join_any()
        self._runner = asyncio.create_task(self._run(), name=f"signaling {self.peer_id}")
        return peers

    async def _join_any(self) -> tuple[ClientConnection, list[str]]:
        failures: list[JoinError] = []
        for step in range(len(self.urls)):
            index = (self._index + step) % len(self.urls)
            try:
                joined = await self._connect_and_join(self.urls[index])
            except JoinError as exc:
                if isinstance(exc, AuthError) or exc.reason in _ROOM_REFUSALS:
                    raise
                failures.append(exc)
                continue
            self._index = index
            return joined
        if len(failures) == 1:
            raise failures[0]
        last = failures[-1]
        raise JoinError(
            "no signaling server welcomed this peer: " + "; ".join(str(e) for e in failures),
            reason=last.reason,
            code=last.code,
        )

    async def _connect_and_join(self, url: str) -> tuple[ClientConnection, list[str]]:
        try:
            ws = await connect(
                url,
                open_timeout=self.open_timeout,
                max_size=MAX_MESSAGE_BYTES,
                ping_interval=5,
                ping_timeout=10,
                compression=None,
            )
        except InvalidURI as exc:
            raise JoinError(f"bad signaling URL {url!r}: {exc}", reason="bad-url") from None
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            raise JoinError(
                f"cannot reach the signaling server at {url}: {exc or type(exc).__name__}",
                reason="unreachable",
            ) from None
        try:
            await ws.send(
                json.dumps(
                    {
                        "type": "join",
                        "room": self.room,
                        "peer_id": self.peer_id,
                        "token": self.token,
                        "resume": self.resume,
                    }
                )
            )
            reply = json.loads(await asyncio.wait_for(ws.recv(), self.open_timeout))
        except ConnectionClosed as exc:
            await ws.close()
            close_code = exc.rcvd.code if exc.rcvd else None
            text = exc.rcvd.reason if exc.rcvd else "connection closed"
            if close_code == _AUTH_CLOSE_CODE:
                raise AuthError(f"join refused: {text}", reason="auth", code=close_code) from None
            raise JoinError(
                f"the signaling server closed the connection: {text}", code=close_code
            ) from None
        except (TimeoutError, ValueError) as exc:
            await ws.close()
            raise JoinError(f"no valid welcome from the signaling server: {exc}") from None
        except BaseException:  # cancelled while waiting for the welcome: no socket left open
            await asyncio.shield(ws.close())
            raise
        if not isinstance(reply, dict) or reply.get("type") != "welcome":
            text = str(reply.get("reason"))[:300] if isinstance(reply, dict) else "unexpected reply"
            name = str(reply.get("code", "refused"))[:64] if isinstance(reply, dict) else "refused"
            # The server closes right after its error: its close code completes the picture.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ws.wait_closed(), 1.0)
            await ws.close()
            close_code = ws.close_code if ws.close_code and 4000 <= ws.close_code < 5000 else None
            if name.startswith("auth") or close_code == _AUTH_CLOSE_CODE:
                raise AuthError(f"join refused: {text}", reason=name, code=close_code)
            raise JoinError(f"join refused: {text}", reason=name, code=close_code)
        try:
            peers = self._welcome(reply)
        except JoinError:
            await ws.close()
            raise
        self.connected = True
        return ws, peers

    def _welcome(self, reply: dict[str, Any]) -> list[str]:
        """Take a welcome in (the server is untrusted too); returns the peers it lists."""
        peer_id = reply.get("peer_id")
        if not isinstance(peer_id, str) or not 0 < len(peer_id) <= _MAX_NAME:
            raise JoinError(
                "the signaling server's welcome has no valid peer id", reason="bad-welcome"
            )
        if self.peer_id is not None and peer_id != self.peer_id:
            raise JoinError(
                f"the signaling server welcomed this peer as {peer_id[:64]!r},"
                f" not {self.peer_id!r}",
                reason="bad-welcome",
            )
        listed = reply.get("peers", [])
        if not isinstance(listed, list):
            raise JoinError("the signaling server's welcome lists no peers", reason="bad-welcome")
        peers = [p for p in listed[:_MAX_PEERS] if isinstance(p, str) and 0 < len(p) <= _MAX_NAME]
        self.peer_id = peer_id
        resume = reply.get("resume")
        self.resume = resume if isinstance(resume, str) and len(resume) <= 128 else None
        heartbeat = reply.get("heartbeat")
        self.heartbeat = None
        number = isinstance(heartbeat, (int, float)) and not isinstance(heartbeat, bool)
        if number and heartbeat > 0:  # type: ignore[operator]  # NaN is not
            # A hostile server must not make this client spin, nor overflow a timer.
            self.heartbeat = min(max(float(heartbeat), 0.2), 3600.0)  # type: ignore[arg-type]
        return [p for p in dict.fromkeys(peers) if p != peer_id]

    async def _run(self) -> None:
        """Read messages; when the server goes away, reconnect with backoff (to the next
        URL first: the one that dropped may be gone; the delay doubles after each round)."""
        while not self._closing:
            assert self._ws is not None
            beat = asyncio.create_task(self._heartbeat(self._ws))
            try:
                async for raw in self._ws:
                    self._dispatch(raw)
            except ConnectionClosed:
                pass
            finally:
                beat.cancel()
            self.connected = False
            if self._closing:
                return
            log.warning("lost the signaling server %s; the mesh carries on, reconnecting", self.url)
            delay = 0.2
            first = self._index
            while not self._closing:
                await asyncio.sleep(delay * (0.75 + random.random() / 2))
                self._index = (self._index + 1) % len(self.urls)
                try:
                    self._ws, peers = await self._connect_and_join(self.url)
                except AuthError as exc:
                    log.error("signaling refused the rejoin (%s); staying off signaling", exc)
                    return
                except JoinError as exc:
                    log.debug("signaling reconnect failed: %s", exc)
                    if self._index == first:  # a whole round of URLs failed
                        delay = min(delay * 2, self.max_backoff)
                    continue
                log.info("signaling server %s is back; registered again", self.url)
                self.handler.signaling_restored(peers)
                break

    async def _heartbeat(self, ws: ClientConnection) -> None:
        """Tell the server this socket is alive (it expires silent ones), as often as it asks."""
        if self.heartbeat is None:
            return
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(self.heartbeat)
                await ws.send('{"type":"ping"}')

    def _dispatch(self, raw: str | bytes) -> None:
        try:
            message = json.loads(raw)
            kind = message["type"]
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed message from the signaling server")
            return
        try:
            peer = message.get("peer_id") if kind != "signal" else message.get("from")
            if kind in ("peer-joined", "peer-left", "signal") and not (
                isinstance(peer, str) and 0 < len(peer) <= _MAX_NAME and peer != self.peer_id
            ):
                log.warning("ignored a %r message naming no valid peer", kind)
                return
            if kind == "peer-joined":
                self.handler.peer_joined(peer)
            elif kind == "peer-left":
                self.handler.peer_left(peer)
            elif kind == "signal" and isinstance(message.get("data"), dict):
                self.handler.signal(peer, message["data"])
            elif kind == "error":
                log.info("signaling error %s: %s", message.get("code"), message.get("reason"))
        except Exception:
            log.exception("error handling a %r message from the signaling server", kind)

    async def signal(self, peer: str, data: dict[str, Any]) -> bool:
        """Send an offer or answer to ``peer``; False when signaling is down."""
        ws = self._ws
        if ws is None or not self.connected:
            return False
        try:
            await ws.send(json.dumps({"type": "signal", "to": peer, "data": data}))
        except ConnectionClosed:
            return False
        return True

    async def close(self) -> None:
        self._closing = True
        if self._ws is not None:
            await self._ws.close()
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._runner
