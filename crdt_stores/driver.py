"""The asyncio driver of a meeting: feeds the sync engine, sends its frames, runs its timer
and dispatches its events to subscribers and listeners after each engine call returns.

It is the transport's handler (``link_up``, ``link_down``, ``frame``,
``signal_refused``) and the stores' session (``write``, ``create_store``), so
neither the transport nor a ``Store`` reaches into ``Meeting``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any, Literal, Protocol

from .events import LinkDead, PeerMisbehaved, StoreAdded, StoreChanged
from .mesh import MeshConfig, Topology
from .protocol import SyncConfig, SyncEngine
from .replica import StoreReplica
from .transport.base import Transport

__all__ = ["PEER_EVENTS", "Driver", "State", "StoreRegistry"]

log = logging.getLogger("crdt_stores")

State = Literal["new", "joining", "joined", "left"]
PEER_EVENTS: tuple[str, ...] = ("peer_joined", "peer_left", "peer_misbehaved", "signal_refused")


class StoreRegistry(Protocol):
    """Where store events go: the user's ``Stores`` (kept above the driver)."""

    def attach(self, replica: StoreReplica) -> None:
        """A store now exists in the engine."""

    def deliver(self, name: str, changes: dict[str, Any]) -> None:
        """Values of store ``name`` changed: call its subscribers."""


_BUSY_BATCH = 8  # local deltas in one flush that mean "writes are streaming"
_MIN_SLEEP = 0.001  # the timer never spins: a deadline already past waits this long
# While someone awaits synced(), agreement is re-checked at least this often: the room's
# presence (signaling) can change it without any engine deadline or frame.
_WAITING_POLL = 0.05


