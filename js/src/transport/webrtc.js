// The WebRTC mesh (PROTOCOL.md §3-§4) over the W3C `RTCPeerConnection` API only, so the
// same code runs in browsers and in Node (node-datachannel's polyfill): one peer
// connection and one negotiated data channel (id 0, ordered, reliable) per pair of peers.
// The reference is crdt_stores/transport/webrtc.py and _links.py:
//
// * the newcomer offers to every peer signaling lists; those answer (no glare); an offer
//   crossing ours is settled by the smaller id; re-offers after a failure come from the
//   smaller id, with backoff (1 s, doubling, at most 30 s);
// * while no attempt has opened, the offerer starts another one (new connection, new
//   session) every `spareAfter` seconds for `connectTimeout`, at most 3 at once; the
//   answerer answers every offer and keeps the first attempt whose channel opens;
// * no trickle ICE: a description is signaled once gathering is complete, with only the
//   candidates whose address is in `iceAddresses` (on sending and on receiving);
// * offers only from peers signaling listed, a few per peer per second, at most
//   `maxNegotiations` at once; `busy` answers drop the attempt without retry; with a room
//   key every signal is sealed (sealing.js), and one that does not open is refused.
//
// The bounded mesh (§6.9) is the handler's choice (meeting.js, with mesh.js): whom to
// offer to on joining (`chooseLinks`), whether to answer an offer or decline it with
// `busy` (`acceptsLink`), whether to retry a failed link (`retriesLink`); the handler
// then `dial`s and `dropLink`s as its mesh needs. A `busy` answer drops the attempt, stops
// its rolling attempts, and is reported (`linkRefused`).

import { SealError, SignalSealer } from "../sealing.js";
import { SignalingClient } from "../signaling.js";

export const CHANNEL_ID = 0;
export const CHANNEL_LABEL = "crdt-stores";
/** Attempts at one link at once (see `spareAfter`). */
export const MAX_ATTEMPTS = 3;
/** Negotiations at once (links not yet open); past it the oldest not connected goes. */
export const MAX_NEGOTIATIONS = 64;
/** Offers answered per peer: bursts of 4, then one per 2 s. */
export const OFFERS_PER_SECOND = 0.5;
export const OFFER_BURST = 4;
/** ICE candidates accepted in one description; its size in characters (§3.1). */
export const MAX_CANDIDATES = 16;
export const MAX_SDP_CHARS = 32 * 1024;
export const MAX_SESSION_CHARS = 64;
/** The environment variables the Python peer reads too (Node only). */
export const ICE_ADDRESSES_ENV = "CRDT_STORES_ICE_ADDRESSES";
export const ROOM_KEY_ENV = "CRDT_STORES_ROOM_KEY";
/** How long to wait for ICE gathering before signaling what is there (ms). */
const GATHER_TIMEOUT_MS = 10_000;
const ICE_UP = new Set(["connected", "completed"]);

const env = (name) => globalThis.process?.env?.[name] || null;
const encoder = new TextEncoder();

/**
 * The host addresses ICE may use: `given`, else the comma-separated list in
 * `CRDT_STORES_ICE_ADDRESSES` (Node), else null (every address).
 * @param {string[] | null | undefined} given
 * @returns {string[] | null}
 */
export function hostAddresses(given) {
  if (given != null) {
    if (!Array.isArray(given) || !given.every((a) => typeof a === "string" && a)) {
      throw new TypeError("iceAddresses: an array of address strings");
    }
    return given.map((a) => a.toLowerCase());
  }
  const listed = env(ICE_ADDRESSES_ENV);
  if (!listed) return null;
  return listed
    .split(",")
    .map((a) => a.trim().toLowerCase())
    .filter(Boolean);
}

/** The connection address of an `a=candidate:` line, or null when it has none. */
export function candidateAddress(line) {
  const fields = line.slice("a=candidate:".length).trim().split(/\s+/);
  // foundation component transport priority ADDRESS port "typ" type ...
  return fields.length >= 8 && fields[6] === "typ" ? fields[4].toLowerCase() : null;
}

/**
 * `sdp` with only the `a=candidate:` lines whose address is in `addresses` (null: all);
 * every other line is kept as it is, line endings included.
 * @param {string} sdp
 * @param {string[] | null} addresses
 */
