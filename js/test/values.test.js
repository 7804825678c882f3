// The CBOR profile (§5.1), the number rule and store values (§9), entries (§8) and the
// merge fold (§10), on their own.

import assert from "node:assert/strict";
import { test } from "node:test";
import {
  CborError,
  EntryError,
  Float,
  INT64_MAX,
  INT64_MIN,
  MISSING,
  Simple,
  checkKey,
  decodeCbor,
  encodeCbor,
  encodeEntry,
  fold,
  fromCbor,
  isValid,
  normalize,
  parseEntry,
  sameValue,
  sortEntries,
} from "../src/index.js";
import { INDEX, fromHex, fromTyped, toHex } from "./helpers.js";

const roundTrip = (value) => fromCbor(decodeCbor(encodeCbor(value)));

test("typed JSON and the strict comparison tell types apart", () => {
  assert.ok(sameValue(fromTyped({ $float: "1.0" }), new Float(1)));
  assert.ok(!sameValue(fromTyped({ $float: "1.0" }), 1));
  assert.ok(!sameValue(fromTyped({ $float: "-0.0" }), new Float(0)));
  assert.ok(!sameValue(true, 1));
  assert.equal(fromTyped({ $int: "9223372036854775807" }), INT64_MAX);
  assert.deepEqual(fromTyped({ $map: [["$x", { $bytes: "00ff" }]] }), { $x: new Uint8Array([0, 255]) });
  assert.ok(!sameValue({ a: [1] }, { a: [1, 2] }));
  assert.throws(() => fromTyped(1.5));
});

test("the number rule: every value reads back as what writes the same CBOR", () => {
  const cases = [
    [1, "01"],
    [new Float(1), "fb3ff0000000000000"],
    [-0, "fb8000000000000000"],
    [0.5, "fb3fe0000000000000"],
    [2 ** 40, "1b0000010000000000"],
    [Number.MAX_SAFE_INTEGER, "1b001fffffffffffff"],
    [2 ** 53, "fb4340000000000000"], // a number past the safe integers is a float
    [2n ** 53n, "1b0020000000000000"],
    [INT64_MIN, "3b7fffffffffffffff"],
    [1e300, "fb7e37e43c8800759c"],
  ];
  for (const [value, hex] of cases) {
    assert.equal(toHex(encodeCbor(value)), hex, String(value));
    const back = roundTrip(value);
    assert.ok(sameValue(back, value), `${String(value)} read back as ${String(back)}`);
    assert.equal(toHex(encodeCbor(back)), hex);
  }
  assert.ok(roundTrip(new Float(1)) instanceof Float);
  assert.ok(Object.is(roundTrip(-0), -0));
  assert.equal(typeof roundTrip(2n ** 53n), "bigint");
  assert.equal(roundTrip(5n), 5); // a safe bigint reads back as a number
  // Half and single floats read as their values (and are written back as `fb`).
  assert.ok(sameValue(fromCbor(decodeCbor(fromHex("f93c00"))), new Float(1)));
  assert.equal(fromCbor(decodeCbor(fromHex("fa3fc00000"))), 1.5);
});

test("every value of the every_type vector round-trips exactly", () => {
  const { expected } = INDEX.updates.find((v) => v.name === "every_type");
  for (const [key, typed] of Object.entries(expected)) {
    const value = fromTyped(typed);
    assert.ok(sameValue(normalize(value), value), key);
    const item = decodeCbor(encodeCbor(value));
    assert.ok(isValid(item), key);
    assert.ok(sameValue(fromCbor(item), value), key);
  }
});

test("the CBOR reader keeps to the profile", () => {
  const refused = {
    ff: "break code",
    c11a00000000: "CBOR tag 1",
    d84043010203: "CBOR tag 64",
    "5f41ff": "indefinite",
    "9f01ff": "indefinite",
    "1c": "reserved",
    fc: "reserved",
    f810: "two-byte",
    "62c3": "premature end",
    "62ffff": "UTF-8",
    "62eda080": "UTF-8", // an encoded surrogate
    "9bffffffffffffffff00": "premature end",
  };
  for (const [hex, message] of Object.entries(refused)) {
    assert.throws(
      () => decodeCbor(fromHex(hex)),
      (e) => e instanceof CborError && e.message.includes(message),
      hex,
    );
  }
  assert.doesNotThrow(() => decodeCbor(fromHex(`${"81".repeat(40)}00`)));
  assert.throws(() => decodeCbor(fromHex(`${"81".repeat(41)}00`)), /nesting depth \(40\)/);
  assert.equal(decodeCbor(fromHex("0001")), 0); // bytes after the item are ignored
  assert.equal(decodeCbor(fromHex("63efbbbf")), "\ufeff"); // a BOM is text like any other
  assert.equal(decodeCbor(fromHex("f7")), undefined);
  assert.deepEqual(decodeCbor(fromHex("f0")), new Simple(16));
  assert.deepEqual(decodeCbor(fromHex("a2616100616101")), new Map([["a", 1]])); // last value wins
  assert.equal(decodeCbor(fromHex("1b0000000000000001")), 1); // non-shortest integers are fine
  assert.equal(decodeCbor(fromHex("3bffffffffffffffff")), -(2n ** 64n));
  assert.throws(() => encodeCbor(2n ** 64n), RangeError); // no bignums
  assert.throws(() => encodeCbor("\ud800"), TypeError);
  assert.equal(toHex(encodeCbor({ __proto__: null, b: 1, a: [] })), "a2616201616180");
});

