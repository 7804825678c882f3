"""Hostile peers: every row of the threat table, replayed against a victim peer process.

    python -m benchmarks.hostile                       # this checkout
    python -m benchmarks.hostile --baseline /tmp/old   # and an older checkout, side by side

Each row starts fresh victim processes (``tests/helpers/echo_peer.py``, run with
``PYTHONPATH`` set to the code under test) in a room on a signaling server of this
process, and one attacker peer (this process) that sends the row's raw frames
(``tests/helpers/attacks.py``) over real WebRTC, on loopback. What is measured comes
from outside the victim: whether it lives, its resident memory (VmRSS, peak VmHWM)
and CPU time from /proc, how fast it answers a ping, and what it shows.
Rows 9 and 10 are local (an honest bulk write; a failing apply), run in a
subprocess of the code under test. Prints a table and writes
``benchmarks/results/hostile.json`` (or ``--out``); a run in which a row could not be
measured (an error, not an effect) writes nothing and exits non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from crdt_stores import Meeting
from signaling import SignalingServer
from tests.helpers import attacks

from .common import ICE_ADDRESSES, RESULTS, ROOT, machine

VICTIM = str(ROOT / "tests" / "helpers" / "echo_peer.py")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _proc_mb(pid: int) -> dict[str, float]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return out


def _cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except FileNotFoundError:
        return float("nan")


class Victim:
    """A victim process running the code at ``code``."""

    def __init__(self, code: Path, url: str, room: str, peer_id: str) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = f"{code}{os.pathsep}{ROOT}"
        env["RUST_BACKTRACE"] = "0"
        self.peer_id = peer_id
        self.proc = subprocess.Popen(
            [sys.executable, VICTIM, url, room, peer_id],
            cwd=code,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    async def ready(self, timeout: float = 30) -> None:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), timeout)
        if line.strip() != "ready":
            raise ConnectionError(f"the victim did not start: {line!r}")

    async def line(self, timeout: float = 30) -> dict[str, Any]:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), timeout)
        if not raw:
            raise ConnectionError("the victim process is gone")
        return json.loads(raw)

    async def command(self, text: str, timeout: float = 30) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        return await self.line(timeout)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def memory(self) -> dict[str, float]:
        return _proc_mb(self.proc.pid)

    def cpu(self) -> float:
        return _cpu(self.proc.pid)

    def close(self) -> None:
        if self.alive:
            self.proc.kill()
        self.proc.wait()


async def ping(attacker: Meeting, victim: str, value: int, timeout: float = 10) -> float | None:
    """Seconds until ``victim`` answers a ping from ``attacker`` (None: no answer)."""
    store = attacker.stores.create("s")
    answered = asyncio.get_running_loop().create_future()

    def on_pong(key: str, pong: object) -> None:
        if pong == [victim, value] and not answered.done():
            answered.set_result(None)

    store.subscribe("pong", on_pong)
    started = time.perf_counter()
    try:
        await store.set("ping", [victim, value])
        await asyncio.wait_for(answered, timeout)
        return time.perf_counter() - started
    except TimeoutError:
        return None
    finally:
        store.unsubscribe("pong", on_pong)


class Room:
    """Victims and an attacker in a fresh room (a room per row: the signaling server
    keeps a peer id that left reserved for its previous session for a while)."""

    def __init__(self, code: Path, url: str, name: str) -> None:
        self.code = code
        self.url = url
        self.name = name
        self.victims: list[Victim] = []
        self.attacker: Meeting | None = None
        self._pings = 0

    async def start(self, *victims: str) -> None:
        for name in victims:
            victim = Victim(self.code, self.url, self.name, name)
            await victim.ready()
            self.victims.append(victim)
        self.attacker = await Meeting.join(
            self.url, self.name, peer_id="mallory", ice_addresses=ICE_ADDRESSES
        )
        deadline = time.monotonic() + 20
        while not all(v.peer_id in self.attacker.peers for v in self.victims):
            if time.monotonic() > deadline:
                raise TimeoutError("the attacker did not link to every victim")
            await asyncio.sleep(0.05)
        for victim in self.victims:
            assert await self.ping(victim) is not None

    async def ping(self, victim: Victim, timeout: float = 10) -> float | None:
        assert self.attacker is not None
        self._pings += 1
        return await ping(self.attacker, victim.peer_id, self._pings, timeout)

    def send(self, victim: Victim, *frames: bytes) -> None:
        assert self.attacker is not None and self.attacker._transport is not None
        for frame in frames:
            self.attacker._transport.send(victim.peer_id, frame)

    async def drain(self) -> None:
        assert self.attacker is not None and self.attacker._transport is not None
        await self.attacker._transport.drain(0)

    async def close(self) -> None:
        if self.attacker is not None:
            await self.attacker.leave()
        for victim in self.victims:
            victim.close()


async def _after(room: Room, victim: Victim, timeout: float = 20) -> dict[str, Any]:
    """Wait until the victim handled what was sent (a ping after it) and read its state."""
    await room.drain()
    answer = await room.ping(victim, timeout) if victim.alive else None
    out: dict[str, Any] = {"alive": victim.alive, "answer_s": answer}
    if victim.alive and answer is not None:
        out["dump"] = await victim.command("dump")
    return out


# -- the rows ------------------------------------------------------------------------------------


async def row1(room: Room) -> dict[str, Any]:
    victim = room.victims[0]
    frame = attacks.deep_any_frame()
    room.send(victim, frame)
    await asyncio.sleep(1.0)  # a crash takes the process down within 0.1 s
    result = await _after(room, victim, 5)
    alive = "alive" if result["alive"] else f"died (exit {victim.proc.returncode})"
    return {"effect": f"{len(frame)}-byte frame: {alive}", **_short(result)}


async def row2(room: Room) -> dict[str, Any]:
    victim = room.victims[0]
    before = victim.memory()
    sent = 0
    for message_id in range(4):  # four partial messages, each announced as 400 MB
        frames = attacks.chunk_flood(10 + message_id, 400_000_000, 400)
        room.send(victim, *frames)
        sent += sum(map(len, frames))
        await room.drain()
    result = await _after(room, victim)
    grown = victim.memory().get("VmHWM", 0) - before.get("VmHWM", 0)
    return {
        "effect": f"{sent / 1e6:.0f} MB of chunks sent: victim peak RSS +{grown:.0f} MB",
        "rss_mb": grown,
        **_short(result),
    }


async def row3(room: Room) -> dict[str, Any]:
    victim = room.victims[0]
    effects = []
    out: dict[str, Any] = {}
    for label, frame in (
        ("zeros", attacks.zero_bomb(477_000_000)),
        ("lists", attacks.list_bomb(15_000_000)),
    ):
        before, cpu = victim.memory(), victim.cpu()
        room.send(victim, *attacks.chunked(frame, 20 + len(effects)))
        result = await _after(room, victim, 60)
        grown = victim.memory().get("VmHWM", 0) - before.get("VmHWM", 0)
        spent = victim.cpu() - cpu
        effects.append(
            f"{label} {len(frame) / 1e3:.0f} KB: peak RSS +{grown:.0f} MB, {spent:.2f} s CPU"
        )
        out[f"{label}_rss_mb"] = grown
        out[f"{label}_cpu_s"] = spent
        out.update(_short(result))
    return {"effect": "; ".join(effects), **out}


async def row4(room: Room) -> dict[str, Any]:
    victim = room.victims[0]
    assert room.attacker is not None
    _, update = attacks.own_entries(91, attacks.entry("clock", "bumped", attacks.huge_lamport()))
    room.send(victim, *attacks.chunked(attacks.message(attacks.UPDATE, {"s": [update]}, {}), 30))
    await _after(room, victim, 60)
    before = room.attacker.stats.get("bytes_in", 0)
    rss = victim.memory().get("VmRSS", 0)
    started = time.perf_counter()
    for _ in range(20):
        if await room.ping(victim, 30) is None:
            break
    spent = time.perf_counter() - started
    per_write = (room.attacker.stats.get("bytes_in", 0) - before) / 20
    grown = victim.memory().get("VmRSS", 0) - rss
    return {
        "effect": f"each later honest write: {per_write:,.0f} B on the wire,"
        f" {20 / spent:.0f} writes/s, RSS +{grown:.0f} MB over 20",
        "bytes_per_write": per_write,
        "writes_per_s": 20 / spent,
    }


async def row5(room: Room) -> dict[str, Any]:
    victim = room.victims[0]
    before = victim.memory()
    room.send(victim, *attacks.store_names_frames(50_000))
    result = await _after(room, victim, 120)
    grown = victim.memory().get("VmRSS", 0) - before.get("VmRSS", 0)
    answers = [await room.ping(victim, 30) for _ in range(5)]
    slowest = max((a for a in answers if a is not None), default=float("nan"))
    stores = result.get("dump", {}).get("store_count")
    return {
        "effect": f"{stores} stores, RSS +{grown:.0f} MB, then pings answered in up to"
        f" {slowest * 1000:.0f} ms",
        "stores": stores,
        "rss_mb": grown,
        "ping_ms": slowest * 1000,
    }


async def row6(room: Room) -> dict[str, Any]:
    victim = room.victims[0]
    frame = attacks.big_state_ack("s", 1_000_000)
    cpu, before = victim.cpu(), victim.memory()
    room.send(victim, *([frame] * 192))
    result = await _after(room, victim, 120)
    spent_ack = victim.cpu() - cpu
    cpu = victim.cpu()
    room.send(victim, *attacks.big_state_sync())
    await _after(room, victim, 120)
    spent_sync = victim.cpu() - cpu
    grown = victim.memory().get("VmHWM", 0) - before.get("VmHWM", 0)
    return {
        "effect": f"192 ACKs of {len(frame)} B: {spent_ack:.2f} s CPU; SYNC of 4 x 1M entries:"
        f" {spent_sync:.2f} s CPU; peak RSS +{grown:.0f} MB",
        "ack_cpu_s": spent_ack,
        "sync_cpu_s": spent_sync,
        "rss_mb": grown,
        **_short(result),
    }


async def row7(room: Room) -> dict[str, Any]:
    alice, bob = room.victims
    first, second, both = attacks.equal_order_updates()
    room.send(alice, attacks.message(attacks.UPDATE, {"s": [both]}, {}))
    room.send(bob, attacks.message(attacks.UPDATE, {"s": [first]}, {}))
    room.send(bob, attacks.message(attacks.UPDATE, {"s": [second]}, {}))
    await _after(room, alice)
    await _after(room, bob)
    await asyncio.sleep(1.5)  # let them sync with each other (anti-entropy, acks)
    shown = [(await v.command("dump"))["stores"]["s"].get("door") for v in (alice, bob)]
    same = shown[0] == shown[1]
    return {
        "effect": f"alice shows {shown[0]}, bob {shown[1]}: {'same' if same else 'DIVERGED'}",
        "diverged": not same,
    }


async def row8(room: Room) -> dict[str, Any]:
    victim = room.victims[0]
    assert room.attacker is not None
    replica = room.attacker._engine.store("s")  # type: ignore[union-attr]
    writers = [int(w) for w in replica._m.mirrors if int(w) != replica.client_id]  # type: ignore[union-attr]
    forged = attacks.foreign_append(replica.diff(), writers[0], "forged", "by mallory")
    room.send(victim, attacks.message(attacks.UPDATE, {"s": [forged]}, {}))
    await room.drain()
    await asyncio.sleep(1.0)  # no ping: once accepted, the victim's next writes refer to
    # mallory's item, and a peer that checks (this one) refuses them
    accepted = "forged" in (await victim.command("dump"))["stores"]["s"]
    return {
        "effect": "accepted, counted as the victim's own writer's entry" if accepted else "refused",
        "accepted": accepted,
    }


async def row11(room: Room) -> dict[str, Any]:
    victim = room.victims[0]
    room.send(victim, *attacks.oversized_entry())
    result = await _after(room, victim, 60)
    keys = result.get("dump", {}).get("stores", {}).get("s", {})
    shown = any(key.startswith("KKKK") for key in keys)
    deleted = await victim.command("delete " + "K" * 100_000) if shown else {"ok": None}
    text = "accepted and shown" if shown else "refused"
    if shown:
        text += "; delete by an honest peer: " + (
            "ok" if deleted.get("ok") else deleted.get("error", "?")[:60]
        )
    return {"effect": text, "accepted": shown}


def _short(result: dict[str, Any]) -> dict[str, Any]:
    return {"alive": result["alive"], "answer_s": result["answer_s"]}


# -- local rows (a subprocess of the code under test) --------------------------------------


LOCAL = {
    9: """
