// The messages of the peer-to-peer protocol (PROTOCOL.md §5.2): plain objects with a
// numeric `kind`, built by the functions below and checked by `parseMessage`, which
// raises `ProtocolError` for anything malformed (the reference's checks, in its order,
// with its messages), so that later stages only ever see well-formed messages. Fields
// after the known ones are ignored (room for later versions).

import { countEntries } from "./statevector.js";

export const HELLO = 0;
export const SYNC = 1;
export const DIFF = 2;
export const UPDATE = 3;
export const ACK = 4;
export const HEARTBEAT = 5;
export const LINKS = 6;
export const CHUNK = 7;
export const COMPRESSED = 8;

/** The name of every kind this version knows (what `index.json` calls them). */
export const KIND_NAMES = new Map([
  [HELLO, "hello"],
  [SYNC, "sync"],
  [DIFF, "diff"],
  [UPDATE, "update"],
  [ACK, "ack"],
  [HEARTBEAT, "heartbeat"],
  [LINKS, "links"],
  [CHUNK, "chunk"],
  [COMPRESSED, "compressed"],
]);

/** A state-vector entry costs an eighth of an item (§11, `max_message_items`). */
export const SV_ENTRIES_PER_ITEM = 8;

/** Input that no correct peer sends; `reason` is the §11 counter it counts against. */
export class ProtocolError extends Error {
  /**
   * @param {string} reason
   * @param {string} message
   */
  constructor(reason, message) {
    super(message);
    this.reason = reason;
  }
}

/**
 * HELLO: the sender's peer id and the peers it is linked to.
 * @param {string} peer
 * @param {string[]} links
 */
export function hello(peer, links) {
  return { kind: HELLO, peer, links };
}

/**
 * SYNC: what the sender holds; with `wantSync`, "and send me your SYNC"; `more`:
 * further parts follow. `digests` null: not sent.
 * @param {Map<string, Uint8Array>} states
 */
export function sync(states, { wantSync = false, more = false, digests = null } = {}) {
  return { kind: SYNC, states, wantSync, more, digests };
}

/**
 * DIFF: one update per store of what the receiver lacks, with the sender's states.
 * @param {Map<string, Uint8Array>} diffs
 * @param {Map<string, Uint8Array>} states
 * @param {Map<string, Uint8Array> | null} [digests]
 */
export function diff(diffs, states, digests = null) {
  return { kind: DIFF, diffs, states, digests };
}

/**
 * UPDATE: live deltas per store, in order, with some of the sender's states.
 * @param {Map<string, Uint8Array[]>} updates
 * @param {Map<string, Uint8Array>} states
 */
export function update(updates, states, { wantAck = false } = {}) {
  return { kind: UPDATE, updates, states, wantAck };
}

/**
 * ACK: what the sender holds now; with `wantAck`, "tell me yours".
 * @param {Map<string, Uint8Array>} states
 */
export function ack(states, { wantAck = false, digests = null } = {}) {
  return { kind: ACK, states, wantAck, digests };
}

/** HEARTBEAT: no body. */
export function heartbeat() {
  return { kind: HEARTBEAT };
}

/**
 * LINKS: the peers the sender is linked to now.
 * @param {string[]} links
 */
export function links(links) {
  return { kind: LINKS, links };
}

/**
 * CHUNK: part `index` of `count` of a message too big for one frame.
 * @param {number | bigint} messageId
 * @param {number} index
 * @param {number} count
 * @param {Uint8Array} data
 */
export function chunk(messageId, index, count, data) {
  return { kind: CHUNK, messageId, index, count, data };
}

/**
 * COMPRESSED: a whole message as a zlib stream.
 * @param {Uint8Array} packed
 */
export function compressed(packed) {
  return { kind: COMPRESSED, packed };
}

/**
 * The fields of a message after `[version, kind]`, as the reference writes them
 * (optional digests only when present).
 * @param {any} message
 * @returns {unknown[]}
 */
export function messageBody(message) {
  const withDigests = (body, digests) => (digests == null ? body : [...body, digests]);
  switch (message.kind) {
    case HELLO:
      return [message.peer, message.links];
    case SYNC:
      return withDigests([message.states, message.wantSync, message.more], message.digests);
    case DIFF:
      return withDigests([message.diffs, message.states], message.digests);
    case UPDATE:
      return [message.updates, message.states, message.wantAck];
    case ACK:
      return withDigests([message.states, message.wantAck], message.digests);
    case LINKS:
      return [message.links];
    case CHUNK:
      return [message.messageId, message.index, message.count, message.data];
    case COMPRESSED:
      return [message.packed];
    default:
      return []; // HEARTBEAT, and kinds this version does not know
  }
}

