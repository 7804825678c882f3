import { StoreValue } from "./values.js";
import { StoreReplica } from "./replica.js";

/** `callback(key, value)`; `value` is `null` after a delete. May return a promise. */
export type StoreCallback = (key: string, value: StoreValue | null) => void | Promise<void>;

/** `{ emit: true }` also calls this peer's own subscribers. */
export interface WriteOptions {
  emit?: boolean;
}

/** `[[key, value], ...]`, `[{key, value}, ...]`, a Map or a plain object. */
export type BulkSetData =
  | Array<[string, unknown]>
  | Array<{ key: string; value: unknown }>
  | Map<string, unknown>
  | Record<string, unknown>;

/**
 * A named, replicated key-value store. Each write is applied locally and queued for
 * every peer when called; its promise adds flow control, and rejects (changing
 * nothing) for a bad key or value. The last two arguments of a write may also be
 * RealtimeKit's positional `(sync, emit)` booleans (`sync` false is refused).
 */
export class Store {
  constructor(session: object, replica: StoreReplica);
  readonly name: string;
  set(key: string, value: unknown, options?: WriteOptions | boolean, emit?: boolean): Promise<void>;
  /** Merges an object's top-level fields, appends an array; anything else sets. */
  update(key: string, value: unknown, options?: WriteOptions | boolean, emit?: boolean): Promise<void>;
  delete(key: string, options?: WriteOptions | boolean, emit?: boolean): Promise<void>;
  bulkSet(data: BulkSetData, options?: WriteOptions | boolean, emit?: boolean): Promise<void>;
  bulkDelete(keys: Iterable<string>, options?: WriteOptions | boolean, emit?: boolean): Promise<void>;
  clear(options?: WriteOptions | boolean, emit?: boolean): Promise<void>;
  /** A copy of the value, or `fallback` (undefined) when missing. */
  get<T = StoreValue | undefined>(key: string, fallback?: T): StoreValue | T;
  /** A copy of every key and value. */
  getAll(): Record<string, StoreValue>;
  has(key: string): boolean;
  keys(): string[];
  readonly size: number;
  /** Remote changes always call back; own writes only with `emit`. `"*"`: every key.
   * Returns a function that unsubscribes. */
  subscribe(key: string, callback: StoreCallback): () => void;
  /** Removes `callback`, or every callback of `key` when omitted. */
  unsubscribe(key: string, callback?: StoreCallback): void;
}

/** `meeting.stores`. */
export class Stores implements Iterable<string> {
  constructor(session: object);
  /** The store, created on every peer if new (idempotent). */
  create(name: string): Store;
  get(name: string): Store | undefined;
  has(name: string): boolean;
  keys(): string[];
  readonly size: number;
  [Symbol.iterator](): Iterator<string>;
  /** A Map of every store by name (RealtimeKit's `meeting.stores.stores`). */
  readonly stores: Map<string, Store>;
}
