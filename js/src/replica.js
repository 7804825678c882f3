// One store's replica, receiving half: a Yjs document that is only ever handed updates
// `updates.readUpdate` accepted, and what it holds read out as the protocol means it
// (values by the merge rules, state vector, delete set and its digest); and local writes
// (§10.2) with their compaction duty (§10.3), as the reference's replica.py does them:
// each write is one Yjs transaction in this writer's own array, whose delta lands in
// the outbox (`takeOutbox`).

import * as Y from "yjs";
import { isPlainObject } from "./cbor.js";
import { APPEND, DELETE, LAMPORT_MAX, MERGE, SET, encodeEntry, parseEntry, writeKey } from "./entries.js";
import { MISSING, foldAll, sortEntries } from "./merge.js";
import { decodeStateVector, deleteDigest, mergeRanges } from "./statevector.js";
import { MAX_CLIENT, applicable, readUpdate } from "./updates.js";
import { DEFAULT_MAX_VALUE_BYTES, copyValue, normalize, sameValue } from "./values.js";

const LOCAL = Symbol("local");

const CANONICAL_ID = /^(0|[1-9][0-9]{0,15})$/;

/** The part of a Yjs document a store holds in its root map `writers` (§7.1). */
export class StoreReplica {
  /**
   * @param {string} name
   * @param {{maxValueBytes?: number, maxUpdateItems?: number, clientId?: number, trackChanges?: boolean}} [options]
   */
  constructor(
    name,
    { maxValueBytes = DEFAULT_MAX_VALUE_BYTES, maxUpdateItems = 1 << 20, clientId, trackChanges = false } = {},
  ) {
    this.name = name;
    this.maxValueBytes = maxValueBytes;
    this.maxUpdateItems = maxUpdateItems;
    this.doc = new Y.Doc();
    if (clientId !== undefined) this.doc.clientID = clientId;
    this.writers = this.doc.getMap("writers");
    /** Entries parsed once per Uint8Array Yjs holds (null: undecodable, kept out of folds). */
    this.parsed = new WeakMap();
    /** Highest lamport clock seen (number, or bigint past 2**53 - 1). */
    this.lamport = 0;
    this.trackChanges = trackChanges;
    /** @type {Array<{changes: Map<string, unknown>, local: boolean}>} */
    this.changes = [];
    /** @type {Uint8Array[]} deltas of local transactions (writes and compactions) */
    this.outbox = [];
    /** @type {Uint8Array[]} what remote updates applied (for relaying) */
    this.appliedOut = [];
    this.doc.on("update", (update, origin) => {
      if (origin === LOCAL) this.outbox.push(update);
      else this.appliedOut.push(update);
    });
  }

  /** This replica's Yjs client id: the writer of its entries. */
  get clientId() {
    return this.doc.clientID;
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
    const before = this.trackChanges ? this.values() : null;
    Y.applyUpdate(this.doc, applicable(read), "remote");
    this.compact();
    if (before) this.noteChanges(before, false);
  }

  /** Deltas of local transactions since the last call (writes and compactions). */
  takeOutbox() {
    const out = this.outbox;
    this.outbox = [];
    return out;
  }

  /** What remote updates applied since the last call (Yjs updates, to relay). */
  takeApplied() {
    const out = this.appliedOut;
    this.appliedOut = [];
    return out;
  }

  /** Values changed since the last call, one `{changes, local}` per write or apply. */
  takeChanges() {
    const out = this.changes;
    this.changes = [];
    return out;
  }

  // -- local writes (replica.py) ----------------------------------------------------

  /** @param {string} key @param {unknown} value */
  set(key, value) {
    this.write([this.op(key, SET, value)]);
  }

  /** A dict merges its top-level fields, a list appends, anything else sets. */
  update(key, value) {
    writeKey(key);
    const norm = normalize(value);
    const op = isPlainObject(norm) ? MERGE : Array.isArray(norm) ? APPEND : SET;
    this.write([this.op(key, op, norm)]);
  }

  /** @param {string} key */
  delete(key) {
    this.bulkDelete([key]);
  }

  /** @param {Record<string, unknown> | Map<string, unknown>} mapping */
  bulkSet(mapping) {
    if (mapping === null || typeof mapping !== "object" || Array.isArray(mapping)) {
      throw new TypeError("bulkSet takes an object or a Map");
    }
    const pairs = mapping instanceof Map ? [...mapping] : Object.entries(mapping);
    const ops = new Map();
    for (const [key, value] of pairs) {
      ops.delete(key); // (the last value of a key wins, in its place)
      ops.set(key, this.op(key, SET, value));
    }
    this.write([...ops.values()]);
  }

  /** @param {Iterable<string>} keys */
  bulkDelete(keys) {
    if (typeof keys === "string" || keys == null || typeof keys[Symbol.iterator] !== "function") {
      throw new TypeError("bulkDelete takes an iterable of keys");
    }
    const wanted = new Set([...keys].map((key) => writeKey(key)));
    const present = this.values();
    this.write([...wanted].filter((key) => present.has(key)).map((key) => this.op(key, DELETE, null)));
  }

  clear() {
    this.write([...this.values().keys()].map((key) => this.op(key, DELETE, null)));
  }

