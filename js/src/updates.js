// Yjs v1 updates read before Yjs sees them (PROTOCOL.md §7.2). Yjs trusts its input:
// an update may hold anything a Yjs document can (nested types, strings, Skip structs,
// items in someone else's array), and a lib0 `Any` nested deep enough exhausts the
// stack. So every update from a peer is read here first, by a bounded decoder of the
// v1 format that accepts only the layout of a store, and is refused whole otherwise:
//
// * writer C's struct at clock 0, and only it, is its array: a YArray in the root map
//   `writers` under the key String(C);
// * every later struct of C is entries (ContentAny of Uint8Arrays, each a valid entry),
//   deleted content, or a garbage-collected range;
// * every origin is an earlier entry of C; an item without origins has the array
//   (C, 0) as parent;
// * clocks stay within 2^32 - 1, client ids within 2^53 - 1, varuints are in their
//   shortest form, and nothing follows the delete set; delete ranges never cover an
//   array (clock 0 is clipped out).
//
// The decisions, the reasons (`bad_update`, `too_many_items`) and the messages are the
// reference's (crdt_stores/updates.py), check for check.

import { createEncoder, toUint8Array, writeUint8, writeUint8Array, writeVarUint } from "lib0/encoding";
import { EntryError, entryLimit, parseEntry } from "./entries.js";

/** Yrs keeps clocks and lengths in 32 bits. */
export const MAX_CLOCK = 2 ** 32 - 1;
/** Client ids are 53-bit (JavaScript's safe integers). */
export const MAX_CLIENT = 2 ** 53 - 1;

const ROOT = "writers";
const GC = 0;
const DELETED = 1;
const TYPE = 7;
const ANY = 8;
const SKIP = 10;
const YARRAY = 0;
const BUFFER = 116; // lib0 Any tag of a Uint8Array
const HAS_ORIGIN = 0x80;
const HAS_RIGHT = 0x40;
const HAS_SUB = 0x20;

/** An update that is malformed or holds what the store layout never contains. */
export class InvalidUpdate extends Error {
  /**
   * @param {string} message
   * @param {"bad_update" | "too_many_items"} [reason]
   */
  constructor(message, reason = "bad_update") {
    super(message);
    this.reason = reason;
  }
}

const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

class Reader {
  constructor(data) {
    this.data = data;
    this.pos = 0;
  }

  byte() {
    if (this.pos >= this.data.length) throw new InvalidUpdate("truncated update");
    return this.data[this.pos++];
  }

  /** A lib0 varuint of at most 53 bits (and 9 bytes), in its shortest form. */
  uint() {
    const { data } = this;
    let pos = this.pos;
    let result = 0;
    let shift = 0;
    while (pos < data.length) {
      const byte = data[pos++];
      result += (byte & 0x7f) * 2 ** shift; // (exact below 2^53, which is all we keep)
      if (byte < 0x80) {
        // lib0 writes no leading zero groups (`81 00` for 1)
        if (byte === 0 && shift > 0) throw new InvalidUpdate("non-minimal varuint");
        if (result > MAX_CLIENT) throw new InvalidUpdate("varuint over 53 bits");
        this.pos = pos;
        return result;
      }
      shift += 7;
      if (shift >= 60) throw new InvalidUpdate("varuint over 53 bits");
    }
    throw new InvalidUpdate("truncated varuint");
  }

  /** Skip `raw` if the data continues with it (a client id, encoded). */
  expect(raw) {
    const { data, pos } = this;
    if (pos + raw.length > data.length) return false;
    for (let i = 0; i < raw.length; i++) {
      if (data[pos + i] !== raw[i]) return false;
    }
    this.pos = pos + raw.length;
    return true;
  }

  skip(count) {
    const start = this.pos;
    if (start + count > this.data.length) throw new InvalidUpdate("truncated update");
    this.pos = start + count;
    return start;
  }

  string() {
    const size = this.uint();
    const start = this.skip(size);
    try {
      return UTF8.decode(this.data.subarray(start, start + size));
    } catch {
      throw new InvalidUpdate("bad UTF-8 in a string");
    }
  }
}

/** A lib0 varuint's bytes. */
function varuint(n) {
  const encoder = createEncoder();
  writeVarUint(encoder, n);
  return toUint8Array(encoder);
}

/**
 * @typedef {{client: number, clock: number, end: number, count: number, start: number, stop: number}} Block
 * @typedef {Map<number, Array<[number, number]>>} DeleteSet
 */

/**
 * Read and check a Yjs v1 update from a peer (§7.2); throws `InvalidUpdate` (with its
 * `reason`) unless it holds exactly the store layout.
 *
 * `maxUnits` bounds its structs, entries and delete ranges (the work it causes);
 * `maxValueBytes` is the value limit its entries are checked against (`parseEntry`),
 * unless `checkEntries` is false (an update this peer encoded itself) or the entry lies
 * below `have` (the receiver's state vector: Yjs skips what it holds).
 * @param {Uint8Array} data
 * @param {{maxUnits: number, maxValueBytes: number, checkEntries?: boolean, have?: Map<number, number> | null}} options
 */
