"""The public Store API of SPEC §2, on two peers over the in-memory network."""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import warnings
from enum import StrEnum

import pytest

from crdt_stores import Meeting, Store, Subscription, Write
from crdt_stores.values import MAX_DEPTH, same_value

from .conftest import assert_same_state, converge


@pytest.fixture
async def pair(net):
    alice = await net.join("room", peer_id="alice")
    bob = await net.join("room", peer_id="bob")
    yield alice, bob
    await alice.leave()
    await bob.leave()


async def test_seed_example(pair) -> None:
    alice, bob = pair
    store = alice.stores.create("myStore")
    await store.set("user", {"name": "John Doe"})
    await store.update("user", {"age": 34})
    assert store.get("user") == {"name": "John Doe", "age": 34}
    await converge(alice, bob)
    assert bob.stores.get("myStore").get("user") == {"name": "John Doe", "age": 34}
    await store.delete("user")
    await converge(alice, bob)
    assert bob.stores.get("myStore").get("user") is None
    assert "user" not in bob.stores.get("myStore").get_all()


async def test_list_update_appends_as_in_the_seed_page(pair) -> None:
    alice, bob = pair
    store = alice.stores.create("s")
    await store.set("l", ["a", "b"])
    await store.update("l", ["c"])
    await converge(alice, bob)
    assert bob.stores["s"].get("l") == ["a", "b", "c"]


MERGE_TABLE = [
    # (label, initial (None = missing), operation, argument, expected (None = missing))
    ("set on missing", None, "set", 5, 5),
    ("set overwrites dict", {"a": 1}, "set", {"b": 2}, {"b": 2}),
    ("set overwrites list", [1], "set", "x", "x"),
    (
        "update dict merges shallowly",
        {"a": 1, "n": {"x": 1}},
        "update",
        {"n": {"y": 2}, "b": 2},
        {"a": 1, "n": {"y": 2}, "b": 2},
    ),
    ("update dict overwrites fields", {"a": 1, "b": 1}, "update", {"a": 2}, {"a": 2, "b": 1}),
    ("update list appends", [1, 2], "update", [3, [4]], [1, 2, 3, [4]]),
    ("update missing dict = set", None, "update", {"a": 1}, {"a": 1}),
    ("update missing list = set", None, "update", [1], [1]),
    ("update scalar = set", 1, "update", 2, 2),
    ("update dict onto list = set", [1], "update", {"a": 1}, {"a": 1}),
    ("update list onto dict = set", {"a": 1}, "update", [1], [1]),
    ("update dict onto scalar = set", "x", "update", {"a": 1}, {"a": 1}),
    ("update scalar onto dict = set", {"a": 1}, "update", 3.5, 3.5),
    ("update with tuple appends", [1], "update", (2, 3), [1, 2, 3]),
    ("delete present", {"a": 1}, "delete", None, None),
    ("delete missing", None, "delete", None, None),
]


@pytest.mark.parametrize(
    ("label", "initial", "operation", "argument", "expected"),
    MERGE_TABLE,
    ids=[r[0] for r in MERGE_TABLE],
)
async def test_merge_rules(pair, label, initial, operation, argument, expected) -> None:
    alice, bob = pair
    store = alice.stores.create("s")
    if initial is not None:
        await store.set("k", initial)
    if operation == "delete":
        await store.delete("k")
    else:
        await getattr(store, operation)("k", argument)
    await converge(alice, bob)
    for peer in (alice, bob):
        got = peer.stores["s"]
        if expected is None:
            assert "k" not in got and got.get("k") is None and "k" not in got.get_all()
        else:
            assert same_value(got.get("k"), expected), (peer.peer_id, got.get("k"))


async def test_reads(pair) -> None:
    alice, bob = pair
    store = alice.stores.create("s")
    assert len(store) == 0 and store.keys() == [] and store.get_all() == {}
    assert store.get("nope") is None and store.get("nope", 7) == 7
    await store.bulk_set({"a": 1, "b": [1], "c": {"x": 1}})
    assert len(store) == 3 and sorted(store.keys()) == ["a", "b", "c"] and "a" in store
    assert "z" not in store and sorted(store) == ["a", "b", "c"]
    await converge(alice, bob)
    theirs = bob.stores["s"]
    assert len(theirs) == 3 and sorted(theirs.keys()) == ["a", "b", "c"] and "b" in theirs


