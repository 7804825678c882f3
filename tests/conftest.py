"""Shared fixtures: an in-memory network with fast timers, and convergence helpers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from crdt_stores import Meeting
from crdt_stores.memory import MemoryNetwork
from crdt_stores.values import same_value

# Timers scaled down so that repairs after faults happen within tens of milliseconds.
FAST = {
    "heartbeat_interval": 0.2,
    "dead_after": 3.0,
    "sync_interval": 0.05,
    "ack_delay": 0.01,
}


@pytest.fixture
async def net() -> AsyncIterator[MemoryNetwork]:
    network = MemoryNetwork(seed=1, **FAST)
    yield network


async def converge(*meetings: Meeting, timeout: float = 20.0) -> None:
    """Wait until every meeting reports synced (bounded)."""
    await asyncio.wait_for(
        asyncio.gather(*(m.synced(timeout=timeout) for m in meetings)), timeout + 1
    )


def snapshot(meeting: Meeting) -> dict[str, dict]:
    return {name: meeting.stores[name].get_all() for name in meeting.stores}


def assert_same_state(*meetings: Meeting) -> None:
    """Every meeting holds the same stores with the same values, types included."""
    first = snapshot(meetings[0])
    for other in meetings[1:]:
        state = snapshot(other)
        assert state.keys() == first.keys(), (meetings[0].peer_id, other.peer_id)
        for name in first:
            assert same_value(state[name], first[name]), (name, first[name], state[name])
