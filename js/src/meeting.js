// `Meeting`: one participant of a room and its replicated stores, over WebRTC data
// channels (transport/webrtc.js) found through the signaling server. It drives the
// sans-IO `SyncEngine`: feeds it the frames of every link, sends what `dataToSend`
// returns (batched: at most one flush per `flushInterval`), runs `tick` at
// `nextDeadline()`, and turns the engine's events into store callbacks and meeting
// events. The reference is crdt_stores/meeting.py and driver.py.

import { SyncEngine } from "./engine.js";
import { MeshConfig, Topology } from "./mesh.js";
import { Stores } from "./store.js";
import { WebRTCTransport } from "./transport/webrtc.js";

export const PEER_EVENTS = Object.freeze(["peer_joined", "peer_left", "peer_misbehaved", "signal_refused"]);
const ENGINE_OPTIONS = [
  "heartbeatInterval",
  "deadAfter",
  "syncInterval",
  "ackDelay",
  "maxValueBytes",
  "maxFrameBytes",
  "maxMessageBytes",
  "maxMessageItems",
  "maxLinkBufferBytes",
  "maxBufferBytes",
  "maxStores",
  "violationBudget",
];
const TRANSPORT_OPTIONS = [
  "connectTimeout",
  "spareAfter",
  "joinTimeout",
  "leftGrace",
  "retryBackoff",
  "maxNegotiations",
  "WebSocket",
  "webSocketOptions",
  "signalingOptions",
];
const KNOWN = new Set([
  "url",
  "room",
  "peerId",
  "token",
  "roomKey",
  "iceServers",
  "iceAddresses",
  "RTCPeerConnection",
  "transport",
  "flushInterval",
  "maxBufferedBytes",
  "logger",
  "mesh",
  ...ENGINE_OPTIONS,
  ...TRANSPORT_OPTIONS,
]);
const MIN_SLEEP = 0.001; // the timer never spins
const WAITING_POLL = 0.05; // while synced() waits, agreement is re-checked this often

/** `synced()` ran out of time. */
export class SyncTimeoutError extends Error {
  constructor(message) {
    super(message);
    this.name = "TimeoutError";
  }
}

/** The peer id a join token names (read, not verified: the server verifies it). */
export function tokenSubject(token) {
  if (typeof token !== "string") throw new TypeError("token must be a string");
  const parts = token.split(".");
  if (parts.length !== 3) throw new TypeError("malformed token (not a JWT: three base64url parts)");
  try {
    const json = new TextDecoder().decode(
      Uint8Array.from(atob(parts[1].replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(parts[1].length / 4) * 4, "=")), (c) =>
        c.charCodeAt(0),
      ),
    );
    const claims = JSON.parse(json);
    return typeof claims?.sub === "string" && claims.sub ? claims.sub : null;
  } catch {
    throw new TypeError("malformed token (its payload is not base64url JSON)");
  }
}

const now = () => performance.now() / 1000;

export class Meeting {
  /**
   * @param {import("./meeting.d.ts").MeetingOptions} options
   */
  constructor(options) {
    const o = options ?? {};
    for (const name of Object.keys(o)) {
      if (!KNOWN.has(name)) throw new TypeError(`unknown Meeting option: ${name}`);
    }
    if (typeof o.room !== "string" || !o.room) throw new TypeError("Meeting needs a room name (a non-empty string)");
    if (!o.transport && !o.url) throw new TypeError("Meeting needs the signaling server URL (url)");
    let peerId = o.peerId ?? null;
    if (o.token != null && peerId === null) peerId = tokenSubject(o.token);
    this._options = o;
    this._room = o.room;
    this._requestedPeerId = peerId;
    this._flushInterval = o.flushInterval ?? 0.005;
    this._maxBuffered = o.maxBufferedBytes ?? 4 * 1024 * 1024;
    this._log = o.logger === undefined ? console : o.logger;
    this._engineConfig = {};
    // Which peers to link to: all of a small room, a few of a large one (mesh.js, §6.9).
    this._topology = new Topology(o.mesh instanceof MeshConfig ? o.mesh : new MeshConfig(o.mesh ?? {}));
    for (const name of ENGINE_OPTIONS) if (o[name] !== undefined) this._engineConfig[name] = o[name];
    /** @type {"new" | "joining" | "joined" | "left"} */
    this._state = "new";
    /** @type {SyncEngine | null} */
    this._engine = null;
    this._transport = o.transport ?? null;
    this._listeners = new Map(PEER_EVENTS.map((e) => [e, []]));
    this._waiters = [];
    this._unreachable = new Set();
    this._emitLocal = false;
    this._flushTimer = null;
    this._lastFlush = -Infinity;
    this._congested = false;
    this._timer = null;
    this._timerAt = null;
    this._stores = new Stores(this);
  }

