"""The asyncio driver: user code runs after engine calls return, the timer sleeps until
the engine's next deadline, and a Meeting takes any transport through a public argument."""

from __future__ import annotations

from typing import Any

import pytest

from crdt_stores import Meeting
from crdt_stores.memory import MemoryNetwork
from crdt_stores.transport.memory import MemoryTransport

from .conftest import FAST, converge
from .netutil import wait_until


async def test_callbacks_run_after_the_engine_call_returns(net: MemoryNetwork) -> None:
    """A subscriber may write from its callback: it never runs inside SyncEngine.receive."""
    alice = await net.join("room", peer_id="alice")
    bob = await net.join("room", peer_id="bob")
    engine = bob._engine
    assert engine is not None
    inside: list[bool] = []
    receive = engine.receive

    def watched_receive(*args: Any) -> None:
        inside.append(True)
        try:
            receive(*args)
        finally:
            inside.pop()

    engine.receive = watched_receive  # type: ignore[method-assign]
    calls: list[tuple[str, object, bool]] = []

    def echo(key: str, value: object) -> None:
        calls.append((key, value, bool(inside)))
        bob.stores["s"].set("echo", value)  # a write from a callback

    alice.stores.create("s")
    await converge(alice, bob)
    bob.stores["s"].subscribe("k", echo)
    alice.stores["s"].set("k", 41)
    await converge(alice, bob)
    assert calls == [("k", 41, False)]
    assert alice.stores["s"].get("echo") == 41
    await alice.leave()
    await bob.leave()


async def test_the_timer_sleeps_until_the_next_deadline() -> None:
    """No 50 ms poll: a quiet link wakes the driver about once per heartbeat (and per
    anti-entropy check), and it still finds a silent peer dead on time."""
    net = MemoryNetwork(heartbeat_interval=0.5, sync_interval=1.0, dead_after=1.5, ack_delay=0.01)
    alice = await net.join("room", peer_id="alice")
    bob = await net.join("room", peer_id="bob")
    await converge(alice, bob)
    engine = alice._engine
    assert engine is not None
    ticks: list[float] = []
    tick = engine.tick

    def counted_tick(now: float) -> None:
        ticks.append(now)
        tick(now)

    engine.tick = counted_tick  # type: ignore[method-assign]
    # Six wakes of a quiet link: deadlines (heartbeats every 0.5 s, anti-entropy every
    # 1 s) spread them over about 1.5 s; a 50 ms poll made six in 0.3 s (the same
    # deadline can fall due twice within 1 ms at most).
    await wait_until(lambda: len(ticks) >= 6, 10, "six timer wakes")
    assert ticks[5] - ticks[0] >= 1.0, ticks
    assert alice.peers == ["bob"]
    net.set_faults(drop=1.0)  # bob falls silent (and so does alice to him)
    left: list[str] = []
    alice.on("peer_left", left.append)
    await wait_until(lambda: left == ["bob"], 5, "bob declared dead")
    await alice.leave()
    await bob.leave()


async def test_a_meeting_over_any_transport_through_the_public_argument() -> None:
    net = MemoryNetwork()
    one = MemoryTransport(net, "room", "one")
    two = MemoryTransport(net, "room", "two")
    async with (
        Meeting(room="room", transport=one, **FAST) as a,
        Meeting(room="room", transport=two, **FAST) as b,
    ):
        a.stores.create("s").set("k", [1])
        await converge(a, b)
        assert b.stores["s"].get("k") == [1]
        assert a.peer_id == "one" and b.peers == ["one"]
    with pytest.raises(TypeError, match="transport"):
        Meeting(room="room", transport=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tick_interval"):
        Meeting(room="room", transport=one, tick_interval=0.05)
