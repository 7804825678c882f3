// The peer-to-peer sync state machine (PROTOCOL.md §6), sans I/O: bytes in, bytes out,
// time always an argument. One `SyncEngine` per participant holds every store replica
// and the state of every link; the driver feeds it `linkUp`, `linkDown`, `receive` and
// local `write`s, calls `tick` at `nextDeadline()`, sends what `dataToSend` returns and
// reads what happened from `takeEvents` (plain objects, never callbacks). The reference
// is crdt_stores/protocol.py (with link.py, outbox.py, repair.py).
//
// This increment: handshake (HELLO, SYNC, DIFF), live UPDATEs, lazy and immediate ACKs
// with state vectors and deletion digests, eager acks while someone awaits agreement
// (`wantAcks`), relay (§6.5), heartbeats and dead links, a minimal anti-entropy (a
// persisting gap is repaired with a DIFF, with backoff), and bounded messages: syncs,
// diffs and batches cut into parts of at most 1 MiB and 8,192 items as outbox.py cuts
// them (§5.4, §6.1 `more`, §6.2; `split` in updates.js). Not yet: merging a tick's
// deltas, transport backlog, the bounded mesh (§6.9).

import { intake, isStoreName } from "./intake.js";
import * as M from "./messages.js";
import { StoreReplica } from "./replica.js";
import { countEntries, covers, encodeStateVector } from "./statevector.js";
import { readUpdate, split } from "./updates.js";
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

/** Bytes a sync or a batch is cut into: a quarter of a message, at most 1 MiB. */
export function partBytes(config) {
  return Math.min(MiB, Math.floor(config.maxMessageBytes / 4));
}