  // -- joining and leaving --------------------------------------------------------

  /** Join the room; resolves once the links to the peers already there opened (or
   * failed). Rejects (a `JoinError`) when signaling refuses or cannot be reached. */
  async join() {
    if (this._state !== "new") throw new Error("this Meeting has already been joined");
    this._state = "joining";
    this._engine = new SyncEngine(this._requestedPeerId ?? "", this._engineConfig);
    const o = this._options;
    try {
      if (!this._transport) {
        const transportOptions = {
          url: o.url,
          room: o.room,
          peerId: this._requestedPeerId,
          token: o.token ?? null,
          roomKey: o.roomKey ?? null,
          iceServers: o.iceServers ?? [],
          iceAddresses: o.iceAddresses,
          RTCPeerConnection: o.RTCPeerConnection,
          log: this._log,
        };
        for (const name of TRANSPORT_OPTIONS) if (o[name] !== undefined) transportOptions[name] = o[name];
        this._transport = new WebRTCTransport(transportOptions);
      }
      await this._transport.start(this);
    } catch (error) {
      const leftMeanwhile = this._state === "left";
      this._state = "left";
      try {
        await this._transport?.close();
      } catch {
        /* nothing more to close */
      }
      if (leftMeanwhile) return this;
      this._engine = null;
      throw error;
    }
    if (this._state !== "joining") return this; // leave() was called while joining
    this._engine.peerId = this._transport.peerId;
    this._state = "joined";
    this._reschedule();
    return this;
  }

  /** Leave the room: queued changes are delivered, then every link closes. Local data
   * stays readable; writes throw afterwards. */
  async leave() {
    if (this._state === "new" || this._state === "left") {
      this._state = "left";
      return;
    }
    this._state = "left";
    clearTimeout(this._timer);
    this._timer = null;
    this._flush();
    await this._transport?.close();
    this._failWaiters("the meeting was left before it synced");
  }

  // -- properties -----------------------------------------------------------------

  get peerId() {
    if (!this._transport || this._state === "new" || this._state === "joining") {
      throw new Error("the meeting has not been joined yet");
    }
    return this._transport.peerId;
  }

  get room() {
    return this._room;
  }

  /** Ids of the peers this participant is linked to right now (in a room past
   * `mesh.fullMeshMax`, a few of `roomPeers`: its neighbours). */
  get peers() {
    return this._engine ? this._engine.peers : [];
  }

  /** Ids of every other peer in the room as signaling lists them, linked or not. */
  get roomPeers() {
    return this._transport ? [...this._transport.presentPeers()].sort() : [];
  }

  /** The mesh options in force (`MeshConfig`). */
  get mesh() {
    return this._topology.config;
  }

  get stores() {
    this._engineOrThrow();
    return this._stores;
  }

  get joined() {
    return this._state === "joined";
  }

  get state() {
    return this._state;
  }

