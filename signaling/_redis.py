"""Presence in Redis: any number of signaling instances serve the same rooms.

Every decision that two instances could race on (an id claimed twice, a room over its
cap, a resume that meets a release) is one Lua script, so Redis takes them one at a
time. Keys, all under the prefix (``crdt-stores:`` by default):

* ``members:<room>``: sorted set, peer id -> when its presence expires (ms, Redis's
  clock). Each instance pushes its own peers' expiry ``presence_ttl`` ahead every
  ``presence_refresh`` seconds and sweeps the expired peers of its rooms, so the peers
  of an instance that dies (SIGKILL included) leave within ttl + refresh;
* ``owners:<room>``: hash, peer id -> ``instance|session|digest|address``: the instance
  and socket holding it, the SHA-256 of its resume secret, its client address;
* ``seq:<room>``: the room's event counter. Each join, resume and leave is an event
  published on the channel ``room:<room>`` as JSON ``{seq, event, peer, instance}``;
  the counter lets a join that raced events give its socket exactly those after its
  welcome;
* ``reserved:<bytes of room>:<room><peer>``: a departed peer's ``digest|session|address``,
  expiring after ``reserve_seconds`` (the length makes the name unambiguous);
* ``epoch``, ``resume-key`` (open mode only), ``check``: when the shared state began (the
  restart grace counts from it), the random resume key open instances share, and a
  fingerprint of the resume key: instances with different ``--secret`` refuse to start.

Signals travel on ``instance:<id>``, the channel of the instance holding the recipient,
as JSON; refusals of them come back the same way. Every byte from Redis is parsed as
untrusted input: anything malformed is counted (``bus_ignored``) and dropped.

Redis Cluster is not supported (scripts name keys they build): use one Redis, with
replicas or Sentinel for availability.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections import Counter, deque
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from ._lua import CLAIM, REFRESH, RELEASE, ROUTE, SHARED, UNRESERVE
from ._presence import (
    Decision,
    Host,
    JoinRequest,
    Presence,
    PresenceError,
    Reservations,
    Route,
)
from ._sockets import Client
from .limits import Limits
from .tokens import MAX_NAME_LENGTH

__all__ = ["DEFAULT_PREFIX", "RedisPresence", "redacted"]

log = logging.getLogger("signaling")

DEFAULT_PREFIX = "crdt-stores:"
REDIS_TIMEOUT = 5.0  # every wait on Redis is bounded by this
EVENT_LOG = 4096  # a room's recent events, for a join whose claim raced them
MAX_BUS_BYTES = 256 * 1024  # a routed signal: a client message (64 KiB) and a few fields
MAX_EVENT_BYTES = 8 * 1024  # an event names one peer id (256 characters) and a few fields
CHECK_LABEL = b"crdt-stores resume key check"
_ERRORS = (RedisError, OSError, TimeoutError)

_ROUTES: dict[int, Route] = {1: "sent", 2: "gone", 3: "reserved", 0: "absent"}
_EVENTS = frozenset({"joined", "left", "resumed"})


@dataclass(frozen=True, slots=True)
class _Event:
    """One event of a room: a peer ``joined``, ``left``, or ``resumed`` on a new socket."""

    seq: int
    kind: str
    peer: str
    instance: str


class RedisPresence(Presence):
    """Rooms shared by every signaling instance on one Redis (``redis.asyncio``)."""

    shared = True

    def __init__(
        self, url: str, limits: Limits, stats: dict[str, int], *, prefix: str = DEFAULT_PREFIX
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.instance = secrets.token_hex(8)
        self._limits = limits
        self._stats = stats
        # The caps on reservations, over the ids this instance reserves.
        self.reservations = Reservations(limits, stats)
        self._host: Host | None = None
        self._redis: redis.Redis | None = None
        self._pubsub: Any = None
        self._resume_key = b""
        self._derived = False
        self._instance_channel = self._encode(f"{prefix}instance:{self.instance}")
        self._subscribed: dict[bytes, asyncio.Future[None]] = {}
        self._channels: dict[bytes, str] = {}  # a room's channel -> the room
        self._logs: dict[str, deque[_Event]] = {}  # recent events of subscribed rooms
        self._claiming: Counter[str] = Counter()  # claims in flight, per room
        self._tasks: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._calls: set[asyncio.Future[Any]] = set()  # Redis calls in flight
        self._stopping = asyncio.Event()
        self._errors_logged = 0.0
        self._scripts: dict[str, Any] = {}

    # -- life cycle ---------------------------------------------------------------

    async def start(self, host: Host, resume_key: bytes, derived: bool) -> bytes:
        self._host = host
        self._derived = derived
        try:
            client = redis.from_url(
                self.url,
                socket_timeout=REDIS_TIMEOUT,
                socket_connect_timeout=REDIS_TIMEOUT,
                # A few quick retries: a join waits on them (redis-py's default is 10).
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
                encoding_errors="surrogatepass",  # names may hold lone surrogates
            )
        except ValueError as exc:
            raise PresenceError(f"bad Redis URL {redacted(self.url)!r}: {exc}") from None
        self._redis = client
        for name, text in (
            ("claim", CLAIM),
            ("release", RELEASE),
            ("refresh", REFRESH),
            ("route", ROUTE),
            ("shared", SHARED),
            ("unreserve", UNRESERVE),
        ):
            self._scripts[name] = client.register_script(text)
        self._stopping = asyncio.Event()
        try:
            await self._call(client.ping())
            self._resume_key = resume_key
            await self._shared(adopt=True)  # the first open instance's key wins
            self._pubsub = client.pubsub()
            await self._call(self._pubsub.subscribe(self._instance_channel))
            async with asyncio.timeout(REDIS_TIMEOUT):
                while True:  # the confirmation: signals for this instance reach it now
                    message = await self._pubsub.get_message(timeout=REDIS_TIMEOUT)
                    if isinstance(message, dict) and message.get("type") == "subscribe":
                        break
        except (*_ERRORS, ValueError) as exc:
            await self._close_connections()
            reason = str(exc) or type(exc).__name__
            raise PresenceError(f"cannot use Redis at {redacted(self.url)}: {reason}") from None
        except PresenceError:
            await self._close_connections()
            raise
        self._loops = [
            asyncio.create_task(self._read(), name="signaling redis reader"),
            asyncio.create_task(self._refresh_loop(), name="signaling redis refresh"),
        ]
        return self._resume_key

    async def stop(self) -> None:
        # The loops end at their next turn; the releases of the sockets that just closed,
        # and any call in flight, finish (each bounded) before the connections close.
        self._stopping.set()
        for tasks in (self._tasks, self._loops, self._calls):
            pending = [task for task in tasks if not task.done()]
            if pending:
                await asyncio.wait(pending, timeout=REDIS_TIMEOUT)
        for task in self._loops:
            if not task.done():
                task.cancel()  # they await only asyncio here: cancelling them is safe
        if self._loops:
            await asyncio.wait(self._loops, timeout=1.0)
        self._loops = []
        await self._close_connections()
        self._subscribed.clear()
        self._channels.clear()
        self._logs.clear()
        self.reservations.clear()

    async def _close_connections(self) -> None:
        pubsub, client = self._pubsub, self._redis
        self._pubsub = self._redis = None
        for closing in (pubsub, client):
            if closing is None:
                continue
            try:
                await self._call(closing.aclose())
            except Exception as exc:
                log.debug("closing a Redis connection: %s", exc)

    async def _shared(self, adopt: bool = False) -> None:
        """Agree with the other instances on the resume key and the epoch, and keep them
        from expiring; ``adopt``: at start, take the open-mode key another one chose."""
        keep_ms = self._ms(3 * self._limits.presence_ttl)
        reply = await self._call(
            self._script("shared")(
                keys=[self._key("epoch"), self._key("resume-key"), self._key("check")],
                args=[
                    f"{time.time():.3f}",
                    keep_ms,
                    "" if self._derived else self._resume_key.hex(),  # a derived one stays here
                    _check(self._resume_key),
                ],
            )
        )
        if not isinstance(reply, list) or len(reply) != 3:
            raise PresenceError("Redis answered nonsense about the shared keys")
        epoch, stored_key, stored_check = (_text(value) for value in reply)
        key = self._resume_key
        if not self._derived:
            try:
                key = bytes.fromhex(stored_key)
            except ValueError:
                key = b""
        if len(key) < 16 or not hmac.compare_digest(stored_check.encode(), _check(key).encode()):
            raise PresenceError(
                "another signaling instance on this Redis uses a different --secret (or"
                " none): instances that share rooms must share it (the shared keys expire"
                f" {keep_ms / 1000:g} s after the last instance stops)"
            )
        if key != self._resume_key:
            if not adopt:  # secrets are out under ours: keep it, and say so
                raise PresenceError("the shared resume key in Redis changed (Redis lost data?)")
            self._resume_key = key
        try:
            started = float(epoch)
        except ValueError:
            started = time.time()
        if self._host is not None:
            self._host._set_epoch(started)

    # -- the Presence interface -----------------------------------------------------

    async def fresh_id(self, room: str) -> str:
        # 48 random bits: a clash is refused by the claim ("taken"), never merged.
        return secrets.token_hex(6)

    async def claim(self, request: JoinRequest) -> Decision:
        room, peer_id = request.room, request.peer_id
        given = _digest(request.resume) if request.resume is not None else ""
        own = request.resume is not None and given == _digest(request.secret)
        address = request.address.replace("\n", " ")
        owner = f"{self.instance}|{request.session}|{_digest(request.secret)}|{address}"
        self._claiming[room] += 1
        try:
            # Subscribed before the claim: every event after its snapshot reaches us.
            await self._subscribe(room)
            reply = await self._call(
                self._script("claim")(
                    keys=[*self._room_keys(room), self._reserved_key(room, peer_id)],
                    args=[
                        self.prefix,
                        room,
                        peer_id,
                        owner,
                        self.instance,
                        self._ms(self._limits.presence_ttl),
                        self._limits.max_peers_per_room,
                        given,
                        "1" if own else "0",
                        "1" if request.grace else "0",
                        "1" if request.address_full else "0",
                        self._ms(self._limits.reserve_seconds),
                        self._keep_ms(),
                    ],
                )
            )
        except _ERRORS as exc:
            raise PresenceError(f"Redis did not answer: {exc or type(exc).__name__}") from None
        finally:
            self._claiming[room] -= 1
            if self._claiming[room] <= 0:
                del self._claiming[room]
        return _decision(reply)

    def admitted(self, client: Client, decision: Decision, replaced: bool) -> None:
        # The welcome reflects the room at ``decision.seq``: later events that arrived
        # before the welcome went out are given now, in order; earlier ones never.
        client.seen = decision.seq
        for event in list(self._logs.get(client.room, ())):
            if event.seq > client.seen:
                self._apply(client, event)

    def left(self, client: Client, members: dict[str, Client]) -> None:
        room, peer_id = client.room, client.peer_id
        value = f"{_digest(client.resume)}|{client.session}|{client.address}"
        if self._limits.reserve_seconds > 0:
            for (old_room, old_peer), dropped in self.reservations.add(
                (room, peer_id), value, client.address
            ):
                self._spawn(self._unreserve(old_room, old_peer, dropped.secret))
        # The others (here too) hear it from the room's channel, in the room's order.
        self._spawn(self._release(room, peer_id, client.session, value))

    def reserved(self, room: str, peer_id: str) -> bool:
        return False  # asked through ``route`` instead: the answer is in Redis

    async def route(
        self,
        room: str,
        sender: str,
        target: str,
        data: dict[str, Any],
        first_contact: bool,
        credited: bool,
    ) -> Route:
        payload = json.dumps(
            {
                "kind": "signal",
                "room": room,
                "from": sender,
                "to": target,
                "data": data,
                "first": first_contact,
                "credited": credited,
                "origin": self.instance,
            },
            separators=(",", ":"),
        )
        try:
            code = await self._call(
                self._script("route")(
                    keys=[self._key("owners:" + room), self._reserved_key(room, target)],
                    args=[self.prefix, target, payload],
                )
            )
        except _ERRORS as exc:
            raise PresenceError(f"Redis did not answer: {exc or type(exc).__name__}") from None
        return _ROUTES.get(code if isinstance(code, int) else -1, "absent")

    def bounce(self, origin: str, room: str, peer: str, code: str, reason: str) -> None:
        message = {"kind": "bounce", "room": room, "to": peer, "code": code, "reason": reason}
        channel = self._encode(f"{self.prefix}instance:{origin}")
        self._spawn(self._publish(channel, json.dumps(message, separators=(",", ":"))))

    # -- Redis calls ----------------------------------------------------------------

    async def _call(self, call: Awaitable[Any]) -> Any:
        """One Redis call, bounded by ``REDIS_TIMEOUT`` for its caller. redis-py is not
        cancel-safe (a cancelled call may swallow the cancellation, or leak its
        connection), so the call runs in a task that is never cancelled: a caller that
        gives up or is cancelled leaves it to end by itself (redis-py's socket timeout)."""
        task = asyncio.ensure_future(call)
        self._calls.add(task)
        task.add_done_callback(self._call_done)
        async with asyncio.timeout(REDIS_TIMEOUT):
            return await asyncio.shield(task)

    def _call_done(self, task: asyncio.Future[Any]) -> None:
        self._calls.discard(task)
        if not task.cancelled():
            task.exception()  # its caller has it, or gave up: never "never retrieved"

    def _client(self) -> redis.Redis:
        if self._redis is None:
            raise PresenceError("the Redis presence is not started")
        return self._redis

    def _script(self, name: str) -> Any:
        if self._redis is None:
            raise PresenceError("the Redis presence is not started")
        return self._scripts[name]

    async def _release(self, room: str, peer_id: str, session: str, value: str) -> None:
        try:
            await self._call(
                self._script("release")(
                    keys=[*self._room_keys(room), self._reserved_key(room, peer_id)],
                    args=[
                        self.prefix,
                        room,
                        peer_id,
                        session,
                        self.instance,
                        self._ms(self._limits.reserve_seconds),
                        value,
                        self._keep_ms(),
                    ],
                )
            )
        except (*_ERRORS, PresenceError) as exc:
            # Its presence expires by itself within presence_ttl: the room hears then.
            self._failed("release a departed peer", exc)

    async def _unreserve(self, room: str, peer_id: str, value: str) -> None:
        try:
            await self._call(
                self._script("unreserve")(keys=[self._reserved_key(room, peer_id)], args=[value])
            )
        except (*_ERRORS, PresenceError) as exc:
            self._failed("drop a reservation", exc)

    async def _publish(self, channel: bytes, message: str) -> None:
        try:
            await self._call(self._client().publish(channel, message))
        except (*_ERRORS, PresenceError) as exc:
            self._failed("send a message to another instance", exc)

    async def _subscribe(self, room: str) -> None:
        """Subscribe to a room's events (once), and wait until Redis confirms it."""
        channel = self._room_channel(room)
        waiter = self._subscribed.get(channel)
        try:
            if waiter is None:
                if self._pubsub is None:
                    raise PresenceError("the Redis presence is not started")
                waiter = asyncio.get_running_loop().create_future()
                self._subscribed[channel] = waiter
                self._channels[channel] = room
                self._logs[room] = deque(maxlen=EVENT_LOG)
                await self._call(self._pubsub.subscribe(channel))
            async with asyncio.timeout(REDIS_TIMEOUT):
                await asyncio.shield(waiter)
        except BaseException:
            mine = waiter is not None and self._subscribed.get(channel) is waiter
            if mine and waiter is not None and not waiter.done():
                # Unconfirmed: forget it, and the next claim subscribes again.
                del self._subscribed[channel], self._channels[channel]
                self._logs.pop(room, None)
            raise

    async def _refresh_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._stopping.wait(), self._limits.presence_refresh)
                return
            except TimeoutError:
                pass
            try:
                await self._refresh()
            except (*_ERRORS, PresenceError) as exc:
                self._failed("refresh presence", exc)

    async def _refresh(self) -> None:
        """Keep this instance's peers present, sweep its rooms' expired peers, keep the
        shared keys, and leave the channels of rooms it no longer serves."""
        await self._shared()
        host = self._host
        if host is None:
            return
        held = []
        for room, members in host.rooms.items():
            pairs = [(peer, c.session) for peer, c in members.items() if c.joined]
            if pairs:
                held.append((room, pairs))
        if held:
            replies = await self._call(self._refresh_rooms(held))
            for (room, _), lost in zip(held, replies, strict=True):
                self._lost(room, lost)
        for channel, room in list(self._channels.items()):
            waiter = self._subscribed.get(channel)
            idle = room not in host.rooms and not self._claiming.get(room)
            if idle and waiter is not None and waiter.done() and self._pubsub is not None:
                del self._subscribed[channel], self._channels[channel]
                self._logs.pop(room, None)
                await self._call(self._pubsub.unsubscribe(channel))

    async def _refresh_rooms(self, held: list[tuple[str, list[tuple[str, str]]]]) -> list[Any]:
        """The refresh script for each room, in one round trip."""
        async with self._client().pipeline(transaction=False) as pipe:
            for room, pairs in held:
                await self._script("refresh")(
                    keys=self._room_keys(room),
                    args=[
                        self.prefix,
                        room,
                        self.instance,
                        self._ms(self._limits.presence_ttl),
                        self._ms(self._limits.reserve_seconds),
                        self._keep_ms(),
                        *(item for pair in pairs for item in pair),
                    ],
                    client=pipe,
                )
            replies: list[Any] = await pipe.execute()
        return replies

    def _lost(self, room: str, reply: Any) -> None:
        """Close the sockets whose presence Redis no longer holds: they rejoin."""
        if not isinstance(reply, list) or self._host is None:
            return
        members = self._host.rooms.get(room, {})
        for n in range(0, len(reply) - 1, 2):
            client = members.get(_text(reply[n]))
            if client is not None and client.session == _text(reply[n + 1]):
                self._host._lost(client)

    # -- messages from Redis --------------------------------------------------------

    async def _read(self) -> None:
        while not self._stopping.is_set():
            try:
                if self._pubsub is None:
                    return
                message = await self._pubsub.get_message(timeout=0.2)
            except (*_ERRORS, RuntimeError) as exc:
                self._failed("read Redis pub/sub", exc)
                await asyncio.sleep(0.5)
                continue
            if message is None:
                continue
            try:
                self._dispatch(message)
            except Exception:
                self._stats["bus_ignored"] += 1
                log.exception("ignored a message from Redis that could not be handled")

    def _dispatch(self, message: object) -> None:
        if not isinstance(message, dict):
            return
        kind = message.get("type")
        channel = message.get("channel")
        data = message.get("data")
        if kind == "subscribe" and isinstance(channel, bytes):
            waiter = self._subscribed.get(channel)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            return
        if kind != "message" or not isinstance(data, bytes):
            return
        if channel == self._instance_channel:
            self._bus(data)
            return
        room = self._channels.get(channel) if isinstance(channel, bytes) else None
        if room is None:
            return
        event = _parse_event(data)
        if event is None:
            self._stats["bus_ignored"] += 1
            log.debug("ignored a malformed event of room %r from Redis", room)
            return
        events = self._logs.get(room)
        if events is not None:
            events.append(event)
        if self._host is not None:
            for client in list(self._host.rooms.get(room, {}).values()):
                self._apply(client, event)

    def _apply(self, client: Client, event: _Event) -> None:
        """One event of the room, for one socket that has not seen it yet."""
        host = self._host
        if host is None or event.seq <= client.seen or not client.joined:
            return
        if event.peer == client.peer_id:
            if event.kind == "resumed":
                host._replaced(client)  # its resume secret opened a newer session
            else:
                host._lost(client)  # its id left or joined without it: it must rejoin
            return
        if event.kind == "joined":
            host._send(client, {"type": "peer-joined", "peer_id": event.peer})
        elif event.kind == "left":
            client.credits.pop(event.peer, None)
            host._send(client, {"type": "peer-left", "peer_id": event.peer})

    def _bus(self, data: bytes) -> None:
        """A signal for one of this instance's peers, or an error about one it sent."""
        message = _parse_object(data, MAX_BUS_BYTES)
        host = self._host
        if message is None or host is None:
            self._stats["bus_ignored"] += 1
            return
        kind = message.get("kind")
        room = message.get("room")
        target = message.get("to")
        if not (_name(room) and _name(target)):
            self._stats["bus_ignored"] += 1
            return
        assert isinstance(room, str) and isinstance(target, str)
        if kind == "signal":
            sender = message.get("from")
            data_ = message.get("data")
            first = message.get("first")
            credited = message.get("credited")
            origin = message.get("origin")
            if (
                _name(sender)
                and isinstance(data_, dict)
                and isinstance(first, bool)
                and isinstance(credited, bool)
                and isinstance(origin, str)
                and 0 < len(origin) <= 64
            ):
                assert isinstance(sender, str)
                host._routed(room, sender, target, data_, first, credited, origin)
                return
        elif kind == "bounce":
            code = message.get("code")
            reason = message.get("reason")
            if code in ("rate-limited", "no-such-peer") and isinstance(reason, str):
                host._bounced(room, target, code, reason[:300])
                return
        self._stats["bus_ignored"] += 1

    # -- small helpers ----------------------------------------------------------------

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _failed(self, what: str, exc: BaseException) -> None:
        """Count a failed Redis operation; log it, at most one line a second."""
        self._stats["presence_errors"] += 1
        now = time.monotonic()
        if now - self._errors_logged >= 1.0:
            self._errors_logged = now
            log.warning("could not %s in Redis: %s", what, exc or type(exc).__name__)

    def _key(self, name: str) -> str:
        return self.prefix + name

    def _room_keys(self, room: str) -> list[str]:
        return [self._key("members:" + room), self._key("owners:" + room), self._key("seq:" + room)]

    def _reserved_key(self, room: str, peer_id: str) -> str:
        # The room's length in bytes (as Lua's string.len counts it) keeps names apart.
        return self._key(f"reserved:{len(self._encode(room))}:{room}{peer_id}")

    def _room_channel(self, room: str) -> bytes:
        return self._encode(f"{self.prefix}room:{room}")

    def _keep_ms(self) -> int:
        """How long a room's keys outlive the last refresh (a few presence lifetimes)."""
        return self._ms(3 * self._limits.presence_ttl)

    @staticmethod
    def _ms(seconds: float) -> int:
        return max(1, int(seconds * 1000))

    @staticmethod
    def _encode(text: str) -> bytes:
        return text.encode("utf-8", "surrogatepass")


