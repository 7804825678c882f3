"""Write the shared test vectors of PROTOCOL.md into ``tests/vectors/``, deterministically.

Run from the repository root::

    python -m tests.vectors.generate          # or: python tests/vectors/generate.py

Updates come from ``StoreReplica`` writers with fixed client ids (``client_id=``), or are
built byte by byte where no honest writer would make them (other encodings, hostile
input). Every meaning written to ``index.json`` is stated here by hand; the values of
update vectors and every refusal are also checked against the library before anything
is written, so a change of behaviour stops the generator instead of silently becoming
the new truth. ``tests/test_vectors.py`` checks all the files, and that this script
reproduces them byte for byte. Formats: README.md.
"""

from __future__ import annotations

import base64
import json
import random
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from crdt_stores import updates as yupdates
from crdt_stores import wire
from crdt_stores.messages import Chunk, Compressed
from crdt_stores.replica import StoreReplica
from crdt_stores.sealing import SealError, SignalSealer
from crdt_stores.values import same_value
from tests.helpers import attacks

HERE = Path(__file__).resolve().parent
STORE = "s"
A, B, C = 1, 2, 0xDEADBEEF  # writers' client ids (C: a typical 32-bit Yjs id)
OBSERVER = 4242  # client id of the replica the vectors are applied to (it never writes)
SAFE_INT = 2**53 - 1
U64_MAX = 2**64 - 1

# -- typed JSON (README.md, "Typed JSON") ------------------------------------------------


def typed(value: Any) -> Any:
    """``value`` as typed JSON: exact for ints, floats and bytes."""
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return value
    if kind is int:
        return value if -SAFE_INT <= value <= SAFE_INT else {"$int": str(value)}
    if kind is float:
        return {"$float": repr(value)}
    if kind is bytes:
        return {"$bytes": value.hex()}
    if kind is list or kind is tuple:
        return [typed(v) for v in value]
    if kind is dict:
        if any(type(k) is not str for k in value):
            raise TypeError(f"typed JSON maps have text keys: {value!r}")
        if any(k.startswith("$") for k in value):
            return {"$map": [[k, typed(v)] for k, v in value.items()]}
        return {k: typed(v) for k, v in value.items()}
    raise TypeError(f"no typed JSON for {kind.__name__}")


# -- raw Yjs v1 updates (the subset of PROTOCOL.md §7) --------------------------------------

varuint = attacks.varuint
varstring = attacks.varstring


def buf(blob: bytes) -> bytes:
    """One lib0 ``Any`` value: a Uint8Array (tag 116) holding ``blob``."""
    return b"\x74" + varuint(len(blob)) + blob


def array_struct(client: int, key: str | None = None, root: str = "writers") -> bytes:
    """A writer's array: ContentType(YArray) with parent ``root`` map, key ``str(client)``."""
    name = str(client) if key is None else key
    return b"\x27\x01" + varstring(root) + varstring(name) + b"\x00"


def entries_struct(client: int, clock: int, blobs: list[bytes]) -> bytes:
    """ContentAny of byte strings at ``clock``: the first after the array names the array
    as its parent, later ones their left neighbour (``clock - 1``) as origin."""
    if clock == 1:
        head = b"\x08\x00" + varuint(client) + varuint(0)
    else:
        head = b"\x88" + varuint(client) + varuint(clock - 1)
    return head + varuint(len(blobs)) + b"".join(buf(blob) for blob in blobs)


def update(
    blocks: list[tuple[int, int, list[bytes]]],
    deletes: dict[int, list[tuple[int, int]]] | None = None,
) -> bytes:
    """A Yjs v1 update: ``(client, first clock, structs)`` blocks, then the delete set."""
    out = varuint(len(blocks))
    for client, clock, structs in blocks:
        out += varuint(len(structs)) + varuint(client) + varuint(clock) + b"".join(structs)
    deletes = deletes or {}
    out += varuint(len(deletes))
    for client, ranges in deletes.items():
        out += varuint(client) + varuint(len(ranges))
        out += b"".join(varuint(clock) + varuint(length) for clock, length in ranges)
    return out


def own(client: int, *blobs: bytes) -> bytes:
    """A new writer's first update: its array and ``blobs`` as entries (clocks 0, 1...)."""
    return update([(client, 0, [array_struct(client), entries_struct(client, 1, list(blobs))])])


def entry(key: Any, op: Any, payload: Any, lamport: Any) -> bytes:
    return cbor2.dumps([key, op, payload, lamport])


# -- writers --------------------------------------------------------------------------------


class Writer:
    """A replica with a fixed client id whose writes are taken as updates."""

    def __init__(self, client: int) -> None:
        self.replica = StoreReplica(STORE, client_id=client)

    def write(self, method: str, *args: Any) -> bytes:
        getattr(self.replica, method)(*args)
        (delta,) = self.replica.take_outbox()
        return delta

    def receive(self, *deltas: bytes) -> list[bytes]:
        """Apply ``deltas``; returns the compaction deltas this replica made in reply."""
        for delta in deltas:
            self.replica.apply(delta)
        return self.replica.take_outbox()


def replay(updates: list[bytes], **options: Any) -> StoreReplica:
    replica = StoreReplica(STORE, client_id=OBSERVER, **options)
    for data in updates:
        replica.apply(data)
    return replica


def delete_set(replica: StoreReplica) -> dict[str, list[list[int]]]:
    """The replica's delete set, canonical (sorted, touching ranges joined)."""
    own_update = replica.diff(replica.state_vector())  # no structs: just the delete set
    deletes = yupdates.read(own_update, max_units=1 << 62, max_value_bytes=0).deletes
    out: dict[str, list[list[int]]] = {}
    for client in sorted(deletes):
        merged: list[list[int]] = []
        for clock, length in sorted(deletes[client]):
            if merged and clock <= merged[-1][0] + merged[-1][1]:
                end = max(merged[-1][0] + merged[-1][1], clock + length)
                merged[-1][1] = end - merged[-1][0]
            else:
                merged.append([clock, length])
        out[str(client)] = merged
    return out


# -- update vectors -------------------------------------------------------------------------

EVERY_TYPE: dict[str, Any] = {
    "null": None,
    "true": True,
    "false": False,
    "zero": 0,
    "negative": -17,
    "int64_max": 2**63 - 1,
    "int64_min": -(2**63),
    "above_2_53": 2**53 + 1,
    "float_one": 1.0,
    "float_negative_zero": -0.0,
    "float_tenth": 0.1,
    "float_huge": 1e300,
    "float_subnormal": 5e-324,
    "text_empty": "",
    "text_unicode": "h\u00e9llo \u2603 \U0001d11e",
    "list": [1, "two", 3.0, None, [True]],
    "list_empty": [],
    "dict_empty": {},
    "dict_nested": {"a": {"b": [1, {"c": None}]}, "\u00e9": 2.5},
    "dict_dollar_key": {"$int": "not a typed value"},
    "nested_32_levels": "deep",  # (wrapped in 32 lists below)
}
for _ in range(32):
    EVERY_TYPE["nested_32_levels"] = [EVERY_TYPE["nested_32_levels"]]