  /** Counters of the sync engine (frames, dropped input by reason...) and the transport. */
  get stats() {
    const out = this._engine ? Object.fromEntries(this._engine.stats) : {};
    if (this._transport) Object.assign(out, this._transport.stats);
    return out;
  }

  /** The sync engine (white-box access for tests). */
  get engine() {
    return this._engine;
  }

  // -- peer events ----------------------------------------------------------------

  /** `callback(peerId)` on "peer_joined" and "peer_left"; `callback(peerId, reason)` on
   * "peer_misbehaved" and "signal_refused". Returns a function that removes it. */
  on(event, callback) {
    const listeners = this._listeners.get(event);
    if (!listeners) throw new RangeError(`unknown event ${JSON.stringify(event)}; known: ${PEER_EVENTS.join(", ")}`);
    if (typeof callback !== "function") throw new TypeError("callback must be a function");
    if (!listeners.includes(callback)) listeners.push(callback);
    return () => this.off(event, callback);
  }

  off(event, callback) {
    const listeners = this._listeners.get(event) ?? [];
    const index = listeners.indexOf(callback);
    if (index >= 0) listeners.splice(index, 1);
  }

  _emit(event, ...args) {
    for (const callback of [...(this._listeners.get(event) ?? [])]) this.call(callback, ...args);
  }

  // -- sync status ----------------------------------------------------------------

  /**
   * Resolves (to the sorted ids of the linked peers) once every linked peer has
   * acknowledged holding all of this peer's state of every store, and this peer holds
   * what they reported. With no link while signaling lists others it waits. Rejects
   * with a `TimeoutError` after `timeout` seconds.
   * @param {{timeout?: number | null}} [options]
   */
  async synced(options = {}) {
    const engine = this._engineOrThrow();
    const timeout = typeof options === "number" ? options : options?.timeout ?? null;
    this._flush();
    if (this._agreed()) return [...engine.peers].sort();
    const waiting = new Promise((resolve, reject) => {
      const waiter = { resolve, reject, timer: null };
      if (timeout != null) {
        waiter.timer = setTimeout(() => {
          this._waiters = this._waiters.filter((w) => w !== waiter);
          reject(new SyncTimeoutError(`not synced after ${timeout} s with peers ${JSON.stringify(this._unsyncedPeers())}`));
        }, timeout * 1000);
      }
      this._waiters.push(waiter);
    });
    engine.wantAcks(true); // acks go out at once while someone waits (driver.py)
    this._scheduleFlush();
    this._reschedule();
    try {
      return await waiting;
    } finally {
      if (!this._waiters.length) engine.wantAcks(false);
    }
  }

  /** The peers synced() still waits for: linked ones, and listed ones not known unreachable. */
  _unsyncedPeers() {
    const out = new Set(this._engine?.peers ?? []);
    for (const peer of this._transport?.presentPeers() ?? []) if (!this._unreachable.has(peer)) out.add(peer);
    return [...out].sort();
  }

  _agreed() {
    const engine = this._engine;
    if (!engine || !engine.isSynced()) return false;
    if (engine.peers.length || !this._transport) return true;
    for (const peer of this._transport.presentPeers()) if (!this._unreachable.has(peer)) return false;
    return true;
  }

  _checkSynced() {
    if (!this._waiters.length || !this._agreed()) return;
    const covered = [...(this._engine?.peers ?? [])].sort();
    const waiters = this._waiters;
    this._waiters = [];
    for (const waiter of waiters) {
      clearTimeout(waiter.timer);
      waiter.resolve(covered);
    }
  }

  _failWaiters(message) {
    const waiters = this._waiters;
    this._waiters = [];
    for (const waiter of waiters) {
      clearTimeout(waiter.timer);
      waiter.reject(new Error(message));
    }
  }

  // -- the stores' session ----------------------------------------------------------

