// The `frames` and `invalid_frames` vectors: every message kind and envelope decodes to
// its meaning and encodes back byte for byte; a peer takes the frames in and holds what
// they carry; refused frames are refused at their stage, with their reason.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  CHUNK,
  COMPRESSED,
  KIND_NAMES,
  ProtocolError,
  Reassembler,
  StoreReplica,
  decodeCbor,
  decodeFrame,
  encodeCbor,
  encodeMessage,
  frames,
  inflate,
  intake,
} from "../src/index.js";
import { INDEX, assertValues, fromHex, readHex, toHex } from "./helpers.js";

const MESSAGE_LIMIT = 4 * 1024 * 1024;

/** Vectors that are the reference's own encoding of a whole message (no optional field
 * left out, no stray field): encoding their meaning gives the frame back. */
const CANONICAL = new Set([
  "hello",
  "sync",
  "diff",
  "update",
  "update_want_ack",
  "ack",
  "heartbeat",
  "links",
]);

/** A decoded message as the typed JSON of index.json's "message" field. */
function meaning(message) {
  const dataMap = (map) =>
    map === null ? null : Object.fromEntries([...map].map(([k, v]) => [k, { $bytes: toHex(v) }]));
  switch (KIND_NAMES.get(message.kind)) {
    case "hello":
      return { kind: "hello", peer: message.peer, links: message.links };
    case "sync":
      return {
        kind: "sync",
        states: dataMap(message.states),
        want_sync: message.wantSync,
        more: message.more,
        digests: dataMap(message.digests),
      };
    case "diff":
      return {
        kind: "diff",
        diffs: dataMap(message.diffs),
        states: dataMap(message.states),
        digests: dataMap(message.digests),
      };
    case "update":
      return {
        kind: "update",
        updates: Object.fromEntries(
          [...message.updates].map(([k, v]) => [k, v.map((d) => ({ $bytes: toHex(d) }))]),
        ),
        states: dataMap(message.states),
        want_ack: message.wantAck,
      };
    case "ack":
      return {
        kind: "ack",
        states: dataMap(message.states),
        want_ack: message.wantAck,
        digests: dataMap(message.digests),
      };
    case "heartbeat":
      return { kind: "heartbeat" };
    case "links":
      return { kind: "links", links: message.links };
    default:
      assert.ok(!KIND_NAMES.has(message.kind), String(message.kind));
      return { kind: message.kind };
  }
}

/** Frames to one message through the envelopes: {envelopes, message, chunks, inflated}. */
function unwrap(frameList) {
  const envelopes = [];
  const chunks = [];
  let inflated = -1;
  let message = decodeFrame(frameList[0]);
  if (message.kind === CHUNK) {
    envelopes.push("chunk");
    const reassembler = new Reassembler(MESSAGE_LIMIT);
    let whole = null;
    for (const frame of frameList) {
      const part = decodeFrame(frame);
      assert.ok(part.kind === CHUNK && whole === null);
      chunks.push({
        message_id: part.messageId,
        index: part.index,
        count: part.count,
        bytes: part.data.length,
      });
      whole = reassembler.add(part.messageId, part.index, part.count, part.data);
    }
    assert.ok(whole !== null, "the chunks do not make a whole message");
    message = decodeFrame(whole, MESSAGE_LIMIT);
  } else {
    assert.equal(frameList.length, 1);
  }
  if (message.kind === COMPRESSED) {
    envelopes.push("compressed");
    const data = inflate(message.packed, MESSAGE_LIMIT);
    inflated = data.length;
    assert.equal(toHex(encodeMessage(decodeFrame(data, MESSAGE_LIMIT))), toHex(data), "inner message bytes");
    message = decodeFrame(data, MESSAGE_LIMIT);
  }
  return { envelopes, message, chunks, inflated };
}

/** A receiving peer of this increment: frames through the reassembler and the intake
 * checks into store replicas; what it refused, one reason each. */