def update_vectors() -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = []

    def add(
        name: str,
        description: str,
        steps: list[str],
        updates: list[bytes],
        expected: dict[str, Any],
        live_entries: int,
        note: str | None = None,
    ) -> None:
        assert len(steps) == len(updates), name
        replica = replay(updates)
        actual = dict(replica.items())
        assert _strict(actual, expected), (name, actual, expected)
        assert replica.entry_count == live_entries, (name, replica.entry_count)
        vector: dict[str, Any] = {
            "name": name,
            "file": f"updates/{name}.hex",
            "description": description,
            "steps": steps,
            "expected": typed(expected),
            "live_entries": live_entries,
            "state_vector": {str(c): k for c, k in sorted(replica.state_vector_dict().items())},
            "delete_set": delete_set(replica),
            "delete_digest": replica.delete_digest().hex(),
        }
        if note:
            vector["note"] = note
        vectors.append(vector)
        FILES[vector["file"]] = _hex_lines(updates)

    a = Writer(A)
    u1 = a.write("set", "greeting", "hello")
    add(
        "set",
        "One write by a new writer: its array (clock 0) and one entry (clock 1).",
        ["A (client 1): set('greeting', 'hello'), lamport 1"],
        [u1],
        {"greeting": "hello"},
        1,
    )

    a = Writer(A)
    u1 = a.write("set", "k", 1)
    u2 = a.write("set", "k", 2)
    add(
        "set_overwrite",
        "An overwrite deletes the entry it supersedes in the same update (compaction).",
        ["A: set('k', 1), lamport 1", "A: set('k', 2), lamport 2, deletes A's clock 1"],
        [u1, u2],
        {"k": 2},
        1,
    )

    a = Writer(A)
    us = [
        a.write("set", "user", {"name": "John Doe"}),
        a.write("update", "user", {"age": 34}),
        a.write("update", "user", {"age": 35}),
    ]
    add(
        "update_dict_merge",
        "update() with a dict merges its top-level fields; a merge whose fields a later"
        " merge of the same writer all overwrites is deleted.",
        [
            "A: set('user', {'name': 'John Doe'})",
            "A: update('user', {'age': 34}) (op 1, merge)",
            "A: update('user', {'age': 35}), deletes the merge of lamport 2",
        ],
        us,
        {"user": {"name": "John Doe", "age": 35}},
        2,
    )

    a = Writer(A)
    us = [a.write("set", "log", [1]), a.write("update", "log", [2, 3])]
    add(
        "update_list_append",
        "update() with a list appends its items (op 2); nothing is superseded.",
        ["A: set('log', [1])", "A: update('log', [2, 3]) (op 2, append)"],
        us,
        {"log": [1, 2, 3]},
        2,
    )

    a = Writer(A)
    us = [
        a.write("update", "n", {"a": 1}),
        a.write("set", "x", "text"),
        a.write("update", "x", [1]),
        a.write("update", "y", 5),
    ]
    add(
        "update_other_types",
        "A merge on a missing or non-dict value starts from {}, an append on a non-list"
        " from []; update() with a scalar is a set (op 0).",
        [
            "A: update('n', {'a': 1}) on a missing key",
            "A: set('x', 'text')",
            "A: update('x', [1]): an append on a string",
            "A: update('y', 5): written as op 0",
        ],
        us,
        {"n": {"a": 1}, "x": [1], "y": 5},
        4,
    )

    a = Writer(A)
    us = [a.write("set", "a", 1), a.write("set", "b", 2), a.write("delete", "a")]
    add(
        "delete",
        "A delete appends a delete marker (op 3, payload null) and deletes what it"
        " supersedes; the marker stays so that it keeps winning over concurrent writes.",
        ["A: set('a', 1)", "A: set('b', 2)", "A: delete('a'), deletes A's clock 1"],
        us,
        {"b": 2},
        2,
    )

    a = Writer(A)
    us = [a.write("bulk_set", {"x": 1, "y": 2, "z": 3}), a.write("bulk_delete", ["x", "y"])]
    add(
        "bulk",
        "bulk_set and bulk_delete: one update each, all entries of one write share a lamport.",
        ["A: bulk_set({'x': 1, 'y': 2, 'z': 3}), lamport 1", "A: bulk_delete(['x', 'y'])"],
        us,
        {"z": 3},
        3,
    )

    a = Writer(A)
    us = [a.write("bulk_set", {"p": 1, "q": [1], "r": {"s": None}}), a.write("clear")]
    add(
        "clear",
        "clear() is a delete of every present key.",
        ["A: bulk_set({'p': 1, 'q': [1], 'r': {'s': None}})", "A: clear()"],
        us,
        {},
        3,
    )

    a, b = Writer(A), Writer(B)
    ua, ub = a.write("set", "k", "from A"), b.write("set", "k", "from B")
    steps = ["A: set('k', 'from A'), lamport 1", "B (client 2): set('k', 'from B'), lamport 1"]
    add(
        "concurrent_set_ab",
        "Concurrent sets at the same lamport: the bigger writer id wins, (1, 2) > (1, 1).",
        steps,
        [ua, ub],
        {"k": "from B"},
        2,
    )
    add(
        "concurrent_set_ba",
        "The same writes delivered in the other order: the same result.",
        steps[::-1],
        [ub, ua],
        {"k": "from B"},
        2,
    )
    (compaction,) = b.receive(ua)
    add(
        "compaction_delta",
        "B receives A's concurrent entry, which B's own set supersedes: B deletes it in a"
        " delta of its own (a delete set only).",
        [*steps, "B's compaction delta after receiving A's update: deletes A's clock 1"],
        [ua, ub, compaction],
        {"k": "from B"},
        1,
    )

    a, b = Writer(A), Writer(B)
    ub = b.write("set", "k", "first")
    a.receive(ub)
    ua = a.write("set", "k", "second")
    add(
        "lamport_causality",
        "A write that saw another one has a bigger lamport and wins, whatever the writer ids.",
        ["B: set('k', 'first'), lamport 1", "A, having B's: set('k', 'second'), lamport 2"],
        [ub, ua],
        {"k": "second"},
        1,
    )

    a, b = Writer(A), Writer(B)
    u1 = a.write("set", "doc", {"title": "t"})
    b.receive(u1)
    ua = a.write("update", "doc", {"a": 1})
    ub = b.write("update", "doc", {"b": 2})
    add(
        "concurrent_dict_fields",
        "Concurrent merges of different fields keep both.",
        [
            "A: set('doc', {'title': 't'})",
            "A: update('doc', {'a': 1}), lamport 2",
            "B, having A's set: update('doc', {'b': 2}), lamport 2",
        ],
        [u1, ua, ub],
        {"doc": {"title": "t", "a": 1, "b": 2}},
        3,
    )

    a, b, c = Writer(A), Writer(B), Writer(C)
    u1 = a.write("set", "list", [])
    b.receive(u1)
    c.receive(u1)
    ua = a.write("update", "list", ["a1", "a2"])
    ub = b.write("update", "list", ["b1"])
    uc = c.write("update", "list", ["c1"])
    add(
        "concurrent_append_three",
        "Three concurrent appends at lamport 2 fold in writer order 1 < 2 < 3735928559,"
        " whatever the delivery order.",
        [
            "A: set('list', [])",
            "C (client 3735928559): update('list', ['c1']), lamport 2",
            "B: update('list', ['b1']), lamport 2",
            "A: update('list', ['a1', 'a2']), lamport 2",
        ],
        [u1, uc, ub, ua],
        {"list": ["a1", "a2", "b1", "c1"]},
        4,
    )

    a, b = Writer(A), Writer(B)
    u1 = a.write("set", "k", {"x": 1})
    b.receive(u1)
    ua = a.write("set", "k", {"y": 2})
    ub = b.write("update", "k", {"z": 3})
    add(
        "set_vs_update",
        "A set and a concurrent merge: the merge, ordered last by (2, 2) > (2, 1), lands"
        " on the new dict.",
        [
            "A: set('k', {'x': 1})",
            "B, having it: update('k', {'z': 3}), lamport 2",
            "A: set('k', {'y': 2}), lamport 2, deletes A's clock 1",
        ],
        [u1, ub, ua],
        {"k": {"y": 2, "z": 3}},
        2,
    )

    a, c = Writer(A), Writer(C)
    u1 = a.write("set", "k", "v1")
    c.receive(u1)
    ua = a.write("set", "k", "v2")
    uc = c.write("delete", "k")
    add(
        "delete_vs_set",
        "A delete concurrent with a set: the one ordered last wins, here the delete"
        " (2, 3735928559) > (2, 1).",
        [
            "A: set('k', 'v1')",
            "A: set('k', 'v2'), lamport 2",
            "C, having 'v1': delete('k'), lamport 2, deletes A's clock 1",
        ],
        [u1, ua, uc],
        {},
        2,
    )

    a, b, c = Writer(A), Writer(B), Writer(C)
    h1 = a.write("bulk_set", {"title": "Standup", "attendees": ["ann"]})
    b.receive(h1)
    h2 = b.write("update", "attendees", ["bob"])
    h3 = b.write("set", "title", "Daily standup")
    c.receive(h1, h2, h3)
    h4 = c.write("set", "room", {"floor": 3})
    h5 = c.write("update", "room", {"floor": 4, "door": "B"})
    h6 = c.write("set", "room", {"floor": 5})
    observer = replay([h1, h2, h3, h4, h5, h6])
    full = observer.diff()
    add(
        "late_joiner",
        "The full state a late joiner receives (a diff from an empty state vector): one"
        " update with three writers' blocks and the delete set of their compactions.",
        [
            "diff() of a replica that received: A bulk_set title and attendees; B appends"
            " 'bob' and sets the title; C sets, merges and sets 'room'",
        ],
        [full],
        {"title": "Daily standup", "attendees": ["ann", "bob"], "room": {"floor": 5}},
        4,
    )

    a = Writer(A)
    add(
        "every_type",
        "One value of every kind a store holds, at the edges of the ranges (one bulk_set).",
        ["A: bulk_set of every value type"],
        [a.write("bulk_set", EVERY_TYPE)],
        EVERY_TYPE,
        len(EVERY_TYPE),
    )

    foreign = [
        bytes.fromhex("846168" + "00" + "f93c00" + "01"),  # half-precision 1.0
        bytes.fromhex("846173" + "00" + "fa3fc00000" + "01"),  # single-precision 1.5
        bytes.fromhex("846169" + "00" + "1b0000000000000005" + "1801"),  # long-form ints
        bytes.fromhex("84616d" + "00" + "a2616201616102" + "01"),  # keys not in sorted order
    ]
    add(
        "other_encodings",
        "Entries as another CBOR encoder may write them: half and single precision floats"
        " (still floats), integers in longer forms than needed, map keys in any order."
        " Entries are decoded, never compared as bytes.",
        ["writer 77: its array and four entries in one ContentAny struct"],
        [own(77, *foreign)],
        {"h": 1.0, "s": 1.5, "i": 5, "m": {"b": 1, "a": 2}},
        4,
    )

    add(
        "entry_trailing_bytes",
        "An entry followed by a stray byte inside its byte string: decoded as the first"
        " CBOR item (the reference decoder ignores what follows it).",
        ["writer 77: one entry ['q', 0, 1, 1] followed by a 0x00 byte"],
        [own(77, entry("q", 0, 1, 1) + b"\x00")],
        {"q": 1},
        1,
        note="A quirk of the reference implementation, kept so that all peers agree:"
        " writers MUST NOT produce it; receivers MUST accept it like this.",
    )

    first, second, _ = attacks.equal_order_updates(7)
    add(
        "forged_tie",
        "Two entries of one key with the same (lamport, writer), which only a forger"
        " makes: ordered by the CBOR of [key, op, payload] (bytewise), so 'OPENED' wins.",
        [
            "writer 7: ['door', 0, 'OPENED', 1] at clock 1",
            "writer 7: ['door', 0, 'LOCKED', 1] at clock 2",
        ],
        [first, second],
        {"door": "OPENED"},
        2,
    )

    a = Writer(A)
    u1, u2 = a.write("set", "k1", 1), a.write("set", "k2", 2)
    add(
        "out_of_order",
        "An update that needs a writer's earlier structs waits until they arrive.",
        ["A's second update (clock 2) first", "then A's first (clocks 0-1)"],
        [u2, u1],
        {"k1": 1, "k2": 2},
        2,
    )
    add(
        "duplicates",
        "Applying an update again changes nothing.",
        ["A: set('k1', 1)", "the same again", "A: set('k2', 2)", "the same again"],
        [u1, u1, u2, u2],
        {"k1": 1, "k2": 2},
        2,
    )

    a = Writer(A)
    u1 = a.write("set", "k", "v")
    deletion = update([], {A: [(0, 2)]})
    add(
        "delete_clipped",
        "A delete range covering a writer's array (clock 0) is clipped to spare it: only"
        " the entry at clock 1 is deleted.",
        ["A: set('k', 'v')", "a delete set of A's clocks 0-1 (clipped to clock 1)"],
        [u1, deletion],
        {},
        0,
    )

    forged = own(C, entry("k", 0, "top", U64_MAX))
    a = Writer(A)
    a.receive(forged)
    ua = a.write("set", "k", "mine")
    add(
        "lamport_saturated",
        "Lamport clocks saturate at 2**64-1: a write after an entry at the top clock gets"
        " the top clock too, so the bigger writer id keeps winning; nothing is compacted.",
        [
            "C: ['k', 0, 'top', 18446744073709551615]",
            "A, having it: set('k', 'mine'), lamport 18446744073709551615",
        ],
        [forged, ua],
        {"k": "top"},
        2,
    )
    return vectors


