"""Property-based convergence: random programs of writes and network faults on 2-5 peers.

Whatever the interleaving of writes, drops, duplicates, reorders, cuts and
partitions, once the network heals every peer holds the same stores with the same
values (types included); a single writer's program gives what a plain dict gives.
"""

from __future__ import annotations

import asyncio
from typing import Any

import cbor2
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from crdt_stores.memory import MemoryNetwork
from crdt_stores.values import normalize, same_value

from .conftest import FAST, assert_same_state, converge

KEYS = st.sampled_from(["a", "b", "c", "d"])
STORE_NAMES = st.sampled_from(["s1", "s2"])
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.integers(-3, 3),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4),
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.sampled_from(["x", "y", "z", "w"]), children, max_size=3),
    ),
    max_leaves=6,
)
UPDATE_VALUES = st.one_of(
    st.dictionaries(st.sampled_from(["x", "y", "z"]), VALUES, max_size=3),
    st.lists(VALUES, max_size=3),
    VALUES,
)


def writes(peers: st.SearchStrategy[int]) -> st.SearchStrategy[tuple]:
    return st.one_of(
        st.tuples(st.just("set"), peers, STORE_NAMES, KEYS, VALUES),
        st.tuples(st.just("update"), peers, STORE_NAMES, KEYS, UPDATE_VALUES),
        st.tuples(st.just("update"), peers, STORE_NAMES, KEYS, UPDATE_VALUES),
        st.tuples(st.just("delete"), peers, STORE_NAMES, KEYS),
        st.tuples(
            st.just("bulk_set"), peers, STORE_NAMES, st.dictionaries(KEYS, VALUES, max_size=3)
        ),
        st.tuples(st.just("bulk_delete"), peers, STORE_NAMES, st.lists(KEYS, max_size=3)),
        st.tuples(st.just("clear"), peers, STORE_NAMES),
    )


NETWORK = st.one_of(
    st.tuples(
        st.just("faults"),
        st.sampled_from([0.0, 0.1, 0.3]),
        st.sampled_from([0.0, 0.2]),
        st.sampled_from([0.0, 0.002, 0.01]),
    ),
    st.tuples(st.just("cut"), st.integers(0, 4), st.integers(0, 4)),
    st.tuples(st.just("restore"), st.integers(0, 4), st.integers(0, 4)),
    st.tuples(st.just("partition"), st.integers(1, 4)),
    st.tuples(st.just("heal")),
    st.tuples(st.just("flow"), st.integers(1, 20)),
    st.tuples(st.just("sleep"), st.sampled_from([0.001, 0.01, 0.03])),
)


async def _write(store: Any, op: tuple) -> None:
    kind = op[0]
    if kind in ("set", "update"):
        await getattr(store, kind)(op[3], op[4])
    elif kind == "delete":
        await store.delete(op[3])
    elif kind == "bulk_set":
        await store.bulk_set(op[3])
    elif kind == "bulk_delete":
        await store.bulk_delete(op[3])
    elif kind == "clear":
        await store.clear()


async def _network(net: MemoryNetwork, names: list[str], op: tuple) -> None:
    kind = op[0]
    n = len(names)
    if kind == "faults":
        net.set_faults(drop=op[1], duplicate=op[2], jitter=op[3])
    elif kind == "cut" and op[1] % n != op[2] % n:
        net.cut(names[op[1] % n], names[op[2] % n])
    elif kind == "restore" and op[1] % n != op[2] % n:
        net.restore(names[op[1] % n], names[op[2] % n])
    elif kind == "partition":
        split = op[1] % n or 1
        net.partition(names[:split], names[split:])
    elif kind == "heal":
        net.heal()
    elif kind == "flow":
        for _ in range(op[1]):
            await asyncio.sleep(0)
    elif kind == "sleep":
        await asyncio.sleep(op[1])


async def _run(n_peers: int, program: list[tuple], seed: int) -> list:
    net = MemoryNetwork(seed=seed, **FAST)
    names = [f"p{i}" for i in range(n_peers)]
    peers = [await net.join("room", peer_id=name) for name in names]
    for op in program:
        if op[0] == "rejoin":
            i = op[1] % n_peers
            await peers[i].leave()
            peers[i] = await net.join("room", peer_id=names[i])
        elif op[0] in ("set", "update", "delete", "bulk_set", "bulk_delete", "clear"):
            await _write(peers[op[1] % n_peers].stores.create(op[2]), op)
        else:
            await _network(net, names, op)
    net.heal()
    await converge(*peers, timeout=10)
    return peers


