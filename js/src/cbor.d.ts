/** A CBOR float, kept apart from integers: `new Float(1)` is the float 1.0. */
export class Float {
  constructor(value: number);
  readonly value: number;
  valueOf(): number;
  toJSON(): number;
}

/** A CBOR simple value other than false, true, null and undefined (read, never written). */
export class Simple {
  constructor(value: number);
  readonly value: number;
}

/** Data that is not well-formed CBOR of the protocol's profile. */
export class CborError extends Error {}

/** Deepest container nesting the reader accepts (the reference decoder's bound, §5.1). */
export const MAX_NESTING: 40;

/**
 * An item of the CBOR data model as `decode` gives it: integers as numbers (safe) or
 * bigints, floats as `Float`, byte strings as `Uint8Array`, maps as `Map`.
 */
export type CborItem =
  | number
  | bigint
  | Float
  | string
  | Uint8Array
  | boolean
  | null
  | undefined
  | Simple
  | CborItem[]
  | Map<CborItem, CborItem>;

/** Decode the first CBOR item of `data` (bytes after it are ignored); throws `CborError`. */
export function decode(data: Uint8Array): CborItem;

/** Encode as the reference does: shortest heads, definite lengths, `fb` floats. */
export function encode(value: unknown): Uint8Array;

/** True for `{...}` objects (prototype `Object.prototype` or `null`), not class instances. */
export function isPlainObject(value: unknown): value is Record<string, unknown>;
