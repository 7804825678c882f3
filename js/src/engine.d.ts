import { Changes, StoreReplica } from "./replica.js";

/** Timing (seconds) and limits (bytes, counts): the reference's `SyncConfig`. */
export interface EngineConfig {
  heartbeatInterval: number;
  deadAfter: number;
  syncInterval: number;
  ackDelay: number;
  maxValueBytes: number;
  maxFrameBytes: number;
  maxMessageBytes: number;
  maxMessageItems: number;
  maxLinkBufferBytes: number;
  maxBufferBytes: number;
  maxStores: number;
  violationBudget: number;
}

export const DEFAULT_CONFIG: Readonly<EngineConfig>;
/** Bytes a sync, a diff or a batch is cut into: min(1 MiB, maxMessageBytes / 4). */
export function partBytes(config: EngineConfig): number;
/** Yjs items a message carries as updates: maxMessageItems / 2. */
export function partItems(config: EngineConfig): number;
/** Reasons a correct peer never causes: they count against a link's budget. */
export const VIOLATIONS: Set<string>;

export type EngineEvent =
  | { type: "StoreAdded"; store: string }
  | { type: "StoreChanged"; store: string; changes: Changes; local: boolean }
  | { type: "LinkDead"; peer: string }
  | { type: "PeerMisbehaved"; peer: string; reason: string; violations: number };

/** The sans-IO sync state machine (PROTOCOL.md §6): bytes in, bytes out, time an argument. */
export class SyncEngine {
  constructor(peerId: string, config?: Partial<EngineConfig>);
  readonly peerId: string;
  readonly config: EngineConfig;
  readonly stores: Map<string, StoreReplica>;
  /** Counters by reason (frames_in, bad_update, violations...). */
  readonly stats: Map<string, number>;
  readonly peers: string[];
  /** Message parts (outbox.py): syncs, diffs and batches are cut into these. */
  readonly partBytes: number;
  readonly partItems: number;
  /** Someone awaits agreement: acks go out at once and UPDATEs ask for immediate ones. */
  readonly eager: boolean;
  store(name: string): StoreReplica | null;
  /** Get or create a store; a new one is announced to every linked peer. */
  createStore(name: string): StoreReplica;
  /** A local write: set, update, delete, bulkSet (bulk_set), bulkDelete (bulk_delete), clear. */
  write(name: string, op: string, ...args: unknown[]): void;
  linkUp(peer: string, now: number): void;
  linkDown(peer: string): boolean;
  /** Handle one frame from `peer`; never throws for bad input. */
  receive(peer: string, frame: Uint8Array, now: number): void;
  /** Frames to send now. */
  dataToSend(now: number): Array<[string, Uint8Array]>;
  hasOutput(): boolean;
  /** Heartbeats, dead links, lazy acks, SYNC resends, anti-entropy. */
  tick(now: number): void;
  /** When `tick` next has work; null without links. */
  nextDeadline(): number | null;
  takeEvents(): EngineEvent[];
  /**
   * Someone awaits agreement (`synced()`), or stopped: while on, acks go out at once and
   * UPDATEs carry `want_ack`; turning it on sends every linked peer our state of every
   * store with `want_ack` (the reference's `want_acks`).
   */
  wantAcks(eager: boolean): void;
  /** Every linked peer reported holding exactly this peer's state of every store. */
  isSynced(): boolean;
}