class Peer {
  constructor() {
    this.reassembler = new Reassembler(MESSAGE_LIMIT);
    this.stores = new Map();
    this.violations = [];
    this.messages = [];
  }

  receive(frame) {
    try {
      const message = this.reassembler.complete(frame);
      if (message === null) return;
      this.messages.push(message);
      const checked = intake(message, { stateOf: (name) => this.stores.get(name)?.stateVectorMap() ?? null });
      this.violations.push(...checked.violations.map((v) => v.reason));
      for (const name of [...checked.updates.keys(), ...checked.states.keys()]) {
        if (!this.stores.has(name)) this.stores.set(name, new StoreReplica(name));
      }
      for (const [name, reads] of checked.updates) {
        for (const read of reads) this.stores.get(name).apply(read);
      }
    } catch (error) {
      if (!(error instanceof ProtocolError)) throw error;
      this.violations.push(error.reason);
    }
  }

  snapshot() {
    return Object.fromEntries(
      [...this.stores].map(([name, r]) => [
        name,
        [[...r.values()], toHex(r.stateVector()), toHex(r.deleteDigest())],
      ]),
    );
  }
}

describe("frames vectors", () => {
  for (const vector of INDEX.frames) {
    test(vector.name, () => {
      const frameList = readHex(vector.file);
      const { envelopes, message, chunks, inflated } = unwrap(frameList);
      assert.deepEqual(envelopes, vector.envelopes);
      assert.deepEqual(meaning(message), vector.message);
      assert.deepEqual(chunks, vector.chunks ?? []);
      assert.equal(inflated, vector.inflated_bytes ?? -1);
      // Byte for byte: the CBOR of every frame, and the message as the reference sends it.
      for (const frame of frameList) assert.equal(toHex(encodeCbor(decodeCbor(frame))), toHex(frame));
      if (CANONICAL.has(vector.name)) {
        assert.equal(toHex(encodeMessage(message)), toHex(frameList[0]));
      }
      if (envelopes.length) {
        const maxFrame = envelopes[0] === "chunk" ? 1024 : undefined;
        const id = vector.chunks ? vector.chunks[0].message_id : 1;
        const ours = frames(encodeMessage(message), id, maxFrame);
        const again = unwrap(ours);
        assert.deepEqual(again.envelopes, vector.envelopes);
        assert.deepEqual(meaning(again.message), vector.message);
        if (!envelopes.includes("compressed")) {
          // (zlib's output differs between implementations: compressed bytes may too)
          assert.deepEqual(ours.map(toHex), frameList.map(toHex));
        }
      } else {
        assert.deepEqual(frames(frameList[0], 0), [frameList[0]]);
      }
      // A peer takes the frames in without complaint, and holds what they carry.
      const peer = new Peer();
      for (const frame of frameList) peer.receive(frame);
      assert.deepEqual(peer.violations, []);
      assert.equal(peer.messages.length, 1);
      const expected = vector.stores ?? {};
      for (const [name, values] of Object.entries(expected)) {
        assertValues(peer.stores.get(name).values(), values, name);
      }
      for (const [name, replica] of peer.stores) {
        if (!(name in expected)) assert.equal(replica.values().size, 0, name);
      }
    });
  }
});

function refusal(vector) {
  return (error) => {
    assert.ok(error instanceof ProtocolError, String(error));
    assert.equal(error.reason, vector.reason);
    assert.ok(error.message.includes(vector.detail), `${error.message} lacks ${vector.detail}`);
    return true;
  };
}