async def test_reads_are_copies(pair) -> None:
    alice, _ = pair
    store = alice.stores.create("s")
    await store.set("k", {"list": [1], "d": {"x": 1}})
    got = store.get("k")
    got["list"].append(2)
    got["d"]["x"] = 99
    got["new"] = True
    everything = store.get_all()
    everything["k"]["list"].append(3)
    everything["other"] = 1
    assert store.get("k") == {"list": [1], "d": {"x": 1}}
    assert store.get_all() == {"k": {"list": [1], "d": {"x": 1}}}


async def test_written_values_are_copied_in(pair) -> None:
    alice, _ = pair
    store = alice.stores.create("s")
    value = {"a": [1]}
    await store.set("k", value)
    value["a"].append(2)
    assert store.get("k") == {"a": [1]}


async def test_bulk_operations_and_clear(pair) -> None:
    alice, bob = pair
    store = alice.stores.create("s")
    await store.bulk_set({"a": 1, "b": 2, "c": 3, "d": 4})
    await store.bulk_delete(["a", "b", "missing"])
    await converge(alice, bob)
    assert bob.stores["s"].get_all() == {"c": 3, "d": 4}
    await store.clear()
    await converge(alice, bob)
    assert bob.stores["s"].get_all() == {} and len(bob.stores["s"]) == 0
    await store.bulk_set({})
    await store.bulk_delete([])
    await store.clear()
    assert alice.stores["s"].get_all() == {}


async def test_stores_collection(pair) -> None:
    alice, bob = pair
    assert len(alice.stores) == 0 and alice.stores.get("x") is None and "x" not in alice.stores
    one = alice.stores.create("one")
    assert alice.stores.create("one") is one  # idempotent
    assert isinstance(one, Store) and one.name == "one"
    bob.stores.create("two")
    bob.stores.create("one")  # on both sides: harmless
    await converge(alice, bob)
    for peer in (alice, bob):
        assert sorted(peer.stores) == ["one", "two"]
        assert len(peer.stores) == 2 and "two" in peer.stores
        assert peer.stores.get("two") is peer.stores["two"]
    with pytest.raises(KeyError):
        alice.stores["three"]


async def test_empty_store_appears_remotely(pair) -> None:
    alice, bob = pair
    alice.stores.create("empty")
    await converge(alice, bob)
    assert "empty" in bob.stores and bob.stores["empty"].get_all() == {}


async def test_each_write_is_one_delta(pair) -> None:
    alice, bob = pair
    store = alice.stores.create("s")
    await converge(alice, bob)
    engine = alice._engine
    before = engine.stats["frames_out"]
    await store.bulk_set({f"k{i}": i for i in range(50)})
    assert list(map(len, engine._outbox._local.values())) == [1]
    await store.clear()
    assert list(map(len, engine._outbox._local.values())) == [2]
    await converge(alice, bob)
    assert engine.stats["frames_out"] > before
    assert bob.stores["s"].get_all() == {}


async def test_writes_in_one_tick_are_one_message(pair) -> None:
    alice, bob = pair
    store = alice.stores.create("s")
    await converge(alice, bob)
    received = bob._engine.stats["in:update"]
    for i in range(100):
        await store.set(f"k{i}", i)  # no yield in between: one tick
    await converge(alice, bob)
    assert bob._engine.stats["in:update"] == received + 1
    assert len(bob.stores["s"]) == 100


# -- bad input ------------------------------------------------------------------

BAD_WRITES = [
    ("bytes value", "set", ("k", b"x"), TypeError),
    ("set value", "set", ("k", {1, 2}), TypeError),
    ("object value", "set", ("k", object()), TypeError),
    ("int dict key", "set", ("k", {1: "x"}), TypeError),
    ("nested bad key", "update", ("k", {"a": {None: 1}}), TypeError),
    ("int key", "set", (1, "x"), TypeError),
    ("None key", "set", (None, "x"), TypeError),
    ("empty key", "set", ("", "x"), ValueError),
    ("wildcard key", "set", ("*", "x"), ValueError),
    ("wildcard update", "update", ("*", {"a": 1}), ValueError),
    ("wildcard delete", "delete", ("*",), ValueError),
    ("int over int64", "set", ("k", 2**63), ValueError),
    ("int under int64", "update", ("k", [-(2**63) - 1]), ValueError),
    ("nan", "set", ("k", math.nan), ValueError),
    ("inf", "update", ("k", {"a": math.inf}), ValueError),
    ("-inf", "set", ("k", -math.inf), ValueError),
    (
        "too deep",
        "set",
        ("k", [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]),
        ValueError,
    ),
    ("too big", "set", ("k", "x" * (1024 * 1024 + 1)), ValueError),
    ("bulk bad value", "bulk_set", ({"ok": 1, "bad": b"x"},), TypeError),
    ("bulk wildcard", "bulk_set", ({"ok": 1, "*": 2},), ValueError),
    ("bulk not mapping", "bulk_set", ([("a", 1)],), TypeError),
    ("bulk_delete str", "bulk_delete", ("abc",), TypeError),
    ("bulk_delete bad key", "bulk_delete", (["a", 3],), TypeError),
]


