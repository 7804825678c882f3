"""``Meeting``: a participant of a room, its stores, and the loop that drives sync."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
from collections.abc import Callable
from typing import Any, Literal

from .errors import AuthError
from .protocol import SyncConfig, SyncEngine
from .store import Stores
from .transport.base import Transport

__all__ = ["Meeting", "PeerEvent"]

log = logging.getLogger("crdt_stores")

PeerEvent = Literal["peer_joined", "peer_left", "peer_misbehaved", "signal_refused"]
_EVENTS: tuple[str, ...] = ("peer_joined", "peer_left", "peer_misbehaved", "signal_refused")
_CONFIG_FIELDS = {f.name for f in dataclasses.fields(SyncConfig)}
_BUSY_BATCH = 8  # local deltas in one flush that mean "writes are streaming"


class Meeting:
    """One participant of a meeting room, with the room's replicated stores.

    ``async with Meeting(url, room=...) as meeting`` joins through the signaling
    server at ``url`` and links to the other peers over WebRTC;
    ``crdt_stores.memory.MemoryNetwork().join(room)`` gives the same object over an
    in-process network.
    """

    def __init__(
        self,
        url: str | None = None,
        room: str | None = None,
        *,
        token: str | None = None,
        peer_id: str | None = None,
        ice_servers: list[Any] | None = None,
        ice_addresses: list[str] | None = None,
        room_key: str | bytes | None = None,
        **options: Any,
    ) -> None:
        if not isinstance(room, str) or not room:
            raise TypeError("Meeting needs a room name (a non-empty str)")
        if token is not None and peer_id is None:
            peer_id = _token_subject(token)  # the same id whether the server checks tokens or not
        self._url = url
        self._room = room
        self._token = token
        self._requested_peer_id = peer_id
        self._ice_servers = ice_servers
        self._ice_addresses = ice_addresses
        self._room_key = room_key
        self._tick_interval = float(options.pop("tick_interval", 0.05))
        self._flush_interval = float(options.pop("flush_interval", 0.005))
        self._max_buffered = int(options.pop("max_buffered_bytes", 4 * 1024 * 1024))
        self._transport_options: dict[str, Any] = options.pop("transport_options", {})
        config = {k: options.pop(k) for k in list(options) if k in _CONFIG_FIELDS}
        if options:
            raise TypeError(f"unknown Meeting option(s): {', '.join(sorted(options))}")
        self._config = SyncConfig(**config)
        self._transport: Transport | None = None
        self._engine: SyncEngine | None = None
        self._stores = Stores(self)
        self._state: Literal["new", "joining", "joined", "left"] = "new"
        self._listeners: dict[str, list[Callable[..., Any]]] = {e: [] for e in _EVENTS}
        self._waiters: list[asyncio.Future[list[str]]] = []
        # Present per signaling but known not to link (dead per heartbeat, closed for
        # misbehaving, signals refused), until they do link: synced() does not wait for them.
        self._unreachable: set[str] = set()
        self._flush_scheduled = False
        self._last_flush = 0.0
        self._congested = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- joining and leaving ------------------------------------------------------

    @classmethod
    async def join(
        cls,
        url: str,
        room: str,
        *,
        token: str | None = None,
        peer_id: str | None = None,
        **options: Any,
    ) -> Meeting:
        """Join ``room`` through the signaling server at ``url``; returns the joined meeting."""
        meeting = cls(url, room, token=token, peer_id=peer_id, **options)
        await meeting._start()
        return meeting

    @classmethod
    async def _join_with(cls, transport: Transport, room: str, **options: Any) -> Meeting:
        meeting = cls(None, room, **options)
        meeting._transport = transport
        await meeting._start()
        return meeting

    async def __aenter__(self) -> Meeting:
        await self._start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.leave()

    async def _start(self) -> None:
        if self._state != "new":
            raise RuntimeError("this Meeting has already been joined")
        self._state = "joining"
        self._loop = asyncio.get_running_loop()
        # The engine exists before the transport starts: links may open while joining.
        # Its peer id is settled once the transport knows it (signaling may assign it).
        self._engine = SyncEngine(
            self._requested_peer_id or "",
            self._config,
            on_store_added=self._stores._added,
            on_link_dead=self._link_dead,
        )
        try:
            if self._transport is None:
                self._transport = self._webrtc_transport()
            await self._transport.start(self)
        except BaseException as exc:
            # A failed or cancelled join leaves nothing open: signaling socket, connections.
            left_meanwhile = self._state == "left"  # leave() closed what join was using
            self._state = "left"
            if not left_meanwhile:
                self._engine = None
            if self._transport is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._transport.close())
            if left_meanwhile and isinstance(exc, Exception):
                return
            raise
        if self._state != "joining":
            return  # leave() was called while joining: it closed the transport; stay left
        self._engine.peer_id = self._transport.peer_id
        self._state = "joined"
        self._ticker = asyncio.create_task(
            self._tick_loop(), name=f"crdt-stores tick {self.peer_id}"
        )

    def _webrtc_transport(self) -> Transport:
        if not self._url:
            raise TypeError("Meeting needs the signaling server URL")
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
        if self._state in ("new", "left"):
            self._state = "left"
            return
        self._state = "left"
        if self._ticker is not None:
            self._ticker.cancel()
        self._flush()
        if self._transport is not None:
            await self._transport.close()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(RuntimeError("the meeting was left before it synced"))

    # -- properties ---------------------------------------------------------------

    @property
    def peer_id(self) -> str:
        if self._transport is None or self._state in ("new", "joining"):
            raise RuntimeError("the meeting has not been joined yet")
        return self._transport.peer_id

    @property
    def room(self) -> str:
        return self._room

    @property
    def peers(self) -> list[str]:
        """Ids of the peers this participant is linked to right now."""
        return [] if self._engine is None else self._engine.peers

    @property
    def stores(self) -> Stores:
        self._engine_or_raise()
        return self._stores

    @property
    def joined(self) -> bool:
        return self._state == "joined"

    @property
    def stats(self) -> dict[str, int]:
        """Counters of the sync engine (frames, bytes, dropped input by reason...) and of
        the transport (``signals_refused``, ``offers_answered``...)."""
        counters = {} if self._engine is None else dict(self._engine.stats)
        if self._transport is not None:
            counters.update(self._transport.stats)
        return counters

    def __repr__(self) -> str:
        who = self._transport.peer_id if self._transport and self._engine else "?"
        return f"<Meeting room={self._room!r} peer={who!r} {self._state} peers={self.peers}>"

    # -- peer events --------------------------------------------------------------

    def on(self, event: PeerEvent, callback: Callable[..., Any]) -> None:
        """Call ``callback(peer_id)`` on ``"peer_joined"`` or ``"peer_left"``, and
        ``callback(peer_id, reason)`` on ``"peer_misbehaved"`` (a link closed after too
        much invalid input; ``reason`` names the last violation) and on
        ``"signal_refused"`` (an offer or answer claiming to come from ``peer_id`` was
        refused: a seal that does not verify, a replay, a flood). May be async."""
        if event not in self._listeners:
            raise ValueError(f"unknown event {event!r}; known: {', '.join(_EVENTS)}")
        if callback not in self._listeners[event]:
            self._listeners[event].append(callback)

    def off(self, event: PeerEvent, callback: Callable[..., Any]) -> None:
        listeners = self._listeners.get(event, [])
        if callback in listeners:
            listeners.remove(callback)

    def _emit(self, event: str, *args: str) -> None:
        for callback in list(self._listeners[event]):
            self._call(callback, *args)

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
        """
        engine = self._engine_or_raise()
        self._flush()
        if self._agreed():
            return sorted(engine.peers)
        waiter: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        engine.want_acks(True)  # acks go out at once while someone waits
        self._schedule_flush()
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except TimeoutError:
            raise TimeoutError(
                f"not synced after {timeout} s with peers {engine.unsynced_peers()}"
            ) from None
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            if not self._waiters:
                engine.want_acks(False)

    def _agreed(self) -> bool:
        """Synced, and not merely alone: no links while others are in the room is no agreement."""
        engine = self._engine
        if engine is None or not engine.is_synced():
            return False
        if engine.peers or self._transport is None:
            return True
        # Peers known not to link count as gone, even while signaling (down, or slow
        # to notice) still lists them: waiting for them could be forever.
        return not self._transport.present_peers() - self._unreachable

    def _check_synced(self) -> None:
        if self._waiters and self._engine is not None and self._agreed():
            covered = sorted(self._engine.peers)
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_result(covered)
            self._waiters.clear()
            self._engine.want_acks(False)

    # -- transport callbacks (TransportHandler) -------------------------------------

    def link_up(self, peer: str) -> None:
        if self._engine is None or self._state not in ("joining", "joined"):
            return
        if self._transport is not None:
            self._engine.peer_id = self._transport.peer_id  # settled by now (signaling)
        replaced = peer in self._engine.peers  # a new connection took over: no news
        self._engine.link_up(peer, self._now())
        self._unreachable.discard(peer)
        if not replaced:
            self._emit("peer_joined", peer)
        self._schedule_flush()

    def link_down(self, peer: str) -> None:
        if self._engine is None:
            return
        if self._engine.link_down(peer):
            self._emit("peer_left", peer)
        self._check_synced()
        self._schedule_flush()

    def frame(self, peer: str, data: bytes) -> None:
        if self._engine is None:
            return
        self._engine.receive(peer, data, self._now())
        self._engine_events()
        if self._engine.has_output():
            self._schedule_flush()
        elif self._waiters:
            self._check_synced()

    def signal_refused(self, peer: str, reason: str) -> None:
        if peer not in self.peers:
            self._unreachable.add(peer)
        self._emit("signal_refused", peer, reason)

    def _engine_events(self) -> None:
        """Act on what the engine reports: links it closed for misbehaving."""
        assert self._engine is not None
        for event in self._engine.take_events():
            log.warning("peer %s misbehaved (%s); its link is closed", event.peer, event.reason)
            self._unreachable.add(event.peer)
            self._emit("peer_left", event.peer)
            self._emit("peer_misbehaved", event.peer, event.reason)
            if self._transport is not None:
                self._transport.close_link(event.peer)
            self._check_synced()

    def _link_dead(self, peer: str) -> None:
        log.info("peer %s missed its heartbeats; closing the link", peer)
        self._unreachable.add(peer)
        self._emit("peer_left", peer)
        self._check_synced()
        if self._transport is not None:
            self._transport.close_link(peer)

    # -- internals ----------------------------------------------------------------

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _engine_or_raise(self) -> SyncEngine:
        if self._engine is None:
            raise RuntimeError("the meeting has not been joined yet (use `async with` or join())")
        return self._engine

    def _check_writable(self) -> None:
        if self._state != "joined":
            raise RuntimeError(f"cannot write: the meeting is {self._state}")

    def _committed(self, name: str) -> None:
        """After a local write: queue its delta for every link."""
        engine = self._engine_or_raise()
        engine.commit(name)
        if engine.pending_bytes() > self._max_buffered:
            self._flush()
        else:
            self._schedule_flush()

    async def _backpressure(self) -> None:
        """What awaiting a write waits for: send queues back under the limit."""
        if self._congested and self._transport is not None:
            await self._transport.drain(self._max_buffered // 2)
            self._congested = self._transport.buffered_amount() > self._max_buffered

    def _schedule_flush(self) -> None:
        if self._flush_scheduled or self._loop is None:
            return
        self._flush_scheduled = True
        # Under a sustained stream of writes (the last flush carried many deltas),
        # waiting up to flush_interval batches more changes per packet; a single
        # write after a quiet spell goes out at the end of this tick, so latency stays.
        wait = self._last_flush + self._flush_interval - self._loop.time()
        engine = self._engine
        if wait > 0 and engine is not None and engine.last_batch >= _BUSY_BATCH:
            self._loop.call_later(wait, self._flush)
        else:
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._loop is not None:
            self._last_flush = self._loop.time()
        engine = self._engine
        transport = self._transport
        if engine is None or transport is None:
            return
        for peer, frame in engine.data_to_send(self._now()):
            transport.send(peer, frame)
        self._engine_events()
        # Checked here, not on every write: writes wait while the network is behind.
        self._congested = transport.buffered_amount() > self._max_buffered
        self._check_synced()

    async def _tick_loop(self) -> None:
        engine = self._engine_or_raise()
        while True:
            await asyncio.sleep(self._tick_interval)
            try:
                transport = self._transport
                if transport is not None:
                    for peer in engine.peers:
                        heard = transport.last_heard(peer)
                        if heard is not None:
                            engine.heard(peer, heard)
                        engine.backlog(peer, transport.buffered_to(peer))
                engine.tick(self._now())
                self._engine_events()
                self._flush()
            except Exception:
                log.exception("error in the sync timer")

    def _call(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run a user callback; an exception is logged, a coroutine becomes a task."""
        try:
            result = callback(*args)
        except Exception:
            log.exception("callback %r raised", callback)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("async callback raised", exc_info=task.exception())


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