export function filterCandidates(sdp, addresses) {
  if (addresses == null) return sdp;
  const allowed = new Set(addresses.map((a) => a.toLowerCase()));
  const lines = sdp.split("\n");
  const kept = lines.filter((line) => {
    if (!line.startsWith("a=candidate:")) return true;
    const address = candidateAddress(line.replace(/\r$/, ""));
    return address !== null && allowed.has(address);
  });
  return kept.join("\n");
}

/** How many `a=candidate:` lines `sdp` holds (the §3.1 bound counts them all). */
export function countCandidates(sdp) {
  return sdp.split("a=candidate:").length - 1;
}

/**
 * What a signal's payload asks for (§3.1), or why it is refused:
 * `{kind: "offer"|"answer", session, sdp}`, `{kind: "busy", session}`, `{kind: "ignore"}`
 * (another kind) or `{refused: reason}`.
 * @param {Record<string, unknown>} data
 */
export function readSignal(data) {
  const { kind, session, sdp } = data ?? {};
  if (kind === "busy" && typeof session === "string") return { kind, session };
  if (typeof session !== "string" || typeof sdp !== "string" || session.length > MAX_SESSION_CHARS) {
    return { refused: "malformed signal" };
  }
  if (sdp.length > MAX_SDP_CHARS || countCandidates(sdp) > MAX_CANDIDATES) {
    return { refused: `description too large (over ${MAX_CANDIDATES} ICE candidates)` };
  }
  if (kind !== "offer" && kind !== "answer") return { kind: "ignore" };
  return { kind, session, sdp };
}

/** ICE servers as RTCIceServer dicts, from URLs or `{urls, username, credential}`. */
export function parseIceServers(servers) {
  const out = [];
  for (const server of servers ?? []) {
    if (typeof server === "string") out.push({ urls: server });
    else if (server && typeof server === "object" && "urls" in server) out.push({ ...server });
    else throw new TypeError(`cannot use ${JSON.stringify(server)} as an ICE server`);
  }
  return out;
}