/** Items a message carries as updates: half the limit (state vectors take at most a quarter). */
export function partItems(config) {
  return Math.floor(config.maxMessageItems / 2);
}

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
    this.partBytes = partBytes(this.config);
    this.partItems = partItems(this.config);
    this.eager = false; // someone awaits agreement: acks go out at once, and are asked for
    /** @type {WeakMap<Uint8Array, Array<[Uint8Array, number]>>} one flush: updates cut into parts */
    this.splitCache = new WeakMap();
    /** @type {Map<string, Uint8Array[]>} one flush: UPDATE frames shared by links */
    this.shared = new Map();
    /** @type {WeakMap<Uint8Array, number>} */
    this.deltaIds = new WeakMap();
    this.nextDeltaId = 0;
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

  /** Tell `link` our state of `name`: now if someone awaits agreement, else within
   * `ackDelay` (a lazy ack). */
  ack(link, name) {
    if (this.eager) link.out.statesNow.add(name);
    else if (!link.out.ackLater.has(name)) link.out.ackLater.set(name, this.now + this.config.ackDelay);
  }

  /**
   * Someone awaits agreement (`synced()`), or stopped: while `eager`, acks go out at
   * once and UPDATEs ask for immediate ones (`want_ack`); turning it on sends every
   * linked peer our state of every store and asks for theirs (§6.3).
   * @param {boolean} eager
   */
  wantAcks(eager) {
    if (eager && !this.eager) {
      for (const link of this.links.values()) {
        promoteAcks(link.out);
        for (const name of this.stores.keys()) link.out.statesNow.add(name);
        link.out.wantAck = true;
      }
    }
    this.eager = eager;
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
   * Frames to send now, a few bounded messages per link: UPDATEs (encoded once for
   * every link that gets the same parts), then HELLO or LINKS, SYNC, DIFFs and ACKs.
   * @returns {Array<[string, Uint8Array]>}
   */
  dataToSend(now) {
    this.now = now;
    const out = [];
    this.splitCache = new WeakMap();
    this.shared = new Map();
    for (const link of this.links.values()) {
      const ready = this.framesFor(link, now);
      for (const frame of ready) out.push([link.peer, frame]);
      if (ready.length) {
        link.lastSent = now;
        this.count("frames_out", ready.length);
      }
    }
    this.splitCache = new WeakMap();
    this.shared = new Map();
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

  frames(message) {
    return frames(encodeMessage(message), this.messageId++, this.config.maxFrameBytes);
  }

  framesFor(link, now) {
    const o = link.out;
    const out = [];
    const others = [...this.links.keys()].filter((peer) => peer !== link.peer);
    if (o.diffs.size || o.updates.size || o.statesNow.size || o.wantAck) promoteAcks(o); // acks that could wait ride along
    if (o.updates.size) {
      // (first: a peer accepts UPDATEs before the handshake, §6)
      const batch = o.updates;
      o.updates = new Map();
      for (const name of batch.keys()) o.statesNow.add(name);
      out.push(...this.updateFrames(batch, o.statesNow, this.eager));
    }
    const messages = [];
    if (o.hello) {
      messages.push(M.hello(this.peerId, others));
      o.hello = false;
      o.links = false;
    } else if (o.links) {
      messages.push(M.links(others));
      o.links = false;
    }
    if (o.sync) {
      const groups = this.stateGroups(this.stores.keys());
      if (!groups.length) groups.push([]);
      groups.forEach((names, i) => {
        messages.push(
          M.sync(this.statesOf(names), {
            wantSync: !link.syncComplete,
            more: i + 1 < groups.length,
            digests: this.digestsOf(names),
          }),
        );
      });
      link.lastSyncSent = now;
      o.sync = false;
    }
    if (o.diffs.size) {
      const diffs = new Map();
      for (const [name, vector] of o.diffs) {
        const replica = this.stores.get(name);
        if (replica) diffs.set(name, vector ? replica.diff(vector) : replica.diff());
      }
      o.diffs = new Map();
      for (const body of this.diffMessages(diffs)) {
        const names = [...body.keys()];
        messages.push(M.diff(body, this.statesOf(names), this.digestsOf(names)));
      }
      for (const name of diffs.keys()) o.statesNow.delete(name);
    }
    if (o.statesNow.size || o.wantAck) {
      const names = o.wantAck ? [...this.stores.keys()] : [...o.statesNow].filter((n) => this.stores.has(n));
      for (const group of this.stateGroups(names)) {
        messages.push(M.ack(this.statesOf(group), { wantAck: o.wantAck, digests: this.digestsOf(group) }));
      }
      o.statesNow = new Set();
      o.wantAck = false;
    }
    if (o.heartbeat && !messages.length && !out.length) messages.push(M.heartbeat());
    o.heartbeat = false;
    for (const message of messages) out.push(...this.frames(message));
    return out;
  }

  /**
   * The batch as UPDATE frames, in order, each message within a part; our state of a
   * store (from `statesFor`, taken out) rides on the first message that carries it.
   * Encoded once per flush for every link that gets the same parts with the same states.
   * @param {Map<string, Uint8Array[]>} batch
   * @param {Set<string>} statesFor
   * @param {boolean} wantAck
   */
  updateFrames(batch, statesFor, wantAck) {
    const out = [];
    for (const group of this.updateMessages(batch)) {
      const attached = [...group.keys()].filter((name) => statesFor.has(name) && this.stores.has(name));
      let key = `${wantAck ? 1 : 0}|${attached.join("\u0000")}`;
      for (const [name, parts] of group) key += `|${name}\u0000${parts.map((part) => this.deltaId(part)).join(",")}`;
      let shared = this.shared.get(key);
      if (!shared) {
        shared = this.frames(M.update(group, this.statesOf(attached), { wantAck }));
        this.shared.set(key, shared);
      }
      out.push(...shared);
      for (const name of attached) statesFor.delete(name);
    }
    return out;
  }

  deltaId(delta) {
    let id = this.deltaIds.get(delta);
    if (id === undefined) this.deltaIds.set(delta, (id = this.nextDeltaId++));
    return id;
  }

  /**
   * `update` as is if it fits in a message part, else cut into parts (`split`); each
   * with a bound on its Yjs items (outbox.py `_parts`). `items` is a bound known
   * already, or null.
   * @param {Uint8Array} update
   * @param {number | null} items
   * @returns {Array<[Uint8Array, number]>}
   */
  parts(update, items) {
    const { partBytes, partItems } = this;
    if (items !== null && update.length <= partBytes && items <= partItems) return [[update, items]];
    const cached = this.splitCache.get(update);
    if (cached) return cached;
    const read = readUpdate(update, {
      maxUnits: Number.MAX_SAFE_INTEGER,
      maxValueBytes: this.config.maxValueBytes,
      checkEntries: false,
      keepStructs: update.length > partBytes, // (else only if it turns out to need them)
    });
    let parts;
    if (update.length <= partBytes && read.units <= partItems) parts = [[update, read.units]];
    else {
      const full =
        update.length > partBytes
          ? read
          : readUpdate(update, {
              maxUnits: Number.MAX_SAFE_INTEGER,
              maxValueBytes: this.config.maxValueBytes,
              checkEntries: false,
              keepStructs: true,
            });
      parts = split(full, partBytes, partItems).map((piece) => [piece, partItems]);
    }
    this.splitCache.set(update, parts);
    return parts;
  }

  /**
   * DIFF bodies: one update per store per message, each message within a part in
   * bytes and in items (a store's parts in order, several stores' together).
   * @param {Map<string, Uint8Array>} diffs
   * @returns {Array<Map<string, Uint8Array>>}
   */
  diffMessages(diffs) {
    const pending = new Map();
    for (const [name, diff] of diffs) {
      pending.set(name, this.parts(diff, Math.floor(diff.length / 2) + 1));
    }
    const bodies = [];
    while (pending.size) {
      const body = new Map();
      let size = 0;
      let items = 0;
      for (const [name, parts] of pending) {
        const [part, cost] = parts[0];
        if (body.size && (size + part.length > this.partBytes || items + cost > this.partItems)) continue;
        body.set(name, part);
        size += part.length;
        items += cost;
        parts.shift();
        if (!parts.length) pending.delete(name);
      }
      bodies.push(body);
    }
    return bodies;
  }

  /**
   * UPDATE bodies: the deltas of a batch, in order, within a part per message.
   * @param {Map<string, Uint8Array[]>} batch
   * @returns {Array<Map<string, Uint8Array[]>>}
   */
  updateMessages(batch) {
    const { partBytes, partItems } = this;
    const groups = [];
    let group = new Map();
    let size = 0;
    let items = 0;
    for (const [name, deltas] of batch) {
      for (const delta of deltas) {
        for (const [part, cost] of this.parts(delta, null)) {
          if (group.size && (size + part.length > partBytes || items + cost > partItems)) {
            groups.push(group);
            group = new Map();
            size = 0;
            items = 0;
          }
          const list = group.get(name);
          if (list) list.push(part);
          else group.set(name, [part]);
          size += part.length;
          items += cost;
        }
      }
    }
    if (group.size) groups.push(group);
    return groups;
  }

  /** Store names in groups whose state vectors fit in one message (outbox.py). */
  stateGroups(names) {
    const groups = [];
    let group = [];
    let items = 0;
    let size = 0;
    const maxItems = Math.floor((this.config.maxMessageItems * M.SV_ENTRIES_PER_ITEM) / 4);
    for (const name of names) {
      const replica = this.stores.get(name);
      if (!replica) continue;
      const encoded = replica.stateVector();
      const count = Number(countEntries(encoded));
      if (group.length && (items + count > maxItems || size + encoded.length + name.length > this.partBytes)) {
        groups.push(group);
        group = [];
        items = 0;
        size = 0;
      }
      group.push(name);
      items += count;
      size += encoded.length + name.length;
    }
    if (group.length) groups.push(group);
    return groups;
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

/** Every delayed ack goes out now (with what goes out anyway). */
function promoteAcks(out) {
  for (const name of out.ackLater.keys()) out.statesNow.add(name);
  out.ackLater.clear();
}

function queueUpdates(link, name, deltas) {
  const list = link.out.updates.get(name);
  if (list) list.push(...deltas);
  else link.out.updates.set(name, [...deltas]);
}
