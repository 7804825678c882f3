// Sealed signals (PROTOCOL.md §3.4): with a room key, every signal payload travels as
// ChaCha20-Poly1305 ciphertext under a key derived with HKDF-SHA256 from the room key
// and the room name, bound by its associated data to the room, the sender and the
// recipient; a timestamp window and a record of seen nonces refuse replays. HKDF is
// WebCrypto's (`globalThis.crypto.subtle`, in browsers and Node alike); WebCrypto has no
// ChaCha20-Poly1305, which comes from @noble/ciphers (audited, pure JavaScript).

import { chacha20poly1305 } from "@noble/ciphers/chacha.js";

export const VERSION = 1;
export const NONCE_BYTES = 12;
/** Seconds a sealed signal stays acceptable (covers clock skew between peers). */
export const REPLAY_WINDOW = 120;
/** Nonces remembered for replay protection; older ones raise a timestamp floor instead. */
export const MAX_SEEN = 10_000;
/** Longest `sealed` text accepted (under the signaling server's 64 KiB messages). */
export const MAX_SEALED_CHARS = 48 * 1024;

const SALT = new TextEncoder().encode("crdt-stores signaling key v1");
const UTF8 = new TextEncoder();
const UTF8_DECODER = new TextDecoder("utf-8", { fatal: true });

/** A signal that cannot be accepted; `reason` says why (for events and logs). */
export class SealError extends Error {
  /** @param {string} reason */
  constructor(reason) {
    super(reason);
    this.reason = reason;
  }
}

/**
 * The AEAD key of `room`: HKDF-SHA256 over the UTF-8 bytes of the room key text (not
 * base64-decoded), salt `crdt-stores signaling key v1`, info `signal` 00 room, 32 bytes.
 * @param {string | Uint8Array} roomKey
 * @param {string} room
 * @returns {Promise<Uint8Array>}
 */
export async function deriveKey(roomKey, room) {
  const secret = typeof roomKey === "string" ? UTF8.encode(roomKey) : roomKey;
  if (!secret.length) throw new RangeError("the room key must not be empty");
  const roomBytes = UTF8.encode(room);
  const info = new Uint8Array(7 + roomBytes.length);
  info.set(UTF8.encode("signal\0"));
  info.set(roomBytes, 7);
  const subtle = globalThis.crypto.subtle;
  const base = await subtle.importKey("raw", secret, "HKDF", false, ["deriveBits"]);
  const bits = await subtle.deriveBits({ name: "HKDF", hash: "SHA-256", salt: SALT, info }, base, 256);
  return new Uint8Array(bits);
}

/**
 * JSON as Python's `json.dumps` writes it with its default `ensure_ascii`: every
 * character outside space..`~` escaped (`\uXXXX` in lowercase hex, UTF-16 units), items
 * separated by `", "` and `": "` (or `","` and `":"` when `compact`). Numbers are written
 * as JavaScript does, which matches Python for the values signals hold.
 * @param {unknown} value
 * @param {boolean} [compact]
 * @returns {string}
 */
export function pythonJson(value, compact = false) {
  const [item, key] = compact ? [",", ":"] : [", ", ": "];
  const write = (v) => {
    if (v === null) return "null";
    if (typeof v === "string") return pythonString(v);
    if (typeof v === "number") {
      if (!Number.isFinite(v)) throw new RangeError("JSON has no NaN or infinities");
      return JSON.stringify(v);
    }
    if (typeof v === "boolean") return v ? "true" : "false";
    if (Array.isArray(v)) return `[${v.map(write).join(item)}]`;
    if (typeof v === "object") {
      return `{${Object.entries(v)
        .map(([k, x]) => `${pythonString(k)}${key}${write(x)}`)
        .join(item)}}`;
    }
    throw new TypeError(`cannot write a ${typeof v} as JSON`);
  };
  return write(value);
}

const SHORT_ESCAPES = {
  '"': '\\"',
  "\\": "\\\\",
  "\n": "\\n",
  "\r": "\\r",
  "\t": "\\t",
  "\b": "\\b",
  "\f": "\\f",
};

