import { WebSocketConstructor } from "../signaling.js";

export const CHANNEL_ID: 0;
export const CHANNEL_LABEL: "crdt-stores";
export const MAX_ATTEMPTS: number;
export const MAX_NEGOTIATIONS: number;
export const OFFERS_PER_SECOND: number;
export const OFFER_BURST: number;
export const MAX_CANDIDATES: number;
export const MAX_SDP_CHARS: number;
export const MAX_SESSION_CHARS: number;
export const ICE_ADDRESSES_ENV: "CRDT_STORES_ICE_ADDRESSES";
export const ROOM_KEY_ENV: "CRDT_STORES_ROOM_KEY";

export interface IceServer {
  urls: string | string[];
  username?: string;
  credential?: string;
}

/** `given`, else CRDT_STORES_ICE_ADDRESSES (Node), else null (every address); lowercased. */
export function hostAddresses(given?: string[] | null): string[] | null;
/** The address of an `a=candidate:` line, or null. */
export function candidateAddress(line: string): string | null;
/** `sdp` with only the candidates whose address is listed (null: all). */
export function filterCandidates(sdp: string, addresses: string[] | null): string;
export function countCandidates(sdp: string): number;
export type ReadSignal =
  | { kind: "offer" | "answer"; session: string; sdp: string }
  | { kind: "busy"; session: string }
  | { kind: "ignore" }
  | { refused: string };
/** A signal payload checked as PROTOCOL.md §3.1 says. */
export function readSignal(data: Record<string, unknown>): ReadSignal;
export function parseIceServers(servers?: Array<string | IceServer> | null): IceServer[];
/** `a < b` by Unicode code points. */
export function idLess(a: string, b: string): boolean;
export function defaultPeerConnection(): Promise<new (config: any) => any>;
export function defaultWebSocket(): Promise<WebSocketConstructor>;

export interface TransportHandler {
  linkUp(peer: string): void;
  linkDown(peer: string): void;
  frame(peer: string, data: Uint8Array): void;
  signalRefused?(peer: string, reason: string): void;
  /** Whether to answer `peer`'s offer; false: decline it with `busy` (default: answer). */
  acceptsLink?(peer: string): boolean;
  /** `peer` answered `busy` to our offer (no attempt at it is left). */
  linkRefused?(peer: string): void;
  /** Whom to offer to among the others in the room, on joining and on rejoining
   * signaling (default: all of them). */
  chooseLinks?(present: string[]): string[];
  /** Whether a failed link to `peer` is retried (by the smaller id; default: yes). */
  retriesLink?(peer: string): boolean;
}

export interface WebRTCOptions {
  url: string | string[];
  room: string;
  peerId?: string | null;
  token?: string | null;
  roomKey?: string | null;
  iceServers?: Array<string | IceServer>;
  iceAddresses?: string[] | null;
  RTCPeerConnection?: new (config: any) => any;
  WebSocket?: WebSocketConstructor;
  webSocketOptions?: object;
  signalingOptions?: object;
  /** Seconds (reference defaults: 20, 2, 15, 2.5, 1). */
  connectTimeout?: number;
  spareAfter?: number;
  joinTimeout?: number;
  leftGrace?: number;
  retryBackoff?: number;
  maxNegotiations?: number;
  log?: { warn?(...a: unknown[]): void; error?(...a: unknown[]): void; debug?(...a: unknown[]): void } | null;
}

/** Links to the other peers of a room over W3C RTCPeerConnection data channels. */
export class WebRTCTransport {
  constructor(options: WebRTCOptions);
  peerId: string;
  readonly room: string;
  readonly iceAddresses: string[] | null;
  readonly stats: Record<string, number>;
  start(handler: TransportHandler): Promise<void>;
  send(peer: string, data: Uint8Array): void;
  presentPeers(): Set<string>;
  /** The room's size as signaling lists it, this peer counted. */
  roomSize(): number;
  /** Offer to `peer` unless linked or an attempt is under way. */
  dial(peer: string): void;
  /** Close the link to `peer` without retrying (the mesh prunes it). */
  dropLink(peer: string): void;
  bufferedTo(peer: string): number;
  bufferedAmount(): number;
  drain(lowWater: number): Promise<void>;
  closeLink(peer: string): void;
  close(): Promise<void>;
  signal(peer: string, data: Record<string, unknown>): void;
  peerLeft(peer: string): void;
  signalingRestored(peers: string[]): void;
}
