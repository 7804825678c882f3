// The peer-to-peer sync state machine (PROTOCOL.md §6), sans I/O: bytes in, bytes out,
// time always an argument. One `SyncEngine` per participant holds every store replica
// and the state of every link; the driver feeds it `linkUp`, `linkDown`, `receive` and
// local `write`s, calls `tick` at `nextDeadline()`, sends what `dataToSend` returns and
// reads what happened from `takeEvents` (plain objects, never callbacks). The reference
// is crdt_stores/protocol.py (with link.py, outbox.py, repair.py).
//
// This increment: handshake (HELLO, SYNC, DIFF), live UPDATEs, lazy and immediate ACKs
// with state vectors and deletion digests, relay (§6.5), heartbeats and dead links, a
// minimal anti-entropy (a persisting gap is repaired with a DIFF, with backoff). Not yet:
// splitting big syncs and batches into 1 MiB / 8,192-item parts (§6.2, §6.1 `more`),
// `want_acks`/eager acks, transport backlog, the bounded mesh (§6.9).

import { intake, isStoreName } from "./intake.js";
import * as M from "./messages.js";
import { StoreReplica } from "./replica.js";
import { covers, encodeStateVector } from "./statevector.js";
import { DEFAULT_MAX_VALUE_BYTES, checkKey } from "./values.js";
import { Budget, MAX_FRAME_BYTES, Reassembler, encodeMessage, frames } from "./wire.js";

const MiB = 1024 * 1024;

/** The reference defaults (`crdt_stores.config.SyncConfig`), in seconds and bytes. */
export const DEFAULT_CONFIG = Object.freeze({
  heartbeatInterval: 1.0,
  deadAfter: 6.0,
  syncInterval: 1.0,
  ackDelay: 0.25,
  maxValueBytes: DEFAULT_MAX_VALUE_BYTES,
  maxFrameBytes: MAX_FRAME_BYTES,
  maxMessageBytes: 4 * MiB,
  maxMessageItems: 16_384,
  maxLinkBufferBytes: 8 * MiB,
  maxBufferBytes: 64 * MiB,
  maxStores: 1_000,
  violationBudget: 16,
});

/** Reasons a correct peer never causes: they count against a link's budget. */
export const VIOLATIONS = new Set([
  "malformed",
  "unsupported_version",
  "oversize",
  "over_budget",
  "too_many_items",
  "bad_update",
  "malformed_state",
  "bad_store_name",
]);

/** The local writes `SyncEngine.write` takes (both spellings), to replica methods. */
const WRITE_OPERATIONS = new Map([
  ["set", "set"],
  ["update", "update"],
  ["delete", "delete"],
  ["bulkSet", "bulkSet"],
  ["bulk_set", "bulkSet"],
  ["bulkDelete", "bulkDelete"],
  ["bulk_delete", "bulkDelete"],
  ["clear", "clear"],
]);

const EMPTY_SV = new Map();

const hex = (bytes) => Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");

const sameBytes = (a, b) => a.length === b.length && a.every((byte, i) => byte === b[i]);

function newLink(peer, now, reassembler) {
  return {
    peer,
    lastRecv: now,
    lastSent: now,
    reassembler,
    violations: 0,
    /** @type {Set<string> | null} peers its last HELLO/LINKS listed */
    remoteLinks: null,
    syncComplete: false, // the peer's complete SYNC has arrived
    syncSeen: new Set(), // stores named by earlier parts of a SYNC
    lastSyncSent: -Infinity,
    /** @type {Map<string, Map<number, number>>} per-writer maximum of its reports */
    remote: new Map(),
    /** @type {Map<string, Uint8Array | null>} its last digest per store (null: unknown) */
    remoteDigest: new Map(),
    /** @type {Map<string, string>} the local state each diff sent on this link was for */
    sentDiffs: new Map(),
    /** @type {Map<string, {key: string, count: number}>} anti-entropy: gaps seen */
    gaps: new Map(),
    out: {
      hello: true,
      sync: true,
      links: false,
      heartbeat: false,
      wantAck: false,
      /** @type {Map<string, Uint8Array | null>} store -> the peer's state vector (null: all) */
      diffs: new Map(),
      /** @type {Map<string, Uint8Array[]>} */
      updates: new Map(),
      /** @type {Set<string>} */
      statesNow: new Set(),
      /** @type {Map<string, number>} store -> when its lazy ack is due */
      ackLater: new Map(),
    },
  };
}