# -- invalid updates ------------------------------------------------------------------------


def invalid_update_vectors() -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = []
    set_update = bytes.fromhex(FILES["updates/set.hex"].decode().split()[0])

    def add(
        name: str,
        category: str,
        description: str,
        data: bytes,
        detail: str,
        *,
        reason: str = "bad_update",
        before: str | None = None,
        replica: dict[str, int] | None = None,
    ) -> None:
        options = replica or {}
        try:
            yupdates.read(
                data,
                max_units=options.get("max_update_items", 1 << 20),
                max_value_bytes=options.get("max_value_bytes", 1 << 20),
            )
        except yupdates.InvalidUpdate as exc:
            assert exc.reason == reason and detail in str(exc), (name, exc.reason, str(exc))
        else:
            raise AssertionError(f"{name} is not refused")
        vector: dict[str, Any] = {
            "name": name,
            "file": f"invalid_updates/{name}.hex",
            "category": category,
            "description": description,
            "reason": reason,
            "detail": detail,
            "before": before,
        }
        if replica:
            vector["replica"] = replica
        vectors.append(vector)
        FILES[vector["file"]] = _hex_lines([data])

    set_file = "updates/set.hex"
    add(
        "foreign_append",
        "layout",
        "Client 666 appends an entry to writer 1's array.",
        attacks.foreign_append(set_update, A, "greeting", "evil"),
        "only refer to earlier entries of its own writer",
        before=set_file,
    )
    add(
        "array_under_other_key",
        "layout",
        "Writer 5 creates its array under the key '6' (another writer's slot).",
        update([(5, 0, [array_struct(5, key="6")])]),
        "a root item must be its writer's array in the writers map",
    )
    add(
        "root_not_writers",
        "layout",
        "Writer 5 puts its array in a root map named 'other'.",
        update([(5, 0, [array_struct(5, root="other")])]),
        "a root item must be its writer's array in the writers map",
    )
    add(
        "first_struct_not_array",
        "layout",
        "A writer's first struct is an Any value (nested 64 deep) in the writers map,"
        " not an array.",
        attacks.deep_any_update(64, client=77),
        "a writer's first struct, and only it, is its array",
    )
    add(
        "second_array",
        "layout",
        "Writer 1 creates its array again at clock 2 (replacing its entries).",
        update([(A, 2, [array_struct(A)])]),
        "a writer's first struct, and only it, is its array",
        before=set_file,
    )
    add(
        "nested_type",
        "layout",
        "Writer 1 appends a Y.Map (ContentType, type ref 1) to its array.",
        update([(A, 2, [b"\x87" + varuint(A) + varuint(1) + b"\x01"])]),
        "a writer's first struct, and only it, is its array",
        before=set_file,
    )
    good_entry = entry("k", 0, 1, 2)
    add(
        "content_binary",
        "layout",
        "An entry as ContentBinary (content ref 3), which Yjs' array.push([Uint8Array])"
        " writes: entries are ContentAny (ref 8) values of type Uint8Array (Any tag 116).",
        update(
            [(A, 2, [b"\x83" + varuint(A) + varuint(1) + varuint(len(good_entry)) + good_entry])]
        ),
        "struct of content type 3 is not part of the store layout",
        before=set_file,
    )
    add(
        "content_string",
        "layout",
        "A ContentString (ref 4) item in a writer's array.",
        update([(A, 2, [b"\x84" + varuint(A) + varuint(1) + varstring("text")])]),
        "struct of content type 4 is not part of the store layout",
        before=set_file,
    )
    add(
        "deep_any_entry",
        "layout",
        "An Any value that is not a Uint8Array (an array nested 64 deep) as an entry.",
        update(
            [(A, 2, [b"\x88" + varuint(A) + varuint(1) + b"\x01" + b"\x75\x01" * 64 + b"\x7e"])]
        ),
        "an entry must be a byte string",
        before=set_file,
    )
    add(
        "skip_struct",
        "layout",
        "A Skip struct (ref 10), which merged updates with gaps hold.",
        update([(A, 2, [b"\x0a" + varuint(3)])]),
        "a Skip struct",
        before=set_file,
    )
    add(
        "gc_at_clock_0",
        "layout",
        "A garbage-collected range where a writer's array must be.",
        update([(5, 0, [b"\x00\x02"])]),
        "bad garbage-collected range",
    )
    add(
        "origin_not_earlier",
        "layout",
        "An entry whose origin is its own clock (not an earlier entry).",
        update([(A, 2, [b"\x88" + varuint(A) + varuint(2) + b"\x01" + buf(good_entry)])]),
        "only refer to earlier entries",
        before=set_file,
    )
    add(
        "origin_array_slot",
        "layout",
        "An entry whose origin is the array's map slot (clock 0), not an entry.",
        update([(A, 2, [b"\x88" + varuint(A) + varuint(0) + b"\x01" + buf(good_entry)])]),
        "only refer to earlier entries",
        before=set_file,
    )
    top = 2**32 - 2
    add(
        "clock_out_of_range",
        "limit",
        "Two entries from clock 2**32-2: past Yrs' 32-bit clocks.",
        update([(A, top, [entries_struct(A, top, [good_entry, good_entry])])]),
        "clock out of range",
    )
    add(
        "client_over_53_bits",
        "limit",
        "A writer whose client id is 2**53 (client ids are at most 53 bits).",
        own(2**53, good_entry),
        "varuint over 53 bits",
    )
    add(
        "trailing_bytes",
        "encoding",
        "A valid update followed by one more byte.",
        set_update + b"\x00",
        "trailing bytes after the update",
    )
    add(
        "non_minimal_client_id",
        "encoding",
        "Writer 5's block names its client id as 85 80 00: 5 with two zero groups (lib0"
        " varuints are in their shortest form).",
        b"\x01\x02\x85\x80\x00" + own(5, good_entry)[3:],
        "non-minimal varuint",
    )
    appended = entries_struct(5, 1, [good_entry])
    assert appended.endswith(b"\x74" + bytes([len(good_entry)]) + good_entry)
    long_length = appended[: -len(good_entry) - 1] + bytes([0x80 | len(good_entry), 0])
    add(
        "non_minimal_entry_length",
        "encoding",
        f"An entry's Uint8Array length written as {0x80 | len(good_entry):02x} 00 (two bytes"
        f" for {len(good_entry)}).",
        update([(5, 0, [array_struct(5), long_length + good_entry])]),
        "non-minimal varuint",
    )
    add(
        "non_minimal_delete_clock",
        "encoding",
        "A delete range of writer 1 whose clock 1 is written 81 00.",
        b"\x00\x01" + varuint(A) + b"\x01\x81\x00\x01",
        "non-minimal varuint",
        before=set_file,
    )
    add(
        "repeated_client_block",
        "encoding",
        "Two blocks of the same client in one update.",
        update([(5, 0, [array_struct(5)]), (5, 1, [entries_struct(5, 1, [good_entry])])]),
        "empty or repeated client block",
    )
    add(
        "empty_delete_range",
        "encoding",
        "A delete range of length 0.",
        update([], {A: [(1, 0)]}),
        "bad delete range",
        before=set_file,
    )
    add(
        "too_many_items",
        "limit",
        "Five entries where the receiver allows 4 items per update (2 structs + 5 entries).",
        own(5, *(entry(f"k{i}", 0, i, 1) for i in range(5))),
        "update holds more than 4 items",
        reason="too_many_items",
        replica={"max_update_items": 4},
    )
    add(
        "value_over_limit",
        "limit",
        "A 100-character value where the receiver's max_value_bytes is 64.",
        own(5, entry("k", 0, "x" * 100, 1)),
        "value of 102 bytes is over the limit 64",
        replica={"max_value_bytes": 64},
    )
    bad_entries: list[tuple[str, str, bytes, str]] = [
        ("entry_bytes_value", "a byte string value", entry("k", 0, b"\x01\x02", 1), "payload"),
        (
            "entry_tag64_value",
            "a tag 64 typed array (as some CBOR encoders write Uint8Array)",
            bytes.fromhex("84616b00d840420102" + "01"),
            "tag 64",
        ),
        ("entry_nan", "a NaN", entry("k", 0, float("nan"), 1), "payload"),
        ("entry_int_over_int64", "the int 2**63", entry("k", 0, 2**63, 1), "payload"),
        ("entry_int_under_int64", "the int -2**63-1", entry("k", 0, -(2**63) - 1, 1), "payload"),
        ("entry_undefined", "CBOR undefined (0xf7)", bytes.fromhex("84616b00f701"), "payload"),
        (
            "entry_too_deep",
            "lists nested 33 deep",
            bytes.fromhex("84616b00" + "81" * 32 + "80" + "01"),
            "payload",
        ),
        (
            "entry_flat_map_too_deep",
            "a map of scalars inside 32 lists (33 levels, as a local write refuses)",
            bytes.fromhex("84616b00" + "81" * 32 + "a1616101" + "01"),
            "payload",
        ),
        ("entry_non_text_key", "a map with an int key", entry("k", 0, {1: "a"}, 1), "payload"),
        ("entry_wildcard_key", "the key '*'", entry("*", 0, 1, 1), "bad key"),
        ("entry_empty_key", "the key ''", entry("", 0, 1, 1), "bad key"),
        ("entry_key_too_long", "a key of 1025 bytes", entry("k" * 1025, 0, 1, 1), "key longer"),
        ("entry_unknown_op", "op 4", entry("k", 4, 1, 1), "op is not"),
        (
            "entry_op_false",
            "the op false (not the integer 0)",
            entry("k", False, 1, 1),
            "op is not",
        ),
        (
            "entry_op_true",
            "the op true (not the integer 1), with a map payload",
            bytes.fromhex("84616b" + "f5" + "a0" + "01"),
            "op is not",
        ),
        (
            "entry_op_float",
            "the op 2.0, a float (not the integer 2), with an array payload",
            bytes.fromhex("84616b" + "fb4000000000000000" + "80" + "01"),
            "op is not",
        ),
        (
            "entry_op_negative_zero",
            "the op -0.0, a half-precision float (not the integer 0)",
            bytes.fromhex("84616b" + "f98000" + "01" + "01"),
            "op is not",
        ),
        (
            "entry_op_simple",
            "the op simple(3), a CBOR simple value (not the integer 3), with a null payload",
            bytes.fromhex("84616b" + "e3" + "f6" + "01"),
            "op is not",
        ),
        ("entry_merge_not_dict", "op 1 (merge) with a list", entry("k", 1, [1], 1), "payload"),
        (
            "entry_append_not_list",
            "op 2 (append) with a map",
            entry("k", 2, {"a": 1}, 1),
            "payload",
        ),
        ("entry_delete_payload", "op 3 (delete) with payload 1", entry("k", 3, 1, 1), "payload"),
        ("entry_negative_lamport", "lamport -1", entry("k", 0, 1, -1), "lamport"),
        ("entry_three_items", "an array of 3 items", cbor2.dumps(["k", 0, 1]), "an entry is"),
        (
            "entry_indefinite",
            "an indefinite-length array",
            bytes.fromhex("9f616b000101ff"),
            "malformed CBOR",
        ),
        ("entry_bad_utf8", "text that is not UTF-8", bytes.fromhex("84616b0062fffe01"), "CBOR"),
    ]
    for name, what, blob, detail in bad_entries:
        add(
            name,
            "entry",
            f"Writer 5's entry holds {what}.",
            own(5, blob),
            detail,
        )
    return vectors