@pytest.mark.parametrize(
    ("label", "method", "args", "error"), BAD_WRITES, ids=[b[0] for b in BAD_WRITES]
)
async def test_bad_input_is_refused_and_changes_nothing(pair, label, method, args, error) -> None:
    alice, bob = pair
    store = alice.stores.create("s")
    await store.set("k", {"keep": 1})
    await store.set("ok", "before")
    await converge(alice, bob)
    frames = alice._engine.stats["frames_out"]
    with pytest.raises(error):
        await getattr(store, method)(*args)
    await converge(alice, bob)
    for peer in (alice, bob):
        assert peer.stores["s"].get_all() == {"k": {"keep": 1}, "ok": "before"}
    assert alice._engine.stats["frames_out"] == frames  # nothing was sent


async def test_value_size_limit_is_configurable(net) -> None:
    small = await net.join("room", peer_id="small", max_value_bytes=100)
    store = small.stores.create("s")
    await store.set("k", "x" * 90)
    with pytest.raises(ValueError, match="limit is 100"):
        await store.set("k", "x" * 200)
    assert store.get("k") == "x" * 90


async def test_max_depth_write_is_accepted(pair) -> None:
    alice, bob = pair
    value: list = []
    for _ in range(MAX_DEPTH - 1):
        value = [value]
    await alice.stores.create("s").set("k", value)
    await converge(alice, bob)
    assert bob.stores["s"].get("k") == value


