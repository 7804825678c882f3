// CBOR (RFC 8949) as PROTOCOL.md §5.1 restricts it: a strict, bounded reader and a
// shortest-form writer. Written here rather than taken from a CBOR library because the
// protocol needs what general encoders do not give: floats kept apart from integers
// (1.0 is not 1), no tags at all (not even tag 64 typed arrays, which decoders accept
// silently), a nesting bound, strict UTF-8, and byte-for-byte the reference's output.
//
// Decoded items use the CBOR data model, never guessing: an integer is a `number` when
// it is a safe integer and a `bigint` otherwise; every float is a `Float`; a byte string
// is a `Uint8Array`; a map is a `Map` (keys in their decoded order; a repeated key keeps
// its first position and its last value, as the reference's decoder does); `undefined`
// and the other simple values are `undefined` and `Simple`. What a store value is, and
// how it looks to an application, is `values.js`'s business.

/** A CBOR float, kept apart from integers: `new Float(1)` is the float 1.0. */
export class Float {
  /** @param {number} value */
  constructor(value) {
    this.value = Number(value);
  }

  valueOf() {
    return this.value;
  }

  toJSON() {
    return this.value;
  }
}

/** A CBOR simple value other than false, true, null and undefined (read, never written). */
export class Simple {
  /** @param {number} value */
  constructor(value) {
    this.value = value;
  }
}

/** Data that is not well-formed CBOR of the protocol's profile. */
export class CborError extends Error {}

/** Deepest container nesting the reader accepts (the reference decoder's bound, §5.1). */
export const MAX_NESTING = 40;

const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const ENCODER = new TextEncoder();
const TWO_64 = 1n << 64n;

/**
 * Decode the first CBOR item of `data` (bytes after it are ignored, as the reference
 * does; `wire.countItems` refuses them where the protocol says so). Throws `CborError`
 * for tags, indefinite lengths, reserved values, bad UTF-8, nesting past 40 levels and
 * truncated data.
 * @param {Uint8Array} data
 * @returns {unknown}
 */
export function decode(data) {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  return readItem({ data, view, pos: 0 }, 0);
}

/** @returns {never} */
function fail(/** @type {string} */ message) {
  throw new CborError(`malformed CBOR: ${message}`);
}

/** The argument of a head (a length or an integer): a number, or a bigint past 2^53. */
function readArgument(reader, info) {
  const { data, view } = reader;
  if (info < 24) {
    return info;
  }
  const pos = reader.pos;
  const size = info === 24 ? 1 : info === 25 ? 2 : info === 26 ? 4 : info === 27 ? 8 : 0;
  if (size === 0) {
    fail(info === 31 ? "indefinite length is not allowed" : `reserved additional information ${info}`);
  }
  if (pos + size > data.length) {
    fail("premature end of data");
  }
  reader.pos = pos + size;
  if (size === 1) return data[pos];
  if (size === 2) return view.getUint16(pos);
  if (size === 4) return view.getUint32(pos);
  const big = view.getBigUint64(pos);
  return big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
}

/** A length that must fit in what is left of the data (`per` bytes at least per unit). */
function readLength(reader, info, per) {
  const length = readArgument(reader, info);
  if (typeof length === "bigint" || length * per > reader.data.length - reader.pos) {
    fail("premature end of data");
  }
  return length;
}

function readItem(reader, depth) {
  const { data } = reader;
  if (reader.pos >= data.length) {
    fail("premature end of data");
  }
  const head = data[reader.pos++];
  const major = head >> 5;
  const info = head & 0x1f;
  switch (major) {
    case 0:
      return readArgument(reader, info);
    case 1: {
      const n = readArgument(reader, info);
      if (typeof n === "number" && n < Number.MAX_SAFE_INTEGER) {
        return -1 - n;
      }
      return -1n - BigInt(n);
    }
    case 2: {
      const length = readLength(reader, info, 1);
      const start = reader.pos;
      reader.pos += length;
      return data.slice(start, start + length);
    }
    case 3:
      return readText(reader, readLength(reader, info, 1));
    case 4: {
      if (depth >= MAX_NESTING) {
        fail(`maximum container nesting depth (${MAX_NESTING}) exceeded`);
      }
      const length = readLength(reader, info, 1);
      const items = [];
      for (let i = 0; i < length; i++) {
        items.push(readItem(reader, depth + 1));
      }
      return items;
    }
    case 5: {
      if (depth >= MAX_NESTING) {
        fail(`maximum container nesting depth (${MAX_NESTING}) exceeded`);
      }
      const length = readLength(reader, info, 2);
      const map = new Map();
      for (let i = 0; i < length; i++) {
        const key = readItem(reader, depth + 1);
        map.set(key, readItem(reader, depth + 1));
      }
      return map;
    }
    case 6:
      return fail(`CBOR tag ${readArgument(reader, info)} is not allowed`);
    default:
      return readSimple(reader, info);
  }
}

function readText(reader, length) {
  const start = reader.pos;
  reader.pos += length;
  try {
    return UTF8.decode(reader.data.subarray(start, start + length));
  } catch {
    return fail("text string is not valid UTF-8");
  }
}

function readSimple(reader, info) {
  const { data, view } = reader;
  if (info < 20) return new Simple(info);
  if (info === 20) return false;
  if (info === 21) return true;
  if (info === 22) return null;
  if (info === 23) return undefined;
  const pos = reader.pos;
  const size = info === 24 ? 1 : info === 25 ? 2 : info === 26 ? 4 : info === 27 ? 8 : 0;
  if (size === 0) {
    fail(info === 31 ? "break code where a data item was expected" : `reserved simple value ${info}`);
  }
  if (pos + size > data.length) {
    fail("premature end of data");
  }
  reader.pos = pos + size;
  if (size === 1) {
    if (data[pos] < 32) fail("invalid two-byte sequence for a simple value");
    return new Simple(data[pos]);
  }
  if (size === 2) return new Float(halfToNumber(view.getUint16(pos)));
  if (size === 4) return new Float(view.getFloat32(pos));
  return new Float(view.getFloat64(pos));
}