  write(store, operation, args, emit) {
    if (this._state !== "joined") throw new Error(`cannot write: the meeting is ${this._state}`);
    const engine = this._engineOrThrow();
    this._emitLocal = emit;
    try {
      engine.write(store, operation, ...args); // validates first: bad input changes nothing
    } finally {
      this._dispatch();
      this._emitLocal = false;
    }
    this._scheduleFlush();
  }

  createStore(name) {
    this._engineOrThrow().createStore(name);
    this._dispatch();
    this._scheduleFlush();
  }

  /** What awaiting a write waits for: send queues back under the limit. */
  async backpressure() {
    if (this._congested && this._transport) {
      await this._transport.drain(Math.floor(this._maxBuffered / 2));
      this._congested = this._transport.bufferedAmount() > this._maxBuffered;
    }
  }

  /** Run a user callback; what it throws (or its promise rejects with) is logged. */
  call(callback, ...args) {
    let result;
    try {
      result = callback(...args);
    } catch (error) {
      this._log?.error?.("crdt-stores: a callback threw", error);
      return;
    }
    if (result && typeof result.then === "function") {
      result.then(undefined, (error) => this._log?.error?.("crdt-stores: an async callback rejected", error));
    }
  }

  // -- the transport's handler --------------------------------------------------------

  linkUp(peer) {
    const engine = this._engine;
    if (!engine || (this._state !== "joining" && this._state !== "joined")) return;
    if (this._transport) engine.peerId = this._transport.peerId;
    const replaced = engine.peers.includes(peer); // a new connection took over: no news
    engine.linkUp(peer, now());
    this._topology.linkUp(peer);
    if (this._topology.linked.size > this._topology.config.degreeHigh) this._maintainMesh(); // an accepted link past degreeHigh: another goes
    this._unreachable.delete(peer);
    if (!replaced) this._emit("peer_joined", peer);
    this._scheduleFlush();
    this._timerCheck();
  }

  linkDown(peer) {
    const engine = this._engine;
    if (!engine) return;
    this._topology.linkDown(peer);
    if (engine.linkDown(peer)) this._emit("peer_left", peer);
    this._checkSynced();
    this._scheduleFlush();
    this._maintainMesh();
  }

  frame(peer, data) {
    const engine = this._engine;
    if (!engine) return;
    engine.receive(peer, data, now());
    this._dispatch();
    if (engine.hasOutput()) this._scheduleFlush();
    else this._checkSynced();
    this._timerCheck();
  }

  signalRefused(peer, reason) {
    if (!this._engine || !this._engine.peers.includes(peer)) this._unreachable.add(peer);
    this._emit("signal_refused", peer, reason);
  }

  /** Whether to answer `peer`'s offer (false: the transport signals `busy`, §3.2). */
  acceptsLink(peer) {
    if ((this._state !== "joining" && this._state !== "joined") || !this._transport) return false;
    return this._topology.accepts(peer, this._transport.roomSize());
  }

  /** Whom to offer to among `present` (joining, or registered again with signaling). */
  chooseLinks(present) {
    return this._topology.choose(present, now());
  }

  /** Whether a failed link to `peer` is retried: in a full mesh; in a bounded one the
   * mesh dials whom it lacks instead. */
  retriesLink(_peer) {
    return !this._transport || !this._topology.bounded(this._transport.roomSize());
  }

  /** `peer` answered `busy` to our offer. */
  linkRefused(peer) {
    this._topology.refused(peer, now());
    this._maintainMesh();
  }

  /** Dial or drop links as the room's mesh needs (mesh.js `Topology`). */
  _maintainMesh() {
    const transport = this._transport;
    const engine = this._engine;
    if (!transport || !engine || this._state !== "joined") return;
    const topology = this._topology;
    const size = transport.roomSize();
    const t = now();
    if (!topology.needsAttention(size, t)) return;
    const degrees = new Map();
    for (const [peer, link] of engine.links) degrees.set(peer, link.remoteLinks ? link.remoteLinks.size : 0);
    for (const peer of topology.toDrop(size, degrees)) transport.dropLink(peer);
    for (const peer of topology.toDial(transport.presentPeers(), t)) transport.dial(peer);
  }

