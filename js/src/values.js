// Store values (PROTOCOL.md §9): validation, the number rule, CBOR encoding, copies.
//
// THE NUMBER RULE. The protocol tells the integer 1 from the float 1.0 and carries
// integers of 64 bits; a JavaScript number does neither. So, on every path:
//
//   * reading: a CBOR integer is a `number` when it is a safe integer (|n| <= 2^53 - 1)
//     and a `bigint` otherwise; a CBOR float (half, single or double) is a `number`,
//     except when that number is a safe integer other than -0 (1.0, -3.0, 2.0^52): then
//     it is a `Float` (cbor.js) wrapping it, because a plain number of that value means an
//     integer;
//   * writing: a `number` that is a safe integer, other than -0, is a CBOR integer; any
//     other finite number (a fraction, -0, a magnitude of 2^53 or more) is a float (`fb`);
//     a `bigint` is an integer (within the signed 64-bit range for a value); a `Float` is
//     a float whatever its value.
//
// Every value therefore reads back as a JavaScript value that writes back as the same
// CBOR value (the same type and number). The one thing JavaScript cannot say is a float
// with an integral value as a plain number: write `new Float(1)` for the float 1.0. A
// `bigint` in the safe range is accepted and reads back as a `number` (the same value).
//
// Maps of a value are plain objects (a `__proto__` key is an own property, never the
// prototype); the order of their keys carries no meaning (§10.1).

import { Float, encode as encodeCbor, isPlainObject } from "./cbor.js";

export { Float };

/** Deepest container nesting of a value: a container inside 31 others is the deepest. */
export const MAX_DEPTH = 32;
/** Default limit of one value, measured as its CBOR encoding (`max_value_bytes`). */
export const DEFAULT_MAX_VALUE_BYTES = 1 << 20;
/** Longest store key, and store name, in UTF-8 bytes. */
export const MAX_KEY_BYTES = 1024;
export const INT64_MIN = -(1n << 63n);
export const INT64_MAX = (1n << 63n) - 1n;

const ENCODER = new TextEncoder();

/**
 * Bytes of `text` in UTF-8 (without building them for ASCII text).
 * @param {string} text
 */
export function utf8Length(text) {
  // eslint-disable-next-line no-control-regex
  return /^[\x00-\x7f]*$/.test(text) ? text.length : ENCODER.encode(text).length;
}

/**
 * `key` if it is a usable store key (or store name, with `what`): non-empty, valid
 * Unicode, at most 1,024 UTF-8 bytes; throws `TypeError` or `RangeError` otherwise.
 * @param {unknown} key
 * @param {string} [what]
 * @returns {string}
 */
export function checkKey(key, what = "key") {
  if (typeof key !== "string") {
    throw new TypeError(`${what} must be a string, not ${typeof key}`);
  }
  if (!key) {
    throw new RangeError(`${what} must not be empty`);
  }
  if (!key.isWellFormed()) {
    throw new RangeError(`${what} is not valid Unicode (lone surrogate)`);
  }
  const size = utf8Length(key);
  if (size > MAX_KEY_BYTES) {
    throw new RangeError(`${what} is ${size} bytes long; the limit is ${MAX_KEY_BYTES}`);
  }
  return key;
}

/**
 * A number read from CBOR as the number rule says: a plain `number`, or a `Float` when
 * a plain number of that value would mean an integer.
 * @param {number} n
 * @returns {number | Float}
 */
export function floatValue(n) {
  return Number.isSafeInteger(n) && !Object.is(n, -0) ? new Float(n) : n;
}

/** True when the number rule writes `n` (a number) as a CBOR float. */
function isFloatNumber(n) {
  return !Number.isSafeInteger(n) || Object.is(n, -0);
}

/**
 * Own enumerable field `key` of `object` set to `value`, also for the key `__proto__`
 * (which plain assignment would take as the object's prototype).
 */
export function setField(object, key, value) {
  if (key === "__proto__") {
    Object.defineProperty(object, key, { value, writable: true, enumerable: true, configurable: true });
  } else {
    object[key] = value;
  }
}

/**
 * A validated private copy of a value from the application (a local write), in the
 * form reads give: bigints in the safe range become numbers, `Float`s of non-integral
 * values plain numbers, `Map`s with string keys plain objects. Throws `TypeError` for
 * what a store cannot hold (undefined, functions, byte arrays, class instances...) and
 * `RangeError` for values out of range (NaN, infinities, integers past 64 bits, nesting
 * past 32 levels, lone surrogates); the message names where in the value.
 * @param {unknown} value
 */
export function normalize(value) {
  const path = [];
  try {
    return normalizeAt(value, 0, path);
  } catch (error) {
    if (error instanceof TypeError || error instanceof RangeError) {
      const where =
        "value" +
        path
          .reverse()
          .map((part) => `[${JSON.stringify(part)}]`)
          .join("");
      error.message = `${where}: ${error.message}`;
    }
    throw error;
  }
}

