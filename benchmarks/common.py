"""What every benchmark shares: loopback settings, statistics, worker processes, results."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"
ICE_ADDRESSES = [LOOPBACK]
RESULTS = Path(__file__).resolve().parent / "results"  # tracked: the README's figures
RUNS = Path(__file__).resolve().parent / "runs"  # ignored by git: every other run
ROOT = Path(__file__).resolve().parent.parent

# The targets of the benchmarks issue, shared by the targets table and the plots.
CONVERGENCE_VS_RAW = 1.25  # crdt_stores p50 at most this many times raw_aiortc's
THROUGHPUT_OPS = 50_000  # converged ops/s at least, ...
THROUGHPUT_PEERS = 4  # ... with this many peers
LATE_JOIN_VS_RAW = 0.5  # MB/s at least this fraction of raw_aiortc's
HISTORY_BYTES = 10_000  # a late joiner downloads less than this ...
HISTORY_WRITES = 100_000  # ... after this many overwrites
BULK_KEYS = 100_000  # one bulk_set of this many keys: ...
BULK_MB = 300  # ... less resident memory growth than this ...
BULK_SECONDS = 5  # ... and less time than this


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def now() -> float:
    """A clock shared by every process of this machine (CLOCK_MONOTONIC)."""
    return time.monotonic()


def latency_value(i: int) -> dict[str, Any]:
    """The value each latency write stores: small, typical of a collaboration app."""
    return {"i": i, "user": "peer-0", "text": f"message number {i}", "ok": True}


def run_dir(quick: bool, label: str = "") -> Path:
    """A fresh folder for one run: ``benchmarks/runs/<timestamp>[-label][-quick]``."""
    name = time.strftime("%Y%m%d-%H%M%S") + (f"-{label}" if label else "")
    name += "-quick" if quick else ""
    path, n = RUNS / name, 2
    while path.exists():
        path, n = RUNS / f"{name}-{n}", n + 1
    return path


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count() or 1,
    }


class Worker:
    """A benchmark process driven over JSON lines (``python -m benchmarks.worker``)."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc = proc
        self.name = name
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def start(cls, role: str, name: str, **params: Any) -> Worker:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        env["CRDT_STORES_ICE_ADDRESSES"] = LOOPBACK
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks.worker",
            role,
            json.dumps({"name": name, **params}),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=ROOT,
            limit=64 * 1024 * 1024,
        )
        return cls(proc, name)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            try:
                await self.inbox.put(json.loads(line))
            except ValueError:
                continue
        assert self.proc.stderr is not None
        error = (await self.proc.stderr.read()).decode(errors="replace")
        await self.inbox.put({"event": "exit", "stderr": error[-2000:]})

    async def send(self, **command: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(command) + "\n").encode())
        await self.proc.stdin.drain()

    async def expect(self, event: str, timeout: float = 120.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                message = await self.inbox.get()
                if message.get("event") == event:
                    return message
                if message.get("event") == "exit":
                    raise RuntimeError(f"worker {self.name} exited: {message['stderr']}")

    async def close(self) -> None:
        if self.proc.returncode is None:
            try:
                await self.send(op="quit")
                await asyncio.wait_for(self.proc.wait(), 10)
            except (TimeoutError, ConnectionError, BrokenPipeError):
                self.proc.kill()
                await self.proc.wait()
        self._reader.cancel()


async def close_all(workers: Sequence[Worker]) -> None:
    await asyncio.gather(*(w.close() for w in workers), return_exceptions=True)
