"""The public ``Store`` (one named key-value store) and ``Stores`` (``meeting.stores``)."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Generator, Iterable, Iterator, Mapping
from typing import Any, Protocol

from .replica import MISSING, WILDCARD, StoreReplica
from .values import StoreValue, check_key, copy_value, plain_key

__all__ = ["Callback", "Session", "Store", "Stores", "Subscription", "Write"]

log = logging.getLogger("crdt_stores")

Callback = Callable[[str, StoreValue], Awaitable[None] | None]
"""``callback(key, value)``; ``value`` is ``None`` after a delete. May be ``async``."""


class Session(Protocol):
    """What stores need from the meeting that drives them (its ``driver.Driver``):
    the one way a write reaches the sync engine and the replica."""

    def write(self, store: str, operation: str, args: tuple[Any, ...], emit: bool) -> None:
        """Apply a local write (``protocol.WRITE_OPERATIONS``) and queue it for every peer."""

    def create_store(self, name: str) -> None:
        """Create store ``name`` (announced to every peer); ``Stores.attach`` follows."""

    def call(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run a user callback (errors logged, coroutines scheduled)."""

    congested: bool
    """Whether this peer's send queues are over their limit (then ``backpressure`` waits)."""

    def backpressure(self) -> Awaitable[None]:
        """Wait while this peer's send queues are over their limit."""


class Write:
    """What a write returns: it has already happened; awaiting it waits for the network.

    The change is applied locally and queued for every peer when the write is
    called, so a forgotten ``await`` loses nothing (as in RealtimeKit's JavaScript,
    where the promise only reports delivery). ``await`` adds flow control: it
    returns at once unless this peer's send queues are full, and then waits until
    they drain. It is not a coroutine: not awaiting it warns about nothing.
    """

    __slots__ = ("_session",)

    def __init__(self, session: Session) -> None:
        self._session = session

    def __await__(self) -> Generator[Any, None, None]:
        if self._session.congested:  # (else no coroutine: most writes do not wait)
            yield from self._session.backpressure().__await__()

    def __repr__(self) -> str:
        return "<Write (applied; await for flow control)>"


class Subscription:
    """A subscription: call it, or its ``unsubscribe()``, to stop the callback."""

    __slots__ = ("_callback", "_key", "_store")

    def __init__(self, store: Store, key: str, callback: Callback) -> None:
        self._store = store
        self._key = key
        self._callback = callback

    def unsubscribe(self) -> None:
        self._store.unsubscribe(self._key, self._callback)

    __call__ = unsubscribe

    def __repr__(self) -> str:
        return f"<Subscription {self._store.name!r} {self._key!r} {self._callback!r}>"


def _check_signature(callback: Callback) -> None:
    """Refuse at ``subscribe`` a callback that could never be called with ``(key, value)``."""
    try:
        signature = inspect.signature(callback)
    except (TypeError, ValueError):  # some builtins have none: let them through
        return
    try:
        signature.bind("key", None)
    except TypeError as exc:
        raise TypeError(
            f"a store callback is called as callback(key, value); {callback!r} cannot be: {exc}"
        ) from None