# -- frames ---------------------------------------------------------------------------------


def frame_vectors() -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = []
    updates_by_name = {
        name: [bytes.fromhex(line) for line in FILES[f"updates/{name}.hex"].decode().split()]
        for name in ("set", "late_joiner")
    }
    (greeting,) = updates_by_name["set"]
    (full,) = updates_by_name["late_joiner"]
    holder = replay([full])
    sv_full = holder.state_vector()
    digest_full = holder.delete_digest()
    sv_greeting = replay([greeting]).state_vector()

    def add(
        name: str,
        description: str,
        frames: list[bytes],
        message: dict[str, Any],
        *,
        envelopes: tuple[str, ...] = (),
        chunks: list[dict[str, int]] | None = None,
        inflated_bytes: int | None = None,
        stores: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        vector: dict[str, Any] = {
            "name": name,
            "file": f"frames/{name}.hex",
            "description": description,
            "envelopes": list(envelopes),
        }
        if chunks is not None:
            vector["chunks"] = chunks
        if inflated_bytes is not None:
            vector["inflated_bytes"] = inflated_bytes
        vector["message"] = message
        if stores is not None:
            vector["stores"] = {name: typed(values) for name, values in stores.items()}
        vectors.append(vector)
        FILES[vector["file"]] = _hex_lines(frames)

    def plain(
        name: str, description: str, kind: int, body: list[Any], message: dict[str, Any], **kw: Any
    ) -> None:
        frame = wire.encode(kind, *body)
        assert wire.frames(frame, 0) == [frame], name  # small: sent as it is
        add(name, description, [frame], message, **kw)

    plain(
        "hello",
        "HELLO: the sender's peer id and the peers it is linked to.",
        wire.HELLO,
        ["alice", ["bob", "carol"]],
        {"kind": "hello", "peer": "alice", "links": ["bob", "carol"]},
    )
    plain(
        "sync",
        "SYNC: the sender's state vector and deletion digest of each store; want_sync asks"
        " for the receiver's SYNC; more=false: the last part.",
        wire.SYNC,
        [{STORE: sv_full}, True, False, {STORE: digest_full}],
        {
            "kind": "sync",
            "states": typed({STORE: sv_full}),
            "want_sync": True,
            "more": False,
            "digests": typed({STORE: digest_full}),
        },
    )
    plain(
        "sync_minimal",
        "SYNC with only its first field: a peer without stores; flags false, no digests.",
        wire.SYNC,
        [{}],
        {"kind": "sync", "states": {}, "want_sync": False, "more": False, "digests": None},
    )
    plain(
        "diff",
        "DIFF: an update per store (here a late joiner's full state), then the sender's"
        " state vectors and digests.",
        wire.DIFF,
        [{STORE: full}, {STORE: sv_full}, {STORE: digest_full}],
        {
            "kind": "diff",
            "diffs": typed({STORE: full}),
            "states": typed({STORE: sv_full}),
            "digests": typed({STORE: digest_full}),
        },
        stores={
            STORE: {
                "title": "Daily standup",
                "attendees": ["ann", "bob"],
                "room": {"floor": 5},
            }
        },
    )
    plain(
        "update",
        "UPDATE: a list of deltas per store, the sender's state vectors, want_ack false.",
        wire.UPDATE,
        [{STORE: [greeting]}, {STORE: sv_greeting}, False],
        {
            "kind": "update",
            "updates": typed({STORE: [greeting]}),
            "states": typed({STORE: sv_greeting}),
            "want_ack": False,
        },
        stores={STORE: {"greeting": "hello"}},
    )
    plain(
        "update_want_ack",
        "UPDATE asking for an ACK at once (no state vectors attached).",
        wire.UPDATE,
        [{STORE: [greeting]}, {}, True],
        {
            "kind": "update",
            "updates": typed({STORE: [greeting]}),
            "states": {},
            "want_ack": True,
        },
        stores={STORE: {"greeting": "hello"}},
    )
    plain(
        "ack",
        "ACK: the sender's state vectors and digests; want_ack false.",
        wire.ACK,
        [{STORE: sv_full}, False, {STORE: digest_full}],
        {
            "kind": "ack",
            "states": typed({STORE: sv_full}),
            "want_ack": False,
            "digests": typed({STORE: digest_full}),
        },
    )
    plain(
        "ack_minimal",
        "ACK with only its first field.",
        wire.ACK,
        [{}],
        {"kind": "ack", "states": {}, "want_ack": False, "digests": None},
    )
    plain(
        "ack_flag_not_true",
        "A flag is set only by CBOR true: the integer 1 reads as false.",
        wire.ACK,
        [{}, 1],
        {"kind": "ack", "states": {}, "want_ack": False, "digests": None},
    )
    plain(
        "heartbeat",
        "HEARTBEAT: no body.",
        wire.HEARTBEAT,
        [],
        {"kind": "heartbeat"},
    )
    plain(
        "heartbeat_extra_fields",
        "Fields after the known ones are ignored (room for later versions).",
        wire.HEARTBEAT,
        ["later", 1],
        {"kind": "heartbeat"},
    )
    plain(
        "links",
        "LINKS: the peers the sender is linked to now.",
        wire.LINKS,
        [["bob"]],
        {"kind": "links", "links": ["bob"]},
    )
    plain(
        "unknown_kind",
        "A kind this version does not know: ignored (counted, not a violation).",
        99,
        ["from a later version"],
        {"kind": 99},
    )

    # Envelopes, as ``wire.frames`` makes them.
    a = Writer(A)
    batch = a.write("bulk_set", {f"key{i:02}": {"n": i, "note": "same text"} for i in range(20)})
    message = wire.encode(wire.UPDATE, {STORE: [batch]}, {}, False)
    (frame,) = wire.frames(message, 1)
    assert wire.decode_frame(frame).kind == wire.COMPRESSED
    add(
        "compressed",
        "COMPRESSED: a zlib stream (RFC 1950) of a whole UPDATE of 20 entries.",
        [frame],
        {
            "kind": "update",
            "updates": typed({STORE: [batch]}),
            "states": {},
            "want_ack": False,
        },
        envelopes=("compressed",),
        inflated_bytes=len(message),
        stores={STORE: {f"key{i:02}": {"n": i, "note": "same text"} for i in range(20)}},
    )

    rng = random.Random(20240607)
    noise = [rng.random() for _ in range(150)]
    a = Writer(A)
    delta = a.write("set", "noise", noise)
    message = wire.encode(wire.UPDATE, {STORE: [delta]}, {}, False)
    frames = wire.frames(message, 7, max_frame=1024)
    assert len(frames) == 2 and wire.decode_frame(frames[0]).kind == wire.CHUNK
    add(
        "chunked",
        "CHUNK: an UPDATE of 1,466 bytes that does not compress, sent in frames of at most"
        " 1,024 bytes (984 bytes of data each).",
        frames,
        {
            "kind": "update",
            "updates": typed({STORE: [delta]}),
            "states": {},
            "want_ack": False,
        },
        envelopes=("chunk",),
        chunks=_chunk_headers(frames),
        stores={STORE: {"noise": noise}},
    )

    text = "".join(rng.choice("0123456789abcdef") for _ in range(6000))
    a = Writer(A)
    delta = a.write("set", "text", text)
    message = wire.encode(wire.UPDATE, {STORE: [delta]}, {}, False)
    frames = wire.frames(message, 8, max_frame=1024)
    assert len(frames) > 2
    reassembled = b"".join(wire.decode_frame(f).data for f in frames)  # type: ignore[union-attr]
    assert wire.decode_frame(reassembled).kind == wire.COMPRESSED
    add(
        "chunked_compressed",
        "CHUNK frames of a COMPRESSED message: compress first, then cut.",
        frames,
        {
            "kind": "update",
            "updates": typed({STORE: [delta]}),
            "states": {},
            "want_ack": False,
        },
        envelopes=("chunk", "compressed"),
        chunks=_chunk_headers(frames),
        inflated_bytes=len(message),
        stores={STORE: {"text": text}},
    )
    return vectors


def _chunk_headers(frames: list[bytes]) -> list[dict[str, int]]:
    out = []
    for frame in frames:
        msg_id, index, count, data = cbor2.loads(frame)[2:6]
        out.append({"message_id": msg_id, "index": index, "count": count, "bytes": len(data)})
    return out


def invalid_frame_vectors() -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = []

    def add(
        name: str, stage: str, reason: str, description: str, frames: list[bytes], detail: str
    ) -> None:
        if stage != "engine":  # refused by the wire module as stated
            try:
                reassembler = wire.Reassembler(wire.MAX_MESSAGE_ITEMS * 256)
                for frame in frames:
                    message = wire.decode_frame(frame)
                    if stage == "reassemble":
                        assert type(message) is Chunk
                        chunk = (message.message_id, message.index, message.count, message.data)
                        reassembler.add(*chunk)
                    elif stage == "inflate":
                        assert type(message) is Compressed
                        wire.inflate(message.packed, wire.MAX_MESSAGE_ITEMS * 256)
            except wire.ProtocolError as exc:
                assert exc.reason == reason and detail in str(exc), (name, exc.reason, str(exc))
            else:
                raise AssertionError(f"{name} is not refused")
        vectors.append(
            {
                "name": name,
                "file": f"invalid_frames/{name}.hex",
                "description": description,
                "stage": stage,
                "reason": reason,
                "detail": detail,
            }
        )
        FILES[f"invalid_frames/{name}.hex"] = _hex_lines(frames)

    msg = attacks.message
    good_update = bytes.fromhex(FILES["updates/set.hex"].decode().split()[0])
    bad_update = bytes.fromhex(FILES["invalid_updates/nested_type.hex"].decode().split()[0])
    add("not_cbor", "decode", "malformed", "A lone CBOR break byte.", [b"\xff"], "malformed CBOR")
    add("truncated", "decode", "malformed", "[1, 5] cut short.", [b"\x82\x01"], "malformed CBOR")
    add("not_array", "decode", "malformed", "A map.", [cbor2.dumps({"v": 1})], "CBOR array")
    add("too_short", "decode", "malformed", "[1]: no kind.", [cbor2.dumps([1])], "CBOR array")
    add(
        "kind_not_int",
        "decode",
        "malformed",
        "[1, 'hello']",
        [cbor2.dumps([1, "hello"])],
        "CBOR array",
    )
    add(
        "version_2",
        "decode",
        "unsupported_version",
        "A HEARTBEAT of protocol version 2.",
        [cbor2.dumps([2, 5])],
        "protocol version 2",
    )
    for name, version, what in [
        ("version_true", "f5", "true"),
        ("version_float", "f93c00", "the float 1.0 (half precision)"),
        ("version_simple", "e1", "the simple value 1"),
        ("version_negative", "20", "the negative integer -1"),
    ]:
        add(
            name,
            "decode",
            "malformed",
            f"A HEARTBEAT whose version is {what}: the version is an unsigned integer.",
            [bytes.fromhex("82" + version + "05")],
            "the protocol version is not an unsigned integer",
        )
    add(
        "tagged_bytes",
        "decode",
        "malformed",
        "An UPDATE whose delta is a tag 64 typed array instead of a plain byte string.",
        [b"\x84\x01\x03\xa1\x61s\x81\xd8\x40" + cbor2.dumps(good_update) + b"\xa0"],
        "tag 64",
    )
    add(
        "indefinite_length",
        "decode",
        "malformed",
        "An indefinite-length array [_ 1, 5].",
        [b"\x9f\x01\x05\xff"],
        "malformed CBOR",
    )
    add(
        "hello_links_not_list",
        "decode",
        "malformed",
        "HELLO whose links are a string.",
        [msg(wire.HELLO, "alice", "bob")],
        "links must be a list of strings",
    )
    add(
        "hello_too_short",
        "decode",
        "malformed",
        "HELLO without links.",
        [msg(wire.HELLO, "alice")],
        "too short",
    )
    add(
        "empty_store_name",
        "decode",
        "malformed",
        "SYNC naming the store ''.",
        [msg(wire.SYNC, {"": b"\x00"}, True)],
        "states must map store names to bytes",
    )
    add(
        "state_not_bytes",
        "decode",
        "malformed",
        "ACK whose state vector is a list.",
        [msg(wire.ACK, {STORE: [0]})],
        "states must map store names to bytes",
    )
    add(
        "digest_too_long",
        "decode",
        "malformed",
        "ACK with a digest of 33 bytes.",
        [msg(wire.ACK, {STORE: b"\x00"}, False, {STORE: b"\x00" * 33})],
        "a digest is at most 32 bytes",
    )
    add(
        "update_not_list",
        "decode",
        "malformed",
        "UPDATE whose deltas are one byte string, not a list.",
        [msg(wire.UPDATE, {STORE: good_update}, {})],
        "updates must map store names to lists of bytes",
    )
    add(
        "chunk_index_past_count",
        "decode",
        "malformed",
        "CHUNK number 2 of 2.",
        [msg(wire.CHUNK, 1, 2, 2, b"x")],
        "bad chunk header",
    )
    add(
        "oversize_frame",
        "decode",
        "oversize",
        "A frame of 65,537 bytes (over 64 KiB).",
        [msg(wire.HEARTBEAT, b"\x00" * 65531)],
        "exceeds 65536",
    )
    add(
        "too_many_cbor_items",
        "decode",
        "too_many_items",
        "A HEARTBEAT carrying 16,400 zeros: over 16,384 CBOR items.",
        [msg(wire.HEARTBEAT, [0] * 16400)],
        "more than 16384 CBOR items",
    )
    add(
        "trailing_bytes_big_frame",
        "decode",
        "malformed",
        "A frame of over 16,384 bytes with a byte after its CBOR item.",
        [msg(wire.HEARTBEAT, b"\x00" * 17000) + b"\x00"],
        "bytes after the CBOR message",
    )
    add(
        "chunk_count_one",
        "reassemble",
        "oversize",
        "CHUNK 0 of 1 (a message of one chunk is sent whole).",
        [msg(wire.CHUNK, 1, 0, 1, b"x")],
        "chunked message of 1 parts",
    )
    add(
        "chunk_count_too_big",
        "reassemble",
        "oversize",
        "CHUNK 0 of 66: more chunks than a 4 MiB message needs.",
        [msg(wire.CHUNK, 1, 0, 66, b"x")],
        "chunked message of 66 parts",
    )
    add(
        "chunk_count_changed",
        "reassemble",
        "malformed",
        "Two chunks of message 4 announcing 3 and then 2 chunks.",
        [msg(wire.CHUNK, 4, 0, 3, b"a"), msg(wire.CHUNK, 4, 1, 2, b"b")],
        "chunk count changed",
    )
    add(
        "compressed_not_zlib",
        "inflate",
        "malformed",
        "COMPRESSED bytes that are not a zlib stream.",
        [msg(wire.COMPRESSED, b"not zlib")],
        "bad compressed message",
    )
    add(
        "compressed_truncated",
        "inflate",
        "malformed",
        "COMPRESSED with a zlib stream cut short.",
        [msg(wire.COMPRESSED, zlib.compress(msg(wire.HEARTBEAT, "x" * 300))[:-6])],
        "truncated compressed message",
    )
    add(
        "compression_bomb",
        "inflate",
        "oversize",
        "COMPRESSED inflating to over 64 times its size (200,000 zero bytes).",
        [attacks.zero_bomb(200_000)],
        "inflates past",
    )
    inner = msg(wire.CHUNK, 5, 0, 2, b"x" * 40)
    add(
        "chunk_in_chunk",
        "engine",
        "malformed",
        "Two CHUNK frames that reassemble into another CHUNK frame.",
        [msg(wire.CHUNK, 9, 0, 2, inner[:20]), msg(wire.CHUNK, 9, 1, 2, inner[20:])],
        "chunk inside a chunk",
    )
    add(
        "compressed_in_compressed",
        "engine",
        "malformed",
        "COMPRESSED holding another COMPRESSED message.",
        [msg(wire.COMPRESSED, zlib.compress(attacks.compressed(msg(wire.HEARTBEAT))))],
        "nested envelope",
    )
    add(
        "malformed_state_vector",
        "engine",
        "malformed_state",
        "ACK whose state vector is a truncated varuint.",
        [msg(wire.ACK, {STORE: b"\x80"})],
        "malformed state vector",
    )
    add(
        "state_vector_too_big",
        "engine",
        "too_many_items",
        "ACK whose state vector announces 2**20 entries (each counts 1/8 of an item).",
        [msg(wire.ACK, {STORE: varuint(2**20)})],
        "state vectors too large",
    )
    add(
        "bad_store_name",
        "engine",
        "bad_store_name",
        "ACK naming a store of 1,025 bytes.",
        [msg(wire.ACK, {"n" * 1025: b"\x00"})],
        "",
    )
    add(
        "bad_update",
        "engine",
        "bad_update",
        "DIFF carrying an update the store layout refuses (a nested type).",
        [msg(wire.DIFF, {STORE: good_update}, {}), msg(wire.DIFF, {STORE: bad_update}, {})],
        "a writer's first struct, and only it, is its array",
    )
    return vectors


# -- sealed signals -------------------------------------------------------------------------


ROOM_KEY = "3q2-7wAAAAA-EXAMPLE-ROOM-KEY-b64url-text"
SIGNAL_PAYLOAD = {
    "kind": "offer",
    "session": "0123456789abcdef",
    "sdp": "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\n"
    "a=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n",
}


def _signal_key(room: str) -> bytes:
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b"crdt-stores signaling key v1",
        info=b"signal\x00" + room.encode(),
    )
    return hkdf.derive(ROOM_KEY.encode())


