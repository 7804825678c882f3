// Frames (PROTOCOL.md §5): versioned CBOR messages in frames of at most 64 KiB,
// compressed (COMPRESSED) and cut (CHUNK) when needed. Decoding a frame checks its
// size, its CBOR, its version and the shape of its kind, and raises `ProtocolError`
// (with the §11 reason) for anything malformed; `Reassembler` puts CHUNK frames back
// together and inflates COMPRESSED messages, within their limits.

import { CborError, decode, encode as encodeCbor } from "./cbor.js";
import {
  CHUNK,
  COMPRESSED,
  ProtocolError,
  chunk,
  compressed,
  messageBody,
  parseMessage,
} from "./messages.js";
import { InflateLimitError, InflateTruncatedError, deflate, inflate as inflateZlib } from "./zlib.js";

export const PROTOCOL_VERSION = 1;
/** Largest frame on a data channel; bigger messages are chunked. */
export const MAX_FRAME_BYTES = 64 * 1024;
/** Largest message, reassembled or inflated (`max_message_bytes`). */
export const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;
/** Messages at least this big are compressed when that makes them smaller. */
export const COMPRESS_MIN_BYTES = 256;
/** A compressed message inflates to at most this many times its size. */
export const MAX_INFLATE_RATIO = 64;
/** CBOR items of one message (frames over this many bytes are counted first). */
export const MAX_MESSAGE_ITEMS = 16_384;
/** CBOR array header and integers around a chunk's bytes. */
export const CHUNK_OVERHEAD = 40;

const SAMPLE_BYTES = 32 * 1024;

/**
 * A raw message `[version, kind, ...body]` (tests build malformed ones with it).
 * @param {number} kind
 * @param {...unknown} body
 */
export function encodeRaw(kind, ...body) {
  return encodeCbor([PROTOCOL_VERSION, kind, ...body]);
}

/**
 * The bytes of a message (messages.js), byte for byte as the reference writes it.
 * @param {{kind: number}} message
 */
export function encodeMessage(message) {
  return encodeRaw(message.kind, ...messageBody(message));
}

/**
 * The frames that carry the encoded `message`: compressed if worth it (as the reference
 * decides: at least 256 bytes, zlib level 1, kept only under 90% of the size and at
 * most 32 times smaller), cut into CHUNK frames of `maxFrame` bytes if still too big.
 * @param {Uint8Array} message
 * @param {number | bigint} messageId
 * @param {number} [maxFrame]
 */
export function frames(message, messageId, maxFrame = MAX_FRAME_BYTES) {
  if (message.length >= COMPRESS_MIN_BYTES && worthCompressing(message)) {
    const packed = deflate(message, 1);
    if (
      packed.length + 8 < message.length * 0.9 &&
      message.length <= packed.length * (MAX_INFLATE_RATIO / 2)
    ) {
      message = encodeMessage(compressed(packed));
    }
  }
  if (message.length <= maxFrame) return [message];
  const size = maxFrame - CHUNK_OVERHEAD;
  const count = Math.ceil(message.length / size);
  const out = [];
  for (let i = 0; i < count; i++) {
    out.push(encodeMessage(chunk(messageId, i, count, message.subarray(i * size, (i + 1) * size))));
  }
  return out;
}

/** Big messages are compressed only when a sample from their middle shrinks well. */
function worthCompressing(message) {
  if (message.length <= 4 * SAMPLE_BYTES) return true;
  const middle = Math.floor(message.length / 2);
  const sample = message.subarray(middle, middle + SAMPLE_BYTES);
  return deflate(sample, 1).length < sample.length * 0.6;
}

/**
 * Count the CBOR items of one top-level item without building them (strings are
 * skipped by their length). `ProtocolError`: `too_many_items` past `limit`,
 * `malformed` for tags, indefinite lengths, truncation and bytes after the item.
 * @param {Uint8Array} data
 * @param {number} limit
 */
