"""Values: every type round-trips exactly, every bad input is refused and changes nothing."""

from __future__ import annotations

import math
from collections import OrderedDict
from enum import IntEnum

import pytest

from crdt_stores.entries import EntryError, parse_entry
from crdt_stores.values import (
    MAX_DEPTH,
    copy_value,
    decode,
    digest,
    encode,
    is_valid,
    normalize,
    same_value,
)

from .conftest import converge

ROUND_TRIP = [
    ("str", "héllo ✓"),
    ("empty str", ""),
    ("int", 1),
    ("zero", 0),
    ("negative int", -17),
    ("int above 2**53", 2**53 + 1),
    ("int64 max", 2**63 - 1),
    ("int64 min", -(2**63)),
    ("float", 1.0),
    ("float fraction", 0.1),
    ("negative zero", -0.0),
    ("tiny float", 5e-324),
    ("huge float", 1.7976931348623157e308),
    ("true", True),
    ("false", False),
    ("none", None),
    ("list", [1, 1.0, True, None, "x"]),
    ("empty list", []),
    ("dict", {"a": 1, "b": 1.0, "c": [True, {"d": None}]}),
    ("empty dict", {}),
    ("nested 32", [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]),
]


@pytest.mark.parametrize(("label", "value"), ROUND_TRIP, ids=[r[0] for r in ROUND_TRIP])
def test_codec_round_trip_keeps_types(label: str, value: object) -> None:
    back = decode(encode(normalize(value)))
    assert same_value(back, value)
    assert is_valid(back)


@pytest.mark.parametrize(("label", "value"), ROUND_TRIP, ids=[r[0] for r in ROUND_TRIP])
async def test_value_round_trip_between_peers(net, label: str, value: object) -> None:
    alice = await net.join("room", peer_id="alice")
    bob = await net.join("room", peer_id="bob")
    await alice.stores.create("s").set("k", value)
    await converge(alice, bob)
    got = bob.stores["s"].get("k")
    assert same_value(got, value), (got, value)
    if isinstance(value, float):
        assert math.copysign(1.0, got) == math.copysign(1.0, value)


def test_tuples_become_lists_and_subclasses_their_base() -> None:
    class Color(IntEnum):
        RED = 1

    assert same_value(normalize((1, (2, 3))), [1, [2, 3]])
    assert same_value(normalize(OrderedDict(a=Color.RED)), {"a": 1})
    assert type(normalize(Color.RED)) is int


def test_normalize_copies() -> None:
    original = {"a": [1, 2]}
    copy = normalize(original)
    original["a"].append(3)
    assert copy == {"a": [1, 2]}
    copied = copy_value(copy)
    copied["a"].append(9)
    assert copy == {"a": [1, 2]}


def deep(levels: int) -> list:
    value: list = []
    for _ in range(levels - 1):
        value = [value]
    return value


BAD_VALUES = [
    ("bytes", b"x", TypeError),
    ("bytearray", bytearray(b"x"), TypeError),
    ("set", {1}, TypeError),
    ("frozenset", frozenset(), TypeError),
    ("object", object(), TypeError),
    ("complex", 1j, TypeError),
    ("nested set", {"a": [1, {2}]}, TypeError),
    ("int dict key", {1: "x"}, TypeError),
    ("none dict key", {None: "x"}, TypeError),
    ("tuple dict key", {(1,): "x"}, TypeError),
    ("nested int key", {"a": {2: 3}}, TypeError),
    ("int over int64", 2**63, ValueError),
    ("int under int64", -(2**63) - 1, ValueError),
    ("huge int", 10**40, ValueError),
    ("nested huge int", [1, [2**64]], ValueError),
    ("nan", math.nan, ValueError),
    ("inf", math.inf, ValueError),
    ("-inf", -math.inf, ValueError),
    ("nested nan", {"a": [math.nan]}, ValueError),
    ("33 levels", deep(MAX_DEPTH + 1), ValueError),
    ("lone surrogate", "\ud800", ValueError),
    ("lone surrogate key", {"\udfff": 1}, ValueError),
]


@pytest.mark.parametrize(("label", "value", "error"), BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_normalize_refuses(label: str, value: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        normalize(value)


def test_depth_limit_is_exact() -> None:
    normalize(deep(MAX_DEPTH))
    with pytest.raises(ValueError, match="deeper than 32"):
        normalize(deep(MAX_DEPTH + 1))


def test_is_valid_rejects_what_cbor_can_carry_but_stores_cannot() -> None:
    assert not is_valid(b"bytes")
    assert not is_valid({1: 2})
    assert not is_valid(2**64)
    assert not is_valid(math.inf)
    assert not is_valid(deep(MAX_DEPTH + 1))
    assert is_valid(deep(MAX_DEPTH))


def test_decode_malformed_raises_value_error() -> None:
    for blob in (b"", b"\xff", b"\x85\x01", b"\x9f" * 100_000):
        with pytest.raises(ValueError):
            decode(blob)


def test_digest_ignores_dict_order_but_not_types() -> None:
    assert digest({"a": 1, "b": 2}) == digest({"b": 2, "a": 1})
    assert digest({"a": 1}) != digest({"a": 1.0})
    assert digest([True]) != digest([1])


def test_an_entry_op_is_an_unsigned_integer_from_0_to_3() -> None:
    # ["k", op, payload, 1], the op in any length; as js/test/values.test.js checks it
    for op, payload, expected in [
        ("1800", "01", 0),
        ("190001", "a0", 1),
        ("1a00000002", "80", 2),
        ("1b0000000000000003", "f6", 3),
    ]:
        assert parse_entry(bytes.fromhex(f"84616b{op}{payload}01"), 64)[1] == expected
    for op in ("f4", "f5", "fb4000000000000000", "f98000", "e3", "04", "20", "6130"):
        with pytest.raises(EntryError) as refused:
            parse_entry(bytes.fromhex(f"84616b{op}f601"), 64)
        assert str(refused.value) == "op is not an unsigned integer from 0 to 3"