  /** An op checked (encoding it once throws for anything a peer would refuse). */
  op(key, op, value) {
    writeKey(key);
    const payload = op === DELETE ? null : normalize(value);
    encodeEntry(key, op, payload, 0, this.maxValueBytes);
    return { key, op, payload };
  }

  /**
   * One write: the entries appended to this writer's array with one lamport clock (the
   * maximum seen plus 1, saturating), and the entries they supersede deleted, in one
   * transaction.
   * @param {Array<{key: string, op: number, payload: unknown}>} ops
   */
  write(ops) {
    if (!ops.length) return;
    const byKey = this.entriesByKey();
    const lamport = nextLamport(this.lamport);
    const me = this.clientId;
    const blobs = [];
    const dead = [];
    for (const { key, op, payload } of ops) {
      const blob = encodeEntry(key, op, payload, lamport, this.maxValueBytes);
      blobs.push(blob);
      const existing = byKey.get(key);
      if (existing && lamport !== LAMPORT_MAX) {
        if (op === SET || op === DELETE) dead.push(...existing);
        else dead.push(...deadEntries([...existing, { key, op, payload, lamport, writer: me, blob }], me));
      }
    }
    const before = this.trackChanges ? this.values() : null;
    Y.transact(
      this.doc,
      (tr) => {
        const name = String(me);
        let array = this.writers.get(name);
        if (!(array instanceof Y.Array)) {
          array = new Y.Array();
          this.writers.set(name, array);
        }
        let left = array._start;
        while (left && left.right) left = left.right;
        // ContentAny of Uint8Arrays (§7.2: never the ContentBinary that push() writes)
        const item = new Y.Item(
          Y.createID(me, Y.getState(this.doc.store, me)),
          left,
          left && left.lastId,
          null,
          null,
          array,
          null,
          new Y.ContentAny(blobs),
        );
        item.integrate(tr, 0);
        this.deleteEntries(dead);
      },
      LOCAL,
    );
    this.lamport = lamport;
    if (before) this.noteChanges(before, true);
  }

  /** Delete entries (found by their bytes) from their writers' arrays. */
  deleteEntries(dead) {
    if (!dead.length) return;
    const byWriter = new Map();
    for (const entry of dead) {
      const set = byWriter.get(entry.writer) ?? new Set();
      set.add(entry.blob);
      byWriter.set(entry.writer, set);
    }
    for (const [writer, blobs] of byWriter) {
      const array = this.writers.get(String(writer));
      const items = array.toArray();
      for (let i = items.length - 1; i >= 0; i--) {
        if (blobs.has(items[i])) array.delete(i, 1);
      }
    }
  }

  /** Live entries grouped by key, each list in merge order; notes the highest lamport. */
  entriesByKey() {
    /** @type {Map<string, any[]>} */
    const byKey = new Map();
    for (const entry of this.entries()) {
      if (compareLamport(entry.lamport, this.lamport) > 0) this.lamport = entry.lamport;
      const list = byKey.get(entry.key);
      if (list) list.push(entry);
      else byKey.set(entry.key, [entry]);
    }
    for (const list of byKey.values()) sortEntries(list);
    return byKey;
  }

  /**
   * After a remote update: delete the entries this writer's own entries supersede (a
   * concurrent write that arrived already beaten), in a local transaction of its own.
   */
  compact() {
    const me = this.clientId;
    const dead = [];
    for (const list of this.entriesByKey().values()) {
      if (list.length > 1) dead.push(...deadEntries(list, me));
    }
    if (dead.length) Y.transact(this.doc, () => this.deleteEntries(dead), LOCAL);
  }

  noteChanges(before, local) {
    const after = this.values();
    const changes = new Map();
    for (const [key, value] of after) {
      if (!before.has(key) || !sameValue(before.get(key), value)) changes.set(key, value);
    }
    for (const key of before.keys()) if (!after.has(key)) changes.set(key, MISSING);
    if (changes.size) this.changes.push({ changes, local });
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

function compareLamport(a, b) {
  const x = BigInt(a);
  const y = BigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

/** The maximum seen plus 1, saturating at 2**64 - 1 (a number while it is safe). */
function nextLamport(seen) {
  const next = BigInt(seen) + 1n;
  if (next > LAMPORT_MAX) return LAMPORT_MAX;
  return next <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(next) : next;
}

/**
 * Entries (sorted) whose removal cannot change the fold, whatever arrives later
 * (merge.py `dead_entries`); with `author`, only those its own entries supersede.
 * @param {any[]} entries
 * @param {number | null} [author]
 */
export function deadEntries(entries, author = null) {
  const dead = [];
  const covered = new Set();
  let mergesAfter = false;
  let reset = false;
  for (let i = entries.length - 1; i >= 0; i--) {
    const entry = entries[i];
    const witness = author === null || entry.writer === author;
    if (reset) dead.push(entry);
    else if (entry.op === SET || entry.op === DELETE) reset = witness;
    else if (entry.op === MERGE) {
      const fields = Object.keys(entry.payload);
      if (mergesAfter && fields.every((field) => covered.has(field))) dead.push(entry);
      else if (witness) {
        for (const field of fields) covered.add(field);
        mergesAfter = true;
      }
    }
  }
  return dead;
}
