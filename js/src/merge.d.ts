import { Op } from "./entries.js";

/** Marks a key without a value (never written, or deleted). */
export const MISSING: unique symbol;

export interface Entry {
  key: string;
  op: Op;
  payload: unknown;
  lamport: number | bigint;
  /** the client id of the array holding it */
  writer: number;
  /** its encoded bytes, if known (for the tie-break) */
  blob?: Uint8Array;
}

/** Order of two entries by `(lamport, writer)`. */
export function compareOrder(a: Entry, b: Entry): number;
/** The bytes entries of equal order are sorted by. */
export function tiebreakBytes(entry: Entry): Uint8Array;
/** A key's entries sorted in place into their total order. */
export function sortEntries<T extends Entry>(entries: T[]): T[];
/** One entry applied on top of `value`. */
export function applyOp(value: unknown, entry: Entry): unknown;
/** The value of a key: the fold of its sorted entries, or MISSING. */
export function fold(entries: Entry[]): unknown;
/** The values of a store from all its entries. */
export function foldAll(entries: Iterable<Entry>): Map<string, unknown>;