def _signal_aad(room: str, sender: str, recipient: str) -> str:
    names = ", ".join(json.dumps(part) for part in (room, sender, recipient))
    return f'["crdt-stores-signal", 1, {names}]'


def _sealed(room: str, sender: str, recipient: str, plaintext: str, nonce: bytes) -> str:
    aad = _signal_aad(room, sender, recipient).encode()
    sealed = nonce + ChaCha20Poly1305(_signal_key(room)).encrypt(nonce, plaintext.encode(), aad)
    return base64.b64encode(sealed).decode()


def signal_vectors() -> list[dict[str, Any]]:
    vectors = []
    cases = [
        ("sealed_offer", "standup", "alice", "bob", "offer"),
        ("sealed_answer_unicode_room", "caf\u00e9 \u2615", "bob", "alice", "answer"),
    ]
    for index, (name, room, sender, recipient, kind) in enumerate(cases):
        payload = {**SIGNAL_PAYLOAD, "kind": kind}
        ts = 1_700_000_000.5 + index
        plaintext = json.dumps({"ts": ts, "payload": payload}, separators=(",", ":"))
        nonce = bytes(range(index, index + 12))
        vectors.append(
            {
                "name": name,
                "room_key": ROOM_KEY,
                "room": room,
                "sender": sender,
                "recipient": recipient,
                "derived_key": _signal_key(room).hex(),
                "associated_data": _signal_aad(room, sender, recipient),
                "nonce": nonce.hex(),
                "plaintext": plaintext,
                "ts": ts,
                "payload": payload,
                "data": {"v": 1, "sealed": _sealed(room, sender, recipient, plaintext, nonce)},
            }
        )
    return vectors