export function readUpdate(data, { maxUnits, maxValueBytes, checkEntries = true, have = null, keepStructs = false }) {
  const reader = new Reader(data);
  const blocks = [];
  const entries = checkEntries ? [] : null;
  let units = 0;
  const seen = new Set();
  const blockCount = reader.uint();
  for (let b = 0; b < blockCount; b++) {
    const count = reader.uint();
    const client = reader.uint();
    let clock = reader.uint();
    if (count === 0 || seen.has(client)) {
      throw new InvalidUpdate("empty or repeated client block");
    }
    seen.add(client);
    units += count;
    if (units > maxUnits) throw tooMany(maxUnits);
    const known = have?.get(client) ?? 0;
    const raw = varuint(client); // references must name the client with these bytes
    const structs = keepStructs ? [] : null;
    const block = { client, clock, end: clock, count, start: reader.pos, stop: 0 };
    if (structs !== null) block.structs = structs;
    for (let s = 0; s < count; s++) {
      const start = reader.pos;
      const { length, values, info, right, headEnd, offsets } = readStruct(
        reader,
        raw,
        client,
        clock,
        maxValueBytes,
        entries,
        known,
        keepStructs,
      );
      units += values;
      if (structs !== null) structs.push({ clock, length, start, end: reader.pos, info, right, headEnd, values: offsets });
      if (units > maxUnits) throw tooMany(maxUnits);
      clock += length;
      if (clock > MAX_CLOCK) throw new InvalidUpdate("clock out of range");
    }
    block.end = clock;
    block.stop = reader.pos;
    blocks.push(block);
  }
  const deletesStart = reader.pos;
  /** @type {DeleteSet} */
  const deletes = new Map();
  let clipped = false;
  const clientCount = reader.uint();
  for (let c = 0; c < clientCount; c++) {
    const client = reader.uint();
    const count = reader.uint();
    units += count;
    if (units > maxUnits) throw tooMany(maxUnits);
    let ranges = deletes.get(client);
    if (!ranges) {
      ranges = [];
      deletes.set(client, ranges);
    }
    for (let i = 0; i < count; i++) {
      let clock = reader.uint();
      let length = reader.uint();
      if (length === 0 || clock + length > MAX_CLOCK) {
        throw new InvalidUpdate("bad delete range");
      }
      if (clock === 0) {
        // never delete an array: clip its slot out
        clock = 1;
        length -= 1;
        clipped = true;
        if (!length) continue;
      }
      ranges.push([clock, length]);
    }
    if (!ranges.length) deletes.delete(client);
  }
  if (reader.pos !== data.length) {
    throw new InvalidUpdate("trailing bytes after the update");
  }
  return { data, blocks, deletes, units, entries: entries ?? [], clipped, deletesStart };
}

function tooMany(maxUnits) {
  return new InvalidUpdate(`update holds more than ${maxUnits} items`, "too_many_items");
}

/** One struct at `clock` of the client whose id encodes as `raw`: its length and entries. */
function readStruct(reader, raw, client, clock, maxValueBytes, entries, known, keep = false) {
  const info = reader.byte();
  const ref = info & 0x1f;
  if (ref === GC) {
    const length = reader.uint();
    if (length === 0 || clock === 0) throw new InvalidUpdate("bad garbage-collected range");
    return bounded(clock, length, 0, info);
  }
  if (ref === SKIP) {
    throw new InvalidUpdate("a Skip struct (a gap in a merged update) is never sent");
  }
  if (ref !== DELETED && ref !== TYPE && ref !== ANY) {
    throw new InvalidUpdate(`struct of content type ${ref} is not part of the store layout`);
  }
  let root = false;
  let right = -1;
  if (info & HAS_ORIGIN) sameClientEarlier(reader, raw, clock);
  if (info & HAS_RIGHT) right = sameClientEarlier(reader, raw, clock);
  if (!(info & (HAS_ORIGIN | HAS_RIGHT))) {
    const kind = reader.uint();
    if (kind === 1) {
      if (reader.string() !== ROOT || !(info & HAS_SUB) || reader.string() !== String(client)) {
        throw new InvalidUpdate("a root item must be its writer's array in the writers map");
      }
      root = true;
    } else if (kind === 0) {
      if (!reader.expect(raw) || reader.uint() !== 0 || info & HAS_SUB) {
        throw new InvalidUpdate("an entry's parent must be its own writer's array");
      }
    } else {
      throw new InvalidUpdate("bad parent info");
    }
  }
  if (root !== (clock === 0) || root !== (ref === TYPE)) {
    throw new InvalidUpdate("a writer's first struct, and only it, is its array");
  }
  if (ref === TYPE) {
    if (reader.uint() !== YARRAY) throw new InvalidUpdate("only arrays are part of the store layout");
    return bounded(clock, 1, 0, info, right);
  }
  if (ref === DELETED) {
    const length = reader.uint();
    if (length === 0) throw new InvalidUpdate("empty deleted content");
    return bounded(clock, length, 0, info, right);
  }
  const headEnd = reader.pos;
  const count = reader.uint();
  if (count === 0) throw new InvalidUpdate("empty content");
  const offsets = readEntries(reader, count, clock, maxValueBytes, entries, known, keep);
  return bounded(clock, count, count, info, right, headEnd, offsets);
}

