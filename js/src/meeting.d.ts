import { EngineConfig, SyncEngine } from "./engine.js";
import { Stores } from "./store.js";
import { WebSocketConstructor } from "./signaling.js";
import { IceServer } from "./transport/webrtc.js";
import { MeshConfig, MeshOptions } from "./mesh.js";

export const PEER_EVENTS: readonly ["peer_joined", "peer_left", "peer_misbehaved", "signal_refused"];
export type PeerEvent = (typeof PEER_EVENTS)[number];

/** What `synced()` rejects with after its timeout (`name` is "TimeoutError"). */
export class SyncTimeoutError extends Error {}

/** The peer id (`sub`) a join token names, read without verifying it. */
export function tokenSubject(token: string): string | null;

export interface Logger {
  error?(...args: unknown[]): void;
  warn?(...args: unknown[]): void;
  debug?(...args: unknown[]): void;
}

export interface MeetingOptions extends Partial<EngineConfig> {
  /** The signaling server, or several instances sharing rooms (tried in turn). */
  url: string | string[];
  room: string;
  /** Default: the token's subject, else chosen by the server. */
  peerId?: string | null;
  token?: string | null;
  /** Seals signals end to end (PROTOCOL.md §3.4); Node also reads CRDT_STORES_ROOM_KEY. */
  roomKey?: string | null;
  /** STUN/TURN servers; default none (never a public STUN server). */
  iceServers?: Array<string | IceServer>;
  /** Host addresses ICE may use (candidates filtered both ways); Node also reads
   * CRDT_STORES_ICE_ADDRESSES. Default: every address. */
  iceAddresses?: string[] | null;
  /** Default: `globalThis.RTCPeerConnection`, else node-datachannel's polyfill. */
  RTCPeerConnection?: new (config: any) => any;
  /** Default: `globalThis.WebSocket`, else the `ws` package. */
  WebSocket?: WebSocketConstructor;
  webSocketOptions?: object;
  /** Seconds: at most one flush of outgoing frames per interval (default 0.005). */
  flushInterval?: number;
  /** Writes wait while more than this is queued on the data channels (4 MiB). */
  maxBufferedBytes?: number;
  connectTimeout?: number;
  spareAfter?: number;
  joinTimeout?: number;
  leftGrace?: number;
  retryBackoff?: number;
  maxNegotiations?: number;
  signalingOptions?: object;
  /** Where errors of callbacks and warnings go (default `console`; null: nowhere). */
  logger?: Logger | null;
  /** The bounded mesh (PROTOCOL.md §6.9): a full mesh up to `fullMeshMax` peers (16),
   * past it 4 to 12 links per peer (`degreeLow`, `degreeHigh`; `degree` 6 dialed).
   * Peers of one room should use the same `fullMeshMax`. */
  mesh?: MeshOptions | MeshConfig;
}

/** One participant of a room, with the room's replicated stores. */
export class Meeting {
  constructor(options: MeetingOptions);
  /** Joins; resolves once the links to the peers already there opened (or were given up on). */
  join(): Promise<this>;
  /** Delivers what is queued, then closes every link and the signaling connection. */
  leave(): Promise<void>;
  readonly peerId: string;
  readonly room: string;
  /** Peers linked right now (in a bounded mesh, this peer's neighbours). */
  readonly peers: string[];
  /** Every other peer signaling lists in the room, linked or not. */
  readonly roomPeers: string[];
  /** The mesh options in force. */
  readonly mesh: MeshConfig;
  readonly stores: Stores;
  readonly joined: boolean;
  readonly state: "new" | "joining" | "joined" | "left";
  /** Engine and transport counters. */
  readonly stats: Record<string, number>;
  readonly engine: SyncEngine | null;
  on(event: "peer_joined" | "peer_left", callback: (peer: string) => void): () => void;
  on(event: "peer_misbehaved" | "signal_refused", callback: (peer: string, reason: string) => void): () => void;
  off(event: PeerEvent, callback: (...args: any[]) => void): void;
  /** Resolves to the sorted linked peers once they all hold this peer's state and it
   * holds theirs; rejects with a SyncTimeoutError after `timeout` seconds. */
  synced(options?: { timeout?: number | null } | number): Promise<string[]>;
}
