"""A structure-aware fuzzer for what peers send: frames and Yjs updates.

    python -m tests.fuzzer --seconds 60            # fuzz; findings go to tests/fuzz_corpus/
    python -m tests.fuzzer --replay FILE...        # run saved inputs (exit 0 if all pass)
    python -m tests.fuzzer --outcomes 500 --start 0  # a digest of what each input does

Every input is derived from one integer seed, so a worker process that dies
(SIGSEGV, abort: a native crash in Yrs) is reported by the parent, which derives
the input again from the seed it was running and saves it. Inputs mix:

* valid frames and updates of an honest session (handshake, writes, merges,
  deletes, big chunked and compressed syncs, split parts), mutated byte-wise and
  integer-wise (a varint or CBOR integer replaced by an extreme value);
* Yjs updates generated from the v1 grammar with every field chosen at random:
  content types, origins and parents naming any client, deep and wide lib0 Any
  values, entries that are almost valid, big clocks, delete sets;
* those updates wrapped in random messages, compressed and chunked.

The oracle, for each input fed to a fresh peer: no exception escapes
``SyncEngine.receive`` or ``StoreReplica.apply`` (other than ``UpdateError``), no
handler error is counted, the replica agrees with a replica rebuilt from its own
document, and an input costs less than a second of CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import multiprocessing
import os
import random
import signal
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import cbor2

from tests.helpers.attacks import varstring, varuint

CORPUS = Path(__file__).resolve().parent / "fuzz_corpus"
SLOW = 1.0  # seconds of CPU one input may cost


# -- seeds: an honest session ------------------------------------------------------------


def _honest() -> tuple[list[bytes], list[bytes]]:
    """Frames and updates an honest pair of peers exchanges (the same in every process:
    the stores' client ids are fixed, so an input is a function of its seed)."""
    from unittest import mock

    from crdt_stores import replicas
    from crdt_stores.replica import StoreReplica

    ids = iter(range(1_000_001, 1_000_100))

    def replica(name: str, **options: Any) -> StoreReplica:
        return StoreReplica(name, client_id=next(ids), **options)

    with mock.patch.object(replicas, "StoreReplica", replica):
        return _session()


def _session() -> tuple[list[bytes], list[bytes]]:
    from crdt_stores.protocol import SyncEngine

    a, b = SyncEngine("a"), SyncEngine("b")
    a.link_up("b", 0.0)
    b.link_up("a", 0.0)
    frames: list[bytes] = []
    updates: list[bytes] = []

    def pump() -> None:
        for _ in range(20):
            moved = False
            for src, dst, name in ((a, b, "a"), (b, a, "b")):
                for _, frame in src.data_to_send(0.0):
                    frames.append(frame)
                    dst.receive(name, frame, 0.0)
                    moved = True
            if not moved:
                return

    s = a.create_store("s")
    t = b.create_store("t")
    s.set("k", {"a": 1, "b": [1, 2.5, "x"], "c": None})
    s.update("k", {"d": True})
    s.update("list", [1, 2])
    s.update("list", [3])
    s.bulk_set({f"key{i}": i for i in range(70)})
    s.delete("key3")
    t.set("big", "x" * 70_000)
    t.set("wide", list(range(2_000)))
    for name, engine in (("s", a), ("t", b)):
        engine.commit(name)
        updates.extend(engine.store(name).take_outbox())
    pump()
    b.store("s").set("k", "overwritten")
    b.store("s").clear()
    b.commit("s")
    pump()
    for engine in (a, b):
        for replica in engine.stores.values():
            updates.append(replica.diff())
            updates.append(replica.diff(replica.state_vector()))
    return frames, updates


_SEEDS: tuple[list[bytes], list[bytes]] | None = None


def seeds() -> tuple[list[bytes], list[bytes]]:
    global _SEEDS
    if _SEEDS is None:
        _SEEDS = _honest()
    return _SEEDS


# -- generating -------------------------------------------------------------------------------


EXTREMES = [
    0,
    1,
    2,
    127,
    128,
    255,
    2**16,
    2**31 - 1,
    2**32 - 1,
    2**32,
    2**53 - 1,
    2**53,
    2**63,
    2**64 - 1,
]


def _number(rng: random.Random) -> int:
    return rng.choice(EXTREMES) if rng.random() < 0.3 else rng.randrange(0, 300)


def _any(rng: random.Random, depth: int = 0) -> bytes:
    """A random lib0 Any value (sometimes absurdly deep or wide)."""
    roll = rng.random()
    if roll < 0.02:
        nest = rng.choice([100, 5_000, 20_000, 100_000])
        return b"\x75\x01" * nest + b"\x7e"
    if roll < 0.5 or depth > 3:
        tag = rng.choice([116, 116, 116, 119, 125, 123, 126, 127, 120, 121, 122, 124])
        if tag == 116:
            blob = _entry(rng)
            return b"\x74" + varuint(len(blob)) + blob
        if tag == 119:
            return b"\x77" + varstring("s" * rng.randrange(5))
        if tag == 125:
            return b"\x7d" + varuint(_number(rng))
        if tag == 123:
            return b"\x7b" + rng.randbytes(8)
        if tag == 122:
            return b"\x7a" + rng.randbytes(8)
        if tag == 124:
            return b"\x7c" + rng.randbytes(4)
        return bytes([tag])
    if roll < 0.75:
        items = rng.randrange(4)
        return b"\x75" + varuint(items) + b"".join(_any(rng, depth + 1) for _ in range(items))
    items = rng.randrange(3)
    return (
        b"\x76"
        + varuint(items)
        + b"".join(varstring(f"k{i}") + _any(rng, depth + 1) for i in range(items))
    )


def _entry(rng: random.Random) -> bytes:
    """A store entry, valid or subtly not."""
    key: Any = rng.choice(["k", "list", "*", "", "x" * 1025, 5, "key1"])
    op: Any = rng.choice([0, 1, 2, 3, 4, -1])
    payload: Any = rng.choice(
        [1, 1.5, "v", None, True, [1, 2], {"a": 1}, {"deep": [[[[1]]]]}, 2**70, float("nan")]
    )
    lamport: Any = rng.choice([1, 2, 10**6, 2**64 - 1, 2**64, -1, "1"])
    item: list[Any] = [key, op, payload, lamport]
    if rng.random() < 0.1:
        item.append("extra")
    try:
        blob = cbor2.dumps(item)
    except (ValueError, TypeError):
        blob = b"\x84\x61k\x00\xf6\x01"
    if rng.random() < 0.1:
        blob = blob[: rng.randrange(len(blob) + 1)]
    return blob


def _struct(rng: random.Random, client: int, clock: int) -> tuple[bytes, int]:
    """A random struct; returns its bytes and its length in clocks."""
    ref = rng.choice([0, 1, 1, 7, 8, 8, 8, 8, 10, 2, 3, 4, 5, 6, 9, 11])
    if ref in (0, 10):
        length = rng.randrange(1, 5) if rng.random() < 0.9 else _number(rng)
        return bytes([ref]) + varuint(length), length
    info = ref
    body = b""
    other = client if rng.random() < 0.7 else rng.choice([client + 1, 5, _number(rng)])
    if rng.random() < 0.5:
        info |= 0x80
        body += varuint(other) + varuint(rng.randrange(0, clock + 2))
    if rng.random() < 0.2:
        info |= 0x40
        body += varuint(other) + varuint(rng.randrange(0, clock + 2))
    if not info & 0xC0:
        if rng.random() < 0.5:
            body += b"\x01" + varstring(rng.choice(["writers", "writers", "other"]))
            if rng.random() < 0.8:
                info |= 0x20
                body += varstring(rng.choice([str(client), str(other), "x"]))
        else:
            body += b"\x00" + varuint(other) + varuint(rng.choice([0, 0, clock, _number(rng)]))
    length = 1
    if ref == 1:
        length = rng.randrange(1, 4)
        body += varuint(length)
    elif ref == 7:
        body += varuint(rng.choice([0, 0, 1, 2, 3, 5, 15, 16]))
        if rng.random() < 0.2:
            body += varstring("tag")
    elif ref == 8:
        length = rng.randrange(1, 4)
        body += varuint(length) + b"".join(_any(rng) for _ in range(length))
    elif ref in (2, 4, 5):
        body += varuint(1) + varstring("text")
    elif ref == 3:
        body += varuint(3) + b"abc"
    elif ref == 6:
        body += varstring("k") + varstring("1")
    elif ref == 9:
        body += varstring("guid") + b"\x7e"
    return bytes([info]) + body, length


def random_update(rng: random.Random) -> bytes:
    """A Yjs v1 update from the grammar, every field at random."""
    blocks = []
    clients = rng.sample([1, 5, 6, 77, 2**31, 2**53 - 1, 2**53, 123456], rng.randrange(1, 4))
    for client in clients:
        clock = 0 if rng.random() < 0.6 else _number(rng)
        structs = []
        for _ in range(rng.randrange(1, 5)):
            data, length = _struct(rng, client, clock)
            structs.append(data)
            clock += length
        blocks.append(varuint(len(structs)) + varuint(client) + varuint(clock) + b"".join(structs))
    out = varuint(len(blocks)) + b"".join(blocks)
    deletes = []
    for client in rng.sample([*clients, 9, 2**40], rng.randrange(0, 3)):
        ranges = [
            (_number(rng), rng.choice([0, 1, 3, _number(rng)])) for _ in range(rng.randrange(1, 4))
        ]
        deletes.append(
            varuint(client)
            + varuint(len(ranges))
            + b"".join(varuint(c) + varuint(n) for c, n in ranges)
        )
    return out + varuint(len(deletes)) + b"".join(deletes)


def mutate(rng: random.Random, data: bytes) -> bytes:
    """Byte-wise and integer-wise mutations."""
    out = bytearray(data)
    for _ in range(rng.randrange(1, 5)):
        if not out:
            out.extend(rng.randbytes(4))
        roll = rng.random()
        pos = rng.randrange(len(out))
        if roll < 0.3:
            out[pos] = rng.randrange(256)
        elif roll < 0.45:
            del out[pos : pos + rng.randrange(1, 9)]
        elif roll < 0.6:
            out[pos:pos] = rng.randbytes(rng.randrange(1, 9))
        elif roll < 0.75:
            out[pos : pos + 1] = varuint(rng.choice(EXTREMES))
        elif roll < 0.85:
            start = rng.randrange(len(out))
            out[pos:pos] = out[start : start + rng.randrange(1, 64)]
        else:
            out[pos] ^= 1 << rng.randrange(8)
    return bytes(out)


def _message(rng: random.Random, update: bytes) -> bytes:
    kind = rng.choice([2, 2, 3, 3, 1, 4, 0, 6, 42])
    store = rng.choice(["s", "t", "new", ""])
    if kind == 2:
        body: list[Any] = [{store: update}, {store: b"\x00"}]
    elif kind == 3:
        body = [{store: [update, update[: len(update) // 2]]}, {}, rng.random() < 0.5]
    elif kind in (1, 4):
        body = [{store: update}, True]
    else:
        body = [rng.choice(["a", 5, None]), ["x"]]
    return cbor2.dumps([rng.choice([1, 1, 1, 2]), kind, *body])


def _envelope(rng: random.Random, message: bytes) -> list[bytes]:
    roll = rng.random()
    if roll < 0.3:
        return [cbor2.dumps([1, 8, zlib.compress(message)])]
    if roll < 0.45:
        size = rng.choice([10, 100, 60_000])
        count = max(2, -(-len(message) // size))
        frames = [
            cbor2.dumps([1, 7, 9, i, count, message[i * size : (i + 1) * size]])
            for i in range(count)
        ]
        if rng.random() < 0.5:
            rng.shuffle(frames)
        return frames
    return [message]


def generate(seed: int) -> tuple[str, list[bytes]]:
    """The input of ``seed``: a target ("frames" or "update") and its byte strings."""
    rng = random.Random(seed)
    frames, updates = seeds()
    roll = rng.random()
    if roll < 0.25:
        return "update", [random_update(rng)]
    if roll < 0.45:
        return "update", [mutate(rng, rng.choice(updates))]
    if roll < 0.7:
        update = random_update(rng) if rng.random() < 0.5 else mutate(rng, rng.choice(updates))
        return "frames", _envelope(rng, _message(rng, update))
    if roll < 0.9:
        return "frames", [mutate(rng, rng.choice(frames)) for _ in range(rng.randrange(1, 4))]
    return "frames", [rng.randbytes(rng.randrange(64)) for _ in range(rng.randrange(1, 4))]


# -- running ----------------------------------------------------------------------------------


class Finding(Exception):
    """An input broke an oracle (other than by killing the process)."""


def _consistent(replica: Any) -> None:
    from crdt_stores import _statevector
    from crdt_stores.replica import StoreReplica

    if replica.state_vector_dict() != _statevector.decode(replica.state_vector()):
        raise Finding("the replica's state vector disagrees with its document's")
    fresh = StoreReplica(
        replica.name, client_id=replica.client_id + 1 if replica.client_id < 2**52 else 1
    )
    fresh.apply(replica.diff())
    if dict(fresh.items()) != dict(replica.items()):
        raise Finding("the replica disagrees with its own document")


def _fresh_peer() -> tuple[Any, Any]:
    """A peer linked to "m", holding store "s" with the honest session's first updates."""
    from crdt_stores.protocol import SyncEngine

    _, updates = seeds()
    engine = SyncEngine("v")
    engine.link_up("m", 0.0)
    replica = engine.create_store("s")
    for update in updates[:3]:
        replica.apply(update)
    return engine, replica


def run(target: str, data: list[bytes]) -> None:
    """Feed one input to a fresh peer; raise ``Finding`` if an oracle breaks."""
    from crdt_stores.replica import UpdateError

    engine, replica = _fresh_peer()
    started = time.process_time()
    try:
        if target == "update":
            for update in data:
                with contextlib.suppress(UpdateError):
                    replica.apply(update)
        else:
            for frame in data:
                engine.receive("m", frame, 0.0)
            engine.tick(5.0)
            engine.data_to_send(5.0)
            engine.is_synced()
    except Exception as exc:
        raise Finding(f"{type(exc).__name__} escaped: {exc}") from exc
    except BaseException as exc:
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise Finding(f"{type(exc).__name__} (a panic) escaped: {exc}") from exc
    if time.process_time() - started > SLOW:
        raise Finding(f"took {time.process_time() - started:.1f} s of CPU")
    if engine.stats.get("handler_error"):
        raise Finding("a handler error was counted")
    for name in engine.stores:
        _consistent(engine.store(name))


def outcome(target: str, data: list[bytes]) -> str:
    """What a fresh peer makes of one input, as a digest: each update accepted or refused
    (and why), the counters, events and values. The compiled and the pure Python
    package must agree on every input (``tests/test_compiled.py``)."""
    from crdt_stores.replica import UpdateError

    engine, replica = _fresh_peer()
    results: list[object] = []
    if target == "update":
        for update in data:
            try:
                replica.apply(update)
                results.append("ok")
            except UpdateError as exc:
                results.append(f"refused: {exc}")
    else:
        for frame in data:
            engine.receive("m", frame, 0.0)
        engine.tick(5.0)
        engine.data_to_send(5.0)
    results.append(sorted((k, v) for k, v in engine.stats.items() if "bytes" not in k))
    results.append(engine.take_events())
    results.append({name: list(engine.store(name).items()) for name in sorted(engine.stores)})
    return hashlib.sha256(repr(results).encode()).hexdigest()[:16]


def outcomes(start: int, count: int) -> list[str]:
    return [outcome(*generate(seed)) for seed in range(start, start + count)]


def save(target: str, data: list[bytes], why: str) -> Path:
    CORPUS.mkdir(exist_ok=True)
    blob = cbor2.dumps({"target": target, "data": data, "why": why})
    path = CORPUS / f"{hashlib.sha256(blob).hexdigest()[:16]}.cbor"
    path.write_bytes(blob)
    return path


def load(path: Path) -> tuple[str, list[bytes], str]:
    item = cbor2.loads(path.read_bytes())
    return item["target"], item["data"], item.get("why", "")


def _worker(start: int, step: int, current: Any, findings: Any, stop_at: float, runs: Any) -> None:
    seeds()
    seed = start
    while time.monotonic() < stop_at:
        runs.value += 1
        current.value = seed
        target, data = generate(seed)
        try:
            run(target, data)
        except Finding as exc:
            findings.put((seed, str(exc)))
        seed += step
        current.value = -1


def fuzz(seconds: float, workers: int, start: int) -> int:
    """Fuzz for ``seconds``; returns the number of findings (each saved to the corpus)."""
    context = multiprocessing.get_context("fork")
    seeds()  # built once, inherited by the workers
    stop_at = time.monotonic() + seconds
    findings = context.Queue()
    runs = context.Value("q", 0)
    found = 0
    slots = []
    for i in range(workers):
        current = context.Value("q", -1)
        process = context.Process(
            target=_worker, args=(start + i, workers, current, findings, stop_at, runs)
        )
        process.start()
        slots.append([process, current, start + i])
    while slots:
        for slot in list(slots):
            process, current, _ = slot
            process.join(timeout=0.05)
            if process.exitcode is None:
                continue
            slots.remove(slot)
            seed = current.value
            if process.exitcode != 0 and seed >= 0:
                target, data = generate(seed)
                why = f"killed by signal {-process.exitcode}" if process.exitcode < 0 else "exit"
                path = save(target, data, why)
                print(f"seed {seed}: peer process died ({why}); saved {path.name}", flush=True)
                found += 1
                if time.monotonic() < stop_at:  # carry on after the crashing seed
                    current = context.Value("q", -1)
                    process = context.Process(
                        target=_worker,
                        args=(seed + workers, workers, current, findings, stop_at, runs),
                    )
                    process.start()
                    slots.append([process, current, seed + workers])
        while not findings.empty():
            seed, why = findings.get()
            target, data = generate(seed)
            path = save(target, data, why)
            print(f"seed {seed}: {why}; saved {path.name}", flush=True)
            found += 1
    print(f"{runs.value} inputs", flush=True)
    return found


def replay(paths: list[Path]) -> int:
    """Run saved inputs, each in its own process (a crash must not hide the others)."""
    failed = 0
    context = multiprocessing.get_context("fork")
    for path in paths:
        target, data, why = load(path)
        process = context.Process(target=_replay_one, args=(target, data))
        process.start()
        process.join(60)
        if process.exitcode is None:
            process.kill()
        if process.exitcode != 0:
            failed += 1
            print(f"{path.name} ({why}): exit code {process.exitcode}", flush=True)
    return failed


def _replay_one(target: str, data: list[bytes]) -> None:
    try:
        run(target, data)
    except Finding as exc:
        print(f"finding: {exc}", file=sys.stderr, flush=True)
        os._exit(3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fuzzer", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--start", type=int, default=None, help="first seed (default: random)")
    parser.add_argument("--replay", nargs="*", type=Path, help="run saved inputs instead")
    parser.add_argument(
        "--outcomes", type=int, metavar="COUNT", help="print what COUNT inputs from --start do"
    )
    args = parser.parse_args(argv)
    if args.outcomes is not None:
        print("\n".join(outcomes(args.start or 0, args.outcomes)))
        return 0
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if args.replay is not None:
        paths = args.replay or sorted(CORPUS.glob("*.cbor"))
        failed = replay(paths)
        print(f"{len(paths) - failed} of {len(paths)} saved inputs pass")
        return 1 if failed else 0
    start = args.start if args.start is not None else random.randrange(2**40)
    print(f"fuzzing for {args.seconds:.0f} s with {args.workers} workers from seed {start}")
    found = fuzz(args.seconds, args.workers, start)
    print(f"{found} findings")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