function bounded(clock, length, values, info, right = -1, headEnd = 0, offsets = null) {
  if (clock + length > MAX_CLOCK) throw new InvalidUpdate("clock out of range");
  return { length, values, info, right, headEnd, offsets };
}

/** An origin: it must be an earlier entry (not the array slot) of the same writer. */
function sameClientEarlier(reader, raw, clock) {
  if (!reader.expect(raw)) {
    throw new InvalidUpdate("an item may only refer to earlier entries of its own writer");
  }
  const at = reader.uint();
  if (!(at >= 1 && at < clock)) {
    throw new InvalidUpdate("an item may only refer to earlier entries of its own writer");
  }
  return at;
}

/** `count` Any values, each a Uint8Array holding an entry (checked into `entries`); the
 * offset of each value if `keep`, else null. */
function readEntries(reader, count, clock, maxValueBytes, entries, known, keep) {
  const limit = entryLimit(maxValueBytes);
  const { data } = reader;
  const end = data.length;
  let pos = reader.pos;
  const offsets = keep ? [] : null;
  for (let i = 0; i < count; i++) {
    if (offsets !== null) offsets.push(pos);
    if (pos + 2 > end || data[pos] !== BUFFER) {
      throw new InvalidUpdate("an entry must be a byte string");
    }
    let size = data[pos + 1];
    if (size < 0x80) {
      pos += 2;
    } else {
      reader.pos = pos + 1;
      size = reader.uint();
      pos = reader.pos;
      if (size > limit) throw new InvalidUpdate(`entry of ${size} bytes is over the value limit`);
    }
    const at = pos;
    pos += size;
    if (pos > end) throw new InvalidUpdate("truncated update");
    if (entries !== null && clock + i >= known) {
      try {
        entries.push(parseEntry(data.subarray(at, pos), maxValueBytes));
      } catch (error) {
        if (error instanceof EntryError) throw new InvalidUpdate(`bad entry: ${error.message}`);
        throw error;
      }
    }
  }
  reader.pos = pos;
  return offsets;
}

/**
 * The bytes of a delete set as Yjs v1 writes it (clients in the map's order).
 * @param {DeleteSet} deletes
 */
export function encodeDeletes(deletes) {
  const encoder = createEncoder();
  writeVarUint(encoder, deletes.size);
  for (const [client, ranges] of deletes) {
    writeVarUint(encoder, client);
    writeVarUint(encoder, ranges.length);
    for (const [clock, length] of ranges) {
      writeVarUint(encoder, clock);
      writeVarUint(encoder, length);
    }
  }
  return toUint8Array(encoder);
}

/**
 * What of a read update may be handed to Yjs: its bytes, or, when a delete range
 * covered an array (`clipped`), the same structs with the clipped delete set.
 * @param {{data: Uint8Array, deletes: DeleteSet, clipped: boolean, deletesStart: number}} update
 */
export function applicable(update) {
  if (!update.clipped) return update.data;
  const tail = encodeDeletes(update.deletes);
  const out = new Uint8Array(update.deletesStart + tail.length);
  out.set(update.data.subarray(0, update.deletesStart));
  out.set(tail, update.deletesStart);
  return out;
}

// -- writing: big updates cut into parts (crdt_stores/_update_writing.py) -------------

/** Concatenate byte arrays. */
function concat(pieces, total) {
  const out = new Uint8Array(total);
  let at = 0;
  for (const piece of pieces) {
    out.set(piece, at);
    at += piece.length;
  }
  return out;
}

/**
 * An update from encoded blocks (each: struct count, client, clock, structs) and a
 * delete set.
 * @param {Uint8Array[]} blocks
 * @param {DeleteSet} deletes
 */
export function encodeUpdate(blocks, deletes) {
  const head = varuint(blocks.length);
  const tail = encodeDeletes(deletes);
  let total = head.length + tail.length;
  for (const block of blocks) total += block.length;
  return concat([head, ...blocks, tail], total);
}

