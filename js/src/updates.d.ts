import { ParsedEntry } from "./entries.js";

export const MAX_CLOCK: number;
export const MAX_CLIENT: number;

/** An update that is malformed or holds what the store layout never contains. */
export class InvalidUpdate extends Error {
  constructor(message: string, reason?: "bad_update" | "too_many_items");
  readonly reason: "bad_update" | "too_many_items";
}

/** The structs of one client in an update: clocks `clock` to `end`, bytes `start` to `stop`. */
export interface Block {
  client: number;
  clock: number;
  end: number;
  count: number;
  start: number;
  stop: number;
  /** each struct, only when read with `keepStructs` (`split` needs them) */
  structs?: Struct[];
}

/** One struct of a block (read with `keepStructs`): where its bytes are, which clocks it covers. */
export interface Struct {
  clock: number;
  length: number;
  /** offset of its info byte in the update */
  start: number;
  /** offset just past it */
  end: number;
  info: number;
  /** clock of its right origin, or -1 */
  right: number;
  /** Any items: offset of the value count (header bytes before it) */
  headEnd: number;
  /** Any items: offset of each value; null for other structs */
  values: number[] | null;
}

/** Client id to `[clock, length]` delete ranges. */
export type DeleteSet = Map<number, Array<[number, number]>>;

/** A read and checked update. */
export interface Update {
  data: Uint8Array;
  blocks: Block[];
  deletes: DeleteSet;
  /** structs + entries + delete ranges */
  units: number;
  entries: ParsedEntry[];
  /** a delete range lost an array's slot: hand `applicable(update)` to Yjs, not `data` */
  clipped: boolean;
  deletesStart: number;
}

export interface ReadOptions {
  maxUnits: number;
  maxValueBytes: number;
  checkEntries?: boolean;
  have?: Map<number, number> | null;
  /** keep a description of every struct (`split` needs it) */
  keepStructs?: boolean;
}

/** Read and check a Yjs v1 update from a peer (§7.2); throws `InvalidUpdate`. */
export function readUpdate(data: Uint8Array, options: ReadOptions): Update;
/** The bytes of a delete set as Yjs v1 writes it. */
export function encodeDeletes(deletes: DeleteSet): Uint8Array;
/** What of a read update may be handed to Yjs (its delete set clipped if needed). */
export function applicable(update: Pick<Update, "data" | "deletes" | "clipped" | "deletesStart">): Uint8Array;
/** An update from encoded blocks (struct count, client, clock, structs) and a delete set. */
export function encodeUpdate(blocks: Uint8Array[], deletes: DeleteSet): Uint8Array;
/**
 * Cut an update (read with `keepStructs: true`) into parts of at most `maxBytes` and
 * `maxUnits` each that, applied in order, do what the whole does: the reference's
 * boundaries (`crdt_stores._update_writing.split`), byte for byte.
 */
export function split(update: Update, maxBytes: number, maxUnits: number): Uint8Array[];