PROPERTY_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@PROPERTY_SETTINGS
@given(
    n_peers=st.integers(2, 5),
    program=st.lists(
        st.one_of(
            writes(st.integers(0, 4)),
            writes(st.integers(0, 4)),
            NETWORK,
            st.tuples(st.just("rejoin"), st.integers(0, 4)),
        ),
        min_size=3,
        max_size=60,
    ),
    seed=st.integers(0, 1000),
)
def test_every_peer_converges_to_the_same_state(n_peers: int, program: list, seed: int) -> None:
    async def main() -> None:
        peers = await _run(n_peers, program, seed)
        assert_same_state(*peers)
        for peer in peers:
            await peer.leave()

    asyncio.run(main())


def _model(program: list[tuple]) -> dict[str, dict]:
    stores: dict[str, dict] = {}
    for op in program:
        if op[0] not in ("set", "update", "delete", "bulk_set", "bulk_delete", "clear"):
            continue
        data = stores.setdefault(op[2], {})
        kind = op[0]
        if kind == "set":
            data[op[3]] = normalize(op[4])
        elif kind == "update":
            value = normalize(op[4])
            current = data.get(op[3])
            if type(value) is dict and type(current) is dict:
                data[op[3]] = {**current, **value}
            elif type(value) is list and type(current) is list:
                data[op[3]] = current + value
            else:
                data[op[3]] = value
        elif kind == "delete":
            data.pop(op[3], None)
        elif kind == "bulk_set":
            data.update({k: normalize(v) for k, v in op[3].items()})
        elif kind == "bulk_delete":
            for key in op[3]:
                data.pop(key, None)
        elif kind == "clear":
            data.clear()
    return stores


@PROPERTY_SETTINGS
@given(
    n_peers=st.integers(2, 4),
    program=st.lists(
        st.one_of(writes(st.just(0)), writes(st.just(0)), NETWORK), min_size=3, max_size=60
    ),
    seed=st.integers(0, 1000),
)
def test_single_writer_matches_a_plain_dict(n_peers: int, program: list, seed: int) -> None:
    expected = _model(program)

    async def main() -> None:
        peers = await _run(n_peers, program, seed)
        for peer in peers:
            assert sorted(peer.stores) == sorted(expected)
            for name, data in expected.items():
                got = peer.stores[name].get_all()
                assert same_value(got, data), (peer.peer_id, name, got, data)
        for peer in peers:
            await peer.leave()

    asyncio.run(main())


# -- a forging peer ---------------------------------------------------------------------------

FORGED_CLIENTS = st.sampled_from([7, 8, 2**53 - 1])
FORGED_LAMPORTS = st.one_of(st.integers(0, 5), st.just(2**64 - 1))
BAD_VALUES = st.sampled_from([2**64, float("nan"), b"bytes", -(2**63) - 1])
BAD_LAMPORTS = st.sampled_from([2**64, -1, "1", 1.5])
SUBSET = st.integers(1, 31)  # which honest peers get it (bits); the others learn by sync

FORGERY = st.one_of(
    # valid entries in a forged writer's own array: equal clocks, the top clock...
    st.tuples(
        st.just("forge_entries"),
        SUBSET,
        FORGED_CLIENTS,
        STORE_NAMES,
        st.lists(
            st.tuples(KEYS, st.integers(0, 3), VALUES, FORGED_LAMPORTS), min_size=1, max_size=3
        ),
        st.booleans(),  # sent as one merged update, or one update per entry (in random order)
    ),
    # entries no write can make (each from a writer of its own, which they block)
    st.tuples(
        st.just("forge_invalid"),
        SUBSET,
        st.integers(100, 10**6),
        STORE_NAMES,
        st.one_of(
            st.tuples(KEYS, st.just(0), BAD_VALUES, FORGED_LAMPORTS),
            st.tuples(KEYS, st.just(0), VALUES, BAD_LAMPORTS),
            st.tuples(st.sampled_from(["", "*", "k" * 1025]), st.just(0), VALUES, st.just(1)),
            st.tuples(KEYS, st.sampled_from([1, 2, 3, 9]), st.just("not for this op"), st.just(1)),
        ),
    ),
    # an entry appended to an honest writer's array
    st.tuples(st.just("forge_foreign"), SUBSET, st.integers(0, 4), STORE_NAMES, KEYS),
    # deletions of any writer's clocks (honest ones included), past or future
    st.tuples(
        st.just("forge_delete"),
        SUBSET,
        st.integers(0, 5),
        STORE_NAMES,
        st.integers(0, 12),
    ),
)


def _payload(code: int, value: Any) -> Any:
    """A payload that suits the operation (a valid entry)."""
    if code == 1:
        return value if type(value) is dict else {"x": value}
    if code == 2:
        return value if type(value) is list else [value]
    return None if code == 3 else value


