// One store's replica, receiving half: a Yjs document that is only ever handed updates
// `updates.readUpdate` accepted, and what it holds read out as the protocol means it
// (values by the merge rules, state vector, delete set and its digest). Local writes and
// compaction (§10.2, §10.3) come with the sync engine in a later increment.

import * as Y from "yjs";
import { parseEntry } from "./entries.js";
import { foldAll } from "./merge.js";
import { decodeStateVector, deleteDigest, mergeRanges } from "./statevector.js";
import { MAX_CLIENT, applicable, readUpdate } from "./updates.js";
import { DEFAULT_MAX_VALUE_BYTES, copyValue } from "./values.js";

const CANONICAL_ID = /^(0|[1-9][0-9]{0,15})$/;

/** The part of a Yjs document a store holds in its root map `writers` (§7.1). */
export class StoreReplica {
  /**
   * @param {string} name
   * @param {{maxValueBytes?: number, maxUpdateItems?: number}} [options]
   */
  constructor(name, { maxValueBytes = DEFAULT_MAX_VALUE_BYTES, maxUpdateItems = 1 << 20 } = {}) {
    this.name = name;
    this.maxValueBytes = maxValueBytes;
    this.maxUpdateItems = maxUpdateItems;
    this.doc = new Y.Doc();
    this.writers = this.doc.getMap("writers");
    /** Entries parsed once per Uint8Array Yjs holds (null: undecodable, kept out of folds). */
    this.parsed = new WeakMap();
  }

  /**
   * Read and check an update from a peer (`InvalidUpdate` if the layout refuses it).
   * @param {Uint8Array} data
   */
  read(data) {
    return readUpdate(data, { maxUnits: this.maxUpdateItems, maxValueBytes: this.maxValueBytes });
  }

  /**
   * Apply an update from a peer, checked first (`InvalidUpdate`, nothing applied, if the
   * layout refuses it); a delete range over an array is clipped. Parts that need a
   * writer's earlier structs wait in Yjs until those arrive.
   * @param {Uint8Array | ReturnType<typeof readUpdate>} update
   */
  apply(update) {
    const read = update instanceof Uint8Array ? this.read(update) : update;
    Y.applyUpdate(this.doc, applicable(read), "remote");
  }

  /** Every writer array: [client id, Y.Array of entry bytes] (non-canonical keys skipped). */
  *arrays() {
    for (const [key, array] of this.writers.entries()) {
      if (CANONICAL_ID.test(key) && Number(key) <= MAX_CLIENT && array instanceof Y.Array) {
        yield /** @type {[number, Y.Array<Uint8Array>]} */ ([Number(key), array]);
      }
    }
  }

  /** Every live entry, with its writer and bytes. */
  *entries() {
    for (const [writer, array] of this.arrays()) {
      for (const blob of array.toArray()) {
        let parsed = this.parsed.get(blob);
        if (parsed === undefined) {
          try {
            parsed = parseEntry(blob, this.maxValueBytes);
          } catch {
            parsed = null;
          }
          this.parsed.set(blob, parsed);
        }
        if (parsed) yield { ...parsed, writer, blob };
      }
    }
  }

  /** The store's values: key to value (a fresh fold of every entry; the caller's to change). */
  values() {
    const values = foldAll(this.entries());
    for (const [key, value] of values) values.set(key, copyValue(value));
    return values;
  }

  /** Entries still held in writer arrays (live and not yet compacted). */
  get entryCount() {
    let count = 0;
    for (const [, array] of this.arrays()) count += array.length;
    return count;
  }

  /** The encoded Yjs state vector. */
  stateVector() {
    return Y.encodeStateVector(this.doc);
  }

  /** The state vector as a Map of client id to clock. */
  stateVectorMap() {
    return decodeStateVector(this.stateVector());
  }

  /**
   * The delete set: client id to `[clock, length]` ranges, clients and ranges sorted,
   * touching ranges joined.
   * @returns {Map<number, Array<[number, number]>>}
   */
  deleteSet() {
    const set = Y.createDeleteSetFromStructStore(this.doc.store);
    const out = new Map();
    for (const client of [...set.clients.keys()].sort((a, b) => a - b)) {
      const ranges = set.clients.get(client).map((item) => [item.clock, item.len]);
      if (ranges.length) out.set(client, mergeRanges(ranges));
    }
    return out;
  }

  /** The digest of the delete set (§6.7). */
  deleteDigest() {
    return deleteDigest(this.deleteSet());
  }

  /**
   * A Yjs update of everything a peer at `stateVector` lacks (everything without one).
   * Parts still waiting for earlier structs are left out: a diff never has gaps.
   * @param {Uint8Array} [stateVector]
   */
  diff(stateVector) {
    const store = this.doc.store;
    const { pendingStructs, pendingDs } = store;
    store.pendingStructs = null; // (Yjs would merge them in, with Skip structs)
    store.pendingDs = null;
    try {
      return Y.encodeStateAsUpdate(this.doc, stateVector);
    } finally {
      store.pendingStructs = pendingStructs;
      store.pendingDs = pendingDs;
    }
  }
}