function normalizeAt(value, depth, path) {
  switch (typeof value) {
    case "boolean":
      return value;
    case "string":
      if (!value.isWellFormed()) throw new RangeError("string is not valid Unicode (lone surrogate)");
      return value;
    case "number":
      if (!Number.isFinite(value)) {
        throw new RangeError(`float ${value} is not finite (NaN and infinities are refused)`);
      }
      return value;
    case "bigint":
      if (value < INT64_MIN || value > INT64_MAX) {
        throw new RangeError(`int ${value} is outside the signed 64-bit range`);
      }
      return value >= -BigInt(Number.MAX_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER)
        ? Number(value)
        : value;
    case "object":
      break;
    default:
      throw new TypeError(`${typeof value} is not a store value`);
  }
  if (value === null) return null;
  if (value instanceof Float) {
    if (!Number.isFinite(value.value)) {
      throw new RangeError(`float ${value.value} is not finite (NaN and infinities are refused)`);
    }
    return floatValue(value.value);
  }
  const isArray = Array.isArray(value);
  if (!isArray && !(value instanceof Map) && !isPlainObject(value)) {
    throw new TypeError(
      `${value.constructor?.name ?? "object"} is not a store value ` +
        "(use string, number, bigint, Float, boolean, null, arrays or objects)",
    );
  }
  if (depth >= MAX_DEPTH) {
    throw new RangeError(`nesting is deeper than ${MAX_DEPTH} levels`);
  }
  if (isArray) {
    return value.map((item, index) => nested(item, depth, path, index));
  }
  const out = {};
  const entries = value instanceof Map ? value.entries() : Object.entries(value);
  for (const [key, item] of entries) {
    if (typeof key !== "string") {
      throw new TypeError(`map keys must be strings, not ${typeof key}`);
    }
    if (!key.isWellFormed()) {
      throw new RangeError(`key ${JSON.stringify(key)} is not valid Unicode (lone surrogate)`);
    }
    setField(out, key, nested(item, depth, path, key));
  }
  return out;
}

function nested(item, depth, path, part) {
  try {
    return normalizeAt(item, depth + 1, path);
  } catch (error) {
    path.push(part);
    throw error;
  }
}

/**
 * True when a decoded CBOR item (`cbor.decode`'s data model) is a store value: null,
 * booleans, integers in the signed 64-bit range, finite floats, text, arrays and maps
 * with text keys, containers nested at most 32 deep. Nothing is copied.
 * @param {unknown} item
 * @param {number} [depth]
 */
export function isValid(item, depth = 0) {
  switch (typeof item) {
    case "boolean":
    case "string":
    case "number": // (decoded numbers are integers: floats are `Float`s)
      return true;
    case "bigint":
      return item >= INT64_MIN && item <= INT64_MAX;
    case "object":
      break;
    default:
      return false; // undefined
  }
  if (item === null) return true;
  if (item instanceof Float) return Number.isFinite(item.value);
  if (Array.isArray(item)) {
    return depth < MAX_DEPTH && item.every((value) => isValid(value, depth + 1));
  }
  if (item instanceof Map) {
    if (depth >= MAX_DEPTH) return false;
    for (const [key, value] of item) {
      if (typeof key !== "string" || !isValid(value, depth + 1)) return false;
    }
    return true;
  }
  return false; // byte strings, other simple values
}

/**
 * The application's form of a valid decoded CBOR item (see `isValid`): floats by the
 * number rule, maps as plain objects.
 * @param {unknown} item
 */
export function fromCbor(item) {
  if (item === null || typeof item !== "object") return item;
  if (item instanceof Float) return floatValue(item.value);
  if (Array.isArray(item)) return item.map(fromCbor);
  const out = {};
  for (const [key, value] of /** @type {Map<string, unknown>} */ (item)) {
    setField(out, key, fromCbor(value));
  }
  return out;
}

/**
 * The CBOR bytes of a value (normalized, or read from a peer), as the reference
 * writes them: shortest integers, `fb` floats, definite lengths.
 * @param {unknown} value
 */
export function encodeValue(value) {
  return encodeCbor(value);
}

/**
 * Deep copy of a value (containers only; numbers, bigints, strings and `Float`s are
 * immutable and shared).
 * @template T
 * @param {T} value
 * @returns {T}
 */
export function copyValue(value) {
  if (value === null || typeof value !== "object" || value instanceof Float) return value;
  if (Array.isArray(value)) return /** @type {T} */ (value.map(copyValue));
  const out = {};
  for (const key of Object.keys(value)) setField(out, key, copyValue(value[key]));
  return /** @type {T} */ (out);
}

/**
 * Equality that also compares types, as the protocol does: `1`, `new Float(1)` and
 * `true` all differ, so do `0` and `-0` (an integer and a float); a safe `bigint`
 * equals the number of the same integer. Map key order does not matter.
 * @param {unknown} a
 * @param {unknown} b
 */
export function sameValue(a, b) {
  const kindA = numberKind(a);
  if (kindA !== null) {
    if (kindA !== numberKind(b)) return false;
    if (kindA === "float") return Object.is(Number(a), Number(b));
    return BigInt(/** @type {number | bigint} */ (a)) === BigInt(/** @type {number | bigint} */ (b));
  }
  if (a === null || typeof a !== "object") return a === b;
  if (b === null || typeof b !== "object") return false;
  if (Array.isArray(a)) {
    return Array.isArray(b) && a.length === b.length && a.every((item, i) => sameValue(item, b[i]));
  }
  if (Array.isArray(b) || b instanceof Float) return false;
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  return keys.every((key) => Object.hasOwn(b, key) && sameValue(a[key], b[key]));
}

/** "int" or "float" for the numbers of a value (by the number rule), null otherwise. */
function numberKind(value) {
  if (typeof value === "bigint") return "int";
  if (typeof value === "number") return isFloatNumber(value) ? "float" : "int";
  if (value instanceof Float) return "float";
  return null;
}
