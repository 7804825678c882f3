"""``crdt-stores demo``: several peer processes over real WebRTC, shown to converge.

The parent starts a signaling server in-process on a free loopback port and runs
each peer as a child process (``python -m crdt_stores.demo child ...``). Children
talk to the parent in JSON lines: they report joining, progress and, at the end,
a digest of every store. One peer joins late and one leaves midway.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from .sealing import ROOM_KEY_ENV, generate_room_key
from .values import digest

STORES = ("board", "chat", "presence")
LOOPBACK = "127.0.0.1"


# -- child: one peer ----------------------------------------------------------------


async def _child(url: str, room: str, name: str, seed: int, ops: int) -> None:
    from .meeting import Meeting

    def say(event: str, **data: Any) -> None:
        print(json.dumps({"event": event, **data}), flush=True)

    reader = await _stdin_reader()
    async with Meeting(url, room=room, peer_id=name, ice_addresses=[LOOPBACK]) as meeting:
        say("joined", peers=meeting.peers)
        stores = [meeting.stores.create(s) for s in STORES]
        rng = random.Random(seed)
        while (command := (await reader.readline()).decode().strip()) not in ("go", ""):
            pass
        started = time.perf_counter()
        for n in range(ops):
            await _random_op(rng, stores, name, n)
            if n % 10 == 9:
                await asyncio.sleep(0)  # let other peers' changes in: real interleaving
            if n % 25 == 24 or n == ops - 1:
                say("progress", done=n + 1)
        say("written", seconds=time.perf_counter() - started)
        while True:
            command = (await reader.readline()).decode().strip()
            if command == "leave":
                await meeting.synced(timeout=30)  # everything written reached the others
                say("left")
                return
            if command not in ("finish", "again"):
                return
            # "again": the parent saw digests differ while changes were still in flight
            started = time.perf_counter()
            await meeting.synced(timeout=60)
            say(
                "final",
                synced_s=time.perf_counter() - started,
                peers=sorted(meeting.peers),
                stores={
                    s.name: {"keys": len(s), "digest": digest(s.get_all())}
                    for s in (meeting.stores[n] for n in sorted(meeting.stores))
                },
            )


async def _random_op(rng: random.Random, stores: list[Any], name: str, n: int) -> None:
    board, chat, presence = stores
    roll = rng.random()
    if roll < 0.25:
        await board.update(f"card-{rng.randrange(8)}", {f"by-{name}": n, "votes": rng.randrange(5)})
    elif roll < 0.45:
        await chat.update("messages", [{"from": name, "n": n, "text": f"hello {n}"}])
    elif roll < 0.6:
        await board.set(f"card-{rng.randrange(8)}", {"title": f"card {n}", "score": rng.random()})
    elif roll < 0.7:
        await board.delete(f"card-{rng.randrange(8)}")
    elif roll < 0.85:
        await presence.set(name, {"cursor": [rng.randrange(100), rng.randrange(100)], "n": n})
    elif roll < 0.95:
        await chat.update(f"reactions-{rng.randrange(3)}", [rng.choice(["+1", "tada", "eyes"])])
    else:
        await presence.bulk_set({f"{name}-status": rng.choice(["typing", "idle"]), f"{name}-n": n})


async def _stdin_reader() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


# -- parent ---------------------------------------------------------------------------


@dataclass
class _Peer:
    name: str
    proc: asyncio.subprocess.Process
    task: TaskID
    done: int = 0
    state: str = "starting"
    final: dict[str, Any] = field(default_factory=dict)
    events: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    halfway: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((line + "\n").encode())
        await self.proc.stdin.drain()

    async def expect(self, event: str, timeout: float) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                message = await self.events.get()
                if message.get("event") == event:
                    return message
                if message.get("event") == "exit":
                    raise RuntimeError(
                        f"peer {self.name} exited: {message.get('stderr', '')[-800:]}"
                    )


async def _spawn(
    url: str, room: str, name: str, seed: int, ops: int, progress: Progress, room_key: str
) -> _Peer:
    env = dict(os.environ)
    env.setdefault("CRDT_STORES_ICE_ADDRESSES", LOOPBACK)
    env[ROOM_KEY_ENV] = room_key  # signals sealed end to end, as a real deployment should
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "crdt_stores.demo", "child", url, room, name, str(seed), str(ops),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )  # fmt: skip
    peer = _Peer(name, proc, progress.add_task(name, total=ops, state="starting"))

    async def pump() -> None:
        assert proc.stdout is not None and proc.stderr is not None
        while line := await proc.stdout.readline():
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if message.get("event") == "progress":
                peer.done = message["done"]
                progress.update(peer.task, completed=peer.done)
                if peer.done >= ops // 2:
                    peer.halfway.set()
            await peer.events.put(message)
        stderr = (await proc.stderr.read()).decode(errors="replace")
        await peer.events.put({"event": "exit", "stderr": stderr})

    asyncio.get_running_loop().create_task(pump())
    return peer


async def run_demo(peers: int, ops: int, seed: int, console: Console) -> bool:
    from signaling import SignalingServer

    if peers < 3:
        raise SystemExit("the demo needs at least 3 peers (one joins late, one leaves)")
    room = f"demo-{seed}"
    room_key = generate_room_key()
    names = [f"peer-{i}" for i in range(peers)]
    late, leaver = names[-1], names[1]
    async with SignalingServer(LOOPBACK, 0) as server:
        console.print(
            f"signaling server on [bold]{server.url}[/]; {peers} peer processes over WebRTC "
            f"(loopback only), {ops} operations each; [italic]{late}[/] joins late, "
            f"[italic]{leaver}[/] leaves midway; signals sealed with a fresh room key"
        )
        started = time.perf_counter()
        progress = Progress(
            TextColumn("{task.description:>8}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[state]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        with progress:
            early = [
                await _spawn(server.url, room, n, seed * 1000 + i, ops, progress, room_key)
                for i, n in enumerate(names[:-1])
            ]
            for peer in early:
                progress.update(peer.task, state="joining")
            await asyncio.gather(*(p.expect("joined", 60) for p in early))
            joined_at = time.perf_counter()
            for peer in early:
                progress.update(peer.task, state="writing")
                await peer.send("go")
            # the late joiner arrives when the others are half way through
            async with asyncio.timeout(120):
                await asyncio.gather(*(p.halfway.wait() for p in early))
            newcomer = await _spawn(
                server.url, room, late, seed * 1000 + peers, ops, progress, room_key
            )
            progress.update(newcomer.task, state="joining late")
            await newcomer.expect("joined", 60)
            progress.update(newcomer.task, state="writing")
            await newcomer.send("go")
            everyone = [*early, newcomer]
            await asyncio.gather(*(p.expect("written", 120) for p in everyone))
            written_at = time.perf_counter()
            staying = [p for p in everyone if p.name != leaver]
            gone = next(p for p in everyone if p.name == leaver)
            await gone.send("leave")
            await gone.expect("left", 60)
            progress.update(gone.task, state="left")
            command = "finish"
            for _ in range(10):
                for peer in staying:
                    progress.update(peer.task, state="syncing")
                    await peer.send(command)
                finals = await asyncio.gather(*(p.expect("final", 120) for p in staying))
                converged_at = time.perf_counter()
                for peer, final in zip(staying, finals, strict=True):
                    peer.final = final
                    progress.update(peer.task, state="synced")
                if len({json.dumps(f["stores"], sort_keys=True) for f in finals}) == 1:
                    break
                command = "again"
            for peer in staying:
                await peer.send("exit")
        for peer in everyone:
            try:
                await asyncio.wait_for(peer.proc.wait(), 10)
            except TimeoutError:
                peer.proc.kill()
    digests = {p.name: {s: v["digest"] for s, v in p.final["stores"].items()} for p in staying}
    converged = len({json.dumps(d, sort_keys=True) for d in digests.values()}) == 1
    table = Table(title="every store on every peer at the end: keys and digest of get_all()")
    table.add_column("peer")
    for store in STORES:
        table.add_column(store)
    for peer in everyone:
        if peer.name == leaver:
            table.add_row(peer.name, *(["(left midway)"] * len(STORES)))
            continue
        cells = []
        for store in STORES:
            info = peer.final["stores"].get(store, {"keys": 0, "digest": "-"})
            cells.append(f"{info['keys']:>3} keys  {info['digest'][:10]}")
        table.add_row(peer.name + (" (late)" if peer.name == late else ""), *cells)
    console.print(table)
    total_ops = ops * peers
    converge_s = converged_at - written_at
    console.print(
        f"{total_ops} operations by {peers} peers in {written_at - joined_at:.2f} s; "
        f"time to converge after the last write: {converge_s:.2f} s; "
        f"{total_ops / (converged_at - joined_at):.0f} ops/s end to end "
        f"(whole demo {converged_at - started:.1f} s)"
    )
    if converged:
        console.print("[bold green]converged[/]: every peer holds the same data in every store")
    else:
        console.print("[bold red]NOT converged[/]: the digests differ")
    return converged


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "child":
        url, room, name, seed, ops = argv[1:6]
        asyncio.run(_child(url, room, name, int(seed), int(ops)))
        return 0
    parser = argparse.ArgumentParser(prog="crdt-stores demo")
    add_arguments(parser)
    return run(parser.parse_args(argv))


MAX_DEMO_PEERS = 16  # each is a process with a WebRTC link to every other: 2 cores go far
MAX_DEMO_OPS = 100_000


def _bounded(low: int, high: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{what} must be a whole number, not {text!r}"
            ) from None
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(f"{what} must be {low} to {high}, not {number}")
        return number

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--peers",
        type=_bounded(3, MAX_DEMO_PEERS, "--peers"),
        default=4,
        help=f"peer processes (default 4; 3 to {MAX_DEMO_PEERS}: one joins late, one leaves)",
    )
    parser.add_argument(
        "--ops",
        type=_bounded(1, MAX_DEMO_OPS, "--ops"),
        default=500,
        help=f"operations per peer (default 500; 1 to {MAX_DEMO_OPS:,})",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")


def run(args: argparse.Namespace) -> int:
    console = Console()
    logging.getLogger("signaling").setLevel(logging.ERROR)  # embedded, loopback only
    try:
        ok = asyncio.run(run_demo(args.peers, args.ops, args.seed, console))
    except (RuntimeError, TimeoutError) as exc:
        console.print(f"[bold red]demo failed[/]: {exc!r}")
        return 1
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
