// The public `Store` (one named key-value store) and `Stores` (`meeting.stores`), with
// RealtimeKit's JavaScript names. The reference is crdt_stores/store.py. A store reads
// from a cache of its values that the meeting keeps current from the engine's
// `StoreChanged` events; every write goes through the meeting (its `session`).

import { MISSING } from "./merge.js";
import { WILDCARD } from "./entries.js";
import { checkKey, copyValue, setField } from "./values.js";

/** `(key, value)`; `value` is `null` after a delete. May return a promise. */

/**
 * Write options: `{emit}` (also call this peer's own subscribers), or RealtimeKit's
 * positional `(sync, emit)` booleans. `sync` false is refused: every write replicates.
 */
function emitOption(options, emitArg) {
  if (options === undefined || options === null) return false;
  if (typeof options === "boolean") {
    if (!options) throw new RangeError("sync=false is not supported: every write is replicated");
    return emitArg === true;
  }
  if (typeof options !== "object") throw new TypeError("write options: an object like { emit: true }");
  return options.emit === true;
}

/** A bulkSet argument as [key, value] pairs: pairs, {key, value} objects, a Map or an object. */
function pairsOf(data) {
  if (data instanceof Map) return [...data];
  if (Array.isArray(data)) {
    return data.map((item) => {
      if (Array.isArray(item) && item.length === 2) return item;
      if (item !== null && typeof item === "object" && "key" in item && "value" in item) return [item.key, item.value];
      throw new TypeError("bulkSet takes [key, value] pairs, {key, value} objects, a Map or an object");
    });
  }
  if (data !== null && typeof data === "object") return Object.entries(data);
  throw new TypeError("bulkSet takes [key, value] pairs, {key, value} objects, a Map or an object");
}

export class Store {
  /**
   * @param {object} session the meeting's side: write, call, backpressure
   * @param {import("./replica.js").StoreReplica} replica
   */
  constructor(session, replica) {
    this._session = session;
    this._replica = replica;
    /** @type {Map<string, unknown>} the current values (kept by the meeting) */
    this._values = replica.values();
    /** @type {Map<string, Function[]>} */
    this._subscribers = new Map();
  }

  get name() {
    return this._replica.name;
  }

  // -- writes ---------------------------------------------------------------------
  // Each write is applied locally and queued for every peer when called (before the
  // returned promise settles); awaiting it adds flow control. Bad input rejects and
  // changes nothing anywhere.

  /** Overwrite `key` with `value`. */
  async set(key, value, options, emit) {
    return this._write(emitOption(options, emit), "set", key, value);
  }

  /** Merge an object into an object (top-level fields), append an array to an array;
   * anything else, or a missing key, is the same as `set`. */
  async update(key, value, options, emit) {
    return this._write(emitOption(options, emit), "update", key, value);
  }

  /** Remove `key` (nothing happens when it is missing). */
  async delete(key, options, emit) {
    return this._write(emitOption(options, emit), "delete", key);
  }

  /** Set several keys in one atomic change: `[[key, value], ...]`, `[{key, value}, ...]`,
   * a Map or a plain object. */
  async bulkSet(data, options, emit) {
    const pairs = pairsOf(data);
    const mapping = new Map();
    for (const [key, value] of pairs) {
      checkKey(key);
      mapping.delete(key);
      mapping.set(key, value);
    }
    return this._write(emitOption(options, emit), "bulkSet", mapping);
  }

  /** Delete several keys in one atomic change. */
  async bulkDelete(keys, options, emit) {
    return this._write(emitOption(options, emit), "bulkDelete", keys);
  }

  /** Delete every key in one atomic change. */
  async clear(options, emit) {
    return this._write(emitOption(options, emit), "clear");
  }

  _write(emit, operation, ...args) {
    this._session.write(this.name, operation, args, emit);
    return this._session.backpressure();
  }

  // -- reads ----------------------------------------------------------------------

  /** A copy of the value of `key`, or `fallback` (default `undefined`) when missing. */
  get(key, fallback = undefined) {
    if (typeof key !== "string" || !this._values.has(key)) return fallback;
    return copyValue(this._values.get(key));
  }

  /** A copy of every key and value, as a plain object. */
  getAll() {
    const out = {};
    for (const [key, value] of this._values) setField(out, key, copyValue(value));
    return out;
  }

  has(key) {
    return typeof key === "string" && this._values.has(key);
  }

  keys() {
    return [...this._values.keys()];
  }

  get size() {
    return this._values.size;
  }

  // -- subscriptions --------------------------------------------------------------

  /**
   * Call `callback(key, value)` when `key` changes (`"*"`: any key). Remote changes
   * always notify; this peer's own writes only with `emit`. Returns a function that
   * removes the callback.
   */
  subscribe(key, callback) {
    checkKey(key);
    if (typeof callback !== "function") throw new TypeError("callback must be a function");
    let callbacks = this._subscribers.get(key);
    if (!callbacks) this._subscribers.set(key, (callbacks = []));
    if (!callbacks.includes(callback)) callbacks.push(callback);
    return () => this.unsubscribe(key, callback);
  }

  /** Remove `callback` from `key`, or every callback of `key` when omitted. */
  unsubscribe(key, callback) {
    if (callback === undefined) {
      this._subscribers.delete(key);
      return;
    }
    const callbacks = this._subscribers.get(key);
    const index = callbacks ? callbacks.indexOf(callback) : -1;
    if (index >= 0) {
      /** @type {Function[]} */ (callbacks).splice(index, 1);
      if (!callbacks?.length) this._subscribers.delete(key);
    }
  }

  /** Values changed (the meeting, after an engine call): update the cache; notify if `notify`. */
  _changed(changes, notify) {
    for (const [key, value] of changes) {
      if (value === MISSING) this._values.delete(key);
      else this._values.set(key, value);
    }
    if (!notify || !this._subscribers.size) return;
    const wildcard = this._subscribers.get(WILDCARD) ?? [];
    for (const [key, value] of changes) {
      for (const callback of [...(this._subscribers.get(key) ?? []), ...wildcard]) {
        this._session.call(callback, key, value === MISSING ? null : copyValue(value));
      }
    }
  }

  toString() {
    return `<Store ${JSON.stringify(this.name)} keys=${this._values.size}>`;
  }
}

/** `meeting.stores`: every store of the meeting, by name. */
export class Stores {
  constructor(session) {
    this._session = session;
    /** @type {Map<string, Store>} */
    this._stores = new Map();
  }

  /** The store called `name`, created (on every peer) if it does not exist yet. */
  create(name) {
    let store = this._stores.get(name);
    if (!store) {
      checkKey(name, "store name");
      this._session.createStore(name);
      store = /** @type {Store} */ (this._stores.get(name));
    }
    return store;
  }

  /** @returns {Store | undefined} */
  get(name) {
    return this._stores.get(name);
  }

  has(name) {
    return this._stores.has(name);
  }

  /** Store names. */
  keys() {
    return [...this._stores.keys()];
  }

  get size() {
    return this._stores.size;
  }

  [Symbol.iterator]() {
    return this._stores.keys();
  }

  /** RealtimeKit's `const { stores } = meeting.stores; stores.get(name)`: a read-only Map view. */
  get stores() {
    return new Map(this._stores);
  }

  /** A store now exists in the engine (the meeting calls this). */
  _attach(replica) {
    if (!this._stores.has(replica.name)) this._stores.set(replica.name, new Store(this._session, replica));
  }

  _deliver(name, changes, notify) {
    this._stores.get(name)?._changed(changes, notify);
  }
}