def invalid_signal_vectors() -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = []
    room, sender, recipient = "standup", "alice", "bob"
    now = 1_700_000_000.5
    payload = json.dumps(SIGNAL_PAYLOAD, separators=(",", ":"))
    good = f'{{"ts":{now!r},"payload":{payload}}}'

    def add(name: str, description: str, plaintext: str, data: dict[str, Any], detail: str) -> None:
        nonce = bytes(range(0x40 + len(vectors), 0x40 + len(vectors) + 12))
        sealed = _sealed(room, sender, recipient, plaintext, nonce)
        data = {key: sealed if value is ... else value for key, value in data.items()}
        try:
            SignalSealer(ROOM_KEY, room).open(sender, recipient, data, now)
        except SealError as exc:
            assert detail in exc.reason, (name, exc.reason)
        else:
            raise AssertionError(f"{name} is not refused")
        vectors.append(
            {
                "name": name,
                "description": description,
                "room_key": ROOM_KEY,
                "room": room,
                "sender": sender,
                "recipient": recipient,
                "now": now,
                "plaintext": plaintext,
                "data": data,
                "detail": detail,
            }
        )

    version = "unknown seal version"
    add("version_true", "`v` is true, not the number 1.", good, {"v": True, "sealed": ...}, version)
    add("version_text", "`v` is the text '1'.", good, {"v": "1", "sealed": ...}, version)
    add("version_missing", "No `v`.", good, {"sealed": ...}, version)
    no_payload = "sealed signal holds no payload"
    add(
        "ts_nan",
        "The plaintext's `ts` is NaN, which is not JSON (and would pass the window check).",
        good.replace(repr(now), "NaN"),
        {"v": 1, "sealed": ...},
        no_payload,
    )
    add(
        "ts_infinity",
        "The plaintext's `ts` is -Infinity, which is not JSON.",
        good.replace(repr(now), "-Infinity"),
        {"v": 1, "sealed": ...},
        no_payload,
    )
    add(
        "payload_nan",
        "The plaintext's payload holds a field that is NaN, which is not JSON.",
        good.replace('"kind"', '"x":NaN,"kind"'),
        {"v": 1, "sealed": ...},
        no_payload,
    )
    return vectors


