"""Lossy links: three peers on real WebRTC, a fraction of every datagram dropped.

``python -m benchmarks.lossy [--quick] [--seed N]`` prints, for each loss rate and
pattern, the time to converge after the last write, the longest stall (the
longest time a peer that still lacked writes received none) and the links
declared dead or lost while every peer was alive, for ``crdt_stores`` and for
``raw_aiortc`` (the same writes as plain messages over plain aiortc data
channels: the floor the transport sets). Patterns:

* ``spread``: each peer writes 1,000 keys (small dicts, ~80 bytes), one every 5 ms,
  with the loss on;
* ``burst``: each peer writes its 1,000 keys at once, with the loss on;
* ``from start``: the loss is on while the mesh forms; the time is how long
  until every link is open.

Loss comes from ``benchmarks.lossnet`` (aioice's send path, seeded). Each run
gives up after ``--timeout`` seconds (60 by default); a run that did not finish
prints ``> 60 s``. Writes ``lossy.json`` into a new ``benchmarks/runs/`` folder.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import cbor2
from rich.console import Console
from rich.table import Table

from crdt_stores import Meeting
from signaling import SignalingServer

from .baselines import RawPeer
from .common import ICE_ADDRESSES, latency_value, machine, run_dir
from .lossnet import LossyNetwork

PEERS = 3
WRITES = 1000
GAP = 0.005  # between writes of the spread pattern
IMPLS = ("crdt_stores", "raw_aiortc")
FULL = [(0.05, "spread"), (0.2, "spread"), (0.4, "spread"),
        (0.05, "burst"), (0.2, "burst"), (0.3, "burst"), (0.4, "burst"),
        (0.2, "from start"), (0.4, "from start")]  # fmt: skip
QUICK = [(0.2, "burst"), (0.4, "burst"), (0.2, "from start"), (0.4, "from start")]


@dataclass
class Result:
    impl: str
    loss: float
    pattern: str
    seconds: float | None  # to converge after the last write, or to form the mesh
    stall: float | None = None  # longest time a peer lacking writes received none
    links_lost: int = 0  # links declared dead or dropped while every peer was alive
    extra: dict[str, Any] = field(default_factory=dict)


class _Arrivals:
    """Distinct writes each peer received, with the longest gap between arrivals."""

    def __init__(self, peers: int, expected: int) -> None:
        self.expected = expected
        self.seen: list[set[str]] = [set() for _ in range(peers)]
        self.last = [0.0] * peers
        self.stall = 0.0
        self.done = asyncio.Event()
        self.started = 0.0

    def start(self) -> None:
        self.started = time.perf_counter()
        self.last = [self.started] * len(self.last)

    def got(self, peer: int, key: str) -> None:
        seen = self.seen[peer]
        if key in seen:
            return
        now = time.perf_counter()
        seen.add(key)
        self.stall = max(self.stall, now - self.last[peer])
        self.last[peer] = now
        if all(len(s) >= self.expected for s in self.seen):
            self.done.set()

    def final_stall(self) -> float:
        """The longest gap, counting the wait of peers still missing writes now."""
        now = time.perf_counter()
        waiting = [now - self.last[i] for i, s in enumerate(self.seen) if len(s) < self.expected]
        return max([self.stall, *waiting])


async def _write(write: Any, peer: int, pattern: str, writes: int) -> None:
    for k in range(writes):
        write(f"p{peer}-{k}", latency_value(k))
        if pattern == "spread":
            await asyncio.sleep(GAP)
        elif k % 100 == 99:
            await asyncio.sleep(0)  # a burst, but the event loop still breathes


async def _write_and_wait(
    network: LossyNetwork, loss: float, arrivals: _Arrivals, writers: list[Any],
    pattern: str, writes: int, timeout: float,
) -> tuple[float | None, float]:  # fmt: skip
    """Turn the loss on, write from every peer; (seconds to converge after the last
    write or None after ``timeout``, longest stall)."""
    network.rate = loss
    arrivals.start()
    await asyncio.gather(*(_write(w, i, pattern, writes) for i, w in enumerate(writers)))
    wrote = time.perf_counter()
    try:
        await asyncio.wait_for(arrivals.done.wait(), timeout)
    except TimeoutError:
        return None, arrivals.final_stall()
    return time.perf_counter() - wrote, arrivals.final_stall()


async def _until(predicate: Any, timeout: float) -> float | None:
    """Seconds until ``predicate()`` holds (polled every 20 ms), or None after ``timeout``."""
    started = time.perf_counter()
    while not predicate():
        if time.perf_counter() - started > timeout:
            return None
        await asyncio.sleep(0.02)
    return time.perf_counter() - started


async def run_crdt(
    loss: float, pattern: str, *, seed: int, writes: int = WRITES, timeout: float = 60.0
) -> Result:
    network = LossyNetwork(loss if pattern == "from start" else 0.0, seed)
    network.install()
    meetings: list[Meeting] = []
    lost = [0]
    try:
        async with SignalingServer("127.0.0.1", 0) as server:
            started = time.perf_counter()
            # Every peer arrives at once (each join returns once its links are up or
            # given up on): the time is the mesh's, not the sum of joins one by one.
            joins = [
                Meeting.join(server.url, "lossy", peer_id=f"p{i}", ice_addresses=ICE_ADDRESSES)
                for i in range(PEERS)
            ]
            meetings.extend(await asyncio.gather(*joins))
            formed = await _until(
                lambda: all(len(m.peers) == PEERS - 1 for m in meetings),
                timeout - (time.perf_counter() - started),
            )
            if pattern == "from start":
                seconds = None if formed is None else time.perf_counter() - started
                return Result("crdt_stores", loss, pattern, seconds, extra=_stats(meetings))
            if formed is None:
                raise RuntimeError("the mesh did not form without loss")
            for m in meetings:
                m.on("peer_left", lambda peer: lost.__setitem__(0, lost[0] + 1))
            arrivals = _Arrivals(PEERS, (PEERS - 1) * writes)
            stores = [m.stores.create("bench") for m in meetings]
            for i, store in enumerate(stores):
                store.subscribe("*", lambda key, value, i=i: arrivals.got(i, key))
            writers = [store.set for store in stores]
            seconds, stall = await _write_and_wait(
                network, loss, arrivals, writers, pattern, writes, timeout
            )
            return Result(
                "crdt_stores", loss, pattern, seconds, stall, lost[0], extra=_stats(meetings)
            )
    finally:
        network.rate = 0.0
        await asyncio.gather(*(m.leave() for m in meetings), return_exceptions=True)
        network.uninstall()


_COUNTERS = ("links_dead", "repairs", "offers_answered", "spare_attempts",
             "signals_refused", "answers_ignored")  # fmt: skip


def _stats(meetings: list[Meeting]) -> dict[str, int]:
    """The counters that tell a lossy run's story, summed over the peers."""
    total: dict[str, int] = {}
    for m in meetings:
        for name, count in m.stats.items():
            if name in _COUNTERS:
                total[name] = total.get(name, 0) + count
    return total