  // -- events ---------------------------------------------------------------------

  /** Act on what the engine reported, in order; user code runs here, never inside it. */
  _dispatch() {
    const engine = this._engine;
    if (!engine) return;
    for (const event of engine.takeEvents()) {
      switch (event.type) {
        case "StoreAdded": {
          const replica = engine.store(event.store);
          if (replica) this._stores._attach(replica);
          break;
        }
        case "StoreChanged":
          this._stores._deliver(event.store, event.changes, !event.local || this._emitLocal);
          break;
        case "PeerMisbehaved":
          this._log?.warn?.(`crdt-stores: peer ${event.peer} misbehaved (${event.reason}); its link is closed`);
          this._linkLost(event.peer);
          this._emit("peer_misbehaved", event.peer, event.reason);
          break;
        case "LinkDead":
          this._linkLost(event.peer);
          break;
      }
    }
  }

  /** The engine dropped the link (dead, or closed for misbehaving): tell the transport. */
  _linkLost(peer) {
    this._unreachable.add(peer);
    this._emit("peer_left", peer);
    this._checkSynced();
    this._transport?.closeLink(peer);
  }

  // -- sending --------------------------------------------------------------------

  /** A single write after a quiet spell goes out at once (next macrotask); under a
   * stream of writes, at most one flush per `flushInterval` batches them. */
  _scheduleFlush() {
    if (this._flushTimer !== null) return;
    const wait = Math.max(0, this._lastFlush + this._flushInterval - now());
    this._flushTimer = setTimeout(() => this._flush(), wait * 1000);
  }

  _flush() {
    clearTimeout(this._flushTimer);
    this._flushTimer = null;
    this._lastFlush = now();
    const engine = this._engine;
    const transport = this._transport;
    if (!engine || !transport) return;
    for (const [peer, frame] of engine.dataToSend(now())) transport.send(peer, frame);
    this._dispatch();
    this._congested = transport.bufferedAmount() > this._maxBuffered;
    this._checkSynced();
  }

  // -- the timer ------------------------------------------------------------------

  _timerCheck() {
    if (this._state !== "joined" || !this._engine) return;
    const deadline = this._deadline();
    if (deadline !== null && (this._timerAt === null || deadline < this._timerAt)) this._reschedule();
  }

  _deadline() {
    let deadline = this._engine?.nextDeadline() ?? null;
    const meshDeadline = this._topology.nextDeadline();
    if (meshDeadline !== null) deadline = deadline === null ? meshDeadline : Math.min(deadline, meshDeadline);
    if (this._waiters.length) {
      const poll = now() + WAITING_POLL;
      deadline = deadline === null ? poll : Math.min(deadline, poll);
    }
    return deadline;
  }

  _reschedule() {
    clearTimeout(this._timer);
    this._timer = null;
    this._timerAt = null;
    if (!this._engine || this._state !== "joined") return;
    let deadline = this._deadline();
    if (deadline === null) return;
    deadline = Math.max(deadline, now() + MIN_SLEEP);
    this._timerAt = deadline;
    this._timer = setTimeout(() => this._onTimer(), (deadline - now()) * 1000);
  }

  _onTimer() {
    this._timer = null;
    try {
      const engine = this._engine;
      if (engine && this._state === "joined") {
        engine.tick(now());
        this._dispatch();
        this._flush();
      }
      this._maintainMesh();
    } catch (error) {
      this._log?.error?.("crdt-stores: error in the sync timer", error);
    }
    this._reschedule();
  }

  _engineOrThrow() {
    if (!this._engine) throw new Error("the meeting has not been joined yet (await meeting.join())");
    return this._engine;
  }

  toString() {
    return `<Meeting room=${JSON.stringify(this._room)} ${this._state} peers=${JSON.stringify(this.peers)}>`;
  }
}