class Driver:
    """Runs one ``SyncEngine`` over one ``Transport`` on the running event loop."""

    def __init__(
        self,
        config: SyncConfig,
        *,
        flush_interval: float,
        max_buffered: int,
        mesh: MeshConfig | None = None,
    ) -> None:
        self.config = config
        self.topology = Topology(mesh)
        self.engine: SyncEngine | None = None
        self.transport: Transport | None = None
        self.state: State = "new"
        self.stores: StoreRegistry | None = None  # set by the meeting
        self._flush_interval = flush_interval
        self._max_buffered = max_buffered
        self._listeners: dict[str, list[Callable[..., Any]]] = {e: [] for e in PEER_EVENTS}
        self._waiters: list[asyncio.Future[list[str]]] = []
        # Present per signaling but known not to link (dead per heartbeat, closed for
        # misbehaving, signals refused), until they do link: synced() does not wait for them.
        self._unreachable: set[str] = set()
        self._emit_local = False  # the write being applied asked its own subscribers
        self._flush_scheduled = False
        self._last_flush = 0.0
        self.congested = False  # send queues over their limit: awaiting a write waits
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- life cycle -----------------------------------------------------------------

    def begin(self, peer_id: str) -> SyncEngine:
        """Joining starts: the engine exists before the transport, links may open meanwhile."""
        self.state = "joining"
        self._loop = asyncio.get_running_loop()
        self.engine = SyncEngine(peer_id, self.config)
        return self.engine

    def joined(self) -> None:
        """The transport started: the peer id is settled, the timer runs."""
        assert self.engine is not None and self.transport is not None
        self.engine.peer_id = self.transport.peer_id
        self.state = "joined"
        self._reschedule()

    def stop(self) -> None:
        """Leaving: the timer stops and what is queued is handed to the transport."""
        self.state = "left"
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._flush()

    def fail_waiters(self, message: str) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(RuntimeError(message))

    # -- the stores' session (store.Session) ------------------------------------------

    def write(self, store: str, operation: str, args: tuple[Any, ...], emit: bool) -> None:
        """A local write: applied now, queued for every link; subscribers see it if ``emit``."""
        engine = self.engine
        if self.state != "joined" or engine is None:
            raise RuntimeError(f"cannot write: the meeting is {self.state}")
        self._emit_local = emit
        try:
            engine.write(store, operation, *args)  # validates first: bad input changes nothing
        finally:
            self._dispatch()
            self._emit_local = False
        if engine.pending_bytes() > self._max_buffered:
            self._flush()
        else:
            self._schedule_flush()

    def create_store(self, name: str) -> None:
        self.engine_or_raise().create_store(name)
        self._dispatch()
        self._schedule_flush()

    async def backpressure(self) -> None:
        """What awaiting a write waits for: send queues back under the limit."""
        if self.congested and self.transport is not None:
            await self.transport.drain(self._max_buffered // 2)
            self.congested = self.transport.buffered_amount() > self._max_buffered

    def call(self, callback: Callable[..., Any], *args: Any) -> None:
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

    # -- peer events ----------------------------------------------------------------

    def listen(self, event: str, callback: Callable[..., Any]) -> None:
        if event not in self._listeners:
            raise ValueError(f"unknown event {event!r}; known: {', '.join(PEER_EVENTS)}")
        if callback not in self._listeners[event]:
            self._listeners[event].append(callback)

    def unlisten(self, event: str, callback: Callable[..., Any]) -> None:
        listeners = self._listeners.get(event, [])
        if callback in listeners:
            listeners.remove(callback)

    def _emit(self, event: str, *args: str) -> None:
        for callback in list(self._listeners[event]):
            self.call(callback, *args)

    # -- sync status ----------------------------------------------------------------

    async def synced(self, timeout: float | None) -> list[str]:
        engine = self.engine_or_raise()
        self._flush()
        if self._agreed():
            return sorted(engine.peers)
        waiter: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        engine.want_acks(True)  # acks go out at once while someone waits
        self._schedule_flush()
        self._reschedule()
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
        engine = self.engine
        if engine is None or not engine.is_synced():
            return False
        if engine.peers or self.transport is None:
            return True
        # Peers known not to link count as gone, even while signaling (down, or slow
        # to notice) still lists them: waiting for them could be forever.
        return not self.transport.present_peers() - self._unreachable

    def _check_synced(self) -> None:
        if self._waiters and self.engine is not None and self._agreed():
            covered = sorted(self.engine.peers)
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_result(covered)
            self._waiters.clear()
            self.engine.want_acks(False)

    # -- the transport's handler (transport.base.TransportHandler) --------------------

    def link_up(self, peer: str) -> None:
        engine = self.engine
        if engine is None or self.state not in ("joining", "joined"):
            return
        if self.transport is not None:
            engine.peer_id = self.transport.peer_id  # settled by now (signaling)
        replaced = peer in engine.peers  # a new connection took over: no news
        engine.link_up(peer, self._now())
        self.topology.link_up(peer)
        if len(self.topology.linked) > self.topology.config.degree_high:
            self._maintain_mesh()  # an accepted link past degree_high: another goes
        self._unreachable.discard(peer)
        if not replaced:
            self._emit("peer_joined", peer)
        self._schedule_flush()
        self._timer_check()

    def link_down(self, peer: str) -> None:
        if self.engine is None:
            return
        self.topology.link_down(peer)
        if self.engine.link_down(peer):
            self._emit("peer_left", peer)
        self._check_synced()
        self._schedule_flush()
        self._maintain_mesh()

    def choose_links(self, present: list[str]) -> list[str]:
        return self.topology.choose(present, self._now())

    def accepts_link(self, peer: str) -> bool:
        if self.state not in ("joining", "joined") or self.transport is None:
            return False
        return self.topology.accepts(peer, self.transport.room_size())

    def retries_link(self, peer: str) -> bool:
        transport = self.transport
        return transport is None or not self.topology.bounded(transport.room_size())

    def link_refused(self, peer: str) -> None:
        self.topology.refused(peer, self._now())
        self._maintain_mesh()

    def frame(self, peer: str, data: bytes) -> None:
        engine = self.engine
        if engine is None:
            return
        engine.receive(peer, data, self._now())
        self._dispatch()
        if engine.has_output():
            self._schedule_flush()
        elif self._waiters:
            self._check_synced()
        self._timer_check()

    def signal_refused(self, peer: str, reason: str) -> None:
        if self.engine is None or peer not in self.engine.peers:
            self._unreachable.add(peer)
        self._emit("signal_refused", peer, reason)

    # -- events ---------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Act on what the engine reported, in order; user code runs here, never inside it."""
        engine = self.engine
        if engine is None:
            return
        for event in engine.take_events():
            if type(event) is StoreChanged:
                if self.stores is not None and (not event.local or self._emit_local):
                    self.stores.deliver(event.name, event.changes)
            elif type(event) is StoreAdded:
                replica = engine.store(event.name)
                if replica is not None and self.stores is not None:
                    self.stores.attach(replica)
            elif type(event) is PeerMisbehaved:
                log.warning("peer %s misbehaved (%s); its link is closed", event.peer, event.reason)
                self._link_lost(event.peer)
                self._emit("peer_misbehaved", event.peer, event.reason)
            elif type(event) is LinkDead:
                log.info("peer %s missed its heartbeats; closing the link", event.peer)
                self._link_lost(event.peer)

    def _link_lost(self, peer: str) -> None:
        """The engine dropped the link (dead, or closed for misbehaving): tell the transport."""
        self._unreachable.add(peer)
        self._emit("peer_left", peer)
        self._check_synced()
        if self.transport is not None:
            self.transport.close_link(peer)

    # -- sending --------------------------------------------------------------------

    def _schedule_flush(self) -> None:
        if self._flush_scheduled or self._loop is None:
            return
        self._flush_scheduled = True
        # Under a sustained stream of writes (the last flush carried many deltas),
        # waiting up to flush_interval batches more changes per packet; a single
        # write after a quiet spell goes out at the end of this tick, so latency stays.
        wait = self._last_flush + self._flush_interval - self._loop.time()
        engine = self.engine
        if wait > 0 and engine is not None and engine.last_batch >= _BUSY_BATCH:
            self._loop.call_later(wait, self._flush)
        else:
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._loop is not None:
            self._last_flush = self._loop.time()
        engine = self.engine
        transport = self.transport
        if engine is None or transport is None:
            return
        for peer, frame in engine.data_to_send(self._now()):
            transport.send(peer, frame)
        self._dispatch()
        # Checked here, not on every write: writes wait while the network is behind.
        self.congested = transport.buffered_amount() > self._max_buffered
        self._check_synced()

    # -- the timer ------------------------------------------------------------------

    def _timer_check(self) -> None:
        """Bring the timer forward if the last engine call set an earlier deadline."""
        engine = self.engine
        if self.state == "joined" and engine is not None and engine.deadline_moved(self._timer_at):
            self._reschedule()

    def _reschedule(self) -> None:
        """Sleep until the engine's next deadline (none without links)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = None
        engine = self.engine
        if engine is None or self._loop is None or self.state != "joined":
            return
        deadline = engine.next_deadline()
        mesh_deadline = self.topology.next_deadline()
        if mesh_deadline is not None:
            deadline = mesh_deadline if deadline is None else min(deadline, mesh_deadline)
        if self._waiters:
            poll = self._loop.time() + _WAITING_POLL
            deadline = poll if deadline is None else min(deadline, poll)
        if deadline is None:
            return
        self._timer_at = deadline = max(deadline, self._loop.time() + _MIN_SLEEP)
        self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        engine = self.engine
        try:
            if engine is not None:
                transport = self.transport
                if transport is not None:
                    for peer in engine.peers:
                        heard = transport.last_heard(peer)
                        if heard is not None:
                            engine.heard(peer, heard)
                        engine.backlog(peer, transport.buffered_to(peer))
                engine.tick(self._now())
                self._dispatch()
                self._flush()
            self._maintain_mesh()
        except Exception:
            log.exception("error in the sync timer")
        self._reschedule()

    def _maintain_mesh(self) -> None:
        """Dial or drop links as the room's mesh needs (``mesh.Topology``)."""
        transport = self.transport
        if transport is None or self.state != "joined":
            return
        topology = self.topology
        size = transport.room_size()
        now = self._now()
        if not topology.needs_attention(size, now):
            return
        assert self.engine is not None
        for peer in topology.to_drop(size, self.engine.link_degrees()):
            transport.drop_link(peer)
        for peer in topology.to_dial(transport.present_peers(), now):
            transport.dial(peer)

    # -- internals ------------------------------------------------------------------

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def engine_or_raise(self) -> SyncEngine:
        if self.engine is None:
            raise RuntimeError("the meeting has not been joined yet (use `async with` or join())")
        return self.engine

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("async callback raised", exc_info=task.exception())
