"""The public ``Store`` (one named key-value store) and ``Stores`` (``meeting.stores``)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from .replica import MISSING, WILDCARD, StoreReplica
from .values import StoreValue, check_key, copy_value

if TYPE_CHECKING:
    from .meeting import Meeting

__all__ = ["Callback", "Store", "Stores"]

log = logging.getLogger("crdt_stores")

Callback = Callable[[str, StoreValue], Awaitable[None] | None]
"""``callback(key, value)``; ``value`` is ``None`` after a delete. May be ``async``."""


class Store:
    """A named, replicated key-value store (RealtimeKit's ``meeting.stores.get(name)``).

    Writes are coroutines: each is one atomic change, applied locally and handed to
    every open peer link (one delta on the wire) before it returns. Reads are plain
    methods over the local replica and return copies.
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

    async def set(self, key: str, value: StoreValue, *, emit: bool = False) -> None:
        """Overwrite ``key`` with ``value``."""
        await self._write(emit, self._replica.set, key, value)

    async def update(self, key: str, value: StoreValue, *, emit: bool = False) -> None:
        """Merge a dict into a dict value (top-level fields), append a list to a list;
        anything else, or a missing key, is the same as ``set``."""
        await self._write(emit, self._replica.update, key, value)

    async def delete(self, key: str, *, emit: bool = False) -> None:
        """Remove ``key`` (a no-op when it is missing)."""
        await self._write(emit, self._replica.delete, key)

    async def bulk_set(self, mapping: Mapping[str, StoreValue], *, emit: bool = False) -> None:
        """Set several keys in one atomic change."""
        await self._write(emit, self._replica.bulk_set, mapping)

    async def bulk_delete(self, keys: Iterable[str], *, emit: bool = False) -> None:
        """Delete several keys in one atomic change."""
        await self._write(emit, self._replica.bulk_delete, keys)

    async def clear(self, *, emit: bool = False) -> None:
        """Delete every key in one atomic change."""
        await self._write(emit, self._replica.clear)

    async def _write(self, emit: bool, operation: Callable[..., None], *args: Any) -> None:
        self._meeting._check_writable()
        self._emit = emit
        try:
            operation(*args)  # validates first: a bad input raises and changes nothing
        finally:
            self._emit = False
        await self._meeting._committed(self.name)

    # -- reads --------------------------------------------------------------------

    def get(self, key: str, default: StoreValue = None) -> StoreValue:
        """A copy of the value of ``key``, or ``default`` when it is missing."""
        value = self._replica.get(key)
        return default if value is MISSING else copy_value(value)

    def get_all(self) -> dict[str, StoreValue]:
        """A copy of every key and value."""
        return {key: copy_value(value) for key, value in self._replica.items()}

    def keys(self) -> list[str]:
        return self._replica.keys()

    def __contains__(self, key: object) -> bool:
        return key in self._replica

    def __len__(self) -> int:
        return len(self._replica)

    def __iter__(self) -> Iterator[str]:
        return iter(self._replica.keys())

    # -- subscriptions ------------------------------------------------------------

    def subscribe(self, key: str, callback: Callback) -> None:
        """Call ``callback(key, value)`` when ``key`` changes (``"*"``: any key).

        Remote changes always notify; this peer's own writes only with ``emit=True``.
        """
        check_key(key)
        if not callable(callback):
            raise TypeError("callback must be callable")
        callbacks = self._subscribers.setdefault(key, [])
        if callback not in callbacks:
            callbacks.append(callback)

    def unsubscribe(self, key: str, callback: Callback | None = None) -> None:
        """Remove ``callback`` from ``key``, or every callback of ``key`` when omitted."""
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
        store = self._stores.get(name)
        if store is None:
            self._meeting._engine_or_raise().create_store(name)
            self._meeting._schedule_flush()
            store = self._stores[name]
        return store

    def get(self, name: str) -> Store | None:
        return self._stores.get(name)

    def __getitem__(self, name: str) -> Store:
        return self._stores[name]

    def __contains__(self, name: object) -> bool:
        return name in self._stores

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._stores))

    def __len__(self) -> int:
        return len(self._stores)

    def __repr__(self) -> str:
        return f"<Stores {list(self._stores)}>"

    def _added(self, replica: StoreReplica) -> None:
        self._stores[replica.name] = Store(self._meeting, replica)