class Forger:
    """Mallory: keeps one pycrdt document per forged writer and store, sends raw frames."""

    def __init__(self, mallory: Any, rng_seed: int) -> None:
        import random

        self.mallory = mallory
        self.docs: dict[tuple[int, str], Any] = {}
        self.rng = random.Random(rng_seed)

    def send(self, mask: int, honest: list[Any], *frames: bytes) -> None:
        for i, peer in enumerate(honest):
            if mask >> i & 1:
                for frame in frames:
                    self.mallory._transport.send(peer.peer_id, frame)

    def run(self, op: tuple, honest: list[Any]) -> None:
        from pycrdt import Doc, merge_updates

        from .helpers import attacks

        kind, mask = op[0], op[1]
        if kind in ("forge_entries", "forge_invalid"):
            if kind == "forge_invalid":
                _, _, client, store, bad = op
                entries, merged = [bad], True
                doc = Doc(client_id=client)
            else:
                _, _, client, store, entries, merged = op
                entries = [(k, c, _payload(c, v), lamport) for k, c, v, lamport in entries]
                doc = self.docs.setdefault((client, store), Doc(client_id=client))
            parts = []
            for key, code, value, lamport in entries:
                blob = cbor2.dumps([key, code, value, lamport])
                parts.append(attacks.own_entries(client, blob, base=doc)[1])
            if merged:
                parts = [merge_updates(*parts)]
            else:
                self.rng.shuffle(parts)  # a part ahead of its predecessor waits for it
            for part in parts:
                self.send(mask, honest, attacks.message(attacks.UPDATE, {store: [part]}, {}))
        elif kind == "forge_foreign":
            _, _, who, store, key = op
            replica = honest[who % len(honest)]._engine.store(store)
            writers = sorted(replica._m.mirrors) if replica is not None else []
            if writers:  # an entry appended to the array of a writer this peer holds
                writer = int(writers[who % len(writers)])
                forged = attacks.foreign_append(replica.diff(), writer, key, "forged")
                self.send(mask, honest, attacks.message(attacks.UPDATE, {store: [forged]}, {}))
        elif kind == "forge_delete":
            _, _, who, store, clock = op
            clients = [p._engine.store(store).client_id for p in honest if p._engine.store(store)]
            clients += [7, 8]
            client = clients[who % len(clients)]
            update = (
                b"\x00\x01" + attacks.varuint(client) + b"\x01" + attacks.varuint(clock) + b"\x02"
            )
            self.send(mask, honest, attacks.message(attacks.UPDATE, {store: [update]}, {}))


@PROPERTY_SETTINGS
@given(
    n_peers=st.integers(2, 4),
    program=st.lists(
        st.one_of(writes(st.integers(0, 3)), FORGERY, FORGERY, NETWORK), min_size=3, max_size=40
    ),
    seed=st.integers(0, 1000),
)
@example(  # a local write at the top clock ordered before a forged entry of a bigger writer
    n_peers=2,
    program=[
        ("forge_entries", 1, 2**53 - 1, "s2", [("c", 0, None, 2**64 - 1)], False),
        ("flow", 1),
        ("set", 0, "s1", "a", None),
        ("set", 0, "s2", "c", []),
    ],
    seed=0,
)
def test_honest_peers_converge_whatever_a_forger_sends(
    n_peers: int, program: list, seed: int
) -> None:
    """Equal clocks, foreign arrays, out-of-range values, deletions of anything, sent to any
    subset of peers in any batching: once the network heals, every peer holds the same."""

    async def main() -> None:
        net = MemoryNetwork(seed=seed, **FAST)
        names = [f"p{i}" for i in range(n_peers)]
        honest = [await net.join("room", peer_id=name) for name in names]
        mallory = await net.join("room", peer_id="mallory")
        forger = Forger(mallory, seed)
        for op in program:
            if op[0].startswith("forge_"):
                forger.run(op, honest)
            elif op[0] in ("set", "update", "delete", "bulk_set", "bulk_delete", "clear"):
                await _write(honest[op[1] % n_peers].stores.create(op[2]), op)
            else:
                await _network(net, [*names, "mallory"], op)
        net.heal()
        await net.drained()  # the forged frames did not go through mallory's engine
        await converge(*honest, mallory, timeout=10)
        assert_same_state(*honest, mallory)
        peers = [*honest, mallory]
        forged = {7, 8, 2**53 - 1}
        landed = any(
            e.order[1] in forged
            for p in peers
            for r in p._engine.stores.values()
            for entries in r._m.by_key.values()
            for e in entries
        )
        event(f"forged entries in the converged state: {landed}")
        for counter in ("bad_update", "deletion_repairs", "held_dropped"):
            event(f"{counter}: {any(p.stats.get(counter) for p in peers)}")
        for peer in peers:
            await peer.leave()

    asyncio.run(main())
