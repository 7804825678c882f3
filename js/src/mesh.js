// Which peers to link to: all of a small room, a few random ones of a large room
// (PROTOCOL.md §3.2, §6.9). A port of crdt_stores/mesh.py, rule for rule and number for
// number, in camelCase; sans-IO: time is an argument, the random source a function.
//
// A room of up to `fullMeshMax` peers is a full mesh: every write reaches every peer in
// one hop. Past that, each peer keeps between `degreeLow` and `degreeHigh` links
// (gossipsub's D_lo and D_hi):
//
// * a newcomer dials `degree` random peers; a peer whose links fall under `degreeLow`
//   (neighbours left, links died) dials more, back up to `degree`;
// * a dialed peer accepts (up to twice `degreeHigh`, a hard cap; past it the transport
//   answers `busy`) and, past `degreeHigh`, drops the links to the neighbours that
//   reported the most links of their own (HELLO/LINKS): those can spare one, and a
//   newcomer's few links are kept;
// * about every `rewireInterval` (jittered, x0.5 to x1.5) a peer swaps one link for a
//   link to a random peer: random links keep the graph connected with high probability,
//   and the swaps mend the rare split within a few intervals;
// * a room that shrinks back to `fullMeshMax` or fewer becomes a full mesh again.
//
// Writes cross a bounded mesh by the engine's relay (§6.5). `Topology` is plain state:
// the meeting tells it what the transport did and asks whom to dial or drop.

const OPTIONS = ["fullMeshMax", "degree", "degreeLow", "degreeHigh", "dialTimeout", "refusedCooldown", "rewireInterval"];

/** Room sizes and link counts of the mesh (the reference's `MeshConfig`). */
export class MeshConfig {
  /** @param {Partial<MeshConfig>} [options] */
  constructor(options = {}) {
    const o = options ?? {};
    for (const name of Object.keys(o)) {
      if (!OPTIONS.includes(name)) throw new TypeError(`unknown mesh option: ${name}`);
    }
    /** Largest room that is a full mesh (this peer counted). */
    this.fullMeshMax = o.fullMeshMax ?? 16;
    /** Links a peer of a large room dials to (gossipsub's D). */
    this.degree = o.degree ?? 6;
    /** Fewer links than this and a peer dials more (back up to `degree`). */
    this.degreeLow = o.degreeLow ?? 4;
    /** More links than this and a peer drops some (a link is accepted up to twice this). */
    this.degreeHigh = o.degreeHigh ?? 12;
    /** Seconds: a dial that has not opened a link by then is given up (another is tried). */
    this.dialTimeout = o.dialTimeout ?? 15;
    /** Seconds: a peer that refused a link (`busy`) is not dialed again for this long. */
    this.refusedCooldown = o.refusedCooldown ?? 5;
    /** Seconds: about how often (jittered) a peer of a large room swaps a link. */
    this.rewireInterval = o.rewireInterval ?? 30;
    for (const name of OPTIONS) {
      if (typeof this[name] !== "number" || Number.isNaN(this[name])) throw new TypeError(`mesh option ${name} must be a number`);
    }
    for (const name of ["fullMeshMax", "degree", "degreeLow", "degreeHigh"]) {
      if (!Number.isInteger(this[name])) throw new TypeError(`mesh option ${name} must be an integer`);
    }
    if (this.fullMeshMax < 2) throw new RangeError("fullMeshMax must be at least 2");
    if (!(this.degreeLow >= 1 && this.degreeLow <= this.degree && this.degree <= this.degreeHigh)) {
      throw new RangeError("need 1 <= degreeLow <= degree <= degreeHigh");
    }
    if (!(this.dialTimeout > 0) || !(this.rewireInterval > 0) || !(this.refusedCooldown >= 0)) {
      throw new RangeError("dialTimeout and rewireInterval must be positive");
    }
    Object.freeze(this);
  }
}

/** Ids in code-point order (as Python's `sorted`): UTF-16 order, except that a surrogate
 * (part of a code point past U+FFFF) comes after every other unit. */
function byCodePoint(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    const sx = x >= 0xd800 && x <= 0xdfff;
    const sy = y >= 0xd800 && y <= 0xdfff;
    return sx === sy ? x - y : sx ? 1 : -1;
  }
  return a.length - b.length;
}

