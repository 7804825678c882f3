"""A batch of local deltas sent as one update encoded from the document (``squash``):
Yrs keeps a writer's consecutive entries as one struct, so the batch is smaller and
cheaper to apply, and it must carry exactly what the merged deltas carry."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import merge_updates

from crdt_stores import updates
from crdt_stores.replica import StoreReplica


def structs(update: bytes) -> int:
    read = updates.read(update, max_units=1 << 30, max_value_bytes=1 << 20, keep_structs=True)
    return sum(len(block.structs or ()) for block in read.blocks)


def same_state(a: StoreReplica, b: StoreReplica) -> None:
    assert dict(a.items()) == dict(b.items())
    assert a.state_vector_dict() == b.state_vector_dict()
    assert a.delete_digest() == b.delete_digest()


def test_a_squashed_batch_carries_what_the_merged_deltas_carry_in_fewer_structs() -> None:
    writer = StoreReplica("s", client_id=11)
    writer.set("seed", 0)
    writer.take_outbox_items()
    writer.squash([])  # the seed went on its own: start a batch here
    by_squash = StoreReplica("s", client_id=21)
    by_merge = StoreReplica("s", client_id=22)
    for replica in (by_squash, by_merge):
        replica.apply(writer.diff())
    for i in range(60):
        writer.set(f"k{i % 7}", {"n": i})
        writer.update("log", [i])
        if i % 10 == 3:
            writer.delete(f"k{i % 7}")
    writer.bulk_set({f"b{i}": i for i in range(20)})
    deltas = writer.take_outbox_items()
    squashed = writer.squash(deltas)
    assert squashed is not None
    update, items = squashed
    merged = merge_updates(*(delta for delta, _ in deltas))
    assert items == sum(n for _, n in deltas)
    assert len(update) < len(merged) and structs(update) < structs(merged)
    by_squash.apply(update)
    by_merge.apply(merged)
    same_state(by_squash, writer)
    same_state(by_merge, writer)


def test_new_entries_of_one_batch_are_one_struct() -> None:
    writer = StoreReplica("s", client_id=11)
    writer.set("seed", 0)
    writer.squash(writer.take_outbox_items())
    for i in range(30):
        writer.set(f"k{i}", i)  # 30 transactions, 30 structs once merged
    deltas = writer.take_outbox_items()
    squashed = writer.squash(deltas)
    assert squashed is not None
    assert structs(merge_updates(*(d for d, _ in deltas))) == 30
    assert structs(squashed[0]) == 1


def test_only_exactly_the_batch_is_squashed() -> None:
    writer = StoreReplica("s", client_id=11)
    for i in range(5):
        writer.set("k", i)
    deltas = writer.take_outbox_items()
    assert writer.squash(deltas[1:]) is None  # one missing
    for i in range(5):
        writer.set("k", i)
    deltas = writer.take_outbox_items()
    assert writer.squash(list(reversed(deltas))) is None  # out of order
    writer.set("k", 1)
    writer.take_outbox()  # taken, never sent
    writer.set("k", 2)
    assert writer.squash(writer.take_outbox_items()) is None
    writer.set("k", 3)
    assert writer.squash(writer.take_outbox_items()) is None  # one delta: nothing to squash
    writer.set("k", 4)
    writer.set("k", 5)
    assert writer.squash(writer.take_outbox_items()) is not None


ops = st.one_of(
    st.tuples(st.just("set"), st.integers(0, 5), st.integers(0, 9)),
    st.tuples(
        st.just("update"),
        st.integers(0, 5),
        st.dictionaries(st.sampled_from("ab"), st.integers(0, 3), max_size=2),
    ),
    st.tuples(st.just("append"), st.integers(0, 5), st.lists(st.integers(0, 3), max_size=2)),
    st.tuples(st.just("delete"), st.integers(0, 5), st.just(None)),
    st.tuples(st.just("remote"), st.integers(0, 5), st.integers(0, 9)),
    st.tuples(st.just("flush"), st.just(0), st.just(None)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(ops, max_size=60))
def test_receivers_of_squashed_batches_hold_the_writers_state(program: list[tuple]) -> None:
    """Local writes, remote writes that this writer compacts in transactions of its own,
    and flushes at any point: a peer fed only the flushed batches ends where it is."""
    writer = StoreReplica("s", client_id=11)
    other = StoreReplica("s", client_id=12)  # a concurrent writer, applied to both
    reader = StoreReplica("s", client_id=13)

    def flush() -> None:
        deltas = writer.take_outbox_items()
        if not deltas:
            return
        squashed = writer.squash(deltas)
        reader.apply(squashed[0] if squashed else merge_updates(*(d for d, _ in deltas)))

    for kind, key, value in program:
        name = f"k{key}"
        if kind == "set":
            writer.set(name, value)
        elif kind == "update" or kind == "append":
            writer.update(name, value)
        elif kind == "delete":
            if name in writer:
                writer.delete(name)
        elif kind == "remote":
            other.set(name, value)
            for delta in other.take_outbox():
                writer.apply(delta)
                reader.apply(delta)
        else:
            flush()
    flush()
    same_state(reader, writer)
    items: dict[str, Any] = dict(writer.items())
    assert dict(reader.items()) == items
