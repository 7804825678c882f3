"""``Meeting``: a participant of a room and its stores (the user's object; ``driver`` runs it)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Literal

from .driver import Driver, State
from .errors import AuthError
from .mesh import MeshConfig
from .protocol import SyncConfig, SyncEngine
from .store import Stores
from .transport.base import Transport

__all__ = ["Meeting", "PeerEvent"]

PeerEvent = Literal["peer_joined", "peer_left", "peer_misbehaved", "signal_refused"]
_CONFIG_FIELDS = {f.name for f in dataclasses.fields(SyncConfig)}


class Meeting:
    """One participant of a meeting room, with the room's replicated stores.

    ``async with Meeting(url, room=...) as meeting`` joins through the signaling
    server at ``url`` (or a list of URLs of instances sharing rooms: tried in turn,
    and failed over to) and links to the other peers over WebRTC. ``transport=``
    gives it another network instead (``crdt_stores.memory.MemoryNetwork().join(room)``
    builds a meeting over an in-process one that way).
    """

    def __init__(
        self,
        url: str | Sequence[str] | None = None,
        room: str | None = None,
        *,
        token: str | None = None,
        peer_id: str | None = None,
        ice_servers: list[Any] | None = None,
        ice_addresses: list[str] | None = None,
        room_key: str | bytes | None = None,
        transport: Transport | None = None,
        flush_interval: float = 0.005,
        max_buffered_bytes: int = 4 * 1024 * 1024,
        transport_options: dict[str, Any] | None = None,
        mesh: MeshConfig | None = None,
        **config: Any,
    ) -> None:
        if not isinstance(room, str) or not room:
            raise TypeError("Meeting needs a room name (a non-empty str)")
        if token is not None and peer_id is None:
            peer_id = _token_subject(token)  # the same id whether the server checks tokens or not
        if transport is not None and not isinstance(transport, Transport):
            raise TypeError("transport must be a crdt_stores.transport.base.Transport")
        unknown = set(config) - _CONFIG_FIELDS
        if unknown:
            raise TypeError(f"unknown Meeting option(s): {', '.join(sorted(unknown))}")
        self._url = url
        self._room = room
        self._token = token
        self._requested_peer_id = peer_id
        self._ice_servers = ice_servers
        self._ice_addresses = ice_addresses
        self._room_key = room_key
        self._transport_options: dict[str, Any] = dict(transport_options or {})
        self._transport = transport
        self._driver = Driver(
            SyncConfig(**config),
            flush_interval=float(flush_interval),
            max_buffered=int(max_buffered_bytes),
            mesh=mesh,
        )
        self._stores = Stores(self._driver)
        self._driver.stores = self._stores

    # -- joining and leaving ------------------------------------------------------

    @classmethod
    async def join(
        cls,
        url: str | Sequence[str] | None,
        room: str,
        *,
        token: str | None = None,
        peer_id: str | None = None,
        **options: Any,
    ) -> Meeting:
        """Join ``room`` through the signaling server at ``url`` (or over ``transport=``);
        returns the joined meeting."""
        meeting = cls(url, room, token=token, peer_id=peer_id, **options)
        await meeting._start()
        return meeting

    async def __aenter__(self) -> Meeting:
        await self._start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.leave()

    async def _start(self) -> None:
        driver = self._driver
        if driver.state != "new":
            raise RuntimeError("this Meeting has already been joined")
        driver.begin(self._requested_peer_id or "")
        try:
            if self._transport is None:
                self._transport = self._webrtc_transport()
            driver.transport = self._transport
            await self._transport.start(driver)
        except BaseException as exc:
            # A failed or cancelled join leaves nothing open: signaling socket, connections.
            left_meanwhile = driver.state == "left"  # leave() closed what join was using
            driver.state = "left"
            if not left_meanwhile:
                driver.engine = None
            if self._transport is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._transport.close())
            if left_meanwhile and isinstance(exc, Exception):
                return
            raise
        if driver.state != "joining":
            return  # leave() was called while joining: it closed the transport; stay left
        driver.joined()

    def _webrtc_transport(self) -> Transport:
        if not self._url:
            raise TypeError("Meeting needs the signaling server URL (or a transport)")
        from .transport.webrtc import WebRTCTransport

        return WebRTCTransport(
            self._url,
            self._room,
            token=self._token,
            peer_id=self._requested_peer_id,
            ice_servers=self._ice_servers,
            ice_addresses=self._ice_addresses,
            room_key=self._room_key,
            **self._transport_options,
        )

    async def leave(self) -> None:
        """Leave the room: queued changes are delivered, then every link closes.

        Local data stays readable; writes raise afterwards. When the last peer of a
        room leaves, the room's data is gone (nothing else holds it).
        """
        driver = self._driver
        if driver.state in ("new", "left"):
            driver.state = "left"
            return
        driver.stop()
        if self._transport is not None:
            await self._transport.close()
        driver.fail_waiters("the meeting was left before it synced")

    # -- properties ---------------------------------------------------------------

    @property
    def peer_id(self) -> str:
        if self._transport is None or self._driver.state in ("new", "joining"):
            raise RuntimeError("the meeting has not been joined yet")
        return self._transport.peer_id

    @property
    def room(self) -> str:
        return self._room

    @property
    def peers(self) -> list[str]:
        """Ids of the peers this participant is linked to right now."""
        engine = self._driver.engine
        return [] if engine is None else engine.peers

    @property
    def room_peers(self) -> list[str]:
        """Ids of every other peer in the room as signaling lists them, linked or not.
        In a small room these are ``peers``; in a large one (past
        ``MeshConfig.full_mesh_max``) this peer links to a few of them only."""
        transport = self._transport
        return [] if transport is None else sorted(transport.present_peers())

    @property
    def stores(self) -> Stores:
        self._driver.engine_or_raise()
        return self._stores

    @property
    def joined(self) -> bool:
        return self._driver.state == "joined"

    @property
    def stats(self) -> dict[str, int]:
        """Counters of the sync engine (frames, bytes, dropped input by reason...) and of
        the transport (``signals_refused``, ``offers_answered``...)."""
        engine = self._driver.engine
        counters = {} if engine is None else dict(engine.stats)
        if self._transport is not None:
            counters.update(self._transport.stats)
        return counters

    @property
    def _engine(self) -> SyncEngine | None:  # white-box access for tests and benchmarks
        return self._driver.engine

    @property
    def _state(self) -> State:
        return self._driver.state

    def __repr__(self) -> str:
        engine = self._driver.engine
        who = self._transport.peer_id if self._transport and engine else "?"
        state = self._driver.state
        return f"<Meeting room={self._room!r} peer={who!r} {state} peers={self.peers}>"

    # -- peer events --------------------------------------------------------------

    def on(self, event: PeerEvent, callback: Callable[..., Any]) -> None:
        """Call ``callback(peer_id)`` on ``"peer_joined"`` or ``"peer_left"``, and
        ``callback(peer_id, reason)`` on ``"peer_misbehaved"`` (a link closed after too
        much invalid input; ``reason`` names the last violation) and on
        ``"signal_refused"`` (an offer or answer claiming to come from ``peer_id`` was
        refused: a seal that does not verify, a replay, a flood). May be async."""
        self._driver.listen(event, callback)

    def off(self, event: PeerEvent, callback: Callable[..., Any]) -> None:
        self._driver.unlisten(event, callback)

    # -- sync status --------------------------------------------------------------

    async def synced(self, timeout: float | None = None) -> list[str]:
        """Wait until this peer and every linked peer hold the same state of every store.

        Each linked peer must have acknowledged holding all of this peer's state
        (acks carry state vectors), and this peer must hold all the state each of
        them reported: after ``synced()`` a late joiner has the whole room. Peers
        that leave, or are dropped as dead, stop counting: the agreement covers the
        peers it returns (sorted ids of the peers linked when it was reached), so
        compare them with the peers you expect. With no link while signaling says
        others are in the room it waits: being cut off is not agreement. Raises
        ``TimeoutError`` after ``timeout`` seconds.

        In a large room (a bounded mesh) the linked peers are this peer's
        neighbours: it then means that they and this peer hold the same state at
        that moment, so this peer's writes are on their way through the room (each
        peer forwards what it applies). No peer can wait for the whole room.
        """
        return await self._driver.synced(timeout)


def _token_subject(token: object) -> str | None:
    """The peer id a join token names (read, not verified: the server verifies it)."""
    import jwt

    if not isinstance(token, str):
        raise TypeError(f"token must be a str, not {type(token).__name__}")
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise AuthError(
            "malformed token (not a JWT: three base64url parts)", reason="auth-invalid"
        ) from None
    subject = claims.get("sub") if isinstance(claims, dict) else None
    return subject if isinstance(subject, str) and subject else None