# -- output ---------------------------------------------------------------------------------

FILES: dict[str, bytes] = {}


def _hex_lines(items: list[bytes]) -> bytes:
    return "".join(item.hex() + "\n" for item in items).encode()


def _strict(a: Any, b: Any) -> bool:
    """Equal with types, float signs included."""
    if type(a) is float and type(b) is float:
        return a.hex() == b.hex()
    if type(a) is list and type(b) is list:
        return len(a) == len(b) and all(_strict(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict and type(b) is dict:
        return a.keys() == b.keys() and all(_strict(v, b[k]) for k, v in a.items())
    return same_value(a, b)


def build() -> dict[str, bytes]:
    """Every file of ``tests/vectors/`` this script writes: relative path -> content."""
    FILES.clear()
    sections: list[tuple[str, Callable[[], list[dict[str, Any]]]]] = [
        ("updates", update_vectors),
        ("invalid_updates", invalid_update_vectors),
        ("frames", frame_vectors),
        ("invalid_frames", invalid_frame_vectors),
        ("signals", signal_vectors),
        ("invalid_signals", invalid_signal_vectors),
    ]
    index: dict[str, Any] = {
        "protocol_version": wire.PROTOCOL_VERSION,
        "about": "Test vectors of PROTOCOL.md; formats in tests/vectors/README.md.",
        "store": STORE,
    }
    for name, make in sections:
        index[name] = make()
    files = dict(FILES)
    files["index.json"] = _layout(index).encode()
    return files


def _layout(index: dict[str, Any]) -> str:
    """``index`` as JSON with one line per field of a vector (readable, diffable)."""

    def dump(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False)

    lines = ["{"]
    for i, (key, value) in enumerate(index.items()):
        comma = "," if i + 1 < len(index) else ""
        if type(value) is not list:
            lines.append(f" {dump(key)}: {dump(value)}{comma}")
            continue
        lines.append(f" {dump(key)}: [")
        for j, vector in enumerate(value):
            fields = [f"   {dump(k)}: {dump(v)}" for k, v in vector.items()]
            lines.append(
                "  {\n" + ",\n".join(fields) + "\n  }" + ("," if j + 1 < len(value) else "")
            )
        lines.append(f" ]{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main() -> None:
    files = build()
    for folder in ("updates", "invalid_updates", "frames", "invalid_frames"):
        for old in (HERE / folder).glob("*.hex"):
            if f"{folder}/{old.name}" not in files:
                old.unlink()
    for relative, content in sorted(files.items()):
        path = HERE / relative
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(content)
    print(f"wrote {len(files)} files to {HERE}")


if __name__ == "__main__":
    main()
