import { Message, Unknown } from "./messages.js";

export const PROTOCOL_VERSION: 1;
export const MAX_FRAME_BYTES: number;
export const MAX_MESSAGE_BYTES: number;
export const COMPRESS_MIN_BYTES: number;
export const MAX_INFLATE_RATIO: number;
export const MAX_MESSAGE_ITEMS: number;
export const CHUNK_OVERHEAD: number;

/** A raw message `[version, kind, ...body]`. */
export function encodeRaw(kind: number, ...body: unknown[]): Uint8Array;
/** The bytes of a message, byte for byte as the reference writes it. */
export function encodeMessage(message: Message | Unknown): Uint8Array;
/** The frames that carry an encoded message: compressed if worth it, chunked if too big. */
export function frames(message: Uint8Array, messageId: number | bigint, maxFrame?: number): Uint8Array[];
/** Count the CBOR items of one top-level item; `ProtocolError` past `limit` or if malformed. */
export function countItems(data: Uint8Array, limit: number): number;
/** Decode one frame into a checked message; `ProtocolError` otherwise. */
export function decodeFrame(frame: Uint8Array, maxFrame?: number): Message | Unknown;
/** Inflate a COMPRESSED message's zlib stream within its limits; `ProtocolError` otherwise. */
export function inflate(packed: Uint8Array, maxMessage: number): Uint8Array;

/** Bytes that may be held at once. */
export class Budget {
  constructor(limit: number);
  limit: number;
  used: number;
  take(amount: number): boolean;
  give(amount: number): void;
}

/** One link's frames into messages, through CHUNK and COMPRESSED. */
export class Reassembler {
  constructor(maxMessage?: number, options?: { maxLink?: number; shared?: Budget | null; maxFrame?: number });
  readonly maxMessage: number;
  readonly maxFrame: number;
  readonly heldBytes: number;
  /** The message `frame` completes (null while a chunked message is partial). */
  complete(frame: Uint8Array): Message | Unknown | null;
  /** Add one chunk; the whole message once every chunk is in, else null. */
  add(messageId: number | bigint, index: number, count: number, data: Uint8Array): Uint8Array | null;
  /** Forget every partial message (the link closed). */
  clear(): void;
}
