import { StoreValue } from "./values.js";

export const SET: 0;
export const MERGE: 1;
export const APPEND: 2;
export const DELETE: 3;
export type Op = 0 | 1 | 2 | 3;
export const WILDCARD: "*";
export const LAMPORT_MAX: bigint;

/** An entry as `parseEntry` gives it. */
export interface ParsedEntry {
  key: string;
  op: Op;
  payload: StoreValue;
  lamport: number | bigint;
}

/** An entry from a peer that a local write could not have made. */
export class EntryError extends Error {}

/** Largest encoded entry a peer may send. */
export function entryLimit(maxValueBytes: number): number;
/** Decode and check one entry from a peer; throws `EntryError`. */
export function parseEntry(blob: Uint8Array, maxValueBytes: number): ParsedEntry;
/** `key` checked for a write (a store key, not `"*"`). */
export function writeKey(key: unknown): string;
/** The bytes of an entry written here; throws for anything a peer would refuse. */
export function encodeEntry(
  key: string,
  op: Op,
  payload: unknown,
  lamport: number | bigint,
  maxValueBytes?: number,
): Uint8Array;
