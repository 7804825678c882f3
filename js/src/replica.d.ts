import * as Y from "yjs";
import { Entry, MISSING } from "./merge.js";
import { StateVector } from "./statevector.js";
import { DeleteSet, Update } from "./updates.js";
import { StoreValue } from "./values.js";

/** A key's change: its new value, or MISSING for a key now absent. */
export type Changes = Map<string, StoreValue | typeof MISSING>;

/** One store's replica: a Yjs document fed only checked updates, and local writes. */
export class StoreReplica {
  constructor(
    name: string,
    options?: { maxValueBytes?: number; maxUpdateItems?: number; clientId?: number; trackChanges?: boolean },
  );
  /** This replica's Yjs client id: the writer of its entries. */
  readonly clientId: number;
  /** Highest lamport clock seen. */
  lamport: number | bigint;
  /** Deltas of local transactions since the last call (writes and compactions). */
  takeOutbox(): Uint8Array[];
  /** What remote updates applied since the last call (to relay). */
  takeApplied(): Uint8Array[];
  /** Values changed since the last call (with `trackChanges`). */
  takeChanges(): Array<{ changes: Changes; local: boolean }>;
  set(key: string, value: unknown): void;
  /** A dict merges its top-level fields, a list appends, anything else sets. */
  update(key: string, value: unknown): void;
  delete(key: string): void;
  bulkSet(mapping: Record<string, unknown> | Map<string, unknown>): void;
  bulkDelete(keys: Iterable<string>): void;
  clear(): void;
  /** After a remote update: delete the entries this writer's own entries supersede. */
  compact(): void;
  readonly name: string;
  readonly maxValueBytes: number;
  readonly maxUpdateItems: number;
  readonly doc: Y.Doc;
  /** Read and check an update from a peer (`InvalidUpdate` if refused). */
  read(data: Uint8Array): Update;
  /** Apply an update from a peer, checked first. */
  apply(update: Uint8Array | Update): void;
  /** Every writer array: [client id, Y.Array of entry bytes]. */
  arrays(): Generator<[number, Y.Array<Uint8Array>]>;
  /** Every live entry, with its writer and bytes. */
  entries(): Generator<Entry & { blob: Uint8Array }>;
  /** The store's values: key to value. */
  values(): Map<string, StoreValue>;
  /** Entries still held in writer arrays. */
  readonly entryCount: number;
  stateVector(): Uint8Array;
  stateVectorMap(): StateVector;
  deleteSet(): DeleteSet;
  deleteDigest(): Uint8Array;
  /** A Yjs update of everything a peer at `stateVector` lacks. */
  diff(stateVector?: Uint8Array): Uint8Array;
}

/** Entries (sorted) whose removal cannot change the fold; with `author`, those its own entries supersede. */
export function deadEntries<E extends Entry>(entries: E[], author?: number | null): E[];
