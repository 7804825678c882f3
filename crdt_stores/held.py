"""Parts of remote updates that wait for a writer's earlier structs (out-of-order
delivery), kept here instead of in Yrs, whose own pending store is unbounded: every
byte is charged to a budget, past which parts are dropped (anti-entropy resends them)."""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import Final

from . import updates
from ._statevector import StateVector
from .budget import Budget
from .entries import ParsedEntry

__all__ = ["HeldParts", "Ready"]

_HELD_ENTRY_COST: Final = 24  # bytes charged to the budget per held delete range
_MAX_LENGTH: Final = updates.MAX_CLOCK

Ready = tuple[bytes, dict[bytes, ParsedEntry], dict[int, int]]
"""An update to hand to Yrs now, its checked entries, and each writer's end clock in it."""


class HeldParts:
    """One replica's held parts: blocks by writer and delete ranges, both by clock."""

    def __init__(self, budget: Budget, read: Callable[[bytes], updates.Update]) -> None:
        self._budget = budget
        self._read = read  # reads (and checks) a held part again when it is released
        self._blocks: dict[int, list[tuple[int, int, bytes]]] = {}
        self._deletes: updates.DeleteSet = {}
        self.dropped = 0  # parts refused for lack of budget

    def __bool__(self) -> bool:
        """Whether anything is held."""
        return bool(self._blocks or self._deletes)

    def admit(self, update: updates.Update, have: StateVector) -> Ready | None:
        """What of ``update`` can be applied on top of ``have`` (the replica's state
        vector) now, with its checked entries and each ready writer's new end clock;
        the rest is held (or dropped if over budget)."""
        known = dict(have)
        ready: list[updates.Block] = []
        whole = not update.clipped
        for block in update.blocks:
            at = have.get(block.client, 0)
            if block.end <= at:
                whole = False  # nothing new in it
            elif block.clock <= at:
                known[block.client] = block.end
                ready.append(block)
            else:
                whole = False
                self._hold_block(block.client, block.clock, block.end, update.block_bytes(block))
        deletes: updates.DeleteSet = {}
        for client, ranges in update.deletes.items():
            upto = known.get(client, 0)
            for clock, length in ranges:
                end = clock + length
                if clock < upto:
                    deletes.setdefault(client, []).append((clock, min(end, upto) - clock))
                if end > upto:
                    whole = False
                    self._hold_delete(client, max(clock, upto), end)
        ends = {block.client: block.end for block in ready}
        if whole:
            return update.data, update.entries, ends
        if not ready and not deletes:
            return None
        return updates.encode(map(update.block_bytes, ready), deletes), update.entries, ends

    def _hold_block(self, client: int, clock: int, end: int, block: bytes) -> None:
        data = updates.encode([block], {})
        if self._budget.take(len(data)):
            self._blocks.setdefault(client, []).append((clock, end, data))
        else:
            self.dropped += 1

    def _hold_delete(self, client: int, clock: int, end: int) -> None:
        ranges = self._deletes.setdefault(client, [])  # sorted by clock
        i = bisect.bisect_right(ranges, (clock, _MAX_LENGTH))
        if i and ranges[i - 1][0] + ranges[i - 1][1] >= end:
            return  # held already (diffs carry every deletion, again and again)
        if self._budget.take(_HELD_ENTRY_COST):
            ranges.insert(i, (clock, end - clock))
        else:
            self.dropped += 1
            if not ranges:
                del self._deletes[client]

    def take_released(self, have: StateVector) -> list[updates.Update]:
        """Held parts whose writer's earlier structs are in ``have`` now, in clock order."""
        out: list[updates.Update] = []
        for client in list(self._blocks):
            at = have.get(client, 0)
            waiting = self._blocks[client]
            keep = []
            for held in sorted(waiting):
                clock, end, data = held
                if clock <= at < end:
                    out.append(self._read(data))
                    at = end
                if clock <= at:  # released, or made obsolete by what arrived
                    self._budget.give(len(data))
                else:
                    keep.append(held)
            if keep:
                self._blocks[client] = keep
            else:
                del self._blocks[client]
        if out:
            return out  # in clock order per writer: each applies after the one before
        deletes: updates.DeleteSet = {}
        for client in list(self._deletes):
            at = have.get(client, 0)
            keep_ranges = []
            for clock, length in self._deletes[client]:
                if clock < at:
                    deletes.setdefault(client, []).append((clock, min(clock + length, at) - clock))
                    if clock + length > at:
                        keep_ranges.append((at, clock + length - at))
                    else:
                        self._budget.give(_HELD_ENTRY_COST)
                else:
                    keep_ranges.append((clock, length))
            if keep_ranges:
                self._deletes[client] = sorted(keep_ranges)
            else:
                del self._deletes[client]
        if deletes:
            data = updates.encode([], deletes)
            out.append(updates.Update(data, [], deletes, sum(map(len, deletes.values()))))
        return out