async def test_bad_store_names(pair) -> None:
    alice, _ = pair
    with pytest.raises(TypeError):
        alice.stores.create(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        alice.stores.create("")
    assert len(alice.stores) == 0


# -- subscriptions --------------------------------------------------------------


async def test_subscribe_key_and_wildcard(pair) -> None:
    alice, bob = pair
    store = alice.stores.create("s")
    await converge(alice, bob)
    theirs = bob.stores["s"]
    on_key: list = []
    on_any: list = []
    theirs.subscribe("user", lambda k, v: on_key.append((k, v)))
    theirs.subscribe("*", lambda k, v: on_any.append((k, v)))
    await store.set("user", {"name": "x"})
    await store.set("other", 1)
    await converge(alice, bob)
    await store.delete("user")
    await converge(alice, bob)
    assert on_key == [("user", {"name": "x"}), ("user", None)]
    assert on_any == [("user", {"name": "x"}), ("other", 1), ("user", None)]


async def test_one_call_per_changed_key_per_change(pair) -> None:
    alice, bob = pair
    store = alice.stores.create("s")
    await converge(alice, bob)
    calls: list = []
    bob.stores["s"].subscribe("*", lambda k, v: calls.append((k, v)))
    await store.bulk_set({"a": 1, "b": 2, "c": 3})
    await converge(alice, bob)
    assert sorted(calls) == [("a", 1), ("b", 2), ("c", 3)]
    calls.clear()
    await store.clear()
    await converge(alice, bob)
    assert sorted(calls) == [("a", None), ("b", None), ("c", None)]


async def test_own_writes_notify_only_with_emit(pair) -> None:
    alice, _ = pair
    store = alice.stores.create("s")
    calls: list = []
    store.subscribe("k", lambda k, v: calls.append(v))
    await store.set("k", 1)
    await store.update("k", 2)
    assert calls == []
    await store.set("k", 3, emit=True)
    await store.update("k", 4, emit=True)
    await store.delete("k", emit=True)
    await store.bulk_set({"k": 5}, emit=True)
    await store.bulk_delete(["k"], emit=True)
    await store.set("k", 6)
    await store.clear(emit=True)
    assert calls == [3, 4, None, 5, None, None]


async def test_unsubscribe(pair) -> None:
    alice, bob = pair
    store = alice.stores.create("s")
    await converge(alice, bob)
    theirs = bob.stores["s"]
    first: list = []
    second: list = []

    def cb1(k, v):
        first.append(v)

    def cb2(k, v):
        second.append(v)

    theirs.subscribe("k", cb1)
    theirs.subscribe("k", cb2)
    theirs.subscribe("k", cb1)  # subscribing twice does not call twice
    await store.set("k", 1)
    await converge(alice, bob)
    theirs.unsubscribe("k", cb1)
    await store.set("k", 2)
    await converge(alice, bob)
    theirs.unsubscribe("k")
    await store.set("k", 3)
    await converge(alice, bob)
    theirs.unsubscribe("k", cb2)  # unknown: no error
    theirs.unsubscribe("never")
    assert first == [1] and second == [1, 2]


async def test_coroutine_callbacks(pair) -> None:
    alice, bob = pair
    store = alice.stores.create("s")
    await converge(alice, bob)
    got: asyncio.Queue = asyncio.Queue()

    async def callback(key, value):
        await asyncio.sleep(0)
        await got.put((key, value))

    bob.stores["s"].subscribe("k", callback)
    await store.set("k", [1])
    assert await asyncio.wait_for(got.get(), 5) == ("k", [1])


async def test_raising_callback_is_isolated_and_logged(pair, caplog) -> None:
    alice, bob = pair
    store = alice.stores.create("s")
    await converge(alice, bob)
    calls: list = []

    def bad(key, value):
        raise RuntimeError("boom")

    async def bad_async(key, value):
        raise RuntimeError("async boom")

    theirs = bob.stores["s"]
    theirs.subscribe("k", bad)
    theirs.subscribe("k", bad_async)
    theirs.subscribe("k", lambda k, v: calls.append(v))
    theirs.subscribe("*", lambda k, v: calls.append(("*", v)))
    with caplog.at_level(logging.ERROR, logger="crdt_stores"):
        await store.set("k", 1)
        await store.set("j", 2)
        await converge(alice, bob)
        await asyncio.sleep(0)
    assert calls == [1, ("*", 1), ("*", 2)]
    assert theirs.get_all() == {"k": 1, "j": 2}
    messages = " ".join(r.getMessage() + str(r.exc_info) for r in caplog.records)
    assert "boom" in messages and "async boom" in messages
    await store.set("k", 3)  # replication goes on
    await converge(alice, bob)
    assert theirs.get("k") == 3


async def test_callback_values_are_copies(pair) -> None:
    alice, bob = pair
    store = alice.stores.create("s")
    await converge(alice, bob)

    def mutate(key, value):
        value.append("mutated")

    seen: list = []
    bob.stores["s"].subscribe("k", mutate)
    bob.stores["s"].subscribe("k", lambda k, v: seen.append(list(v)))
    await store.set("k", [1])
    await converge(alice, bob)
    assert seen == [[1]] and bob.stores["s"].get("k") == [1]


async def test_subscribe_rejects_bad_arguments(pair) -> None:
    alice, _ = pair
    store = alice.stores.create("s")
    with pytest.raises(TypeError):
        store.subscribe("k", "not callable")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.subscribe(3, print)  # type: ignore[arg-type]


# -- meeting --------------------------------------------------------------------


async def test_meeting_properties_and_peer_events(net) -> None:
    alice = await net.join("room", peer_id="alice")
    joined: list = []
    left: list = []
    alice.on("peer_joined", joined.append)
    alice.on("peer_left", left.append)
    assert alice.peer_id == "alice" and alice.room == "room" and alice.peers == []
    bob = await net.join("room", peer_id="bob")
    await converge(alice, bob)
    assert alice.peers == ["bob"] and bob.peers == ["alice"] and joined == ["bob"]
    await bob.leave()
    for _ in range(10):
        await asyncio.sleep(0)
    assert alice.peers == [] and left == ["bob"]
    with pytest.raises(ValueError):
        alice.on("nonsense", print)  # type: ignore[arg-type]
    alice.off("peer_joined", joined.append)
    await alice.leave()


async def test_writes_after_leave_raise_reads_still_work(net) -> None:
    alice = await net.join("room", peer_id="alice")
    store = alice.stores.create("s")
    await store.set("k", 1)
    await alice.leave()
    with pytest.raises(RuntimeError):
        await store.set("k", 2)
    assert store.get("k") == 1
    await alice.leave()  # twice is fine


async def test_unknown_option_is_an_error() -> None:
    with pytest.raises(TypeError, match="bogus"):
        Meeting("ws://127.0.0.1:1", room="r", bogus=1)
    with pytest.raises(TypeError):
        Meeting("ws://127.0.0.1:1")


async def test_three_peers_same_state(net) -> None:
    peers = [await net.join("room", peer_id=name) for name in ("a", "b", "c")]
    for i, peer in enumerate(peers):
        await peer.stores.create("s").set(f"from-{i}", i)
    await converge(*peers)
    assert_same_state(*peers)
    assert len(peers[0].stores["s"]) == 3


# -- what a new user trips over (issue 10) -----------------------------------------


async def test_a_write_without_await_still_happens_everywhere(pair) -> None:
    alice, bob = pair
    store = alice.stores.create("s")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "coroutine was never awaited" either
        store.set("forgot", 1)
        store.update("forgot-list", [1])
        store.bulk_set({"a": 1, "b": 2})
        store.delete("a")
    assert store.get("forgot") == 1 and store.get("a") is None
    await converge(alice, bob)
    assert bob.stores["s"].get_all() == {"forgot": 1, "forgot-list": [1], "b": 2}
    written = store.set("awaited", 2)
    assert isinstance(written, Write) and store.get("awaited") == 2  # before any await
    assert await written is None
    with pytest.raises(ValueError):
        store.set("*", 1)  # bad input raises at the call, await or not


async def test_subscribe_returns_a_handle_that_unsubscribes(pair) -> None:
    alice, bob = pair
    store = alice.stores.create("s")
    await converge(alice, bob)
    seen: list = []
    handle = bob.stores["s"].subscribe("k", lambda key, value: seen.append(value))
    assert isinstance(handle, Subscription)
    await store.set("k", 1)
    await converge(alice, bob)
    handle()
    await store.set("k", 2)
    await converge(alice, bob)
    assert seen == [1]
    handle.unsubscribe()  # twice is harmless


def _one_argument(value):  # a common slip: the callback gets (key, value)
    return value


async def test_a_callback_that_cannot_take_key_and_value_is_refused_at_subscribe(pair) -> None:
    alice, _ = pair
    store = alice.stores.create("s")
    with pytest.raises(TypeError, match=r"callback\(key, value\)"):
        store.subscribe("k", _one_argument)
    with pytest.raises(TypeError):
        store.subscribe("k", lambda: None)
    store.subscribe("k", lambda *args: None)  # these can take two arguments
    store.subscribe("k", lambda key, value, extra=None: None)
    store.subscribe("k", print)


class Color(StrEnum):
    RED = "red"


class Shade(str, enum.Enum):  # noqa: UP042 - str() of a member is "Shade.DARK", its text "dark"
    DARK = "dark"


async def test_str_subclass_keys_and_names_act_as_their_text(pair) -> None:
    alice, bob = pair
    store = alice.stores.create(Color.RED)
    assert alice.stores.create("red") is store and alice.stores[Color.RED] is store
    await store.set(Color.RED, 1)
    await store.set(Shade.DARK, {Shade.DARK: Color.RED})
    assert store.get("red") == 1 and store.get(Color.RED) == 1 and Color.RED in store
    assert store.get("dark") == {"dark": "red"} and store.get(Shade.DARK) == {"dark": "red"}
    assert type(next(iter(store.get("dark")))) is str
    assert sorted(store.keys()) == ["dark", "red"]
    assert all(type(key) is str for key in store)
    await converge(alice, bob)
    assert bob.stores["red"].get_all() == {
        "red": 1,
        "dark": {"dark": "red"},
    }
    assert Shade.DARK not in alice.stores and alice.stores.get(Shade.DARK) is None


async def test_synced_says_which_peers_it_covers(net) -> None:
    alice = await net.join("room", peer_id="alice")
    assert await alice.synced(timeout=5) == []  # alone: an agreement with nobody
    bob = await net.join("room", peer_id="bob")
    carol = await net.join("room", peer_id="carol")
    try:
        await alice.stores.create("s").set("k", 1)
        assert await alice.synced(timeout=5) == ["bob", "carol"]
        await carol.leave()
        await alice.stores["s"].set("k", 2)
        assert await alice.synced(timeout=5) == ["bob"]  # carol is no longer covered
    finally:
        await alice.leave()
        await bob.leave()


async def test_synced_does_not_call_being_cut_off_agreement(net) -> None:
    alice = await net.join("room", peer_id="alice")
    bob = await net.join("room", peer_id="bob")
    try:
        net.cut("alice", "bob")
        for _ in range(200):  # bounded: the cut reaches the engine
            if not alice.peers:
                break
            await asyncio.sleep(0.01)
        await alice.stores.create("s").set("k", "while cut off")
        with pytest.raises(TimeoutError):  # bob is in the room, unreachable: no agreement
            await alice.synced(timeout=0.5)
        net.restore("alice", "bob")
        assert await alice.synced(timeout=10) == ["bob"]
        assert bob.stores["s"].get("k") == "while cut off"
    finally:
        await alice.leave()
        await bob.leave()
