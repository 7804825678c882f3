"""The shared test vectors of PROTOCOL.md (``tests/vectors/``) mean what ``index.json`` says.

Each vector is checked through the library's entry points only (``StoreReplica``,
``wire``, ``updates.read``, ``SyncEngine``, ``sealing``), with a typed-JSON reader and a
strict comparison written here, apart from the generator's; and the generator must
reproduce every file byte for byte, so that a change of encoding is noticed.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import logging
import struct
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from crdt_stores import updates, wire
from crdt_stores.config import VIOLATIONS, SyncConfig
from crdt_stores.messages import Chunk, Compressed
from crdt_stores.protocol import SyncEngine
from crdt_stores.replica import StoreReplica, UpdateError
from crdt_stores.sealing import SealError, SignalSealer, derive_key

VECTORS = Path(__file__).parent / "vectors"
INDEX: dict[str, Any] = json.loads((VECTORS / "index.json").read_text("utf-8"))
STORE = INDEX["store"]
APPLIER = 987_654_321  # client id of the replicas vectors are applied to (never a writer)
MESSAGE_LIMIT = SyncConfig().max_message_bytes


def ids(section: str) -> list[str]:
    return [vector["name"] for vector in INDEX[section]]


def read_hex(relative: str) -> list[bytes]:
    """The items of a ``.hex`` file: one lowercase hex line each, every line ended by LF."""
    text = (VECTORS / relative).read_text("ascii")
    assert text.endswith("\n") and "\r" not in text, relative
    lines = text[:-1].split("\n")
    for line in lines:
        assert line and len(line) % 2 == 0 and line == line.lower(), relative
    return [bytes.fromhex(line) for line in lines]


def from_typed(value: Any) -> Any:
    """Typed JSON (tests/vectors/README.md) to Python values."""
    if type(value) is dict:
        if len(value) == 1:
            ((tag, inner),) = value.items()
            if tag == "$int":
                return int(inner)
            if tag == "$float":
                return float(inner)
            if tag == "$bytes":
                return bytes.fromhex(inner)
            if tag == "$map":
                return {key: from_typed(item) for key, item in inner}
        assert not any(key.startswith("$") for key in value), value
        return {key: from_typed(item) for key, item in value.items()}
    if type(value) is list:
        return [from_typed(item) for item in value]
    assert type(value) is not float, f"untyped float {value!r}"
    return value


def strict_equal(a: Any, b: Any) -> bool:
    """Equal values of equal types: 1, 1.0 and True differ, so do 0.0 and -0.0."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return struct.pack(">d", a) == struct.pack(">d", b)
    if type(a) is list:
        return len(a) == len(b) and all(strict_equal(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict:
        return a.keys() == b.keys() and all(strict_equal(v, b[k]) for k, v in a.items())
    return a == b


def snapshot(replica: StoreReplica) -> tuple[Any, ...]:
    return (
        copy.deepcopy(dict(replica.items())),
        replica.state_vector(),
        replica.delete_digest(),
        replica.entry_count,
    )


# -- the helpers themselves -------------------------------------------------------------


def test_typed_json_and_strict_comparison_tell_types_apart() -> None:
    assert strict_equal(from_typed({"$float": "1.0"}), 1.0)
    assert not strict_equal(from_typed({"$float": "1.0"}), 1)
    assert not strict_equal(from_typed({"$float": "-0.0"}), 0.0)
    assert not strict_equal(True, 1)
    assert from_typed({"$int": "9223372036854775807"}) == 2**63 - 1
    assert from_typed({"$map": [["$x", {"$bytes": "00ff"}]]}) == {"$x": b"\x00\xff"}
    assert not strict_equal({"a": [1]}, {"a": [1, 2]})
    with pytest.raises(AssertionError):
        from_typed(1.5)


# -- updates ------------------------------------------------------------------------------


def digest_of(delete_set: dict[str, list[list[int]]]) -> bytes:
    """PROTOCOL.md §6.7: BLAKE2b-64 of CBOR [[client, [[clock, length]...]]...], sorted."""
    canonical = sorted([int(client), ranges] for client, ranges in delete_set.items())
    return hashlib.blake2b(cbor2.dumps(canonical), digest_size=8).digest()


@pytest.mark.parametrize("vector", INDEX["updates"], ids=ids("updates"))
def test_update_vector(vector: dict[str, Any]) -> None:
    replica = StoreReplica(STORE, client_id=APPLIER, **vector.get("replica", {}))
    for data in read_hex(vector["file"]):
        replica.apply(data)
    expected = from_typed(vector["expected"])
    assert strict_equal(dict(replica.items()), expected), dict(replica.items())
    assert replica.state_vector_dict() == {
        int(client): clock for client, clock in vector["state_vector"].items()
    }
    assert replica.entry_count == vector["live_entries"]
    assert replica.delete_digest().hex() == vector["delete_digest"]
    assert digest_of(vector["delete_set"]).hex() == vector["delete_digest"]
    assert replica.take_outbox() == []  # a replica that never wrote compacts nothing
    # What a late joiner gets from this replica means the same.
    joiner = StoreReplica(STORE, client_id=APPLIER + 1)
    joiner.apply(replica.diff())
    assert strict_equal(dict(joiner.items()), expected)
    assert joiner.delete_digest() == replica.delete_digest()


@pytest.mark.parametrize("vector", INDEX["invalid_updates"], ids=ids("invalid_updates"))
def test_invalid_update_vector(vector: dict[str, Any]) -> None:
    options = vector.get("replica", {})
    replica = StoreReplica(STORE, client_id=APPLIER, **options)
    if vector["before"] is not None:
        for data in read_hex(vector["before"]):
            replica.apply(data)
    (data,) = read_hex(vector["file"])
    before = snapshot(replica)
    with pytest.raises(UpdateError) as refused:
        replica.apply(data)
    assert vector["detail"] in str(refused.value)
    assert snapshot(replica) == before
    assert replica.take_outbox() == []
    with pytest.raises(updates.InvalidUpdate) as invalid:
        updates.read(
            data,
            max_units=options.get("max_update_items", 1 << 20),
            max_value_bytes=options.get("max_value_bytes", 1 << 20),
        )
    assert invalid.value.reason == vector["reason"]


# -- frames -------------------------------------------------------------------------------


def meaning(message: wire.Message) -> dict[str, Any]:
    """A decoded message as the typed JSON of index.json's "message" field."""

    def data_map(value: dict[str, bytes] | None) -> Any:
        return None if value is None else {k: {"$bytes": v.hex()} for k, v in value.items()}

    kind = message.kind
    if kind == wire.HELLO:
        return {"kind": "hello", "peer": message.peer, "links": message.links}
    if kind == wire.SYNC:
        return {
            "kind": "sync",
            "states": data_map(message.states),
            "want_sync": message.want_sync,
            "more": message.more,
            "digests": data_map(message.digests),
        }
    if kind == wire.DIFF:
        return {
            "kind": "diff",
            "diffs": data_map(message.diffs),
            "states": data_map(message.states),
            "digests": data_map(message.digests),
        }
    if kind == wire.UPDATE:
        assert message.updates is not None
        return {
            "kind": "update",
            "updates": {k: [{"$bytes": d.hex()} for d in v] for k, v in message.updates.items()},
            "states": data_map(message.states),
            "want_ack": message.want_ack,
        }
    if kind == wire.ACK:
        return {
            "kind": "ack",
            "states": data_map(message.states),
            "want_ack": message.want_ack,
            "digests": data_map(message.digests),
        }
    if kind == wire.HEARTBEAT:
        return {"kind": "heartbeat"}
    if kind == wire.LINKS:
        return {"kind": "links", "links": message.links}
    assert kind not in wire.KIND_NAMES, kind
    return {"kind": kind}


def unwrap(frames: list[bytes]) -> tuple[list[str], wire.Message, list[dict[str, int]], int]:
    """Frames to one message through the envelopes: (envelopes, message, chunks, inflated)."""
    envelopes: list[str] = []
    chunks: list[dict[str, int]] = []
    inflated = -1
    message = wire.decode_frame(frames[0])
    if message.kind == wire.CHUNK:
        envelopes.append("chunk")
        reassembler = wire.Reassembler(MESSAGE_LIMIT)
        whole = None
        for frame in frames:
            part = wire.decode_frame(frame)
            assert type(part) is Chunk and whole is None
            chunks.append(
                {
                    "message_id": part.message_id,
                    "index": part.index,
                    "count": part.count,
                    "bytes": len(part.data),
                }
            )
            whole = reassembler.add(part.message_id, part.index, part.count, part.data)
        assert whole is not None, "the chunks do not make a whole message"
        message = wire.decode_frame(whole, MESSAGE_LIMIT)
    else:
        assert len(frames) == 1
    if type(message) is Compressed:
        envelopes.append("compressed")
        data = wire.inflate(message.packed, MESSAGE_LIMIT)
        inflated = len(data)
        message = wire.decode_frame(data, MESSAGE_LIMIT)
    return envelopes, message, chunks, inflated


def linked_engine() -> SyncEngine:
    engine = SyncEngine("me")
    engine.link_up("peer", 0.0)
    return engine


@pytest.mark.parametrize("vector", INDEX["frames"], ids=ids("frames"))
def test_frame_vector(vector: dict[str, Any]) -> None:
    frames = read_hex(vector["file"])
    envelopes, message, chunks, inflated = unwrap(frames)
    assert envelopes == vector["envelopes"]
    assert meaning(message) == vector["message"]
    assert chunks == vector.get("chunks", [])
    assert inflated == vector.get("inflated_bytes", -1)
    # A peer takes the frames in without complaint, and holds what they carry.
    engine = linked_engine()
    for frame in frames:
        engine.receive("peer", frame, 0.0)
    assert engine.stats["violations"] == 0 and engine.stats["handler_error"] == 0
    name = wire.KIND_NAMES.get(message.kind)
    assert engine.stats[f"in:{name}" if name else "unknown_kind"] == 1
    stores = {k: dict(r.items()) for k, r in engine.stores.items()}
    expected = {k: from_typed(v) for k, v in vector.get("stores", {}).items()}
    assert stores.keys() >= expected.keys()
    for store, values in expected.items():
        assert strict_equal(stores[store], values), store
    assert all(not stores[k] for k in stores.keys() - expected.keys())


@pytest.mark.parametrize("vector", INDEX["invalid_frames"], ids=ids("invalid_frames"))
def test_invalid_frame_vector(vector: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    frames = read_hex(vector["file"])
    stage = vector["stage"]
    # Where the wire module refuses it (or, for stage "engine", lets it through).
    if stage == "engine":
        chunked = wire.decode_frame(frames[0]).kind == wire.CHUNK
        for group in [frames] if chunked else [[frame] for frame in frames]:
            unwrap(group)  # well-formed for the wire module: the engine refuses it
    else:
        with pytest.raises(wire.ProtocolError) as refused:
            if stage == "decode":
                (frame,) = frames
                wire.decode_frame(frame)
            elif stage == "reassemble":
                reassembler = wire.Reassembler(MESSAGE_LIMIT)
                for frame in frames:
                    part = wire.decode_frame(frame)
                    assert type(part) is Chunk
                    reassembler.add(part.message_id, part.index, part.count, part.data)
            else:
                assert stage == "inflate"
                (frame,) = frames
                packed = wire.decode_frame(frame)
                assert type(packed) is Compressed
                wire.inflate(packed.packed, MESSAGE_LIMIT)
        assert refused.value.reason == vector["reason"]
        assert vector["detail"] in str(refused.value)
    # A peer drops it, counts it against the link, and changes nothing.
    engine = linked_engine()
    for frame in frames[:-1]:
        engine.receive("peer", frame, 0.0)
    before = {k: snapshot(r) for k, r in engine.stores.items()}
    violations = engine.stats["violations"]
    caplog.set_level(logging.DEBUG, logger="crdt_stores")
    engine.receive("peer", frames[-1], 0.0)
    assert engine.stats[vector["reason"]] == 1
    assert engine.stats["violations"] == violations + 1
    assert engine.stats["handler_error"] == 0
    assert {k: snapshot(r) for k, r in engine.stores.items() if k in before} == before
    assert all(not r.entry_count for k, r in engine.stores.items() if k not in before)
    if stage == "engine" and vector["detail"]:
        assert vector["detail"] in caplog.text


# -- sealed signals -------------------------------------------------------------------------


@pytest.mark.parametrize("vector", INDEX["signals"], ids=ids("signals"))
def test_signal_vector(vector: dict[str, Any]) -> None:
    key = derive_key(vector["room_key"], vector["room"])
    assert key.hex() == vector["derived_key"]
    sealed = base64.b64decode(vector["data"]["sealed"], validate=True)
    nonce = bytes.fromhex(vector["nonce"])
    assert sealed[:12] == nonce
    plain = ChaCha20Poly1305(key).decrypt(nonce, sealed[12:], vector["associated_data"].encode())
    assert plain.decode() == vector["plaintext"]
    assert json.loads(plain) == {"ts": vector["ts"], "payload": vector["payload"]}
    sealer = SignalSealer(vector["room_key"], vector["room"])
    payload = sealer.open(vector["sender"], vector["recipient"], vector["data"], vector["ts"])
    assert payload == vector["payload"]
    # Bound to sender and recipient: re-addressed, it does not open.
    other = SignalSealer(vector["room_key"], vector["room"])
    with pytest.raises(SealError):
        other.open(vector["recipient"], vector["sender"], vector["data"], vector["ts"])


@pytest.mark.parametrize("vector", INDEX["invalid_signals"], ids=ids("invalid_signals"))
def test_invalid_signal_vector(vector: dict[str, Any]) -> None:
    sealer = SignalSealer(vector["room_key"], vector["room"])
    with pytest.raises(SealError) as refused:
        sealer.open(vector["sender"], vector["recipient"], vector["data"], vector["now"])
    assert vector["detail"] in refused.value.reason
    # The seal itself is sound: the plaintext is what it holds.
    sealed = base64.b64decode(vector["data"]["sealed"], validate=True)
    key = derive_key(vector["room_key"], vector["room"])
    names = [vector["room"], vector["sender"], vector["recipient"]]
    aad = json.dumps(["crdt-stores-signal", 1, *names])
    plain = ChaCha20Poly1305(key).decrypt(sealed[:12], sealed[12:], aad.encode())
    assert plain.decode() == vector["plaintext"]


# -- the files are what the generator writes ---------------------------------------------------


def test_generator_reproduces_the_files() -> None:
    from tests.vectors import generate

    files = generate.build()
    on_disk = {
        path.relative_to(VECTORS).as_posix()
        for folder in ("updates", "invalid_updates", "frames", "invalid_frames")
        for path in (VECTORS / folder).iterdir()
    } | {"index.json"}
    assert on_disk == set(files), on_disk ^ set(files)
    changed = [name for name, content in files.items() if (VECTORS / name).read_bytes() != content]
    assert not changed, f"run python -m tests.vectors.generate; changed: {changed}"


def test_protocol_md_examples_are_the_vectors() -> None:
    """The annotated update of PROTOCOL.md §7.4 is the vector it names, byte for byte."""
    text = (VECTORS.parent.parent / "PROTOCOL.md").read_text("utf-8")
    block = text.split("### 7.4 Example", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    data = bytearray()
    for line in block.splitlines():
        for token in line.split():
            if len(token) % 2 or any(c not in "0123456789abcdef" for c in token):
                break  # the annotation starts
            data += bytes.fromhex(token)
    assert bytes(data) == read_hex("updates/set.hex")[0]
    assert hashlib.blake2b(b"\x80", digest_size=8).hexdigest() in text  # §6.7's example


def test_the_vectors_cover_every_kind_and_reason() -> None:
    kinds = {v["message"]["kind"] for v in INDEX["frames"]}
    assert set(wire.KIND_NAMES.values()) - {"chunk", "compressed"} <= kinds
    envelopes = {e for v in INDEX["frames"] for e in v["envelopes"]}
    assert envelopes == {"chunk", "compressed"}
    reasons = {v["reason"] for v in INDEX["invalid_frames"]}
    assert VIOLATIONS - {"over_budget"} <= reasons
    assert {v["reason"] for v in INDEX["invalid_updates"]} == {"bad_update", "too_many_items"}
    assert INDEX["protocol_version"] == wire.PROTOCOL_VERSION
