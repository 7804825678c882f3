// The shared test vectors (../../tests/vectors/, PROTOCOL.md §12): index.json, the .hex
// files, and typed JSON read into this package's values (its number rule).

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Float } from "../src/cbor.js";
import { floatValue, sameValue, setField } from "../src/values.js";

export const VECTORS = fileURLToPath(new URL("../../tests/vectors/", import.meta.url));
export const INDEX = JSON.parse(readFileSync(`${VECTORS}index.json`, "utf8"));
export const STORE = INDEX.store;

/** The items of a `.hex` file: one lowercase hex line each, every line ended by LF. */
export function readHex(relative) {
  const text = readFileSync(`${VECTORS}${relative}`, "ascii");
  assert.ok(text.endsWith("\n") && !text.includes("\r"), relative);
  return text
    .slice(0, -1)
    .split("\n")
    .map((line) => {
      assert.ok(line && line.length % 2 === 0 && line === line.toLowerCase(), relative);
      return new Uint8Array(Buffer.from(line, "hex"));
    });
}

export const toHex = (bytes) => Buffer.from(bytes).toString("hex");
export const fromHex = (text) => new Uint8Array(Buffer.from(text, "hex"));

const PYTHON_FLOATS = { inf: Infinity, "-inf": -Infinity, nan: NaN };

/** Typed JSON (tests/vectors/README.md) to values, by the number rule of values.js. */
export function fromTyped(value) {
  if (Array.isArray(value)) return value.map(fromTyped);
  if (value !== null && typeof value === "object") {
    const keys = Object.keys(value);
    if (keys.length === 1) {
      const [tag] = keys;
      const inner = value[tag];
      if (tag === "$int") {
        const n = BigInt(inner);
        return n >= -BigInt(Number.MAX_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
      }
      if (tag === "$float") return floatValue(PYTHON_FLOATS[inner] ?? Number(inner));
      if (tag === "$bytes") return fromHex(inner);
      if (tag === "$map") {
        const out = {};
        for (const [key, item] of inner) setField(out, key, fromTyped(item));
        return out;
      }
    }
    assert.ok(!keys.some((key) => key.startsWith("$")), JSON.stringify(value));
    const out = {};
    for (const key of keys) setField(out, key, fromTyped(value[key]));
    return out;
  }
  assert.ok(typeof value !== "number" || Number.isInteger(value), `untyped float ${value}`);
  return value;
}

/** Strict equality of a store's values (a Map of key to value) and typed JSON. */
export function assertValues(actual, typed, what = "values") {
  const expected = fromTyped(typed);
  const got = Object.fromEntries(actual);
  assert.ok(sameValue(got, expected), `${what}: ${inspect(got)} != ${inspect(expected)}`);
}

function inspect(value) {
  return JSON.stringify(value, (_, v) =>
    typeof v === "bigint" ? `${v}n` : v instanceof Float ? `Float(${v.value})` : Object.is(v, -0) ? "-0" : v,
  );
}

/** A seeded PRNG (mulberry32): uniform in [0, 1). */
export function seeded(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
