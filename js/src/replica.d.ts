import * as Y from "yjs";
import { Entry } from "./merge.js";
import { StateVector } from "./statevector.js";
import { DeleteSet, Update } from "./updates.js";
import { StoreValue } from "./values.js";

/** One store's replica, receiving half: a Yjs document fed only checked updates. */
export class StoreReplica {
  constructor(name: string, options?: { maxValueBytes?: number; maxUpdateItems?: number });
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