/** Replicates a set of named stores with every linked peer. */
export class SyncEngine {
  /**
   * @param {string} peerId
   * @param {Partial<typeof DEFAULT_CONFIG>} [config]
   */
  constructor(peerId, config = {}) {
    this.peerId = peerId;
    this.config = { ...DEFAULT_CONFIG, ...config };
    /** @type {Map<string, StoreReplica>} */
    this.stores = new Map();
    /** @type {Map<string, ReturnType<typeof newLink>>} */
    this.links = new Map();
    /** @type {object[]} */
    this.events = [];
    /** @type {Map<string, number>} */
    this.stats = new Map();
    this.now = 0;
    this.messageId = 0;
    this.nextSyncCheck = 0;
    this.buffers = new Budget(this.config.maxBufferBytes);
  }

  count(name, n = 1) {
    this.stats.set(name, (this.stats.get(name) ?? 0) + n);
  }

  // -- stores ---------------------------------------------------------------------

  /** @param {string} name */
  store(name) {
    return this.stores.get(name) ?? null;
  }

  /** Get or create a store; a new one is announced to every linked peer (an ACK). */
  createStore(name) {
    let replica = this.stores.get(name);
    if (replica) return replica;
    checkKey(name, "store name");
    if (this.stores.size >= this.config.maxStores) {
      throw new RangeError(`a meeting holds at most ${this.config.maxStores} stores`);
    }
    replica = this.addStore(name);
    for (const link of this.links.values()) link.out.statesNow.add(name);
    return replica;
  }

  addStore(name) {
    const replica = new StoreReplica(name, {
      maxValueBytes: this.config.maxValueBytes,
      maxUpdateItems: this.config.maxMessageItems,
      trackChanges: true,
    });
    this.stores.set(name, replica);
    this.events.push({ type: "StoreAdded", store: name });
    return replica;
  }

  /** Store `name` as a peer names it: created here if new and allowed (§6.8). */
  remoteStore(link, name) {
    const replica = this.stores.get(name);
    if (replica) return replica;
    if (!isStoreName(name)) {
      this.violation(link, "bad_store_name");
      return null;
    }
    if (this.stores.size >= this.config.maxStores) {
      this.count("stores_refused");
      return null;
    }
    const added = this.addStore(name);
    for (const other of this.links.values()) if (other !== link) this.ack(other, name);
    return added;
  }

  /**
   * A local write to store `name`: `op` one of set, update, delete, bulkSet (bulk_set),
   * bulkDelete (bulk_delete), clear, with that method's arguments. Bad input throws and
   * changes nothing; the delta is queued for every link.
   * @param {string} name
   * @param {string} op
   * @param {...unknown} args
   */
  write(name, op, ...args) {
    const method = WRITE_OPERATIONS.get(op);
    if (!method) throw new RangeError(`unknown write operation ${JSON.stringify(op)}`);
    const replica = this.stores.get(name);
    if (!replica) throw new RangeError(`no store named ${JSON.stringify(name)}`);
    replica[method](...args);
    this.commit(replica);
  }

  /** Report a replica's changes and queue its local deltas for every link. */
  commit(replica) {
    this.collect(replica);
    const deltas = replica.takeOutbox();
    if (!deltas.length) return;
    for (const link of this.links.values()) queueUpdates(link, replica.name, deltas);
  }

  collect(replica) {
    for (const { changes, local } of replica.takeChanges()) {
      this.events.push({ type: "StoreChanged", store: replica.name, changes, local });
    }
  }

  // -- links ----------------------------------------------------------------------

  get peers() {
    return [...this.links.keys()];
  }

  /** A data channel to `peer` opened (a reconnect is a new link). */
  linkUp(peer, now) {
    this.now = now;
    this.drop(peer);
    const { maxMessageBytes, maxLinkBufferBytes, maxFrameBytes } = this.config;
    const reassembler = new Reassembler(maxMessageBytes, {
      maxLink: maxLinkBufferBytes,
      shared: this.buffers,
      maxFrame: maxFrameBytes,
    });
    this.links.set(peer, newLink(peer, now, reassembler));
    this.announceLinks(peer);
  }

  /** The link to `peer` closed; false if there was none. */
  linkDown(peer) {
    if (!this.drop(peer)) return false;
    this.announceLinks(null);
    return true;
  }

  drop(peer) {
    const link = this.links.get(peer);
    if (!link) return false;
    this.links.delete(peer);
    link.reassembler.clear();
    return true;
  }

