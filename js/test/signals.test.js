// The `signals` vectors: sealed signals open with the room key (PROTOCOL.md §3.4), and
// sealing the same payload with the same nonce gives the vector's data byte for byte.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import {
  SealError,
  SignalSealer,
  associatedData,
  deriveKey,
  generateRoomKey,
  pythonJson,
} from "../src/index.js";
import { INDEX, fromHex, toHex } from "./helpers.js";

describe("signals vectors", () => {
  for (const vector of INDEX.signals) {
    test(vector.name, async () => {
      const key = await deriveKey(vector.room_key, vector.room);
      assert.equal(toHex(key), vector.derived_key);
      assert.equal(
        new TextDecoder().decode(associatedData(vector.room, vector.sender, vector.recipient)),
        vector.associated_data,
      );
      const sealed = new Uint8Array(Buffer.from(vector.data.sealed, "base64"));
      const nonce = fromHex(vector.nonce);
      assert.deepEqual(sealed.subarray(0, 12), nonce);
      const aad = new TextEncoder().encode(vector.associated_data);
      const plain = new TextDecoder().decode(chacha20poly1305(key, nonce, aad).decrypt(sealed.subarray(12)));
      assert.equal(plain, vector.plaintext);
      assert.deepEqual(JSON.parse(plain), { ts: vector.ts, payload: vector.payload });
      const sealer = await SignalSealer.create(vector.room_key, vector.room);
      assert.deepEqual(sealer.open(vector.sender, vector.recipient, vector.data, vector.ts), vector.payload);
      // A replay is refused; so is the same signal re-addressed, or stale.
      assert.throws(() => sealer.open(vector.sender, vector.recipient, vector.data, vector.ts), {
        reason: "replayed signal",
      });
      const other = await SignalSealer.create(vector.room_key, vector.room);
      assert.throws(() => other.open(vector.recipient, vector.sender, vector.data, vector.ts), SealError);
      assert.throws(() => other.open(vector.sender, vector.recipient, vector.data, vector.ts + 121), /s off/);
      // Sealing writes exactly what the reference writes.
      assert.deepEqual(
        sealer.seal(vector.sender, vector.recipient, vector.payload, vector.ts, nonce),
        vector.data,
      );
    });
  }
});

describe("invalid_signals vectors", () => {
  for (const vector of INDEX.invalid_signals) {
    test(vector.name, async () => {
      const sealer = await SignalSealer.create(vector.room_key, vector.room);
      assert.throws(
        () => sealer.open(vector.sender, vector.recipient, vector.data, vector.now),
        (error) => error instanceof SealError && error.reason.includes(vector.detail),
      );
      // The seal itself is sound: the plaintext is what it holds.
      const key = await deriveKey(vector.room_key, vector.room);
      const sealed = new Uint8Array(Buffer.from(vector.data.sealed, "base64"));
      const aad = associatedData(vector.room, vector.sender, vector.recipient);
      const plain = chacha20poly1305(key, sealed.subarray(0, 12), aad).decrypt(sealed.subarray(12));
      assert.equal(new TextDecoder().decode(plain), vector.plaintext);
    });
  }
});

test("v is the number 1: JSON's 1.0 is that number too", async () => {
  const sealer = await SignalSealer.create("key", "room");
  const now = 1_700_000_000;
  const data = sealer.seal("a", "b", { n: 1 }, now);
  assert.deepEqual(sealer.open("a", "b", JSON.parse(JSON.stringify(data).replace('"v":1', '"v":1.0')), now), {
    n: 1,
  });
});

test("the associated data is Python's json.dumps, non-ASCII escaped", () => {
  assert.equal(
    pythonJson(["crdt-stores-signal", 1, 'café ☕ 𝄞\u007f"\\\n', "bob", "alice"]),
    '["crdt-stores-signal", 1, "caf\\u00e9 \\u2615 \\ud834\\udd1e\\u007f\\"\\\\\\n", "bob", "alice"]',
  );
  assert.equal(
    pythonJson({ ts: 1.5, payload: { a: [true, null] } }, true),
    '{"ts":1.5,"payload":{"a":[true,null]}}',
  );
});

test("signals that are not sealed seals of this room are refused", async () => {
  const sealer = await SignalSealer.create(generateRoomKey(), "room");
  const now = 1_700_000_000;
  const data = sealer.seal("a", "b", { kind: "offer", session: "s", sdp: "" }, now);
  const reasons = [
    [{ kind: "offer", session: "s", sdp: "" }, "unsealed"],
    [{ ...data, v: 2 }, "unknown seal version (v is not the number 1)"],
    [{ ...data, v: true }, "unknown seal version"],
    [{ ...data, v: "1" }, "unknown seal version"],
    [{ ...data, v: null }, "unknown seal version"],
    [{ v: 1, sealed: "x".repeat(48 * 1024 + 1) }, "too large"],
    [{ v: 1, sealed: "AAAA=A==" }, "not base64"],
    [{ v: 1, sealed: "QUJD" }, "too short"],
    [{ ...data, sealed: `${data.sealed.slice(0, -4)}AAA=` }, "does not verify"],
  ];
  for (const [bad, reason] of reasons) {
    assert.throws(
      () => sealer.open("a", "b", bad, now),
      (error) => error instanceof SealError && error.reason.includes(reason),
    );
  }
  assert.deepEqual(sealer.open("a", "b", data, now + 100), { kind: "offer", session: "s", sdp: "" });
  assert.equal(generateRoomKey().length, 43);
  await assert.rejects(deriveKey("", "room"), RangeError);
});

test("forgotten nonces raise a floor that refuses their stamps", async () => {
  const sealer = await SignalSealer.create("key", "room", { maxSeen: 2 });
  const now = 1_700_000_000;
  const seals = [1, 2, 3].map((i) => sealer.seal("a", "b", { n: i }, now + i));
  for (const data of seals) sealer.open("a", "b", data, now + 3);
  assert.equal(sealer.seen.size, 2);
  assert.equal(sealer.floor, now + 1);
  const older = sealer.seal("a", "b", { n: 0 }, now + 1);
  assert.throws(() => sealer.open("a", "b", older, now + 3), { reason: "replayed signal" });
});