export function countItems(data, limit) {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const end = data.length;
  let pos = 0;
  let todo = 1;
  let count = 0;
  while (todo) {
    if (pos >= end) throw new ProtocolError("malformed", "truncated CBOR");
    const head = data[pos++];
    const major = head >> 5;
    const info = head & 0x1f;
    let arg;
    if (info < 24) {
      arg = info;
    } else if (info <= 27) {
      const size = 1 << (info - 24);
      if (pos + size > end) throw new ProtocolError("malformed", "truncated CBOR");
      arg =
        size === 1
          ? data[pos]
          : size === 2
            ? view.getUint16(pos)
            : size === 4
              ? view.getUint32(pos)
              : Number(view.getBigUint64(pos));
      pos += size;
    } else {
      throw new ProtocolError("malformed", "indefinite or reserved CBOR length");
    }
    todo -= 1;
    count += 1;
    if (count > limit) {
      throw new ProtocolError("too_many_items", `message holds more than ${limit} CBOR items`);
    }
    if (major === 2 || major === 3) pos += arg;
    else if (major === 4) todo += arg;
    else if (major === 5) todo += 2 * arg;
    else if (major === 6) throw new ProtocolError("malformed", "CBOR tags are not used by this protocol");
    if (todo > limit) {
      throw new ProtocolError("too_many_items", `message holds more than ${limit} CBOR items`);
    }
  }
  if (pos !== end) throw new ProtocolError("malformed", "bytes after the CBOR message");
  return count;
}

/** A CBOR unsigned integer (major type 0): never a bool, a float or a simple value. */
function isUnsigned(item) {
  return (typeof item === "number" && item >= 0) || (typeof item === "bigint" && item >= 0n);
}

/**
 * Decode one frame (or a reassembled message, when `maxFrame` allows its size) into a
 * checked message; `ProtocolError` with the reason of §11 otherwise. A frame of more than
 * 16,384 bytes has its CBOR items counted first (and no bytes after its item).
 * @param {Uint8Array} frame
 * @param {number} [maxFrame]
 */
export function decodeFrame(frame, maxFrame = MAX_FRAME_BYTES) {
  if (frame.length > maxFrame) {
    throw new ProtocolError("oversize", `frame of ${frame.length} bytes exceeds ${maxFrame}`);
  }
  if (frame.length > MAX_MESSAGE_ITEMS) {
    countItems(frame, MAX_MESSAGE_ITEMS); // (every item takes a byte: a smaller frame is fine)
  }
  let item;
  try {
    item = decode(frame);
  } catch (error) {
    if (error instanceof CborError) throw new ProtocolError("malformed", error.message);
    throw error;
  }
  if (
    !Array.isArray(item) ||
    item.length < 2 ||
    !(typeof item[1] === "number" || typeof item[1] === "bigint")
  ) {
    throw new ProtocolError("malformed", "a message is a CBOR array [version, kind, ...]");
  }
  const version = item[0];
  if (!isUnsigned(version)) {
    throw new ProtocolError("malformed", "the protocol version is not an unsigned integer");
  }
  if (version !== PROTOCOL_VERSION) {
    throw new ProtocolError("unsupported_version", `protocol version ${version} is not supported`);
  }
  return parseMessage(item[1], item.slice(2));
}

/**
 * Inflate a COMPRESSED message's zlib stream, refusing to grow past `maxMessage` bytes or
 * 64 times its compressed size (`oversize`); a corrupt or truncated stream is `malformed`.
 * @param {Uint8Array} packed
 * @param {number} maxMessage
 */
export function inflate(packed, maxMessage) {
  const limit = Math.min(maxMessage, packed.length * MAX_INFLATE_RATIO);
  try {
    return inflateZlib(packed, limit);
  } catch (error) {
    if (error instanceof InflateLimitError) {
      throw new ProtocolError("oversize", `compressed message inflates past ${limit} bytes`);
    }
    if (error instanceof InflateTruncatedError) {
      throw new ProtocolError("malformed", "truncated compressed message");
    }
    throw new ProtocolError("malformed", `bad compressed message: ${error?.message ?? error}`);
  }
}

/** Bytes that may be held at once; `take` refuses what would pass the limit. */
export class Budget {
  /** @param {number} limit */
  constructor(limit) {
    this.limit = limit;
    this.used = 0;
  }

  /** @param {number} amount */
  take(amount) {
    if (this.used + amount > this.limit) return false;
    this.used += amount;
    return true;
  }

  /** @param {number} amount */
  give(amount) {
    this.used = Math.max(0, this.used - amount);
  }
}

/** Refused message ids remembered, so that their later chunks are ignored. */
const REJECTED_KEPT = 64;

/**
 * One link's frames into messages: CHUNK frames collected back into their message (in
 * any order) and COMPRESSED ones inflated. Memory is charged as chunks arrive (never on
 * what a first chunk announces): at most `maxMessage` per message, `maxLink` for the
 * link's partial messages, and the `shared` budget of all links.
 */
