export const HELLO: 0;
export const SYNC: 1;
export const DIFF: 2;
export const UPDATE: 3;
export const ACK: 4;
export const HEARTBEAT: 5;
export const LINKS: 6;
export const CHUNK: 7;
export const COMPRESSED: 8;
export const KIND_NAMES: Map<number, string>;
export const SV_ENTRIES_PER_ITEM: 8;

/** Store name to bytes (an update, an encoded state vector, a digest). */
export type Blobs = Map<string, Uint8Array>;

export interface Hello {
  kind: 0;
  peer: string;
  links: string[];
}
export interface Sync {
  kind: 1;
  states: Blobs;
  wantSync: boolean;
  more: boolean;
  digests: Blobs | null;
}
export interface Diff {
  kind: 2;
  diffs: Blobs;
  states: Blobs;
  digests: Blobs | null;
}
export interface Update {
  kind: 3;
  updates: Map<string, Uint8Array[]>;
  states: Blobs;
  wantAck: boolean;
}
export interface Ack {
  kind: 4;
  states: Blobs;
  wantAck: boolean;
  digests: Blobs | null;
}
export interface Heartbeat {
  kind: 5;
}
export interface Links {
  kind: 6;
  links: string[];
}
export interface Chunk {
  kind: 7;
  messageId: number | bigint;
  index: number;
  count: number;
  data: Uint8Array;
}
export interface Compressed {
  kind: 8;
  packed: Uint8Array;
}
/** A kind this version does not know: ignored. */
export interface Unknown {
  kind: number | bigint;
}
export type Message = Hello | Sync | Diff | Update | Ack | Heartbeat | Links | Chunk | Compressed;

/** Input that no correct peer sends; `reason` is the §11 counter it counts against. */
export class ProtocolError extends Error {
  constructor(reason: string, message: string);
  readonly reason: string;
}

export function hello(peer: string, links: string[]): Hello;
export function sync(
  states: Blobs,
  options?: { wantSync?: boolean; more?: boolean; digests?: Blobs | null },
): Sync;
export function diff(diffs: Blobs, states: Blobs, digests?: Blobs | null): Diff;
export function update(
  updates: Map<string, Uint8Array[]>,
  states: Blobs,
  options?: { wantAck?: boolean },
): Update;
export function ack(states: Blobs, options?: { wantAck?: boolean; digests?: Blobs | null }): Ack;
export function heartbeat(): Heartbeat;
export function links(links: string[]): Links;
export function chunk(messageId: number | bigint, index: number, count: number, data: Uint8Array): Chunk;
export function compressed(packed: Uint8Array): Compressed;
/** The fields of a message after `[version, kind]`, as the reference writes them. */
export function messageBody(message: Message | Unknown): unknown[];
/** The message of `kind` with the decoded fields `body`, checked; `ProtocolError` if malformed. */
export function parseMessage(kind: number | bigint, body: unknown[]): Message | Unknown;
/** The work the state vectors of a message announce, in items. */
export function stateItems(states: Blobs): number;