  announceLinks(exceptPeer) {
    for (const link of this.links.values()) if (link.peer !== exceptPeer) link.out.links = true;
  }

  /** What happened since the last call, in order (StoreAdded, StoreChanged, LinkDead, PeerMisbehaved). */
  takeEvents() {
    const out = this.events;
    this.events = [];
    return out;
  }

  violation(link, reason) {
    this.count(reason);
    if (!VIOLATIONS.has(reason) || this.links.get(link.peer) !== link) return;
    this.count("violations");
    link.violations += 1;
    if (link.violations > this.config.violationBudget) {
      this.count("links_closed_misbehaving");
      this.linkDown(link.peer);
      this.events.push({ type: "PeerMisbehaved", peer: link.peer, reason, violations: link.violations });
    }
  }

  // -- input ----------------------------------------------------------------------

  /** Handle one frame from `peer`. Never throws for bad input. */
  receive(peer, frame, now) {
    this.now = now;
    const link = this.links.get(peer);
    if (!link) {
      this.count("frame_without_link");
      return;
    }
    link.lastRecv = now;
    this.count("frames_in");
    try {
      const message = link.reassembler.complete(frame);
      if (message !== null) this.handle(link, message);
    } catch (error) {
      if (error instanceof M.ProtocolError) this.violation(link, error.reason);
      else {
        this.count("handler_error");
        this.lastError = error;
      }
    }
  }

  handle(link, message) {
    const { kind } = message;
    if (kind === M.HELLO || kind === M.LINKS) {
      link.remoteLinks = new Set(message.links);
      return;
    }
    if (kind === M.HEARTBEAT) return;
    if (kind !== M.SYNC && kind !== M.ACK && kind !== M.DIFF && kind !== M.UPDATE) {
      this.count("unknown_kind");
      return;
    }
    const checked = intake(message, {
      maxMessageItems: this.config.maxMessageItems,
      maxValueBytes: this.config.maxValueBytes,
      stateOf: (name) => this.stores.get(name)?.stateVectorMap() ?? null,
    });
    for (const { reason } of checked.violations) this.violation(link, reason);
    if (this.links.get(link.peer) !== link) return; // closed for misbehaving
    switch (kind) {
      case M.SYNC:
        if (message.wantSync) link.out.sync = true;
        this.learn(link, checked.states, message.digests);
        this.answerSync(link, message);
        break;
      case M.ACK:
        this.learn(link, checked.states, message.digests);
        if (message.wantAck) for (const name of this.stores.keys()) link.out.statesNow.add(name);
        break;
      case M.DIFF:
        this.apply(link, checked.updates);
        this.learn(link, checked.states, message.digests);
        // Always answer a diff: the sender waits on our state.
        for (const name of message.diffs.keys()) if (this.stores.has(name)) link.out.statesNow.add(name);
        break;
      case M.UPDATE:
        this.apply(link, checked.updates);
        this.learn(link, checked.states, null);
        if (message.wantAck) {
          for (const name of message.updates.keys()) if (this.stores.has(name)) link.out.statesNow.add(name);
        }
        break;
    }
  }

  /** Note reported state vectors (per-writer maximum) and digests (null: unknown). */
  learn(link, states, digests) {
    for (const [name, vector] of states) {
      if (!this.remoteStore(link, name)) continue;
      let known = link.remote.get(name);
      if (!known) link.remote.set(name, (known = new Map()));
      for (const [client, clock] of vector) {
        if (BigInt(known.get(client) ?? 0) < BigInt(clock)) known.set(client, clock);
      }
      link.remoteDigest.set(name, digests?.get(name) ?? null);
    }
  }

  /** A SYNC (or one part): queue diffs of what the peer lacks (§6.1). */
  answerSync(link, message) {
    const named = new Set([...message.states.keys()].filter((name) => this.stores.has(name)));
    if (message.more) {
      for (const name of named) link.syncSeen.add(name);
    } else {
      link.syncComplete = true;
      for (const name of this.stores.keys()) {
        if (!named.has(name) && !link.syncSeen.has(name)) {
          this.queueDiff(link, name, null); // not named in any part: it lacks everything
        }
      }
      link.syncSeen = new Set();
    }
    for (const name of named) {
      if (this.lacks(link, name)) this.queueDiff(link, name, link.remote.get(name) ?? EMPTY_SV);
    }
  }