import json, sys, time
from crdt_stores.replica import StoreReplica
def status(field):  # kB in /proc/self/status, as MB
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1e3
out = {}
for n in [int(x) for x in sys.argv[1:]]:
    r = StoreReplica("s")
    before, started = status("VmRSS"), time.perf_counter()
    r.bulk_set({f"key-{i}": i for i in range(n)})
    # the peak: memory a write used and gave back to the system counts too
    out[n] = {"s": time.perf_counter() - started, "rss_mb": status("VmHWM") - before}
print(json.dumps(out))
""",
    10: """
import json
from pycrdt import Doc, merge_updates
from crdt_stores.replica import StoreReplica
class Panic(BaseException):
    pass
class PanicsAfterApplying:
    def __init__(self, doc): self._doc = doc
    def apply_update(self, txn, update):
        self._doc.apply_update(txn, update)
        raise Panic("injected")
    def __getattr__(self, name): return getattr(self._doc, name)
writer = StoreReplica("s", client_id=11)
writer.bulk_set({"a": 1, "b": {"x": 1}})
victim = StoreReplica("s", client_id=12)
victim.apply(writer.diff())
writer.take_outbox()
writer.set("a", 2)
writer.update("b", {"y": 2})
delta = merge_updates(*writer.take_outbox())
doc_attr = "_y" if hasattr(victim, "_y") else "_ydoc"  # (the code before the adapter)
setattr(victim, doc_attr, PanicsAfterApplying(getattr(victim, doc_attr)))
try:
    victim.apply(delta)
    raised = None