/** An IEEE 754 half-precision float's value. */
function halfToNumber(bits) {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * (1024 + fraction) * 2 ** (exponent - 25);
}

/**
 * Encode `value` as CBOR the way the reference does: shortest heads, definite lengths,
 * floats as 8-byte `fb` floats, map keys in their order. A `number` that is a safe
 * integer (other than -0) is an integer, any other number a float; a `bigint` is an
 * integer (at most 64 bits; bignums are never written); a `Float` is a float. Maps are
 * `Map`s or plain objects; byte strings `Uint8Array`s. Throws `TypeError`/`RangeError`
 * for anything else.
 * @param {unknown} value
 * @returns {Uint8Array}
 */
export function encode(value) {
  const writer = new Writer();
  writer.item(value, 0);
  return writer.bytes();
}

/** Deepest nesting `encode` follows (values are bounded far below it; cycles are refused). */
const MAX_ENCODE_DEPTH = 256;

class Writer {
  constructor() {
    this.buffer = new Uint8Array(256);
    this.view = new DataView(this.buffer.buffer);
    this.length = 0;
  }

  bytes() {
    return this.buffer.slice(0, this.length);
  }

  room(size) {
    if (this.length + size <= this.buffer.length) return;
    let capacity = this.buffer.length * 2;
    while (capacity < this.length + size) capacity *= 2;
    const grown = new Uint8Array(capacity);
    grown.set(this.buffer.subarray(0, this.length));
    this.buffer = grown;
    this.view = new DataView(grown.buffer);
  }

  /** A head of major type `major` carrying `n` (a non-negative number or bigint < 2^64). */
  head(major, n) {
    this.room(9);
    const top = major << 5;
    const at = this.length;
    if (typeof n === "bigint") {
      if (n <= BigInt(Number.MAX_SAFE_INTEGER)) {
        n = Number(n);
      } else {
        this.buffer[at] = top | 27;
        this.view.setBigUint64(at + 1, n);
        this.length += 9;
        return;
      }
    }
    if (n < 24) {
      this.buffer[at] = top | n;
      this.length += 1;
    } else if (n < 0x100) {
      this.buffer[at] = top | 24;
      this.buffer[at + 1] = n;
      this.length += 2;
    } else if (n < 0x10000) {
      this.buffer[at] = top | 25;
      this.view.setUint16(at + 1, n);
      this.length += 3;
    } else if (n < 0x100000000) {
      this.buffer[at] = top | 26;
      this.view.setUint32(at + 1, n);
      this.length += 5;
    } else {
      this.buffer[at] = top | 27;
      this.view.setUint32(at + 1, Math.floor(n / 0x100000000));
      this.view.setUint32(at + 5, n >>> 0);
      this.length += 9;
    }
  }

  raw(bytes) {
    this.room(bytes.length);
    this.buffer.set(bytes, this.length);
    this.length += bytes.length;
  }

  float(n) {
    this.room(9);
    this.buffer[this.length] = 0xfb;
    this.view.setFloat64(this.length + 1, n);
    this.length += 9;
  }

  integer(n) {
    if (typeof n === "bigint") {
      if (n >= TWO_64 || n < -TWO_64) {
        throw new RangeError(`integer ${n} does not fit in 64 bits (bignums are never written)`);
      }
      if (n < 0n) this.head(1, -1n - n);
      else this.head(0, n);
    } else if (n < 0) {
      this.head(1, -1 - n);
    } else {
      this.head(0, n);
    }
  }

  item(value, depth) {
    if (depth > MAX_ENCODE_DEPTH) {
      throw new RangeError("value nested too deep to encode (or cyclic)");
    }
    switch (typeof value) {
      case "number":
        if (Number.isSafeInteger(value) && !Object.is(value, -0)) this.integer(value);
        else this.float(value);
        return;
      case "bigint":
        this.integer(value);
        return;
      case "boolean":
        this.raw([value ? 0xf5 : 0xf4]);
        return;
      case "undefined":
        this.raw([0xf7]);
        return;
      case "string":
        this.text(value);
        return;
      case "object":
        break;
      default:
        throw new TypeError(`cannot encode a ${typeof value} as CBOR`);
    }
    if (value === null) {
      this.raw([0xf6]);
    } else if (value instanceof Float) {
      this.float(value.value);
    } else if (value instanceof Uint8Array) {
      this.head(2, value.length);
      this.raw(value);
    } else if (Array.isArray(value)) {
      this.head(4, value.length);
      for (const item of value) this.item(item, depth + 1);
    } else if (value instanceof Map) {
      this.head(5, value.size);
      for (const [key, item] of value) {
        this.item(key, depth + 1);
        this.item(item, depth + 1);
      }
    } else if (isPlainObject(value)) {
      const keys = Object.keys(value);
      this.head(5, keys.length);
      for (const key of keys) {
        this.text(key);
        this.item(value[key], depth + 1);
      }
    } else {
      throw new TypeError(`cannot encode ${value.constructor?.name ?? "this object"} as CBOR`);
    }
  }

  text(value) {
    if (!value.isWellFormed()) {
      throw new TypeError("string is not valid Unicode (lone surrogate)");
    }
    const bytes = ENCODER.encode(value);
    this.head(3, bytes.length);
    this.raw(bytes);
  }
}

/** True for `{...}` objects (prototype `Object.prototype` or `null`), not class instances. */
export function isPlainObject(value) {
  if (value === null || typeof value !== "object") return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}