  /** Whether `link`'s peer, by its reports, lacks structs or deletions we hold. */
  lacks(link, name) {
    const replica = /** @type {StoreReplica} */ (this.stores.get(name));
    const remote = link.remote.get(name) ?? EMPTY_SV;
    const mine = replica.stateVectorMap();
    if (!covers(remote, mine)) return true;
    const digest = link.remoteDigest.get(name);
    return digest != null && covers(mine, remote) && !sameBytes(digest, replica.deleteDigest());
  }

  /** Queue a diff from `vector` (null: everything), unless sent for this state already. */
  queueDiff(link, name, vector) {
    const replica = /** @type {StoreReplica} */ (this.stores.get(name));
    const encoded = vector ? encodeStateVector(vector) : null;
    const key = `${hex(replica.stateVector())}/${hex(replica.deleteDigest())}/${encoded ? hex(encoded) : "-"}`;
    if (link.sentDiffs.get(name) === key) return;
    link.sentDiffs.set(name, key);
    link.out.diffs.set(name, encoded);
  }

  /** Apply the checked updates of a message; relay what was applied (§6.5). */
  apply(source, incoming) {
    for (const [name, reads] of incoming) {
      const replica = this.remoteStore(source, name);
      if (!replica) continue;
      for (const read of reads) {
        try {
          replica.apply(read);
        } catch {
          this.violation(source, "bad_update");
        }
      }
      this.collect(replica);
      this.ack(source, name); // even what was known: the sender may wait on our state
      const applied = replica.takeApplied();
      if (applied.length) {
        this.count("updates_applied", applied.length);
        for (const link of this.links.values()) {
          if (link === source) continue;
          if (source.remoteLinks === null || !source.remoteLinks.has(link.peer)) {
            queueUpdates(link, name, applied);
          } else {
            this.ack(link, name);
          }
        }
      }
      this.commit(replica); // compaction deltas, if any
    }
  }

  /** Tell `link` our state of `name` within `ackDelay` (a lazy ack). */
  ack(link, name) {
    if (!link.out.ackLater.has(name)) link.out.ackLater.set(name, this.now + this.config.ackDelay);
  }

  // -- timers ---------------------------------------------------------------------

  /** Heartbeats, dead links, lazy acks, SYNC resends and anti-entropy. */
  tick(now) {
    this.now = now;
    const { deadAfter, heartbeatInterval, syncInterval } = this.config;
    for (const link of [...this.links.values()]) {
      if (now - link.lastRecv >= deadAfter) {
        this.count("links_dead");
        this.linkDown(link.peer);
        this.events.push({ type: "LinkDead", peer: link.peer });
        continue;
      }
      if (now - link.lastSent >= heartbeatInterval) link.out.heartbeat = true;
      for (const [name, due] of link.out.ackLater) {
        if (due <= now) {
          link.out.ackLater.delete(name);
          link.out.statesNow.add(name);
        }
      }
      if (!link.syncComplete && now - link.lastSyncSent >= syncInterval) link.out.sync = true;
    }
    if (now >= this.nextSyncCheck) {
      this.nextSyncCheck = now + syncInterval;
      this.antiEntropy();
    }
  }

  /**
   * A gap seen at one check that is still there, unchanged, at the next is repaired
   * with a DIFF from the peer's reported state, at the 1st, 2nd, 4th... check (§6.6).
   * Equal state vectors with an unknown digest ask for an ACK (with its digests).
   */
  antiEntropy() {
    for (const link of this.links.values()) {
      if (!link.syncComplete) continue;
      for (const [name, replica] of this.stores) {
        const remote = link.remote.get(name) ?? EMPTY_SV;
        if (!this.lacks(link, name)) {
          link.gaps.delete(name);
          if (link.remoteDigest.get(name) == null && covers(remote, replica.stateVectorMap())) {
            link.out.wantAck = true;
          }
          continue;
        }
        const key = `${hex(encodeStateVector(remote))}/${hex(link.remoteDigest.get(name) ?? new Uint8Array())}`;
        const gap = link.gaps.get(name);
        if (!gap || gap.key !== key) {
          link.gaps.set(name, { key, count: 0 });
          continue;
        }
        gap.count += 1;
        if ((gap.count & (gap.count - 1)) === 0) {
          this.count("repairs");
          link.sentDiffs.delete(name);
          this.queueDiff(link, name, remote);
        }
      }
    }
  }