class Store:
    """A named, replicated key-value store (RealtimeKit's ``meeting.stores.get(name)``).

    Writes take effect when called: each is one atomic change, applied locally and
    queued for every open peer link (one delta on the wire); each returns a
    ``Write`` to await for flow control. Reads are plain methods over the local
    replica and return copies.
    """

    def __init__(self, session: Session, replica: StoreReplica) -> None:
        self._session = session
        self._replica = replica
        self._subscribers: dict[str, list[Callback]] = {}

    @property
    def name(self) -> str:
        return self._replica.name

    def __repr__(self) -> str:
        return f"<Store {self.name!r} keys={len(self._replica)}>"

    # -- writes -------------------------------------------------------------------

    def set(self, key: str, value: StoreValue, *, emit: bool = False) -> Write:
        """Overwrite ``key`` with ``value``."""
        return self._write(emit, "set", key, value)

    def update(self, key: str, value: StoreValue, *, emit: bool = False) -> Write:
        """Merge a dict into a dict value (top-level fields), append a list to a list;
        anything else, or a missing key, is the same as ``set``."""
        return self._write(emit, "update", key, value)

    def delete(self, key: str, *, emit: bool = False) -> Write:
        """Remove ``key`` (a no-op when it is missing)."""
        return self._write(emit, "delete", key)

    def bulk_set(self, mapping: Mapping[str, StoreValue], *, emit: bool = False) -> Write:
        """Set several keys in one atomic change."""
        return self._write(emit, "bulk_set", mapping)

    def bulk_delete(self, keys: Iterable[str], *, emit: bool = False) -> Write:
        """Delete several keys in one atomic change."""
        return self._write(emit, "bulk_delete", keys)

    def clear(self, *, emit: bool = False) -> Write:
        """Delete every key in one atomic change."""
        return self._write(emit, "clear")

    def _write(self, emit: bool, operation: str, *args: Any) -> Write:
        self._session.write(self._replica.name, operation, args, emit)
        return Write(self._session)

    # -- reads --------------------------------------------------------------------

    def get(self, key: str, default: StoreValue = None) -> StoreValue:
        """A copy of the value of ``key``, or ``default`` when it is missing."""
        value = self._replica.get(plain_key(key))
        return default if value is MISSING else copy_value(value)

    def get_all(self) -> dict[str, StoreValue]:
        """A copy of every key and value."""
        return {key: copy_value(value) for key, value in self._replica.items()}

    def keys(self) -> list[str]:
        return self._replica.keys()

    def __contains__(self, key: object) -> bool:
        return plain_key(key) in self._replica

    def __len__(self) -> int:
        return len(self._replica)

    def __iter__(self) -> Iterator[str]:
        return iter(self._replica.keys())

    # -- subscriptions ------------------------------------------------------------

    def subscribe(self, key: str, callback: Callback) -> Subscription:
        """Call ``callback(key, value)`` when ``key`` changes (``"*"``: any key).

        Remote changes always notify; this peer's own writes only with ``emit=True``.
        Returns a handle: ``handle()`` (or ``handle.unsubscribe()``) removes the callback.
        A callback that cannot take ``(key, value)`` raises ``TypeError`` here.
        """
        key = check_key(key)
        if not callable(callback):
            raise TypeError("callback must be callable")
        _check_signature(callback)
        callbacks = self._subscribers.setdefault(key, [])
        if callback not in callbacks:
            callbacks.append(callback)
        return Subscription(self, key, callback)

    def unsubscribe(self, key: str, callback: Callback | None = None) -> None:
        """Remove ``callback`` from ``key``, or every callback of ``key`` when omitted."""
        key = plain_key(key)
        if callback is None:
            self._subscribers.pop(key, None)
            return
        callbacks = self._subscribers.get(key)
        if callbacks and callback in callbacks:
            callbacks.remove(callback)
            if not callbacks:
                del self._subscribers[key]

    def deliver(self, changes: dict[str, Any]) -> None:
        """Call the subscribers of the changed keys (the driver, after an engine call)."""
        if not self._subscribers:
            return
        wildcard = self._subscribers.get(WILDCARD, ())
        for key, value in changes.items():
            callbacks = [*self._subscribers.get(key, ()), *wildcard]
            for callback in callbacks:
                self._session.call(callback, key, None if value is MISSING else copy_value(value))


class Stores:
    """``meeting.stores``: every store of the meeting, by name."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._stores: dict[str, Store] = {}

    def create(self, name: str) -> Store:
        """The store called ``name``, created (on every peer) if it does not exist yet."""
        store = self._stores.get(plain_key(name))
        if store is None:
            name = check_key(name, "store name")
            self._session.create_store(name)
            store = self._stores[name]
        return store

    def get(self, name: str) -> Store | None:
        return self._stores.get(plain_key(name))

    def __getitem__(self, name: str) -> Store:
        return self._stores[plain_key(name)]

    def __contains__(self, name: object) -> bool:
        return plain_key(name) in self._stores

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._stores))

    def __len__(self) -> int:
        return len(self._stores)

    def __repr__(self) -> str:
        return f"<Stores {list(self._stores)}>"

    def attach(self, replica: StoreReplica) -> None:
        """A store now exists in the engine: give it its ``Store`` (the driver calls this)."""
        if replica.name not in self._stores:
            self._stores[replica.name] = Store(self._session, replica)

    def deliver(self, name: str, changes: dict[str, Any]) -> None:
        """Values of store ``name`` changed: call its subscribers (the driver calls this)."""
        store = self._stores.get(name)
        if store is not None:
            store.deliver(changes)