def redacted(url: str) -> str:
    """A Redis URL fit for logs: no password."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        user = f"{parts.username}:***@" if parts.username else "***@"
        return urlunsplit(parts._replace(netloc=f"{user}{host}{port}"))
    except ValueError:
        return "<a Redis URL>"


def _decision(reply: Any) -> Decision:
    """The claim script's answer, checked (Redis is trusted to run it, not to be sane)."""
    if not isinstance(reply, list) or not reply:
        raise PresenceError("Redis answered a claim with nonsense")
    outcome = _text(reply[0])
    if outcome == "ok" and len(reply) >= 3 and isinstance(reply[2], int):
        peers = [p for p in (_text(value) for value in reply[3:]) if _name(p)]
        return Decision("ok", resumed=reply[1] == 1, peers=peers, seq=reply[2])
    if outcome == "reserved" and len(reply) == 2 and isinstance(reply[1], int):
        return Decision("reserved", reserved_for=max(0, reply[1]) / 1000)
    if outcome == "taken":
        return Decision("taken")
    if outcome == "grace":
        return Decision("grace")
    if outcome == "address":
        return Decision("address")
    if outcome == "full":
        return Decision("full")
    raise PresenceError(f"Redis answered a claim with {outcome[:32]!r}")


def _parse_object(data: bytes, limit: int) -> dict[str, Any] | None:
    if len(data) > limit:
        return None
    try:
        message = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return message if isinstance(message, dict) else None


def _parse_event(data: bytes) -> _Event | None:
    message = _parse_object(data, MAX_EVENT_BYTES)
    if message is None:
        return None
    seq = message.get("seq")
    kind = message.get("event")
    peer = message.get("peer")
    instance = message.get("instance")
    if (
        type(seq) is not int
        or seq <= 0
        or kind not in _EVENTS
        or not _name(peer)
        or not isinstance(instance, str)
    ):
        return None
    assert isinstance(kind, str) and isinstance(peer, str)
    return _Event(seq, kind, peer, instance[:64])


def _name(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_NAME_LENGTH


def _text(value: object) -> str:
    """A reply from Redis as text, whatever its bytes (never an exception)."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else str(value)


def _digest(secret: str) -> str:
    """What Redis keeps of a resume secret: its SHA-256 (compared, never the secret)."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def _check(key: bytes) -> str:
    return hmac.new(key, CHECK_LABEL, hashlib.sha256).hexdigest()