  /** When `tick` next has work; null without links. */
  nextDeadline() {
    if (!this.links.size) return null;
    const { heartbeatInterval, deadAfter, syncInterval } = this.config;
    let soonest = this.nextSyncCheck;
    for (const link of this.links.values()) {
      soonest = Math.min(soonest, link.lastSent + heartbeatInterval, link.lastRecv + deadAfter);
      if (!link.syncComplete) soonest = Math.min(soonest, link.lastSyncSent + syncInterval);
      for (const due of link.out.ackLater.values()) soonest = Math.min(soonest, due);
    }
    return soonest;
  }

  // -- output ---------------------------------------------------------------------

  /**
   * Frames to send now, a few messages per link.
   * @returns {Array<[string, Uint8Array]>}
   */
  dataToSend(now) {
    this.now = now;
    const out = [];
    for (const link of this.links.values()) {
      const messages = this.messagesFor(link, now);
      for (const message of messages) {
        for (const frame of frames(encodeMessage(message), this.messageId++, this.config.maxFrameBytes)) {
          out.push([link.peer, frame]);
        }
      }
      if (messages.length) {
        link.lastSent = now;
        this.count("frames_out", messages.length);
      }
    }
    return out;
  }

  /** Whether `dataToSend()` has something to send now. */
  hasOutput() {
    for (const link of this.links.values()) {
      const o = link.out;
      if (o.hello || o.sync || o.links || o.heartbeat || o.wantAck || o.diffs.size || o.updates.size) return true;
      if (o.statesNow.size) return true;
    }
    return false;
  }

  messagesFor(link, now) {
    const o = link.out;
    const messages = [];
    const others = [...this.links.keys()].filter((peer) => peer !== link.peer);
    if (o.updates.size) {
      // (first: a peer accepts UPDATEs before the handshake, §6)
      const states = this.statesOf(o.updates.keys());
      messages.push(M.update(o.updates, states));
      for (const name of o.updates.keys()) o.ackLater.delete(name);
      o.updates = new Map();
    }
    if (o.hello) {
      messages.push(M.hello(this.peerId, others));
      o.hello = false;
      o.links = false;
    } else if (o.links) {
      messages.push(M.links(others));
      o.links = false;
    }
    if (o.sync) {
      const names = [...this.stores.keys()];
      messages.push(
        M.sync(this.statesOf(names), {
          wantSync: !link.syncComplete,
          more: false,
          digests: this.digestsOf(names),
        }),
      );
      link.lastSyncSent = now;
      o.sync = false;
    }
    if (o.diffs.size) {
      const diffs = new Map();
      for (const [name, vector] of o.diffs) {
        const replica = this.stores.get(name);
        if (replica) diffs.set(name, vector ? replica.diff(vector) : replica.diff());
      }
      const names = [...diffs.keys()];
      messages.push(M.diff(diffs, this.statesOf(names), this.digestsOf(names)));
      for (const name of names) {
        o.statesNow.delete(name);
        o.ackLater.delete(name);
      }
      o.diffs = new Map();
    }
    if (o.statesNow.size || o.wantAck) {
      const names = o.wantAck ? [...this.stores.keys()] : [...o.statesNow].filter((n) => this.stores.has(n));
      messages.push(M.ack(this.statesOf(names), { wantAck: o.wantAck, digests: this.digestsOf(names) }));
      for (const name of names) o.ackLater.delete(name);
      o.statesNow = new Set();
      o.wantAck = false;
    }
    if (o.heartbeat && !messages.length) messages.push(M.heartbeat());
    o.heartbeat = false;
    return messages;
  }

  statesOf(names) {
    const states = new Map();
    for (const name of names) {
      const replica = this.stores.get(name);
      if (replica) states.set(name, replica.stateVector());
    }
    return states;
  }

  digestsOf(names) {
    const digests = new Map();
    for (const name of names) {
      const replica = this.stores.get(name);
      if (replica) digests.set(name, replica.deleteDigest());
    }
    return digests;
  }

  // -- status ---------------------------------------------------------------------

  /** True when every linked peer has reported holding exactly this peer's state of every store. */
  isSynced() {
    for (const link of this.links.values()) {
      if (!link.syncComplete) return false;
      for (const [name, replica] of this.stores) {
        const remote = link.remote.get(name);
        if (!remote) return false;
        const mine = replica.stateVectorMap();
        if (!covers(remote, mine) || !covers(mine, remote)) return false;
        const digest = link.remoteDigest.get(name);
        if (digest != null && !sameBytes(digest, replica.deleteDigest())) return false;
      }
    }
    return true;
  }
}

function queueUpdates(link, name, deltas) {
  const list = link.out.updates.get(name);
  if (list) list.push(...deltas);
  else link.out.updates.set(name, [...deltas]);
}
