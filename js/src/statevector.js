// Yjs state vectors (a lib0 varuint count, then varuint client/clock pairs) as Maps of
// client id to clock, and the digest of a delete set (PROTOCOL.md §6.7), which peers
// compare because state vectors do not cover deletions.

import { blake2b } from "@noble/hashes/blake2.js";
import { createEncoder, toUint8Array, writeVarUint } from "lib0/encoding";
import { encode as encodeCbor } from "./cbor.js";

const MAX_ENTRIES = 1 << 20;

/**
 * @typedef {Map<number | bigint, number | bigint>} StateVector
 * Client id to clock. Decoded values past 2^53 - 1 (which no valid document holds, but
 * a peer may report) are bigints.
 */

/** A varuint of at most 64 bits at `pos`: [value, next position]. */
function readVaruint(data, pos) {
  let result = 0n;
  let shift = 0n;
  for (let i = 0; i < 10; i++) {
    if (pos >= data.length) throw new RangeError("malformed state vector: truncated varuint");
    const byte = data[pos++];
    result |= BigInt(byte & 0x7f) << shift;
    if (byte < 0x80) {
      if (result >> 64n) throw new RangeError("malformed state vector: varuint over 64 bits");
      return [result <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(result) : result, pos];
    }
    shift += 7n;
  }
  throw new RangeError("malformed state vector: varuint over 64 bits");
}

/**
 * How many entries an encoded state vector announces (its first varuint); throws
 * `RangeError` when it does not even start like a state vector.
 * @param {Uint8Array} data
 */
export function countEntries(data) {
  const [count] = readVaruint(data, 0);
  return count;
}

/**
 * Decode an encoded state vector, as the reference does: at most `maxEntries` pairs,
 * every varuint at most 10 bytes, nothing after the last pair (a repeated client keeps
 * its last clock). Throws `RangeError` when malformed.
 * @param {Uint8Array} data
 * @param {number} [maxEntries]
 * @returns {StateVector}
 */
export function decodeStateVector(data, maxEntries = MAX_ENTRIES) {
  if (!(data instanceof Uint8Array)) throw new RangeError("state vector must be bytes");
  const [count, start] = readVaruint(data, 0);
  if (count > maxEntries || Number(count) * 2 > data.length) {
    throw new RangeError("state vector too large");
  }
  const ends = [];
  for (let pos = start; pos < data.length; pos++) {
    if (data[pos] < 0x80) ends.push(pos);
  }
  if (ends.length !== 2 * Number(count) || (ends.length && ends[ends.length - 1] !== data.length - 1)) {
    throw new RangeError("malformed state vector");
  }
  const values = [];
  let from = start;
  for (const end of ends) {
    if (end - from > 9) throw new RangeError("varuint too long in state vector");
    let value = 0n;
    for (let i = end; i >= from; i--) value = (value << 7n) | BigInt(data[i] & 0x7f);
    values.push(value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value);
    from = end + 1;
  }
  const vector = new Map();
  for (let i = 0; i < values.length; i += 2) vector.set(values[i], values[i + 1]);
  return vector;
}

/**
 * Encode a state vector the way Yjs does (pairs in the Map's order).
 * @param {Map<number, number>} vector
 */
export function encodeStateVector(vector) {
  const encoder = createEncoder();
  writeVarUint(encoder, vector.size);
  for (const [client, clock] of vector) {
    writeVarUint(encoder, client);
    writeVarUint(encoder, clock);
  }
  return toUint8Array(encoder);
}

/**
 * True when `have` holds everything `want` describes.
 * @param {StateVector} have
 * @param {StateVector} want
 */
export function covers(have, want) {
  for (const [client, clock] of want) {
    if (BigInt(have.get(client) ?? 0) < BigInt(clock)) return false;
  }
  return true;
}

/**
 * Delete ranges sorted by clock, overlapping and touching ones joined.
 * @param {Array<[number, number]>} ranges
 * @returns {Array<[number, number]>}
 */
export function mergeRanges(ranges) {
  const sorted = [...ranges].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const out = [];
  for (const [clock, length] of sorted) {
    const last = out[out.length - 1];
    if (last && clock <= last[0] + last[1]) {
      last[1] = Math.max(last[1], clock + length - last[0]);
    } else {
      out.push([clock, length]);
    }
  }
  return out;
}

/**
 * The digest of a delete set (§6.7): BLAKE2b with an 8-byte output of the CBOR of
 * `[[client, [[clock, length], ...]], ...]`, clients sorted, ranges sorted and joined.
 * @param {Map<number, Array<[number, number]>>} deletes
 */
export function deleteDigest(deletes) {
  const clients = [...deletes.keys()].sort((a, b) => a - b);
  const canonical = clients.map((client) => [client, mergeRanges(deletes.get(client) ?? [])]);
  return blake2b(encodeCbor(canonical), { dkLen: 8 });
}