async def run_raw(
    loss: float, pattern: str, *, seed: int, writes: int = WRITES, timeout: float = 60.0
) -> Result:
    network = LossyNetwork(loss if pattern == "from start" else 0.0, seed)
    network.install()
    names = [f"p{i}" for i in range(PEERS)]
    arrivals = _Arrivals(PEERS, (PEERS - 1) * writes)
    peers: dict[str, RawPeer] = {
        name: RawPeer(name, lambda peer, data, i=i: arrivals.got(i, cbor2.loads(data)[0]))
        for i, name in enumerate(names)
    }
    lost = [0]
    try:
        started = time.perf_counter()
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                offer = await peers[a].offer(b)
                answer = await peers[b].answer(a, offer)
                await peers[a].accept(b, answer)
        try:
            await asyncio.gather(*(p.wait_open(timeout) for p in peers.values()))
            formed = True
        except TimeoutError:
            formed = False
        if pattern == "from start":
            seconds = time.perf_counter() - started if formed else None
            return Result("raw_aiortc", loss, pattern, seconds)
        if not formed:
            raise RuntimeError("the raw mesh did not form without loss")
        for peer in peers.values():
            for pc in peer.pcs.values():
                pc.on(
                    "connectionstatechange",
                    lambda pc=pc: lost.__setitem__(0, lost[0] + (pc.connectionState == "failed")),
                )
        writers = [
            lambda key, value, peer=peers[name]: peer.broadcast(cbor2.dumps([key, value]))
            for name in names
        ]
        seconds_, stall = await _write_and_wait(
            network, loss, arrivals, writers, pattern, writes, timeout
        )
        return Result("raw_aiortc", loss, pattern, seconds_, stall, lost[0])
    finally:
        network.rate = 0.0
        await asyncio.gather(*(p.close() for p in peers.values()), return_exceptions=True)
        network.uninstall()