export class Reassembler {
  /**
   * @param {number} [maxMessage]
   * @param {{maxLink?: number, shared?: Budget | null, maxFrame?: number}} [options]
   */
  constructor(maxMessage = MAX_MESSAGE_BYTES, { maxLink, shared = null, maxFrame = MAX_FRAME_BYTES } = {}) {
    this.maxMessage = maxMessage;
    this.maxFrame = maxFrame;
    this.budget = new Budget(maxLink ?? 2 * maxMessage);
    this.shared = shared;
    /** @type {Map<number | bigint, {count: number, parts: Map<number, Uint8Array>, size: number}>} */
    this.partial = new Map();
    /** @type {Set<number | bigint>} */
    this.rejected = new Set();
  }

  /** Bytes of partial messages held. */
  get heldBytes() {
    return this.budget.used;
  }

  /**
   * The message `frame` completes, through CHUNK and COMPRESSED (null while a chunked
   * message is still partial); `ProtocolError` for anything malformed, including a
   * chunk inside a chunk and an envelope inside a compressed message.
   * @param {Uint8Array} frame
   */
  complete(frame) {
    let message = decodeFrame(frame, this.maxFrame);
    if (message.kind === CHUNK) {
      const whole = this.add(message.messageId, message.index, message.count, message.data);
      if (whole === null) return null;
      message = decodeFrame(whole, this.maxMessage);
      if (message.kind === CHUNK) throw new ProtocolError("malformed", "chunk inside a chunk");
    }
    if (message.kind === COMPRESSED) {
      message = decodeFrame(inflate(message.packed, this.maxMessage), this.maxMessage);
      if (message.kind === CHUNK || message.kind === COMPRESSED) {
        throw new ProtocolError("malformed", "nested envelope in a compressed message");
      }
    }
    return message;
  }

  /**
   * Add one chunk; the whole message once every chunk is in, else null. `ProtocolError`
   * (`oversize`, `malformed`, `over_budget`) refuses the message: its chunks are dropped
   * and its later ones ignored.
   * @param {number | bigint} messageId
   * @param {number} index
   * @param {number} count
   * @param {Uint8Array} data
   */
  add(messageId, index, count, data) {
    if (this.rejected.has(messageId)) return null;
    let entry = this.partial.get(messageId);
    if (!entry) {
      const most = Math.ceil(this.maxMessage / (this.maxFrame - CHUNK_OVERHEAD));
      if (!(count >= 2 && count <= most)) {
        this.reject(messageId);
        throw new ProtocolError("oversize", `chunked message of ${count} parts is too large`);
      }
      entry = { count, parts: new Map(), size: 0 };
      this.partial.set(messageId, entry);
    }
    if (count !== entry.count) {
      this.reject(messageId);
      throw new ProtocolError("malformed", "chunk count changed within a message");
    }
    if (!entry.parts.has(index)) {
      if (entry.size + data.length > this.maxMessage) {
        this.reject(messageId);
        throw new ProtocolError("oversize", `chunked message exceeds ${this.maxMessage} bytes`);
      }
      if (!this.charge(data.length)) {
        this.reject(messageId);
        throw new ProtocolError("over_budget", "partial messages exceed the memory budget");
      }
      entry.parts.set(index, data);
      entry.size += data.length;
    }
    if (entry.parts.size < entry.count) return null;
    this.partial.delete(messageId);
    this.refund(entry.size);
    const whole = new Uint8Array(entry.size);
    let at = 0;
    for (let i = 0; i < entry.count; i++) {
      const part = /** @type {Uint8Array} */ (entry.parts.get(i));
      whole.set(part, at);
      at += part.length;
    }
    return whole;
  }

  /** Forget every partial message (the link closed) and give back their memory. */
  clear() {
    for (const { size } of this.partial.values()) this.refund(size);
    this.partial.clear();
  }

  charge(amount) {
    if (!this.budget.take(amount)) return false;
    if (this.shared && !this.shared.take(amount)) {
      this.budget.give(amount);
      return false;
    }
    return true;
  }

  refund(amount) {
    this.budget.give(amount);
    this.shared?.give(amount);
  }

  reject(messageId) {
    const entry = this.partial.get(messageId);
    if (entry) {
      this.partial.delete(messageId);
      this.refund(entry.size);
    }
    this.rejected.add(messageId);
    while (this.rejected.size > REJECTED_KEPT) {
      this.rejected.delete(this.rejected.values().next().value);
    }
  }
}