function randomHex(bytes) {
  const buffer = new Uint8Array(bytes);
  globalThis.crypto.getRandomValues(buffer);
  return Array.from(buffer, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Ids are compared by Unicode code points (§3.2), not by UTF-16 units. */
export function idLess(a, b) {
  const x = [...a];
  const y = [...b];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const cx = /** @type {number} */ (x[i].codePointAt(0));
    const cy = /** @type {number} */ (y[i].codePointAt(0));
    if (cx !== cy) return cx < cy;
  }
  return x.length < y.length;
}

let polyfill = null;

/** The RTCPeerConnection constructor: the browser's, else node-datachannel's polyfill. */
export async function defaultPeerConnection() {
  if (typeof globalThis.RTCPeerConnection === "function") return globalThis.RTCPeerConnection;
  if (!polyfill) {
    const specifier = "node-datachannel/polyfill";
    polyfill = import(/* @vite-ignore */ specifier).then((m) => m.RTCPeerConnection ?? m.default?.RTCPeerConnection);
  }
  return polyfill;
}

/** The WebSocket constructor: the browser's (or Node 22's), else the `ws` package's. */
export async function defaultWebSocket() {
  if (typeof globalThis.WebSocket === "function") return globalThis.WebSocket;
  const specifier = "ws";
  const module = await import(/* @vite-ignore */ specifier);
  return module.WebSocket ?? module.default;
}

/**
 * The links of one peer to the others of its room. `handler` gets `linkUp(peer)`,
 * `linkDown(peer)`, `frame(peer, bytes)` and `signalRefused(peer, reason)`.
 */
export class WebRTCTransport {
  /**
   * @param {object} options see `WebRTCOptions` in webrtc.d.ts
   */
  constructor(options) {
    const o = options ?? {};
    this.urls = o.url;
    this.room = o.room;
    this.peerId = o.peerId ?? "";
    this.token = o.token ?? null;
    this.iceServers = parseIceServers(o.iceServers);
    this.iceAddresses = hostAddresses(o.iceAddresses);
    this.connectTimeout = o.connectTimeout ?? 20;
    this.spareAfter = o.spareAfter ?? 2;
    this.joinTimeout = o.joinTimeout ?? 15;
    this.leftGrace = o.leftGrace ?? 2.5;
    this.retryBackoff = o.retryBackoff ?? 1;
    this.maxNegotiations = o.maxNegotiations ?? MAX_NEGOTIATIONS;
    this.roomKey = o.roomKey ?? env(ROOM_KEY_ENV);
    this.stats = {};
    this._RTCPeerConnection = o.RTCPeerConnection ?? null;
    this._WebSocket = o.WebSocket ?? null;
    this._webSocketOptions = o.webSocketOptions;
    this._signalingOptions = o.signalingOptions ?? {};
    this._sealer = null;
    this._handler = null;
    this._signaling = null;
    /** @type {Map<string, Attempt>} the link, or the first attempt at one */
    this._peers = new Map();
    /** @type {Map<string, Attempt[]>} further attempts, oldest first */
    this._spares = new Map();
    /** @type {Map<string, object>} peers we start further attempts to (the roll's token) */
    this._rolling = new Map();
    this._retrying = new Set(); // peers a retry is scheduled for
    /** @type {Map<string, () => void>} */
    this._joinWaiters = new Map();
    /** @type {Set<string>} in the room according to signaling */
    this._present = new Set();
    this._attempts = new Map(); // retries since the link last opened, per peer
    this._offerBudget = new Map(); // peer -> [tokens, stamp]
    this._timers = new Set();
    this._closing = false;
    this._refusalsLogged = new Set();
    this.log = o.log ?? null;
  }

  count(name) {
    this.stats[name] = (this.stats[name] ?? 0) + 1;
  }

  // -- Transport ------------------------------------------------------------------

  /** Join signaling, offer to the peers there; resolves once those links opened (or
   * failed, or `joinTimeout` passed). */
  async start(handler) {
    this._handler = handler;
    if (!this._RTCPeerConnection) this._RTCPeerConnection = await defaultPeerConnection();
    if (typeof this._RTCPeerConnection !== "function") {
      throw new TypeError("no RTCPeerConnection (pass options.RTCPeerConnection)");
    }
    if (this.roomKey) this._sealer = await SignalSealer.create(this.roomKey, this.room);
    const WebSocket = this._WebSocket ?? (await defaultWebSocket());
    const signaling = new SignalingClient({
      url: this.urls,
      room: this.room,
      peerId: this.peerId || null,
      token: this.token,
      WebSocket,
      webSocketOptions: this._webSocketOptions ?? (WebSocket === globalThis.WebSocket ? undefined : { maxPayload: 4 * 1024 * 1024 }),
      ...this._signalingOptions,
    });
    this._signaling = signaling;
    signaling.on("peerJoined", ({ peer }) => this._present.add(peer));
    signaling.on("peerLeft", ({ peer }) => this.peerLeft(peer));
    signaling.on("signal", ({ peer, data }) => this.signal(peer, data));
    signaling.on("restored", ({ peers }) => this.signalingRestored(peers));
    const peers = await signaling.join();
    if (this._closing) return;
    this.peerId = /** @type {string} */ (signaling.peerId);
    for (const peer of peers) this._present.add(peer);
    // All of a small room, a few of a large one (the handler's mesh).
    const chosen = handler.chooseLinks ? handler.chooseLinks([...peers].filter((p) => p !== this.peerId)) : [...peers].sort();
    for (const peer of chosen) this._connect(peer);
    // Return once the link to each peer offered to opened, or was given up on
    // (the peer left or declined, or no attempt nor retry is left), or after `joinTimeout`.
    const waiting = chosen.filter((peer) => this._peers.has(peer)).map((peer) => this._settled(peer));
    if (waiting.length) {
      await new Promise((resolve) => {
        const timer = this._later(this.joinTimeout, resolve);
        Promise.all(waiting).then(() => {
          this._cancel(timer);
          resolve(undefined);
        });
      });
    }
    for (const done of this._joinWaiters.values()) done();
    this._joinWaiters.clear();
  }

  /** Resolves when the link to `peer` opens or is given up on (during start). */
  _settled(peer) {
    return new Promise((resolve) => this._joinWaiters.set(peer, resolve));
  }

  /** `peer` is linked, gone, or has no attempt left: start() stops waiting for it. */
  _settle(peer) {
    const done = this._joinWaiters.get(peer);
    if (done) {
      this._joinWaiters.delete(peer);
      done();
    }
  }

  /** Send one frame to `peer` (dropped when there is no open link). */
  send(peer, data) {
    const link = this._peers.get(peer);
    if (!link || !link.opened || link.channel.readyState !== "open") return;
    try {
      link.channel.send(data);
    } catch (error) {
      this.log?.debug?.(`could not send to ${peer}: ${error?.message ?? error}`);
    }
  }

  /** The other peers in the room, as signaling lists them. */
  presentPeers() {
    const out = new Set(this._present);
    out.delete(this.peerId);
    return out;
  }

  bufferedTo(peer) {
    const link = this._peers.get(peer);
    return link && link.opened ? link.channel.bufferedAmount : 0;
  }

  bufferedAmount() {
    let total = 0;
    for (const link of this._peers.values()) if (link.opened) total += link.channel.bufferedAmount;
    return total;
  }

  /** Wait until every open channel's queue is at most its share of `lowWater` (30 s at most). */
  async drain(lowWater) {
    const links = [...this._peers.values()].filter((l) => l.opened);
    if (!links.length) return;
    const share = Math.max(Math.floor(lowWater / links.length), 1);
    const waits = [];
    for (const link of links) {
      const channel = link.channel;
      if (channel.bufferedAmount <= share) continue;
      channel.bufferedAmountLowThreshold = share;
      waits.push(oneEvent(channel, ["bufferedamountlow", "close"], 30_000));
    }
    await Promise.all(waits);
  }

  /** How many peers the room holds, this one counted (as signaling lists them). */
  roomSize() {
    return this.presentPeers().size + 1;
  }

  /** Offer to `peer` (the mesh wants a link), unless there is a link or an attempt. */
  dial(peer) {
    if (this._present.has(peer) && !this._peers.has(peer)) this._connect(peer);
  }

  /** Close the link to `peer` for good (the mesh prunes it): no retry. */
  dropLink(peer) {
    this._dropSpares(peer);
    this._rolling.delete(peer);
    const link = this._peers.get(peer);
    if (link) {
      this.count("links_dropped");
      this._teardown(link, { retry: false });
    }
  }

  /** Close the link to `peer` (the engine found it dead or misbehaving); may be retried. */
  closeLink(peer) {
    this._dropSpares(peer);
    const link = this._peers.get(peer);
    if (link) this._teardown(link);
  }

  /** Leave: channels close first (what is queued goes out), then connections, then signaling. */
  async close() {
    this._closing = true;
    for (const peer of [...this._spares.keys()]) this._dropSpares(peer);
    const links = [...this._peers.values()];
    const open = links.filter((l) => l.opened && l.channel.readyState === "open");
    // Let queued frames go before the stream reset (bounded).
    await Promise.all(
      open.map(async (link) => {
        const channel = link.channel;
        if (channel.bufferedAmount > 0) {
          channel.bufferedAmountLowThreshold = 0;
          await oneEvent(channel, ["bufferedamountlow", "close"], 5000);
        }
      }),
    );
    const closing = open.map((link) => oneEvent(link.channel, ["close"], 2000));
    for (const link of open) {
      try {
        link.channel.close();
      } catch {
        /* already closing */
      }
    }
    await Promise.all(closing);
    for (const link of links) this._teardown(link, { retry: false });
    this._signaling?.close();
    for (const timer of this._timers) clearTimeout(timer);
    this._timers.clear();
    this._handler = null;
  }

  // -- signaling events -----------------------------------------------------------

  peerLeft(peer) {
    this._present.delete(peer);
    this._attempts.delete(peer);
    this._offerBudget.delete(peer);
    this._dropSpares(peer);
    this._settle(peer);
    const link = this._peers.get(peer);
    if (!link) return;
    if (!link.opened) {
      this._teardown(link);
      return;
    }
    // Signaling losing a peer does not mean the mesh did: close only if it stays silent.
    const noticed = nowSeconds();
    this._later(this.leftGrace, () => {
      if (!link.closed && link.lastFrame < noticed) this._teardown(link, { retry: false });
    });
  }

  signalingRestored(peers) {
    this._present = new Set(peers);
    if (!this._handler) return;
    // Registered again as a newcomer: offer to whom we lack (all of a small room; in a
    // large one, only if this peer is short of links).
    const others = [...this._present].filter((p) => p !== this.peerId).sort();
    const chosen = this._handler.chooseLinks ? this._handler.chooseLinks(others) : others;
    for (const peer of chosen) if (!this._peers.has(peer)) this._connect(peer);
  }

  /** A signal from `peer` (§3): opened if sealed, checked, acted on. */
  signal(peer, data) {
    if (this._closing) return;
    if (this._sealer) {
      try {
        data = this._sealer.open(peer, this.peerId, data, Date.now() / 1000);
      } catch (error) {
        if (error instanceof SealError) {
          this._refuse(peer, error.reason);
          return;
        }
        throw error;
      }
    } else if (data && Object.hasOwn(data, "sealed")) {
      this._refuse(peer, "sealed signal, but this peer has no room key");
      return;
    }
    const signal = readSignal(data);
    if (signal.refused) {
      this._refuse(peer, signal.refused);
      return;
    }
    if (signal.kind === "busy") this._busy(peer, signal.session);
    else if (signal.kind === "offer") this._offered(peer, signal.session, signal.sdp);
    else if (signal.kind === "answer") {
      const offering = this._tries(peer).find((a) => a.offerer && a.session === signal.session && !a.closed);
      if (offering) this._run(offering, () => this._acceptAnswer(offering, signal.sdp));
      else this.count("answers_ignored");
    }
  }

  _offered(peer, session, sdp) {
    if (!this._present.has(peer)) {
      this._refuse(peer, "offer from a peer signaling did not list in the room");
      return;
    }
    const existing = this._peers.get(peer);
    if (existing) {
      const crossing = existing.offerer && !existing.opened && !existing.closed;
      if (crossing && idLess(this.peerId, peer)) return; // the smaller id's offer wins
    }
    if (!this._takeOfferBudget(peer)) {
      this._refuse(peer, "offers too often");
      return;
    }
    if (this._handler && this._handler.acceptsLink && !this._handler.acceptsLink(peer)) {
      this.count("offers_declined");
      this._sendSignal(peer, { kind: "busy", session, sdp: "" });
      return;
    }
    // A new offer while we answer an older one, or while our side is open: keep what we
    // have until the new one opens (tearing down an open side would abort an association
    // the peer was about to finish).
    const spare = existing !== undefined && (existing.opened || !existing.offerer);
    if (!spare && existing) {
      this._dropSpares(peer);
      this._teardown(existing, { retry: false });
    }
    this._makeRoomForANegotiation();
    this.count("offers_answered");
    const answering = this._newAttempt(peer, { offerer: false, session, spare });
    this._run(answering, () => this._answer(answering, sdp));
  }

  _busy(peer, session) {
    for (const attempt of this._tries(peer)) {
      if (attempt.offerer && attempt.session === session && !attempt.opened) {
        this.count("offers_declined_by_peer");
        this._teardown(attempt, { retry: false });
        if (!this._peers.has(peer)) {
          // No attempt left: no further one either (the roll stops), and start() stops
          // waiting; the mesh offers to another peer.
          this._rolling.delete(peer);
          this._giveUp(peer);
          this._handler?.linkRefused?.(peer);
        }
        return;
      }
    }
  }

  _makeRoomForANegotiation() {
    const negotiating = [...this._peers.values()].filter((a) => !a.opened);
    for (const spares of this._spares.values()) negotiating.push(...spares);
    if (negotiating.length < this.maxNegotiations) return;
    const stuck = negotiating.filter((a) => !ICE_UP.has(a.pc.iceConnectionState));
    if (stuck.length) {
      this.count("negotiations_evicted");
      this._teardown(stuck.reduce((x, y) => (y.started < x.started ? y : x)));
    }
  }

  _takeOfferBudget(peer) {
    const now = nowSeconds();
    let [tokens, stamp] = this._offerBudget.get(peer) ?? [OFFER_BURST, now];
    tokens = Math.min(OFFER_BURST, tokens + (now - stamp) * OFFERS_PER_SECOND);
    if (tokens < 1) {
      this._offerBudget.set(peer, [tokens, now]);
      return false;
    }
    this._offerBudget.set(peer, [tokens - 1, now]);
    return true;
  }

  _refuse(peer, reason) {
    this.count("signals_refused");
    const key = `${peer}\u0000${reason}`;
    if (!this._refusalsLogged.has(key) && this._refusalsLogged.size < 1024) {
      this._refusalsLogged.add(key);
      this.log?.warn?.(`refused a signal from ${peer}: ${reason}`);
    }
    this._handler?.signalRefused?.(peer, reason);
  }

  // -- attempts -------------------------------------------------------------------

  _newAttempt(peer, { offerer, session, spare = false }) {
    const config = { iceServers: this.iceServers.map((s) => ({ ...s })) };
    // node-datachannel (libdatachannel) binds its ICE sockets to one address if told;
    // browsers ignore the extra field.
    if (this.iceAddresses && this.iceAddresses.length === 1) config.bindAddress = this.iceAddresses[0];
    const pc = new this._RTCPeerConnection(config);
    const channel = pc.createDataChannel(CHANNEL_LABEL, { negotiated: true, id: CHANNEL_ID, ordered: true });
    channel.binaryType = "arraybuffer";
    /** @type {Attempt} */
    const attempt = {
      id: peer,
      pc,
      channel,
      offerer,
      session,
      opened: false,
      closed: false,
      started: nowSeconds(),
      lastFrame: 0,
      timers: new Set(),
      ready: /** @type {Promise<boolean>} */ (/** @type {unknown} */ (null)),
      settle: (/** @type {boolean} */ _ok) => {},
    };
    attempt.ready = new Promise((resolve) => {
      attempt.settle = resolve;
    });
    if (spare) {
      const spares = this._spares.get(peer) ?? [];
      spares.push(attempt);
      this._spares.set(peer, spares);
      this._trimTries(peer);
    } else {
      this._peers.set(peer, attempt);
    }
    channel.addEventListener("open", () => this._opened(attempt));
    channel.addEventListener("message", (event) => {
      // Guarded: nothing thrown here may reach the WebRTC stack.
      try {
        this._frame(attempt, event.data);
      } catch (error) {
        this.log?.error?.(`error handling a frame from ${peer}: ${error?.stack ?? error}`);
      }
    });
    channel.addEventListener("close", () => this._teardown(attempt));
    pc.addEventListener("connectionstatechange", () => {
      if (pc.connectionState === "failed" || pc.connectionState === "closed") this._teardown(attempt);
    });
    this._later(
      this.connectTimeout,
      () => {
        if (!attempt.opened && !attempt.closed) {
          this.log?.warn?.(`no connection to ${peer} after ${this.connectTimeout} s; starting over`);
          this._teardown(attempt);
        }
      },
      attempt,
    );
    return attempt;
  }

  _connect(peer, { spare = false, rolling = false } = {}) {
    if (this._closing || peer === this.peerId) return;
    const attempt = this._newAttempt(peer, { offerer: true, session: randomHex(8), spare });
    this._run(attempt, () => this._offer(attempt));
    if (!spare && !rolling && !this._rolling.has(peer)) {
      const token = {};
      this._rolling.set(peer, token);
      this._roll(peer, token, Math.max(Math.floor(this.connectTimeout / this.spareAfter), 0));
    }
  }

  /**
   * While no attempt at `peer` has opened, start another every `spareAfter` seconds (for
   * `connectTimeout`). Unlike the reference, an attempt that already failed is replaced
   * too: libdatachannel fails the DTLS handshake when the answerer's ICE checks and
   * ClientHello beat its answer through signaling (it has no fingerprint yet), a race
   * on loopback that a fresh attempt wins.
   */
  _roll(peer, token, left) {
    if (this._rolling.get(peer) !== token) return; // stopped (busy, dropped)
    if (left <= 0) {
      this._rolling.delete(peer);
      this._giveUp(peer);
      return;
    }
    this._later(this.spareAfter, () => {
      if (this._rolling.get(peer) !== token) return;
      const first = this._peers.get(peer);
      if ((first && (first.opened || !first.offerer)) || !this._present.has(peer) || this._closing) {
        this._rolling.delete(peer);
        this._giveUp(peer);
        return;
      }
      this.count("spare_attempts");
      if (first) this._connect(peer, { spare: true });
      else this._connect(peer, { rolling: true });
      this._roll(peer, token, left - 1);
    });
  }

  /** No attempt, roll nor retry is left for `peer`: start() stops waiting for it. */
  _giveUp(peer) {
    if (!this._peers.has(peer) && !this._rolling.has(peer) && !this._retrying.has(peer)) this._settle(peer);
  }

  _tries(peer) {
    const first = this._peers.get(peer);
    return [...(first ? [first] : []), ...(this._spares.get(peer) ?? [])];
  }

  /** Past MAX_ATTEMPTS the oldest attempt that has not connected goes; the newest stays. */
  _trimTries(peer) {
    let tries;
    while ((tries = this._tries(peer)).length > MAX_ATTEMPTS) {
      const older = tries.slice(0, -1);
      const stuck = older.filter((a) => a.pc.connectionState !== "connected");
      this._teardown((stuck.length ? stuck : older)[0], { retry: false });
    }
  }

  _dropSpares(peer) {
    const spares = this._spares.get(peer) ?? [];
    this._spares.delete(peer);
    for (const spare of spares) this._teardown(spare, { retry: false }); // unlisted first: never promoted
  }

  async _offer(attempt) {
    const offer = await attempt.pc.createOffer();
    await attempt.pc.setLocalDescription(offer);
    await this._sendDescription(attempt, "offer");
  }

  async _answer(attempt, sdp) {
    await attempt.pc.setRemoteDescription({ type: "offer", sdp: filterCandidates(sdp, this.iceAddresses) });
    const answer = await attempt.pc.createAnswer();
    await attempt.pc.setLocalDescription(answer);
    await this._sendDescription(attempt, "answer");
  }

  async _acceptAnswer(attempt, sdp) {
    if (attempt.pc.signalingState !== "have-local-offer") return;
    await attempt.pc.setRemoteDescription({ type: "answer", sdp: filterCandidates(sdp, this.iceAddresses) });
  }

  /** Signal our description once ICE gathering is complete (no trickle, §3.3). */
  async _sendDescription(attempt, kind) {
    await gatheringComplete(attempt.pc, GATHER_TIMEOUT_MS);
    if (attempt.closed) return;
    const sdp = filterCandidates(attempt.pc.localDescription?.sdp ?? "", this.iceAddresses);
    if (!(await this._sendSignal(attempt.id, { kind, session: attempt.session, sdp }))) this._teardown(attempt);
  }

  async _sendSignal(peer, payload) {
    if (!this._signaling) return false;
    let data = payload;
    if (this._sealer) data = this._sealer.seal(this.peerId, peer, payload, Date.now() / 1000);
    return this._signaling.signal(peer, data);
  }

  _opened(attempt) {
    if (attempt.closed) return;
    const peer = attempt.id;
    const spares = this._spares.get(peer) ?? [];
    if (spares.includes(attempt)) {
      // A further attempt won: it becomes the link.
      spares.splice(spares.indexOf(attempt), 1);
      if (!spares.length) this._spares.delete(peer);
      const first = this._peers.get(peer);
      this._peers.set(peer, attempt);
      if (first) {
        first.settle(true); // start() waits on the first attempt
        this._teardown(first, { retry: false, current: false });
      }
    } else if (this._peers.get(peer) !== attempt) {
      return;
    }
    this._dropSpares(peer);
    attempt.opened = true;
    attempt.lastFrame = nowSeconds();
    this._attempts.delete(peer);
    attempt.settle(true);
    this._settle(peer);
    this._handler?.linkUp(peer);
  }

  _frame(attempt, data) {
    if (attempt.closed || !this._handler) return;
    attempt.lastFrame = nowSeconds();
    let bytes;
    if (typeof data === "string") bytes = encoder.encode(data);
    else if (data instanceof ArrayBuffer) bytes = new Uint8Array(data);
    else if (ArrayBuffer.isView(data)) bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    else return; // a Blob: binaryType is arraybuffer, so never
    this._handler.frame(attempt.id, bytes);
  }

  /**
   * Forget an attempt (idempotent); tell the handler if it was the link; retry if ours.
   * `current: false` when a spare has already taken its place.
   */
  _teardown(attempt, { retry = true, current: stillCurrent = true } = {}) {
    if (attempt.closed) return;
    attempt.closed = true;
    attempt.settle(false);
    for (const timer of attempt.timers) this._cancel(timer);
    attempt.timers.clear();
    try {
      attempt.pc.close();
    } catch {
      /* already closed */
    }
    const peer = attempt.id;
    const spares = this._spares.get(peer) ?? [];
    if (spares.includes(attempt)) {
      // never a link: nothing to report, nothing to retry
      spares.splice(spares.indexOf(attempt), 1);
      if (!spares.length) this._spares.delete(peer);
      return;
    }
    const current = stillCurrent && this._peers.get(peer) === attempt;
    if (current) {
      this._peers.delete(peer);
      if (spares.length && !this._closing) {
        // The link or first attempt failed; the next oldest goes on.
        this._peers.set(peer, /** @type {Attempt} */ (spares.shift()));
        if (!spares.length) this._spares.delete(peer);
        retry = false;
      }
    }
    if (attempt.opened && current) this._handler?.linkDown(peer);
    if (retry && current && !this._closing) this._scheduleRetry(peer);
    this._giveUp(peer);
  }

  _scheduleRetry(peer) {
    // One side re-offers, so retries cannot cross: the smaller peer id. In a bounded
    // mesh none does: the mesh dials whom it lacks.
    if (!this._present.has(peer) || !idLess(this.peerId, peer)) return;
    if (this._handler?.retriesLink && !this._handler.retriesLink(peer)) return;
    const attempt = (this._attempts.get(peer) ?? 0) + 1;
    this._attempts.set(peer, attempt);
    const delay = Math.min(this.retryBackoff * 2 ** (attempt - 1), 30);
    this._retrying.add(peer);
    this._later(delay, () => {
      this._retrying.delete(peer);
      if (this._present.has(peer) && !this._peers.has(peer) && !this._closing) this._connect(peer);
      this._giveUp(peer);
    });
  }

  /** Run a negotiation step of `attempt`; a failure ends the attempt. */
  _run(attempt, step) {
    Promise.resolve()
      .then(step)
      .catch((error) => {
        if (!attempt.closed) {
          this.log?.warn?.(`WebRTC negotiation with ${attempt.id} failed: ${error?.message ?? error}`);
          this._teardown(attempt);
        }
      });
  }

  _later(seconds, callback, attempt = null) {
    const timer = setTimeout(() => {
      this._timers.delete(timer);
      attempt?.timers.delete(timer);
      callback();
    }, seconds * 1000);
    this._timers.add(timer);
    attempt?.timers.add(timer);
    return timer;
  }

  _cancel(timer) {
    clearTimeout(timer);
    this._timers.delete(timer);
  }
}

/**
 * @typedef {object} Attempt
 * @property {string} id
 * @property {any} pc
 * @property {any} channel
 * @property {boolean} offerer
 * @property {string} session
 * @property {boolean} opened
 * @property {boolean} closed
 * @property {number} started
 * @property {number} lastFrame
 * @property {Set<any>} timers
 * @property {Promise<boolean>} ready
 * @property {(ok: boolean) => void} settle
 */

function nowSeconds() {
  return performance.now() / 1000;
}

/** Resolves on the first of `names` fired by `target`, or after `ms`. */
function oneEvent(target, names, ms) {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      for (const name of names) target.removeEventListener(name, done);
      resolve(undefined);
    };
    const timer = setTimeout(done, ms);
    for (const name of names) target.addEventListener(name, done);
  });
}

/** Resolves when `pc` has gathered every candidate (or after `ms`). */
function gatheringComplete(pc, ms) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      pc.removeEventListener("icecandidate", lastCandidate);
      resolve(undefined);
    };
    const check = () => {
      if (pc.iceGatheringState === "complete") done();
    };
    const lastCandidate = (event) => {
      if (!event.candidate) done();
    };
    const timer = setTimeout(done, ms);
    pc.addEventListener("icegatheringstatechange", check);
    pc.addEventListener("icecandidate", lastCandidate);
  });
}
