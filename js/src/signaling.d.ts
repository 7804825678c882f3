/** The largest message taken from the signaling server (a welcome lists the whole room). */
export const MAX_MESSAGE_BYTES: number;
/** The largest message the server takes (`Limits.max_message_bytes`, 64 KiB). */
export const MAX_SEND_BYTES: number;

/** A join refused or no server reached: `reason` is the server's error code or one of
 * `unreachable`, `timeout`, `closed`, `bad-welcome`, `bad-url`; `code` the close code. */
export class JoinError extends Error {
  constructor(message: string, reason?: string, code?: number | null);
  reason: string;
  code: number | null;
  /** A token problem: no other URL nor a retry helps. */
  readonly auth: boolean;
}

/** The part of a WebSocket this client uses (the browser's, or the `ws` package's). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: any) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onerror: ((event: any) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
}

export type WebSocketConstructor = new (url: string, protocols?: undefined, options?: any) => WebSocketLike;

export interface SignalingOptions {
  /** One URL or several (instances sharing rooms), tried in turn. */
  url: string | string[];
  room: string;
  /** null: the server picks one. */
  peerId?: string | null;
  /** A join token (PROTOCOL.md §2.5). */
  token?: string | null;
  /** Defaults to `globalThis.WebSocket`; in Node pass `WebSocket` from `ws`. */
  WebSocket?: WebSocketConstructor;
  /** Third constructor argument (the `ws` package only, e.g. `{ maxPayload }`). */
  webSocketOptions?: object;
  /** Seconds for connecting and the welcome (default 10). */
  openTimeout?: number;
  /** Seconds between reconnect rounds at most (default 5). */
  maxBackoff?: number;
  /** Called with what a listener threw (listeners never break the client). */
  onListenerError?: (error: unknown, type: string) => void;
}

export interface SignalingEvents {
  peerJoined: { peer: string };
  peerLeft: { peer: string };
  signal: { peer: string; data: Record<string, unknown> };
  disconnected: { code: number | null; reason: string };
  restored: { peers: string[] };
  serverError: { code: string; reason: string };
  stopped: { reason: "auth" | "taken-over" };
}

/** One peer's connection to the signaling server (PROTOCOL.md §2). */
export class SignalingClient {
  constructor(options: SignalingOptions);
  readonly urls: string[];
  readonly room: string;
  /** Set by the welcome when the server picked it. */
  readonly peerId: string | null;
  readonly token: string | null;
  readonly openTimeout: number;
  readonly maxBackoff: number;
  readonly connected: boolean;
  /** The resume secret from the last welcome (§2.3). */
  readonly resume: string | null;
  /** Seconds between pings, from the welcome. */
  readonly heartbeat: number | null;
  /** The other peers in the room, as far as the server said. */
  readonly peers: Set<string>;
  /** The URL in use (or tried last). */
  readonly url: string;
  on<K extends keyof SignalingEvents>(type: K, listener: (detail: SignalingEvents[K]) => void): () => void;
  off<K extends keyof SignalingEvents>(type: K, listener: (detail: SignalingEvents[K]) => void): void;
  /** Joins the room (once); resolves to the other peers there. Rejects with a JoinError. */
  join(): Promise<string[]>;
  /** Sends `data` to `peer`; false when signaling is down or the message is too big. */
  signal(peer: string, data: Record<string, unknown>): boolean;
  /** Leaves the room for good: no reconnect. */
  close(): void;
}