/** One peer's view of its links, and the choice of which to open or close. */
export class Topology {
  /**
   * @param {MeshConfig | Partial<MeshConfig> | null} [config]
   * @param {() => number} [random] uniform in [0, 1) (default `Math.random`)
   */
  constructor(config = null, random = Math.random) {
    this.config = config instanceof MeshConfig ? config : new MeshConfig(config ?? {});
    /** @type {Set<string>} */
    this.linked = new Set();
    /** @type {Map<string, number>} peer -> when the dial is given up */
    this._dialing = new Map();
    /** @type {Map<string, number>} peer -> until when it is not dialed */
    this._refused = new Map();
    this._random = random;
    // When the next rewiring is due; null while the room is a full mesh (set the first
    // time this peer sees the room bounded, cleared if it shrinks back).
    /** @type {number | null} */
    this._rewireAt = null;
    /** @type {string | null} a rewiring link: once up, another goes */
    this._swapping = null;
  }

  /** Whether a room of `roomSize` peers (this one counted) is a bounded mesh. */
  bounded(roomSize) {
    return roomSize > this.config.fullMeshMax;
  }

  /** Links open or being opened. */
  get degree() {
    return this.linked.size + this._dialing.size;
  }

  // -- what the transport did ---------------------------------------------------------

  linkUp(peer) {
    this.linked.add(peer);
    this._dialing.delete(peer);
    this._refused.delete(peer);
  }

  linkDown(peer) {
    this.linked.delete(peer);
    this._dialing.delete(peer);
    if (peer === this._swapping) this._swapping = null;
  }

  /** `peer` would not link (at its hard cap): try others for a while. */
  refused(peer, now) {
    this._dialing.delete(peer);
    this._refused.set(peer, now + this.config.refusedCooldown);
    if (peer === this._swapping) this._swapping = null;
  }

  // -- choices --------------------------------------------------------------------------

  /**
   * Whom to dial among the `present` peers (all others in the room), joining or
   * rejoining: every one not linked yet in a small room; in a large one, random ones up
   * to `degree` links.
   * @param {Iterable<string>} present
   * @param {number} now
   * @returns {string[]}
   */
  choose(present, now) {
    const all = new Set(present);
    const peers = [...all].filter((p) => !this.linked.has(p) && !this._dialing.has(p)).sort(byCodePoint);
    let chosen;
    if (!this.bounded(all.size + 1)) {
      chosen = peers;
    } else {
      this._enterBounded(now);
      const wanted = Math.max(0, Math.min(this.config.degree - this.degree, peers.length));
      chosen = this._sample(peers, wanted);
    }
    this._dial(chosen, now);
    return chosen;
  }

  /** Whether to accept a link `peer` dials: always in a small room; in a large one up
   * to twice `degreeHigh` (`toDrop` then trims back). */
  accepts(peer, roomSize) {
    if (this.linked.has(peer) || this._dialing.has(peer) || !this.bounded(roomSize)) return true;
    return this.linked.size < 2 * this.config.degreeHigh;
  }

  /**
   * Peers to dial now: back up to `degree` after falling under `degreeLow`; one random
   * peer when a rewiring is due; every present peer it lacks once a room shrinks back to
   * a full mesh. (Usually empty.)
   * @param {Iterable<string>} present
   * @param {number} now
   * @returns {string[]}
   */
  toDial(present, now) {
    const config = this.config;
    const all = [...new Set(present)];
    for (const [peer, until] of [...this._dialing]) {
      if (until <= now) {
        this._dialing.delete(peer);
        if (peer === this._swapping) this._swapping = null;
      }
    }
    // Refusals that ended are forgotten in any room (the reference does it only in a
    // bounded one, so a refusal that ends after the room shrank stays a deadline in the
    // past: see needsAttention).
    for (const [peer, until] of [...this._refused]) if (until <= now) this._refused.delete(peer);
    if (!this.bounded(all.length + 1)) {
      if (this._rewireAt === null) return []; // a full mesh links itself: the newcomer dials everyone
      this._rewireAt = null;
      const wanted = all.filter((p) => !this.linked.has(p) && !this._dialing.has(p));
      this._dial(wanted, now);
      return wanted;
    }
    this._enterBounded(now);
    const missing = this.degree < config.degreeLow ? config.degree - this.degree : 0;
    const rewire = this._rewireAt !== null && now >= this._rewireAt;
    if (rewire) this._rewireAt = now + config.rewireInterval * this._uniform(0.5, 1.5);
    if (!missing && !(rewire && this._swapping === null)) return [];
    const candidates = all.filter((p) => !this.linked.has(p) && !this._dialing.has(p) && !this._refused.has(p));
    const wanted = this._sample(candidates, Math.min(Math.max(missing, 1), candidates.length));
    if (!missing && wanted.length) this._swapping = wanted[0];
    this._dial(wanted, now);
    return wanted;
  }