const isInt = (value) => typeof value === "number" || typeof value === "bigint";

/**
 * The message of `kind` with the decoded fields `body`, checked; `ProtocolError`
 * (`malformed`) if it is not well-formed. A kind this version does not know gives
 * `{kind}`, to be ignored.
 * @param {number | bigint} kind
 * @param {unknown[]} body
 */
export function parseMessage(kind, body) {
  const field = (index) => {
    if (index >= body.length) {
      throw new ProtocolError("malformed", `message of kind ${kind} is too short`);
    }
    return body[index];
  };
  switch (kind) {
    case HELLO: {
      const peer = field(0);
      if (typeof peer !== "string") throw new ProtocolError("malformed", "hello needs a peer id");
      return hello(peer, stringList(field(1), "links"));
    }
    case SYNC:
      return sync(bytesMap(field(0), "states"), {
        wantSync: flag(body, 1),
        more: flag(body, 2),
        digests: digestsAt(body, 3),
      });
    case DIFF: {
      const diffs = bytesMap(field(0), "diffs");
      return diff(diffs, bytesMap(field(1), "states"), digestsAt(body, 2));
    }
    case UPDATE: {
      const updates = field(0);
      if (!(updates instanceof Map) || !everyEntry(updates, isDeltaList)) {
        throw new ProtocolError("malformed", "updates must map store names to lists of bytes");
      }
      return update(updates, bytesMap(field(1), "states"), { wantAck: flag(body, 2) });
    }
    case ACK:
      return ack(bytesMap(field(0), "states"), { wantAck: flag(body, 1), digests: digestsAt(body, 2) });
    case HEARTBEAT:
      return heartbeat();
    case LINKS:
      return links(stringList(field(0), "links"));
    case CHUNK: {
      if (body.length < 4) throw new ProtocolError("malformed", "chunk frame too short");
      const [messageId, index, count, data] = body;
      const ok =
        isInt(messageId) &&
        isInt(index) &&
        isInt(count) &&
        data instanceof Uint8Array &&
        0 <= index &&
        index < count;
      if (!ok) throw new ProtocolError("malformed", "bad chunk header");
      return chunk(messageId, /** @type {number} */ (index), /** @type {number} */ (count), data);
    }
    case COMPRESSED: {
      const packed = field(0);
      if (!(packed instanceof Uint8Array)) {
        throw new ProtocolError("malformed", "compressed message must be bytes");
      }
      return compressed(packed);
    }
    default:
      return { kind };
  }
}

function everyEntry(map, check) {
  for (const [name, value] of map) {
    if (typeof name !== "string" || !name || !check(value)) return false;
  }
  return true;
}

function isDeltaList(value) {
  return Array.isArray(value) && value.every((delta) => delta instanceof Uint8Array);
}

/** An optional flag: set only by CBOR `true`. */
function flag(body, index) {
  return body.length > index && body[index] === true;
}

function bytesMap(value, what) {
  if (!(value instanceof Map)) throw new ProtocolError("malformed", `${what} must be a map`);
  if (!everyEntry(value, (blob) => blob instanceof Uint8Array)) {
    throw new ProtocolError("malformed", `${what} must map store names to bytes`);
  }
  return value;
}

function digestsAt(body, index) {
  if (body.length <= index) return null;
  const digests = bytesMap(body[index], "digests");
  for (const digest of digests.values()) {
    if (digest.length > 32) throw new ProtocolError("malformed", "a digest is at most 32 bytes");
  }
  return digests;
}

function stringList(value, what) {
  if (!Array.isArray(value) || !value.every((item) => typeof item === "string")) {
    throw new ProtocolError("malformed", `${what} must be a list of strings`);
  }
  return value;
}

/**
 * The work the state vectors of a message announce, in items (an entry counts an
 * eighth); `ProtocolError` `malformed_state` if one does not even start like one.
 * @param {Map<string, Uint8Array>} states
 */
export function stateItems(states) {
  let entries = 0;
  for (const encoded of states.values()) {
    try {
      entries += Number(countEntries(encoded));
    } catch {
      throw new ProtocolError("malformed_state", "malformed state vector");
    }
  }
  return Math.floor(entries / SV_ENTRIES_PER_ITEM);
}