function pythonString(text) {
  // eslint-disable-next-line no-control-regex
  const escaped = text.replace(
    /["\\]|[^ -~]/g,
    (c) => SHORT_ESCAPES[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
  return `"${escaped}"`;
}

/**
 * The associated data of a seal: `["crdt-stores-signal", 1, ROOM, SENDER, RECIPIENT]` as
 * Python's `json.dumps` writes it, in UTF-8.
 * @param {string} room
 * @param {string} sender
 * @param {string} recipient
 */
export function associatedData(room, sender, recipient) {
  return UTF8.encode(pythonJson(["crdt-stores-signal", VERSION, room, sender, recipient]));
}

function toBase64(bytes) {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

/** Standard base64 as the reference reads it: its alphabet only, padded, else null. */
function fromBase64(text) {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) return null;
  const binary = atob(text);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

/**
 * A fresh random room key (32 bytes, base64url, unpadded), never starting with `-`.
 * @returns {string}
 */
export function generateRoomKey() {
  for (;;) {
    const key = toBase64(globalThis.crypto.getRandomValues(new Uint8Array(32)))
      .replace(/\+/g, "-")
      .replace(/\//g, "_")
      .replace(/=+$/, "");
    if (!key.startsWith("-")) return key;
  }
}

const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

/** Seals signals for one room and opens them, refusing forgeries and replays. */
export class SignalSealer {
  /**
   * A sealer for `room` with `roomKey` (the key is derived with WebCrypto, hence async).
   * @param {string | Uint8Array} roomKey
   * @param {string} room
   * @param {{window?: number, maxSeen?: number}} [options]
   */
  static async create(roomKey, room, options = {}) {
    return new SignalSealer(await deriveKey(roomKey, room), room, options);
  }

  /**
   * @param {Uint8Array} key the derived key (`deriveKey`)
   * @param {string} room
   * @param {{window?: number, maxSeen?: number}} [options]
   */
  constructor(key, room, { window = REPLAY_WINDOW, maxSeen = MAX_SEEN } = {}) {
    this.key = key;
    this.room = room;
    this.window = window;
    this.maxSeen = maxSeen;
    /** @type {Map<string, number>} nonce (hex) to timestamp, in arrival order */
    this.seen = new Map();
    this.floor = -Infinity; // timestamps at or below it may have been forgotten
  }

  /**
   * The signal `data` carrying `payload` from `sender` to `recipient` at time `now`
   * (seconds since the epoch). `nonce` is random unless given (tests).
   * @param {string} sender
   * @param {string} recipient
   * @param {Record<string, unknown>} payload
   * @param {number} now
   * @param {Uint8Array} [nonce]
   */
  seal(
    sender,
    recipient,
    payload,
    now,
    nonce = globalThis.crypto.getRandomValues(new Uint8Array(NONCE_BYTES)),
  ) {
    const plain = UTF8.encode(pythonJson({ ts: now, payload }, true));
    const sealed = chacha20poly1305(this.key, nonce, associatedData(this.room, sender, recipient)).encrypt(
      plain,
    );
    const out = new Uint8Array(NONCE_BYTES + sealed.length);
    out.set(nonce);
    out.set(sealed, NONCE_BYTES);
    return { v: VERSION, sealed: toBase64(out) };
  }

  /**
   * The payload of a sealed signal from `sender` to `recipient`, received at `now`;
   * throws `SealError` for anything but a fresh, authentic seal of this room.
   * @param {string} sender
   * @param {string} recipient
   * @param {Record<string, unknown>} data
   * @param {number} now
   */
  open(sender, recipient, data, now) {
    const text = data?.sealed;
    if (typeof text !== "string") throw new SealError("unsealed signal (this room uses a room key)");
    if (data.v !== VERSION) {
      // (a number: JSON's 1.0 is the number 1 here and in the reference; true is not)
      throw new SealError("unknown seal version (v is not the number 1)");
    }
    if (text.length > MAX_SEALED_CHARS) throw new SealError("sealed signal too large");
    const raw = fromBase64(text);
    if (raw === null) throw new SealError("sealed signal is not base64");
    if (raw.length <= NONCE_BYTES) throw new SealError("sealed signal too short");
    const nonce = raw.subarray(0, NONCE_BYTES);
    let plain;
    try {
      const aead = chacha20poly1305(this.key, nonce, associatedData(this.room, sender, recipient));
      plain = aead.decrypt(raw.subarray(NONCE_BYTES));
    } catch {
      throw new SealError(
        "seal does not verify (another room key, or altered, re-addressed or re-stamped on the way)",
      );
    }
    let stamp;
    let payload;
    try {
      // (JSON.parse refuses NaN and Infinity, which are not JSON; so does the reference)
      const body = JSON.parse(UTF8_DECODER.decode(plain));
      stamp = body.ts;
      payload = body.payload;
    } catch {
      throw new SealError("sealed signal holds no payload");
    }
    const isObject = payload !== null && typeof payload === "object" && !Array.isArray(payload);
    if (typeof stamp !== "number" || !isObject) throw new SealError("sealed signal holds no payload");
    if (Math.abs(now - stamp) > this.window) {
      const off = Math.round(now - stamp);
      throw new SealError(`sealed signal is ${off >= 0 ? "+" : ""}${off} s off (stale or replayed)`);
    }
    const id = hex(nonce);
    if (this.seen.has(id) || stamp <= this.floor) throw new SealError("replayed signal");
    this.remember(id, stamp, now);
    return payload;
  }

  remember(id, stamp, now) {
    this.seen.set(id, stamp);
    // In arrival order; those past the window can go (their stamps are refused anyway).
    for (const [oldest, oldestStamp] of this.seen) {
      if (oldestStamp >= now - this.window && this.seen.size <= this.maxSeen) break;
      this.seen.delete(oldest);
      if (oldestStamp >= now - this.window) {
        // Forgotten while still within the window: refuse its stamp and older from now.
        this.floor = Math.max(this.floor, oldestStamp);
      }
    }
  }
}
