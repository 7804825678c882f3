"""The public ``Store`` (one named key-value store) and ``Stores`` (``meeting.stores``)."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Generator, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from .replica import MISSING, WILDCARD, StoreReplica
from .values import StoreValue, check_key, copy_value, plain_key

if TYPE_CHECKING:
    from .meeting import Meeting

__all__ = ["Callback", "Store", "Stores", "Subscription", "Write"]

log = logging.getLogger("crdt_stores")

Callback = Callable[[str, StoreValue], Awaitable[None] | None]
"""``callback(key, value)``; ``value`` is ``None`` after a delete. May be ``async``."""


class Write:
    """What a write returns: it has already happened; awaiting it waits for the network.

    The change is applied locally and queued for every peer when the write is
    called, so a forgotten ``await`` loses nothing (as in RealtimeKit's JavaScript,
    where the promise only reports delivery). ``await`` adds flow control: it
    returns at once unless this peer's send queues are full, and then waits until
    they drain. It is not a coroutine: not awaiting it warns about nothing.
    """

    __slots__ = ("_meeting",)

    def __init__(self, meeting: Meeting) -> None:
        self._meeting = meeting

    def __await__(self) -> Generator[Any, None, None]:
        return self._meeting._backpressure().__await__()

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

    def __init__(self, meeting: Meeting, replica: StoreReplica) -> None:
        self._meeting = meeting
        self._replica = replica
        self._subscribers: dict[str, list[Callback]] = {}
        self._emit = False
        replica.on_change = self._on_change

    @property
    def name(self) -> str:
        return self._replica.name

    def __repr__(self) -> str:
        return f"<Store {self.name!r} keys={len(self._replica)}>"

    # -- writes -------------------------------------------------------------------

    def set(self, key: str, value: StoreValue, *, emit: bool = False) -> Write:
        """Overwrite ``key`` with ``value``."""
        return self._write(emit, self._replica.set, key, value)

    def update(self, key: str, value: StoreValue, *, emit: bool = False) -> Write:
        """Merge a dict into a dict value (top-level fields), append a list to a list;
        anything else, or a missing key, is the same as ``set``."""
        return self._write(emit, self._replica.update, key, value)

    def delete(self, key: str, *, emit: bool = False) -> Write:
        """Remove ``key`` (a no-op when it is missing)."""
        return self._write(emit, self._replica.delete, key)

    def bulk_set(self, mapping: Mapping[str, StoreValue], *, emit: bool = False) -> Write:
        """Set several keys in one atomic change."""
        return self._write(emit, self._replica.bulk_set, mapping)

    def bulk_delete(self, keys: Iterable[str], *, emit: bool = False) -> Write:
        """Delete several keys in one atomic change."""
        return self._write(emit, self._replica.bulk_delete, keys)

    def clear(self, *, emit: bool = False) -> Write:
        """Delete every key in one atomic change."""
        return self._write(emit, self._replica.clear)

    def _write(self, emit: bool, operation: Callable[..., None], *args: Any) -> Write:
        self._meeting._check_writable()
        self._emit = emit
        try:
            operation(*args)  # validates first: a bad input raises and changes nothing
        finally:
            self._emit = False
        self._meeting._committed(self.name)
        return Write(self._meeting)

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

    def _on_change(self, changes: dict[str, Any], local: bool) -> None:
        if (local and not self._emit) or not self._subscribers:
            return
        wildcard = self._subscribers.get(WILDCARD, ())
        for key, value in changes.items():
            callbacks = [*self._subscribers.get(key, ()), *wildcard]
            for callback in callbacks:
                self._meeting._call(callback, key, None if value is MISSING else copy_value(value))


class Stores:
    """``meeting.stores``: every store of the meeting, by name."""

    def __init__(self, meeting: Meeting) -> None:
        self._meeting = meeting
        self._stores: dict[str, Store] = {}

    def create(self, name: str) -> Store:
        """The store called ``name``, created (on every peer) if it does not exist yet."""
        store = self._stores.get(plain_key(name))
        if store is None:
            name = check_key(name, "store name")
            self._meeting._engine_or_raise().create_store(name)
            self._meeting._schedule_flush()
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

    def _added(self, replica: StoreReplica) -> None:
        self._stores[replica.name] = Store(self._meeting, replica)