test("store values refuse what the protocol refuses", () => {
  const deep = (n, inner) => (n ? [deep(n - 1, inner)] : inner);
  assert.doesNotThrow(() => normalize(deep(31, [])));
  assert.throws(() => normalize(deep(32, [])), /nesting is deeper than 32/);
  assert.throws(() => normalize({ a: [1, NaN] }), /value\["a"\]\[1\]: float NaN/);
  assert.throws(() => normalize(2n ** 63n), RangeError);
  assert.throws(() => normalize(undefined), TypeError);
  assert.throws(() => normalize(new Uint8Array(1)), TypeError);
  assert.throws(() => normalize(new Date()), TypeError);
  assert.ok(!isValid(new Uint8Array(1)));
  assert.ok(!isValid(new Map([[1, 2]])));
  assert.ok(!isValid(new Float(Infinity)));
  assert.ok(!isValid(INT64_MAX + 1n));
  assert.ok(!isValid(deep(32, new Map())));
  assert.ok(isValid(deep(31, new Map([["k", 1]]))));
  const proto = normalize(JSON.parse('{"__proto__": {"x": 1}}'));
  assert.deepEqual(Object.keys(proto), ["__proto__"]);
  assert.equal(Object.getPrototypeOf(proto), Object.prototype);
  assert.deepEqual(normalize(new Map([["k", new Float(2.5)]])), { k: 2.5 });
  assert.throws(() => checkKey(""), RangeError);
  assert.throws(() => checkKey("é".repeat(513)), /1026 bytes/);
});

test("entries: written as the reference writes them, parsed as it parses them", () => {
  const blob = encodeEntry("greeting", 0, "hello", 1);
  assert.equal(toHex(blob), ["84", "68", "6772656574696e67", "00", "6568656c6c6f", "01"].join(""));
  assert.deepEqual(parseEntry(blob, 64), { key: "greeting", op: 0, payload: "hello", lamport: 1 });
  assert.deepEqual(parseEntry(encodeEntry("k", 3, null, 2n ** 64n - 1n), 64).lamport, 2n ** 64n - 1n);
  assert.throws(() => encodeEntry("*", 0, 1, 1), RangeError);
  assert.throws(() => encodeEntry("k", 1, [1], 1), TypeError);
  assert.throws(() => encodeEntry("k", 0, "x".repeat(100), 1, 64), /encodes to 102 bytes/);
  // The op is an unsigned integer from 0 to 3, of any length; false, true, 2.0 and simple(3)
  // are not ops.
  for (const [op, payload, expected] of [
    ["1800", "01", 0],
    ["190001", "a0", 1],
    ["1a00000002", "80", 2],
    ["1b0000000000000003", "f6", 3],
  ]) {
    assert.equal(parseEntry(fromHex(`84616b${op}${payload}01`), 64).op, expected); // ["k", op, payload, 1]
  }
  for (const op of ["f4", "f5", "fb4000000000000000", "f98000", "e3", "04", "20", "6130"]) {
    assert.throws(
      () => parseEntry(fromHex(`84616b${op}f601`), 64),
      (error) => error instanceof EntryError && error.message === "op is not an unsigned integer from 0 to 3",
    );
  }
  assert.throws(() => parseEntry(fromHex("84616b0001f5"), 64), /lamport/); // lamport true
});

test("the fold follows §10.1", () => {
  const entry = (op, payload, lamport, writer) => ({ key: "k", op, payload, lamport, writer });
  const entries = sortEntries([
    entry(2, ["c"], 2, 3),
    entry(0, { a: 1 }, 1, 1),
    entry(1, { b: 2 }, 2, 1),
    entry(0, ["a"], 2, 2),
  ]);
  assert.deepEqual(fold(entries), ["a", "c"]);
  assert.deepEqual(fold(sortEntries([entry(0, 5, 1, 1), entry(1, { x: 1 }, 2, 1)])), { x: 1 });
  assert.deepEqual(fold(sortEntries([entry(0, [1], 1, 1), entry(2, [2], 2n ** 64n - 1n, 1)])), [1, 2]);
  assert.equal(fold(sortEntries([entry(0, 1, 1, 2), entry(3, null, 1, 3)])), MISSING);
});