/**
 * Cut an update into parts of at most `maxBytes` and `maxUnits` each, with the
 * reference's boundaries byte for byte (`crdt_stores._update_writing.split`).
 *
 * Applied in order, the parts have the effect of the whole: each writer's structs stay
 * in clock order, an entry list too long for one part continues in the next with an
 * origin pointing at the last entry before it (as Yjs itself encodes a partial item),
 * and the deletions come last. A single entry bigger than `maxBytes` makes a part of
 * its own.
 * @param {Update} update read with `keepStructs: true`
 * @param {number} maxBytes
 * @param {number} maxUnits
 * @returns {Uint8Array[]}
 */
export function split(update, maxBytes, maxUnits) {
  const { data } = update;
  const parts = [];
  let blocks = []; // encoded blocks of the part being filled
  let size = 0;
  let units = 0;
  let current = []; // structs of the block being filled
  let currentBytes = 0;
  let currentClient = -1;
  let currentClock = 0;

  const closeBlock = () => {
    if (!current.length) return;
    const encoder = createEncoder();
    writeVarUint(encoder, current.length);
    writeVarUint(encoder, currentClient);
    writeVarUint(encoder, currentClock);
    const head = toUint8Array(encoder);
    blocks.push(concat([head, ...current], head.length + currentBytes));
    size += head.length;
    current = [];
    currentBytes = 0;
  };
  const closePart = () => {
    closeBlock();
    if (blocks.length) parts.push(encodeUpdate(blocks, new Map()));
    blocks = [];
    size = 0;
    units = 0;
  };
  const add = (piece, clock, cost) => {
    if ((blocks.length || current.length) && (size + piece.length + 32 > maxBytes || units + cost > maxUnits)) {
      closePart();
    }
    if (!current.length) currentClock = clock;
    current.push(piece);
    currentBytes += piece.length;
    size += piece.length;
    units += cost;
  };

  for (const block of update.blocks) {
    closeBlock();
    currentClient = block.client;
    if (!block.structs) throw new TypeError("split needs an update read with keepStructs: true");
    for (const struct of block.structs) {
      const { values } = struct;
      const whole = struct.end - struct.start;
      if (values === null || (whole <= maxBytes && 1 + values.length <= maxUnits)) {
        add(data.subarray(struct.start, struct.end), struct.clock, 1 + (values ? values.length : 0));
        continue;
      }
      for (const [first, last] of valueRuns(struct, maxBytes, maxUnits)) {
        add(partial(data, block.client, struct, first, last), struct.clock + first, 1 + last - first);
      }
    }
  }
  closePart();
  if (update.deletes.size) parts.push(...splitDeletes(update.deletes, maxUnits));
  return parts.length ? parts : [encodeUpdate([], new Map())];
}

/** Runs `[first, last)` of an Any struct's values that fit the limits. */
function* valueRuns(struct, maxBytes, maxUnits) {
  const { values } = struct;
  const ends = [...values.slice(1), struct.end];
  const budget = Math.max(maxBytes - 64, 1);
  let first = 0;
  while (first < values.length) {
    let last = first + 1;
    while (last < values.length && ends[last] - values[first] <= budget && last - first < maxUnits - 1) last++;
    yield [first, last];
    first = last;
  }
}

/** The values `[first, last)` of an Any struct, encoded as a struct of their own. */
function partial(data, client, struct, first, last) {
  const { values } = struct;
  const end = last < values.length ? values[last] : struct.end;
  const encoder = createEncoder();
  if (first === 0) {
    writeUint8Array(encoder, data.subarray(struct.start, struct.headEnd));
  } else {
    // A continuation: the origin is the entry just before (how Yjs encodes a split item).
    writeUint8(encoder, HAS_ORIGIN | (struct.info & (HAS_RIGHT | HAS_SUB)) | ANY);
    writeVarUint(encoder, client);
    writeVarUint(encoder, struct.clock + first - 1);
    if (struct.right >= 0) {
      writeVarUint(encoder, client);
      writeVarUint(encoder, struct.right);
    }
  }
  writeVarUint(encoder, last - first);
  writeUint8Array(encoder, data.subarray(values[first], end));
  return toUint8Array(encoder);
}

/** A delete set in parts of fewer than `maxUnits` ranges, in order. */
function splitDeletes(deletes, maxUnits) {
  const parts = [];
  let chunk = new Map();
  let units = 0;
  for (const [client, ranges] of deletes) {
    for (const range of ranges) {
      if (units >= maxUnits - 1) {
        parts.push(encodeUpdate([], chunk));
        chunk = new Map();
        units = 0;
      }
      let list = chunk.get(client);
      if (!list) chunk.set(client, (list = []));
      list.push(range);
      units += 1;
    }
  }
  if (chunk.size) parts.push(encodeUpdate([], chunk));
  return parts;
}