async def run(
    cases: list[tuple[float, str]], *, seed: int = 1, timeout: float = 60.0,
    impls: tuple[str, ...] = IMPLS, writes: int = WRITES,
    progress: Any = None,
) -> list[Result]:  # fmt: skip
    results = []
    for loss, pattern in cases:
        for impl in impls:
            runner = run_crdt if impl == "crdt_stores" else run_raw
            result = await runner(loss, pattern, seed=seed, writes=writes, timeout=timeout)
            results.append(result)
            if progress is not None:
                progress(result)
    return results


def _seconds(value: float | None, timeout: float) -> str:
    return f"> {timeout:.0f} s" if value is None else f"{value:.1f} s"


def table(results: list[Result], timeout: float) -> Table:
    out = Table(title=f"Lossy links: {PEERS} peers, {WRITES:,} writes each (real WebRTC)")
    out.add_column("loss")
    out.add_column("pattern")
    for impl in IMPLS:
        out.add_column(f"{impl}\nconverged / formed", justify="right")
        out.add_column(f"{impl}\nlongest stall", justify="right")
        out.add_column(f"{impl}\nlinks lost", justify="right")
    rows: dict[tuple[float, str], dict[str, Result]] = {}
    for r in results:
        rows.setdefault((r.loss, r.pattern), {})[r.impl] = r
    for (loss, pattern), by_impl in rows.items():
        cells = [f"{loss:.0%}", pattern]
        for impl in IMPLS:
            r = by_impl.get(impl)
            if r is None:
                cells += ["-", "-", "-"]
                continue
            cells.append(_seconds(r.seconds, timeout))
            cells.append("-" if r.stall is None else f"{r.stall:.1f} s")
            cells.append("-" if pattern == "from start" else str(r.links_lost))
        out.add_row(*cells)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lossy", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer cases (burst, from start)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--impl", choices=IMPLS, action="append", help="only these")
    parser.add_argument("--case", action="append", metavar="LOSS:PATTERN",
                        help="e.g. 0.4:burst or '0.2:from start' (repeatable)")  # fmt: skip
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    cases = QUICK if args.quick else FULL
    if args.case:
        cases = [(float(c.split(":")[0]), c.split(":", 1)[1]) for c in args.case]
    console = Console()

    def progress(r: Result) -> None:
        console.print(f"  {r.loss:.0%} {r.pattern:<10} {r.impl:<12} "
                      f"{_seconds(r.seconds, args.timeout)}, stall "
                      f"{'-' if r.stall is None else f'{r.stall:.1f} s'}, "
                      f"links lost {r.links_lost} {r.extra or ''}")  # fmt: skip

    impls = tuple(args.impl or IMPLS)
    coro = run(cases, seed=args.seed, timeout=args.timeout, impls=impls, progress=progress)
    results = asyncio.run(coro)
    console.print(table(results, args.timeout))
    folder = run_dir(args.quick, "lossy")
    folder.mkdir(parents=True, exist_ok=True)
    report = {"machine": machine(), "seed": args.seed, "timeout": args.timeout,
              "results": [asdict(r) for r in results]}  # fmt: skip
    (folder / "lossy.json").write_text(json.dumps(report, indent=1))
    console.print(f"written to {folder}")


if __name__ == "__main__":
    main()