except BaseException as exc:
    raised = type(exc).__name__
setattr(victim, doc_attr, getattr(victim, doc_attr)._doc)
fresh = StoreReplica("s", client_id=13)
fresh.apply(victim.diff())
print(json.dumps({"raised": raised, "shows": repr(dict(victim.items())),
                  "document": repr(dict(fresh.items()))}))
""",
}


def _local(code: Path, row: int, *args: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(code), "RUST_BACKTRACE": "0"}
    done = subprocess.run(
        [sys.executable, "-c", LOCAL[row], *args],
        cwd=code,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout)


async def row9(code: Path, quick: bool) -> dict[str, Any]:
    sizes = ["2000", "8000"] + ([] if quick else ["100000"])
    if code != ROOT and not quick:
        sizes = ["2000", "4000", "8000"]  # the old code takes GBs beyond that
    result: dict[str, Any] = {}
    for size in sizes:  # each in a fresh process: memory freed by one size is reused
        result.update(await asyncio.to_thread(_local, code, 9, size))
    parts = [f"{n} keys: {v['s']:.2f} s, peak RSS +{v['rss_mb']:.0f} MB" for n, v in result.items()]
    return {"effect": "; ".join(parts), "sizes": result}


async def row10(code: Path, quick: bool) -> dict[str, Any]:
    result = await asyncio.to_thread(_local, code, 10)
    agrees = result.get("shows") == result.get("document")
    return {
        "effect": f"raised {result.get('raised')}; replica shows {result.get('shows')},"
        f" its document holds {result.get('document')}" + ("" if agrees else ": MIRRORS DIVERGED"),
        "agrees": agrees,
    }


ROWS: dict[int, tuple[str, int, Callable[..., Awaitable[dict[str, Any]]]]] = {
    1: ("DIFF with a lib0 Any nested 20,000 deep (zlib)", 1, row1),
    2: ("CHUNK frames of messages announced as 400 MB", 1, row2),
    3: ("COMPRESSED bombs (zeros; CBOR empty lists)", 1, row3),
    4: ("an entry whose Lamport clock is a 1 MB integer (random bytes)", 1, row4),
    5: ("50,000 stores named by ACKs", 1, row5),
    6: ("ACKs and a SYNC with huge state vectors", 1, row6),
    7: ("equal (lamport, writer): one update to alice, two to bob", 2, row7),
    8: ("an entry appended to another writer's array", 1, row8),
    11: ("a 100,000-char key with a 5 MB value", 1, row11),
}
LOCAL_ROWS = {
    9: ("honest bulk_set of many small keys", row9),
    10: ("an apply that fails after integrating", row10),
}


async def measure(code: Path, rows: list[int], quick: bool) -> dict[int, dict[str, Any]]:
    results: dict[int, dict[str, Any]] = {}
    async with SignalingServer("127.0.0.1", 0) as server:
        for number in rows:
            if number in LOCAL_ROWS:
                results[number] = await LOCAL_ROWS[number][1](code, quick)
                continue
            _, victims, function = ROWS[number]
            room = Room(code, server.url, f"row-{number}")
            try:
                await room.start(*(["alice", "bob"] if victims == 2 else ["victim"]))
                results[number] = await function(room)
            except Exception as exc:
                results[number] = {"effect": f"error: {type(exc).__name__}: {exc}"[:200]}
            finally:
                await room.close()
            print(f"  row {number}: {results[number]['effect']}", flush=True)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hostile")
    parser.add_argument("--code", type=Path, default=ROOT, help="checkout under test")
    parser.add_argument("--baseline", type=Path, help="an older checkout, measured first")
    parser.add_argument("--rows", type=int, nargs="*", default=[*ROWS, *LOCAL_ROWS])
    parser.add_argument("--quick", action="store_true", help="smaller bulk writes")
    parser.add_argument(
        "--out", type=Path, default=RESULTS / "hostile.json", help="where the results go"
    )
    args = parser.parse_args(argv)
    rows = sorted(args.rows)
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    for label, code in (("before", args.baseline), ("after", args.code)):
        if code is None:
            continue
        print(f"{label}: {code}", flush=True)
        runs[label] = asyncio.run(measure(code.resolve(), rows, args.quick))
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Hostile peers: the threat table, measured", show_lines=True)
    table.add_column("#")
    table.add_column("input")
    for label in runs:
        table.add_column(label)
    for number in rows:
        title = ROWS[number][0] if number in ROWS else LOCAL_ROWS[number][0]
        table.add_row(str(number), title, *(runs[label][number]["effect"] for label in runs))
    Console(width=200).print(table)
    failed = [
        f"{label} row {number}"
        for label, measured in runs.items()
        for number, result in measured.items()
        if result["effect"].startswith("error:")
    ]
    if failed:  # (a run that could not measure must not replace one that did)
        raise SystemExit(f"not written: the benchmark failed on {', '.join(failed)}")
    path: Path = args.out
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and set(rows) != {*ROWS, *LOCAL_ROWS}:  # a partial run: keep the rest
        kept = json.loads(path.read_text())["runs"]
        for label, measured in runs.items():
            runs[label] = {**kept.get(label, {}), **{str(k): v for k, v in measured.items()}}
    path.write_text(json.dumps({"machine": machine(), "runs": runs}, indent=1, default=str))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