describe("invalid_frames vectors", () => {
  for (const vector of INDEX.invalid_frames) {
    test(vector.name, () => {
      const frameList = readHex(vector.file);
      const { stage } = vector;
      if (stage === "decode") {
        assert.equal(frameList.length, 1);
        assert.throws(() => decodeFrame(frameList[0]), refusal(vector));
      } else if (stage === "reassemble") {
        const reassembler = new Reassembler(MESSAGE_LIMIT);
        assert.throws(() => {
          for (const frame of frameList) {
            const part = decodeFrame(frame);
            assert.equal(part.kind, CHUNK);
            reassembler.add(part.messageId, part.index, part.count, part.data);
          }
        }, refusal(vector));
      } else if (stage === "inflate") {
        const packed = decodeFrame(frameList[0]);
        assert.equal(packed.kind, COMPRESSED);
        assert.throws(() => inflate(packed.packed, MESSAGE_LIMIT), refusal(vector));
      } else {
        assert.equal(stage, "engine");
        // Well-formed for the wire: refused by the reassembler's nesting rule or the intake.
        const reassembler = new Reassembler(MESSAGE_LIMIT);
        let found = null;
        try {
          let message = null;
          for (const frame of frameList) message = reassembler.complete(frame);
          const { violations } = intake(message);
          assert.equal(violations.length, 1, JSON.stringify(violations));
          found = violations[0];
        } catch (error) {
          if (!(error instanceof ProtocolError)) throw error;
          found = { reason: error.reason, detail: error.message };
        }
        assert.equal(found.reason, vector.reason);
        assert.ok(found.detail.includes(vector.detail), `${found.detail} lacks ${vector.detail}`);
      }
      // A peer drops it, counts it, and changes nothing.
      const peer = new Peer();
      for (const frame of frameList.slice(0, -1)) peer.receive(frame);
      assert.deepEqual(peer.violations, []);
      const before = peer.snapshot();
      peer.receive(frameList[frameList.length - 1]);
      assert.deepEqual(peer.violations, [vector.reason]);
      const after = peer.snapshot();
      for (const name of Object.keys(before)) assert.deepEqual(after[name], before[name]);
      for (const name of Object.keys(after)) {
        if (!(name in before)) assert.equal(peer.stores.get(name).entryCount, 0);
      }
    });
  }
});

test("the version and the kind are integers", () => {
  // The version is an unsigned integer of any length: 1 is version 1, another is unsupported.
  for (const version of ["01", "1801", "190001", "1b0000000000000001"]) {
    assert.deepEqual(decodeFrame(fromHex(`82${version}05`)), { kind: 5 });
  }
  for (const version of ["02", "1bffffffffffffffff"]) {
    assert.throws(() => decodeFrame(fromHex(`82${version}05`)), { reason: "unsupported_version" });
  }
  // Not an unsigned integer (true, 1.0 in any precision, simple(1), -1, "1"): malformed.
  for (const version of ["f5", "f93c00", "fa3f800000", "fb3ff0000000000000", "e1", "20", "6131"]) {
    assert.throws(() => decodeFrame(fromHex(`82${version}05`)), {
      reason: "malformed",
      message: "the protocol version is not an unsigned integer",
    });
  }
  assert.throws(() => decodeFrame(fromHex("8201f94500")), { reason: "malformed" }); // kind 5.0
  assert.deepEqual(decodeFrame(fromHex("83011863f6")), { kind: 99 }); // unknown: ignored
});

test("the vectors cover every kind, envelope and reason", () => {
  const kinds = new Set(INDEX.frames.map((v) => v.message.kind));
  for (const name of KIND_NAMES.values()) {
    if (name !== "chunk" && name !== "compressed") assert.ok(kinds.has(name), name);
  }
  assert.deepEqual(new Set(INDEX.frames.flatMap((v) => v.envelopes)), new Set(["chunk", "compressed"]));
  const reasons = new Set(INDEX.invalid_frames.map((v) => v.reason));
  const expected = [
    "oversize",
    "too_many_items",
    "malformed",
    "unsupported_version",
    "malformed_state",
    "bad_store_name",
    "bad_update",
  ];
  for (const reason of expected) assert.ok(reasons.has(reason), reason);
  assert.equal(INDEX.protocol_version, 1);
});
