import { CborItem, Float } from "./cbor.js";

export { Float };

/**
 * A store value in the application's form (the number rule of README.md): a `number` is
 * an integer when it is a safe integer other than -0 and a float otherwise; a `bigint`
 * an integer past 2^53; a `Float` a float with an integral value.
 */
export type StoreValue =
  null | boolean | number | bigint | Float | string | StoreValue[] | { [key: string]: StoreValue };

export const MAX_DEPTH: 32;
export const DEFAULT_MAX_VALUE_BYTES: number;
export const MAX_KEY_BYTES: 1024;
export const INT64_MIN: bigint;
export const INT64_MAX: bigint;

/** Bytes of `text` in UTF-8. */
export function utf8Length(text: string): number;
/** `key` if it is a usable store key (or store name); throws `TypeError`/`RangeError`. */
export function checkKey(key: unknown, what?: string): string;
/** A number read from CBOR as the number rule says: a plain number, or a `Float`. */
export function floatValue(n: number): number | Float;
/** Own enumerable field `key` of `object` set to `value`, also for `__proto__`. */
export function setField(object: object, key: string, value: unknown): void;
/** A validated private copy of a value from the application; throws for invalid ones. */
export function normalize(value: unknown): StoreValue;
/** True when a decoded CBOR item is a store value. */
export function isValid(item: unknown, depth?: number): boolean;
/** The application's form of a valid decoded CBOR item. */
export function fromCbor(item: CborItem): StoreValue;
/** The CBOR bytes of a value, as the reference writes them. */
export function encodeValue(value: StoreValue): Uint8Array;
/** Deep copy of a value. */
export function copyValue<T>(value: T): T;
/** Equality that also compares types: `1`, `new Float(1)` and `true` all differ. */
export function sameValue(a: unknown, b: unknown): boolean;