  /**
   * Links to close: past `degreeHigh`, or one for a rewiring link that opened.
   * `degrees`: how many links each neighbour reported; the best-linked go first, and a
   * swap only drops a neighbour that stays above `degreeLow`.
   * @param {number} roomSize
   * @param {Map<string, number> | Record<string, number>} degrees
   * @returns {string[]}
   */
  toDrop(roomSize, degrees) {
    if (!this.bounded(roomSize)) return [];
    const config = this.config;
    const degreeOf = (peer) => (degrees instanceof Map ? degrees.get(peer) : Object.hasOwn(degrees, peer) ? degrees[peer] : undefined) ?? 0;
    const excess = this.linked.size - config.degreeHigh;
    const swap = this._swapping;
    const swapped = swap !== null && this.linked.has(swap);
    if (swapped) this._swapping = null;
    if (excess <= 0 && !(swapped && this.linked.size > config.degreeLow)) return [];
    const ranked = [...this.linked]
      .filter((p) => p !== swap)
      .map((p) => ({ p, d: degreeOf(p), r: this._random() }))
      .sort((a, b) => b.d - a.d || a.r - b.r)
      .map(({ p }) => p);
    const dropped = excess > 0 ? ranked.slice(0, excess) : ranked.slice(0, 1).filter((p) => degreeOf(p) > config.degreeLow);
    for (const peer of dropped) this.linked.delete(peer);
    return dropped;
  }

  /** When a dial times out, a rewiring is due, or a refusal ends while links are missing
   * (null: nothing timed). */
  nextDeadline() {
    const times = [...this._dialing.values()];
    if (this._rewireAt !== null) times.push(this._rewireAt);
    if (this.degree < this.config.degreeLow) times.push(...this._refused.values());
    return times.length ? Math.min(...times) : null;
  }

  /** Whether `toDial`/`toDrop` may have work (cheap: no look at presence). */
  needsAttention(roomSize, now) {
    const config = this.config;
    if (this.bounded(roomSize)) {
      if (this._rewireAt === null || now >= this._rewireAt || (this._swapping !== null && this.linked.has(this._swapping))) return true;
      if (this.degree < config.degreeLow || this.linked.size > config.degreeHigh) return true;
    } else if (this._rewireAt !== null) {
      return true;
    }
    for (const until of this._dialing.values()) if (until <= now) return true;
    // A refusal that ended while links are missing is in nextDeadline(): toDial forgets
    // it (the reference leaves it there in a room that shrank back, and its timer then
    // fires at every minimum sleep).
    if (this.degree < config.degreeLow) for (const until of this._refused.values()) if (until <= now) return true;
    return false;
  }

  // -- internals ------------------------------------------------------------------------

  _enterBounded(now) {
    if (this._rewireAt === null) this._rewireAt = now + this.config.rewireInterval * this._uniform(0.5, 1.5);
  }

  _dial(peers, now) {
    for (const peer of peers) this._dialing.set(peer, now + this.config.dialTimeout);
  }

  _uniform(low, high) {
    return low + (high - low) * this._random();
  }

  /** `k` distinct elements of `items` chosen at random (a partial Fisher-Yates shuffle). */
  _sample(items, k) {
    const pool = [...items];
    const out = [];
    for (let i = 0; i < k && pool.length; i++) {
      const j = Math.min(Math.floor(this._random() * pool.length), pool.length - 1);
      out.push(pool[j]);
      pool[j] = /** @type {string} */ (pool.at(-1));
      pool.pop();
    }
    return out;
  }
}
