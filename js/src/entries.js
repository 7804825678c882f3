// Store entries (PROTOCOL.md §8): the CBOR records `[key, op, payload, lamport]` that
// writers append to their arrays. Entries from peers are checked by `parseEntry` before
// Yjs ever sees them, with the same limits and the same decisions as the reference.

import { CborError, decode, encode, isPlainObject } from "./cbor.js";
import {
  DEFAULT_MAX_VALUE_BYTES,
  MAX_KEY_BYTES,
  checkKey,
  fromCbor,
  isValid,
  normalize,
  utf8Length,
} from "./values.js";

export const SET = 0;
export const MERGE = 1;
export const APPEND = 2;
export const DELETE = 3;
/** The key reserved for subscribing to every key: never written. */
export const WILDCARD = "*";
/** Lamport clocks are unsigned 64-bit; a writer's clock saturates here. */
export const LAMPORT_MAX = (1n << 64n) - 1n;

const ENTRY_OVERHEAD = MAX_KEY_BYTES + 16;

/** An entry from a peer that a local write could not have made. */
export class EntryError extends Error {}

/**
 * Largest encoded entry a peer may send: a value at the limit, the longest key, a clock.
 * @param {number} maxValueBytes
 */
export function entryLimit(maxValueBytes) {
  return maxValueBytes + ENTRY_OVERHEAD;
}

/** Bytes of a CBOR head carrying `n` (a small int whole, or a string's length). */
function headLength(n) {
  if (typeof n === "bigint") return 9;
  return n < 24 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : n < 0x100000000 ? 5 : 9;
}

/**
 * Whether a decoded `op` field is an op: a CBOR unsigned integer from 0 to 3 (of any
 * length: `18 01` is op 1). A bool, a float (even 1.0) or a simple value is not.
 */
function isOp(item) {
  return typeof item === "number" && item >= SET && item <= DELETE;
}

/**
 * Decode and check one entry from a peer: `{key, op, payload, lamport}`, the payload in
 * the application's form (values.js). Throws `EntryError` for anything a write cannot
 * produce, in the reference's order and with its messages. Only the first CBOR item is
 * read: bytes after it are ignored, as the reference does (vector entry_trailing_bytes).
 * @param {Uint8Array} blob
 * @param {number} maxValueBytes
 */
export function parseEntry(blob, maxValueBytes) {
  if (blob.length > maxValueBytes + ENTRY_OVERHEAD) {
    throw new EntryError(`entry of ${blob.length} bytes is over the value limit`);
  }
  let item;
  try {
    item = decode(blob);
  } catch (error) {
    if (error instanceof CborError) throw new EntryError(error.message);
    throw error;
  }
  if (!Array.isArray(item) || item.length !== 4) {
    throw new EntryError("an entry is [key, op, payload, lamport]");
  }
  const [key, op, payload, lamport] = item;
  if (typeof key !== "string" || !key || key === WILDCARD) {
    throw new EntryError("bad key");
  }
  if (!isOp(op)) {
    throw new EntryError("op is not an unsigned integer from 0 to 3");
  }
  if (!(typeof lamport === "number" && lamport >= 0) && !(typeof lamport === "bigint" && lamport >= 0n)) {
    throw new EntryError("lamport clock out of the unsigned 64-bit range");
  }
  const keyBytes = utf8Length(key);
  if (keyBytes > MAX_KEY_BYTES) {
    throw new EntryError(`key longer than ${MAX_KEY_BYTES} bytes`);
  }
  if (blob.length > maxValueBytes) {
    // (a smaller entry cannot hold a bigger value; the reference's arithmetic, as is)
    const payloadBytes = blob.length - 2 - headLength(keyBytes) - keyBytes - headLength(lamport);
    if (payloadBytes > maxValueBytes) {
      throw new EntryError(`value of ${payloadBytes} bytes is over the limit ${maxValueBytes}`);
    }
  }
  let ok;
  if (op === SET) ok = isValid(payload);
  else if (op === MERGE) ok = payload instanceof Map && isValid(payload);
  else if (op === APPEND) ok = Array.isArray(payload) && isValid(payload);
  else ok = payload === null;
  if (!ok) {
    throw new EntryError("payload is not a store value for this operation");
  }
  return { key, op, payload: fromCbor(payload), lamport };
}

/**
 * `key` checked for a write: a store key, and not the reserved `"*"`.
 * @param {unknown} key
 * @returns {string}
 */
export function writeKey(key) {
  checkKey(key);
  if (key === WILDCARD) {
    throw new RangeError('the key "*" is reserved for subscribing to every key');
  }
  return /** @type {string} */ (key);
}

/**
 * The bytes of an entry written here, as the reference writes them: `84`, the key, the
 * op, the payload (checked: a value for a set, an object for a merge, an array for an
 * append, null for a delete; at most `maxValueBytes` encoded) and the lamport clock.
 * Throws `TypeError`/`RangeError` for anything a peer would refuse.
 * @param {string} key
 * @param {number} op
 * @param {unknown} payload
 * @param {number | bigint} lamport
 * @param {number} [maxValueBytes]
 */
export function encodeEntry(key, op, payload, lamport, maxValueBytes = DEFAULT_MAX_VALUE_BYTES) {
  writeKey(key);
  if (op !== SET && op !== MERGE && op !== APPEND && op !== DELETE) {
    throw new RangeError(`unknown op ${op}`);
  }
  const okLamport =
    (typeof lamport === "number" && Number.isSafeInteger(lamport) && lamport >= 0) ||
    (typeof lamport === "bigint" && lamport >= 0n && lamport <= LAMPORT_MAX);
  if (!okLamport) {
    throw new RangeError("lamport clock out of the unsigned 64-bit range");
  }
  const value = op === DELETE ? null : normalize(payload);
  if (op === DELETE && payload !== null && payload !== undefined) {
    throw new TypeError("a delete carries no payload");
  }
  if (op === MERGE && !isPlainObject(value)) {
    throw new TypeError("a merge's payload is an object");
  }
  if (op === APPEND && !Array.isArray(value)) {
    throw new TypeError("an append's payload is an array");
  }
  const body = encode(value);
  if (body.length > maxValueBytes) {
    throw new RangeError(
      `value for ${JSON.stringify(key)} encodes to ${body.length} bytes; the limit is ${maxValueBytes}`,
    );
  }
  const keyBytes = encode(key);
  const clock = encode(lamport);
  const out = new Uint8Array(2 + keyBytes.length + body.length + clock.length);
  out[0] = 0x84;
  out.set(keyBytes, 1);
  out[1 + keyBytes.length] = op;
  out.set(body, 2 + keyBytes.length);
  out.set(clock, 2 + keyBytes.length + body.length);
  return out;
}
