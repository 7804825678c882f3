// The merge rules of a store (PROTOCOL.md §10), free of Yjs: the order of a key's
// entries and the fold that gives its value. Every peer applies them alike, so values
// converge: `set` and `delete` reset a key, a merge sets top-level fields of a map, an
// append extends an array; entries of equal order (only a forger makes them) are
// ordered by their content, re-encoded as the reference does.

import { decode, encode, isPlainObject } from "./cbor.js";
import { APPEND, DELETE, MERGE, SET } from "./entries.js";
import { setField } from "./values.js";

/** Marks a key without a value (never written, or deleted). */
export const MISSING = Symbol("missing");

/**
 * @typedef {object} Entry
 * @property {string} key
 * @property {number} op
 * @property {unknown} payload the application's form (values.js)
 * @property {number | bigint} lamport
 * @property {number} writer the client id of the array holding it
 * @property {Uint8Array} [blob] its encoded bytes, if known (for the tie-break)
 */

/** Compare two unsigned integers given as numbers or bigints. */
function compareUint(a, b) {
  if (typeof a === "number" && typeof b === "number") return a - b;
  const x = BigInt(a);
  const y = BigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

/**
 * Order of two entries by `(lamport, writer)`, compared as unsigned integers.
 * @param {Entry} a
 * @param {Entry} b
 */
export function compareOrder(a, b) {
  return compareUint(a.lamport, b.lamport) || compareUint(a.writer, b.writer);
}

/**
 * The bytes entries of equal order are sorted by: `[key, op, payload]` re-encoded as
 * the reference does (shortest integers, `fb` floats, map keys in their decoded order),
 * from the entry's bytes when known.
 * @param {Entry} entry
 */
export function tiebreakBytes(entry) {
  if (entry.blob) {
    const item = /** @type {unknown[]} */ (decode(entry.blob));
    return encode(item.slice(0, 3));
  }
  return encode([entry.key, entry.op, entry.payload]);
}

function compareBytes(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) return a[i] - b[i];
  }
  return a.length - b.length;
}

/**
 * A key's entries sorted in place into their total order: `(lamport, writer)`, then,
 * for ties, the tie-break bytes.
 * @param {Entry[]} entries
 */
export function sortEntries(entries) {
  entries.sort(compareOrder);
  for (let i = 1; i < entries.length; i++) {
    if (compareOrder(entries[i - 1], entries[i]) === 0) {
      const keys = new Map(entries.map((entry) => [entry, tiebreakBytes(entry)]));
      entries.sort((a, b) => compareOrder(a, b) || compareBytes(keys.get(a), keys.get(b)));
      break;
    }
  }
  return entries;
}

/** A shallow copy of a container payload (the fold owns the containers it returns). */
function copyTop(payload) {
  if (Array.isArray(payload)) return [...payload];
  if (isPlainObject(payload)) {
    const out = {};
    for (const key of Object.keys(payload)) setField(out, key, payload[key]);
    return out;
  }
  return payload;
}

/**
 * One entry applied on top of `value` (§10.1's table); containers returned are the
 * caller's.
 * @param {unknown} value
 * @param {Entry} entry
 */
export function applyOp(value, entry) {
  const { op, payload } = entry;
  if (op === SET) return copyTop(payload);
  if (op === MERGE) {
    if (!isPlainObject(value)) return copyTop(payload);
    for (const key of Object.keys(payload)) setField(value, key, payload[key]);
    return value;
  }
  if (op === APPEND) {
    if (!Array.isArray(value)) return copyTop(payload);
    value.push(.../** @type {unknown[]} */ (payload));
    return value;
  }
  return MISSING; // DELETE
}

/**
 * The value of a key: the fold of its entries, sorted (`sortEntries`), from MISSING.
 * @param {Entry[]} entries
 */
export function fold(entries) {
  let start = 0;
  for (let i = entries.length - 1; i >= 0; i--) {
    if (entries[i].op === SET || entries[i].op === DELETE) {
      start = i;
      break;
    }
  }
  let value = /** @type {unknown} */ (MISSING);
  for (let i = start; i < entries.length; i++) value = applyOp(value, entries[i]);
  return value;
}

/**
 * The values of a store from all its entries: grouped by key, sorted, folded; keys whose
 * fold is MISSING are absent.
 * @param {Iterable<Entry>} entries
 * @returns {Map<string, unknown>}
 */
export function foldAll(entries) {
  /** @type {Map<string, Entry[]>} */
  const byKey = new Map();
  for (const entry of entries) {
    const list = byKey.get(entry.key);
    if (list) list.push(entry);
    else byKey.set(entry.key, [entry]);
  }
  const values = new Map();
  for (const [key, list] of byKey) {
    const value = fold(sortEntries(list));
    if (value !== MISSING) values.set(key, value);
  }
  return values;
}
