// The bounded-degree mesh (mesh.js, a port of crdt_stores/mesh.py; PROTOCOL.md §3.2,
// §6.9): the rules as plain state (the scenarios of tests/test_mesh.py), seeded random
// programs of joins and leaves, and how the Meeting and the transport act on them
// (a fake transport, a fake RTCPeerConnection: no network).

import assert from "node:assert/strict";
import { test } from "node:test";
import { Meeting } from "../src/meeting.js";
import { MeshConfig, Topology } from "../src/mesh.js";
import { WebRTCTransport } from "../src/transport/webrtc.js";
import { seeded } from "./helpers.js";

const CONFIG = new MeshConfig({ fullMeshMax: 8 }); // degrees 4 / 6 / 12

const peers = (n, prefix = "p") => Array.from({ length: n }, (_, i) => `${prefix}${String(i).padStart(3, "0")}`);

// -- Topology, plain state ------------------------------------------------------------

test("MeshConfig has the reference's numbers and checks its options", () => {
  const d = new MeshConfig();
  assert.deepEqual(
    [d.fullMeshMax, d.degree, d.degreeLow, d.degreeHigh, d.dialTimeout, d.refusedCooldown, d.rewireInterval],
    [16, 6, 4, 12, 15, 5, 30],
  );
  assert.ok(Object.isFrozen(d));
  assert.throws(() => new MeshConfig({ degreeLow: 7, degree: 6 }), RangeError);
  assert.throws(() => new MeshConfig({ fullMeshMax: 1 }), RangeError);
  assert.throws(() => new MeshConfig({ degreeLow: 0 }), RangeError);
  assert.throws(() => new MeshConfig({ degree: 13 }), RangeError);
  assert.throws(() => new MeshConfig({ dialTimeout: 0 }), RangeError);
  assert.throws(() => new MeshConfig({ rewireInterval: -1 }), RangeError);
  assert.throws(() => new MeshConfig({ refusedCooldown: -1 }), RangeError);
  assert.throws(() => new MeshConfig({ full_mesh_max: 3 }), TypeError);
  assert.throws(() => new MeshConfig({ degree: "6" }), TypeError);
  assert.throws(() => new MeshConfig({ degree: 5.5 }), TypeError);
  assert.equal(new MeshConfig({ refusedCooldown: 0 }).refusedCooldown, 0);
  assert.equal(new Topology({ fullMeshMax: 3 }).config.fullMeshMax, 3);
});

test("a small room is a full mesh", () => {
  const topology = new Topology(CONFIG, seeded(1));
  assert.deepEqual(topology.choose(peers(7), 0), peers(7));
  assert.ok(peers(7).every((p) => topology.accepts(p, 8)));
  assert.deepEqual(topology.toDial(new Set(peers(7)), 0), [], "a full mesh links itself");
  assert.equal(topology.nextDeadline(), CONFIG.dialTimeout, "the dials time out");
});

test("a newcomer to a large room dials degree peers", () => {
  const topology = new Topology(CONFIG, seeded(1));
  const chosen = topology.choose(peers(100), 0);
  assert.equal(chosen.length, CONFIG.degree);
  assert.equal(new Set(chosen).size, CONFIG.degree);
  assert.equal(topology.degree, CONFIG.degree, "dials count until they open or time out");
  assert.ok(chosen.every((p) => topology.accepts(p, 101)), "a peer being dialed is accepted");
});

test("a peer accepts links up to twice degreeHigh", () => {
  const topology = new Topology(CONFIG, seeded(1));
  for (const peer of peers(2 * CONFIG.degreeHigh)) {
    assert.ok(topology.accepts(peer, 100));
    topology.linkUp(peer);
  }
  assert.ok(!topology.accepts("other", 100));
  assert.ok(topology.accepts("p000", 100), "a reconnect of a link it has");
  assert.ok(topology.accepts("other", 8), "a full mesh takes everyone");
});

test("under degreeLow a peer dials back up to degree", () => {
  const topology = new Topology(CONFIG, seeded(1));
  const present = new Set(peers(100));
  for (const peer of peers(6)) topology.linkUp(peer);
  assert.deepEqual(topology.toDial(present, 0), [], "at degree: nothing to do");
  for (const peer of peers(3)) topology.linkDown(peer); // 3 < degreeLow
  const dialed = topology.toDial(present, 0);
  assert.equal(dialed.length, 3);
  assert.ok(!dialed.some((p) => ["p003", "p004", "p005"].includes(p)));
  assert.deepEqual(topology.toDial(present, 1), [], "dials pending count as links");
});

test("dials time out and refusals cool down", () => {
  const config = new MeshConfig({ fullMeshMax: 8, dialTimeout: 5, refusedCooldown: 30 });
  const topology = new Topology(config, seeded(1));
  const present = new Set(peers(10));
  const first = topology.choose([...present].sort(), 0);
  assert.equal(topology.nextDeadline(), 5);
  topology.refused(first[0], 1);
  const again = topology.toDial(present, 6); // the other five timed out: dial anew
  assert.ok(!again.includes(first[0]));
  assert.equal(again.length, config.degree);
  assert.equal(topology.needsAttention(11, 6), false, "dialing: wait");
  assert.equal(topology.needsAttention(11, 11.5), true, "they timed out");
});

test("past degreeHigh the best-linked neighbours are dropped", () => {
  const topology = new Topology(CONFIG, seeded(1));
  topology.choose(peers(100), 0); // bounded from now on
  for (const peer of peers(20)) topology.linkUp(peer);
  const degrees = new Map(peers(20).map((p, i) => [p, i % 2 ? 20 : 5]));
  const dropped = topology.toDrop(101, degrees);
  assert.equal(dropped.length, 8);
  assert.ok(dropped.every((p) => degrees.get(p) === 20));
  assert.equal(topology.linked.size, CONFIG.degreeHigh);
  assert.deepEqual(topology.toDrop(101, degrees), []);
  // Degrees as a plain object too; unknown neighbours count 0.
  const other = new Topology(CONFIG, seeded(2));
  for (const peer of peers(13)) other.linkUp(peer);
  assert.deepEqual(other.toDrop(101, { p005: 9 }), ["p005"]);
  assert.deepEqual(other.toDrop(8, {}), [], "a full mesh drops nothing");
});

test("a rewiring swaps one link for a random one", () => {
  const config = new MeshConfig({ fullMeshMax: 8, rewireInterval: 10 });
  const topology = new Topology(config, seeded(1));
  const present = new Set(peers(100));
  for (const peer of topology.choose(present, 0)) topology.linkUp(peer);
  assert.deepEqual(topology.toDial(present, 1), [], "not due yet");
  const deadline = topology.nextDeadline();
  assert.ok(deadline !== null && deadline >= 5 && deadline <= 15, `deadline ${deadline}`);
  assert.ok(topology.needsAttention(101, deadline));
  const dialed = topology.toDial(present, deadline);
  assert.equal(dialed.length, 1);
  const [fresh] = dialed;
  assert.ok(!topology.linked.has(fresh));
  topology.linkUp(fresh);
  const degrees = new Map([...topology.linked].map((p) => [p, 6]));
  const dropped = topology.toDrop(101, degrees);
  assert.equal(dropped.length, 1);
  assert.ok(dropped[0] !== fresh && topology.linked.has(fresh));
  assert.equal(topology.linked.size, config.degree);
  assert.deepEqual(topology.toDrop(101, degrees), [], "one swap, one drop");
  const next = topology.nextDeadline();
  assert.ok(next >= deadline + 5 && next <= deadline + 15, "the next rewiring is jittered");
});

test("a swap keeps a neighbour that would fall to degreeLow", () => {
  const config = new MeshConfig({ fullMeshMax: 8, rewireInterval: 10 });
  const topology = new Topology(config, seeded(3));
  const present = new Set(peers(100));
  for (const peer of topology.choose(present, 0)) topology.linkUp(peer);
  const [fresh] = topology.toDial(present, /** @type {number} */ (topology.nextDeadline()));
  topology.linkUp(fresh);
  const degrees = new Map([...topology.linked].map((p) => [p, config.degreeLow]));
  assert.deepEqual(topology.toDrop(101, degrees), [], "each neighbour has only degreeLow links");
  assert.equal(topology.linked.size, config.degree + 1);
});

test("a room that shrank back links everyone", () => {
  const topology = new Topology(CONFIG, seeded(1));
  const chosen = topology.choose(peers(30), 0); // bounded: six dials
  for (const peer of chosen) topology.linkUp(peer);
  const small = new Set([...chosen.slice(0, 3), "x", "y"]); // six peers with this one
  for (const peer of chosen) if (!small.has(peer)) topology.linkDown(peer);
  assert.ok(topology.needsAttention(6, 1));
  assert.deepEqual(topology.toDial(small, 1).sort(), ["x", "y"]);
  assert.ok(!topology.needsAttention(6, 1));
});

test("a refusal that ends after the room shrank back is no deadline in the past", () => {
  const topology = new Topology(CONFIG, seeded(1));
  topology.choose(peers(20), 0);
  topology.refused("p001", 1); // busy: not dialed until 6
  for (const peer of peers(20)) topology.linkDown(peer);
  const small = new Set(["p002", "p003"]); // a room of three: a full mesh again
  topology.toDial(small, 2);
  assert.equal(topology.nextDeadline(), 6);
  assert.ok(topology.needsAttention(3, 6), "the timer at 6 has work");
  topology.toDial(small, 6);
  assert.equal(topology.nextDeadline(), 17, "only the dials' timeouts (2 + 15) remain");
});

// -- rooms of topologies: seeded random programs ----------------------------------------

/** A room of `Topology`s where a dial links at once (or is refused): the rules alone. */
class Room {
  constructor(config, rng) {
    this.config = config;
    this.rng = rng;
    /** @type {Map<string, Topology>} */
    this.tops = new Map();
    /** @type {Map<string, Set<string>>} */
    this.graph = new Map();
    this.refusals = 0;
  }

  /** How many links each peer has (what it would announce), read when asked. */
  degrees() {
    const graph = this.graph;
    return new (class extends Map {
      get(peer) {
        return graph.get(peer)?.size;
      }
    })();
  }

  dial(a, b, now) {
    if (!this.tops.has(b)) return;
    if (this.tops.get(b).accepts(a, this.tops.size)) {
      this.link(a, b);
      for (const victim of this.tops.get(b).toDrop(this.tops.size, this.degrees())) this.unlink(b, victim);
      // The dialer prunes too (a rewiring link opened, or past degreeHigh).
      for (const victim of this.tops.get(a).toDrop(this.tops.size, this.degrees())) this.unlink(a, victim);
    } else {
      this.refusals++;
      this.tops.get(a).refused(b, now);
    }
  }

  link(a, b) {
    this.tops.get(a).linkUp(b);
    this.tops.get(b).linkUp(a);
    this.graph.get(a).add(b);
    this.graph.get(b).add(a);
  }

  /** `a` closed its link to `b` (its topology already forgot it). */
  unlink(a, b) {
    this.graph.get(a).delete(b);
    this.graph.get(b).delete(a);
    this.tops.get(b).linkDown(a);
  }

  join(peer, now = 0) {
    this.tops.set(peer, new Topology(this.config, seeded(Math.floor(this.rng() * 2 ** 32))));
    this.graph.set(peer, new Set());
    const others = [...this.tops.keys()].filter((p) => p !== peer);
    for (const other of this.tops.get(peer).choose(others, now)) this.dial(peer, other, now);
  }

  leave(peer) {
    for (const other of this.graph.get(peer)) {
      this.graph.get(other).delete(peer);
      this.tops.get(other).linkDown(peer);
    }
    this.graph.delete(peer);
    this.tops.delete(peer);
  }

  /** One round of the meeting's timer on every peer (`_maintainMesh`). */
  repair(now) {
    for (const [peer, topology] of this.tops) {
      if (!topology.needsAttention(this.tops.size, now)) continue;
      for (const victim of topology.toDrop(this.tops.size, this.degrees())) this.unlink(peer, victim);
      const others = new Set(this.tops.keys());
      others.delete(peer);
      for (const other of topology.toDial(others, now)) this.dial(peer, other, now);
    }
  }

  check(what) {
    const degrees = [...this.graph.values()].map((links) => links.size);
    const low = Math.min(this.config.degreeLow, this.tops.size - 1);
    const high = this.tops.size <= this.config.fullMeshMax ? this.tops.size - 1 : this.config.degreeHigh;
    assert.ok(Math.max(...degrees) <= high, `${what}: a peer has ${Math.max(...degrees)} links (max ${high})`);
    assert.ok(Math.min(...degrees) >= low, `${what}: a peer has ${Math.min(...degrees)} links (min ${low})`);
    assert.ok(connected(this.graph), `${what}: the room split`);
  }
}

function connected(graph) {
  const start = graph.keys().next().value;
  const seen = new Set([start]);
  const queue = [start];
  while (queue.length) {
    for (const there of graph.get(queue.shift())) {
      if (!seen.has(there)) {
        seen.add(there);
        queue.push(there);
      }
    }
  }
  return seen.size === graph.size;
}

test("the dial rules keep random rooms connected within their degrees (200 seeded programs)", () => {
  const master = seeded(20240514);
  for (let program = 0; program < 200; program++) {
    const rng = seeded(Math.floor(master() * 2 ** 32));
    const n = 9 + Math.floor(rng() * 112); // 9..120
    const leave = rng() * 0.3;
    const room = new Room(CONFIG, rng);
    for (const peer of peers(n)) room.join(peer);
    const names = [...room.tops.keys()];
    for (let i = 0; i < Math.floor(leave * n); i++) {
      const j = Math.floor(rng() * names.length);
      room.leave(names[j]);
      names.splice(j, 1);
    }
    for (let round = 0; round < 5; round++) room.repair(0); // the timer's rounds
    room.check(`program ${program} (n=${n}, ${Math.floor(leave * n)} left)`);
  }
});

test("a full mesh that outgrows fullMeshMax becomes bounded without splitting", () => {
  for (let seed = 1; seed <= 40; seed++) {
    const config = new MeshConfig({ fullMeshMax: 16 });
    const room = new Room(config, seeded(seed));
    for (const peer of peers(16)) room.join(peer);
    room.check(`seed ${seed}: 16 peers`);
    assert.ok([...room.graph.values()].every((links) => links.size === 15), "a full mesh");
    let now = 0;
    for (const peer of peers(24, "q")) {
      room.join(peer, now);
      now += 0.1;
      room.repair(now);
    }
    for (let round = 0; round < 5; round++) room.repair(now);
    room.check(`seed ${seed}: 40 peers`);
  }
});

test("rewiring over time keeps a large room connected within its degrees", () => {
  const config = new MeshConfig({ fullMeshMax: 8, rewireInterval: 30 });
  const rng = seeded(7);
  const room = new Room(config, rng);
  for (const peer of peers(60)) room.join(peer);
  let swaps = 0;
  for (let now = 1; now <= 600; now += 1) {
    const before = new Map([...room.graph].map(([p, links]) => [p, links.size]));
    room.repair(now);
    if ([...room.graph].some(([p, links]) => links.size !== before.get(p))) swaps++;
    if (now % 60 === 0) room.check(`t=${now}`);
    if (now === 300) for (const peer of peers(6)) room.leave(peer); // a tenth leaves at once
  }
  assert.ok(swaps > 20, `the links were rewired (${swaps} changes)`);
  room.check("end");
});

test("a bounded room that shrinks back to fullMeshMax becomes a full mesh again", () => {
  const room = new Room(CONFIG, seeded(11));
  for (const peer of peers(30)) room.join(peer);
  for (let round = 0; round < 3; round++) room.repair(0);
  room.check("30 peers");
  for (const peer of peers(23)) room.leave(peer); // 7 stay: <= fullMeshMax
  room.repair(1);
  assert.ok([...room.graph.values()].every((links) => links.size === 6), "everyone linked to everyone");
});

// -- the Meeting drives the mesh (a fake transport) ----------------------------------------

class FakeTransport {
  constructor(present) {
    this.peerId = "me";
    this.present = new Set(present);
    this.dialed = [];
    this.dropped = [];
    this.stats = {};
    this.handler = null;
  }
  async start(handler) {
    this.handler = handler;
    this.chosen = handler.chooseLinks([...this.present]);
    this.dialed.push(...this.chosen);
  }
  presentPeers() {
    return new Set(this.present);
  }
  roomSize() {
    return this.present.size + 1;
  }
  dial(peer) {
    this.dialed.push(peer);
  }
  dropLink(peer) {
    this.dropped.push(peer);
    this.handler.linkDown(peer);
  }
  closeLink() {}
  send() {}
  bufferedAmount() {
    return 0;
  }
  async drain() {}
  async close() {}
}

test("a Meeting in a large room dials degree peers, declines past the cap, prunes and redials", async () => {
  const transport = new FakeTransport(peers(30));
  const meeting = new Meeting({
    room: "big",
    transport,
    logger: null,
    mesh: { fullMeshMax: 3, degreeLow: 2, degree: 3, degreeHigh: 4 },
  });
  assert.equal(meeting.mesh.degreeHigh, 4);
  assert.throws(() => new Meeting({ room: "r", transport, mesh: { degree: 20 } }), RangeError);
  await meeting.join();
  try {
    assert.equal(transport.chosen.length, 3, "a newcomer dials `degree` random peers");
    assert.equal(meeting.roomPeers.length, 30);
    for (const peer of transport.chosen) meeting.linkUp(peer);
    assert.deepEqual(meeting.peers.sort(), [...transport.chosen].sort());
    // Others dial in: accepted up to twice degreeHigh, each past degreeHigh prunes one.
    const others = peers(30).filter((p) => !transport.chosen.includes(p));
    for (const peer of others.slice(0, 5)) {
      assert.ok(meeting.acceptsLink(peer));
      // What each neighbour announced (HELLO/LINKS): the newest peer has fewest links.
      meeting.linkUp(peer);
      for (const [p, link] of meeting.engine.links) link.remoteLinks = new Set(p === peer ? ["x"] : ["a", "b", "c", "d", "e"]);
    }
    assert.ok(meeting.peers.length <= 4, `pruned to degreeHigh: ${meeting.peers}`);
    assert.equal(transport.dropped.length, 4);
    assert.ok(!transport.dropped.includes(others[4]), "the newcomer's link is kept");
    assert.equal(meeting.retriesLink("p000"), false, "a bounded mesh redials instead of retrying");
    // At the hard cap (2 x degreeHigh) an offer is declined.
    const fullTransport = new FakeTransport(peers(30));
    const full = new Meeting({ room: "big", transport: fullTransport, logger: null, mesh: { fullMeshMax: 3, degreeLow: 2, degree: 3, degreeHigh: 4 } });
    await full.join();
    try {
      for (const peer of peers(8)) full._topology.linkUp(peer);
      // (a stranger: not one of the 8 links, nor one of the peers it dialed at random)
      const stranger = peers(30).find((p) => !peers(8).includes(p) && !fullTransport.chosen.includes(p));
      assert.equal(full.acceptsLink(stranger), false, "busy");
      assert.equal(full.acceptsLink("p001"), true, "a peer it links to");
    } finally {
      await full.leave();
    }
    // Neighbours leave: under degreeLow it dials back up to degree.
    transport.dialed = [];
    for (const peer of meeting.peers) if (peer !== others[4]) meeting.linkDown(peer);
    assert.deepEqual(meeting.peers, [others[4]]);
    assert.equal(transport.dialed.length, 2, `redialed ${transport.dialed}`);
    assert.ok(!transport.dialed.includes(others[4]));
    // Both answer busy: at degreeLow after the first, nothing to do; under it after the
    // second, others are dialed, not those two (for refusedCooldown).
    const refusers = [...transport.dialed];
    transport.dialed = [];
    meeting.linkRefused(refusers[0]);
    assert.deepEqual(transport.dialed, [], "one link and one dial: degreeLow");
    meeting.linkRefused(refusers[1]);
    assert.equal(transport.dialed.length, 2);
    assert.ok(!transport.dialed.some((p) => refusers.includes(p) || p === others[4]));
  } finally {
    await meeting.leave();
  }
});

test("a Meeting in a small room offers to everyone and never declines", async () => {
  const transport = new FakeTransport(["b", "c"]);
  const meeting = new Meeting({ room: "small", transport, logger: null, mesh: { fullMeshMax: 3 } });
  await meeting.join();
  try {
    assert.deepEqual(transport.chosen, ["b", "c"]);
    for (let i = 0; i < 30; i++) meeting._topology.linkUp(`x${i}`);
    assert.equal(meeting.acceptsLink("b"), true);
    assert.equal(meeting.retriesLink("b"), true);
  } finally {
    await meeting.leave();
  }
  assert.equal(meeting.acceptsLink("b"), false, "nothing is answered after leaving");
});

// -- the transport acts on the handler's choices (a fake RTCPeerConnection) -----------------

class FakeChannel extends EventTarget {
  readyState = "connecting";
  bufferedAmount = 0;
  close() {
    this.readyState = "closed";
  }
  send() {}
}

class FakePC extends EventTarget {
  constructor() {
    super();
    this.signalingState = "stable";
    this.connectionState = "new";
    this.iceConnectionState = "new";
    this.iceGatheringState = "complete";
    this.localDescription = null;
  }
  createDataChannel() {
    this.channel = new FakeChannel();
    return this.channel;
  }
  async createOffer() {
    return { type: "offer", sdp: "v=0\r\n" };
  }
  async createAnswer() {
    return { type: "answer", sdp: "v=0\r\n" };
  }
  async setLocalDescription(description) {
    this.localDescription = description;
    if (description.type === "offer") this.signalingState = "have-local-offer";
  }
  async setRemoteDescription(description) {
    this.signalingState = description.type === "offer" ? "have-remote-offer" : "stable";
  }
  close() {
    this.closed = true;
  }
  open() {
    this.channel.readyState = "open";
    this.channel.dispatchEvent(new Event("open"));
  }
}

function fakeTransport(peerId, present, handler) {
  const sent = [];
  const events = [];
  const t = new WebRTCTransport({ url: "ws://127.0.0.1:1", room: "r", peerId, RTCPeerConnection: FakePC, connectTimeout: 30, spareAfter: 30 });
  t._signaling = {
    signal: (peer, data) => {
      sent.push([peer, data]);
      return true;
    },
    close() {},
  };
  t._RTCPeerConnection = FakePC;
  t._present = new Set(present);
  t._handler = {
    linkUp: (peer) => events.push(["up", peer]),
    linkDown: (peer) => events.push(["down", peer]),
    frame() {},
    signalRefused: (peer, reason) => events.push(["refused", peer, reason]),
    ...handler,
  };
  return { t, sent, events };
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

test("the transport declines with busy, stops rolling on busy, drops links without retry", async () => {
  let accepting = false;
  const refused = [];
  const { t, sent, events } = fakeTransport("alice", ["bob", "carol", "dave"], {
    acceptsLink: () => accepting,
    linkRefused: (peer) => refused.push(peer),
    retriesLink: () => false,
  });
  assert.equal(t.roomSize(), 4);
  // An offer past the cap: `busy` with its session and an empty sdp, nothing else.
  t.signal("bob", { kind: "offer", session: "s1", sdp: "v=0\r\n" });
  await settle();
  assert.deepEqual(sent, [["bob", { kind: "busy", session: "s1", sdp: "" }]]);
  assert.equal(t.stats.offers_declined, 1);
  assert.ok(!t._peers.has("bob"));
  // Our offer declined: the attempt goes, its roll stops, the handler hears of it.
  t.dial("carol");
  t.dial("carol"); // an attempt is under way: no second one
  t.dial("zed"); // not in the room
  await settle();
  const offers = sent.filter(([, d]) => d.kind === "offer");
  assert.deepEqual(offers.map(([p]) => p), ["carol"]);
  assert.ok(t._rolling.has("carol"));
  t.signal("carol", { kind: "busy", session: offers[0][1].session, sdp: "" });
  assert.ok(!t._peers.has("carol") && !t._rolling.has("carol"), "no attempt, no roll");
  assert.deepEqual(refused, ["carol"]);
  assert.equal(t._retrying.size, 0);
  // A link the mesh prunes closes without retry; a failed link is not retried when the
  // handler says so (a bounded mesh).
  accepting = true;
  t.signal("dave", { kind: "offer", session: "d1", sdp: "v=0\r\n" });
  await settle();
  t._peers.get("dave").pc.open();
  assert.deepEqual(events.at(-1), ["up", "dave"]);
  t.dropLink("dave");
  assert.deepEqual(events.at(-1), ["down", "dave"]);
  assert.ok(!t._peers.has("dave") && t._retrying.size === 0);
  t.dial("dave");
  await settle();
  t._peers.get("dave").pc.open();
  t._peers.get("dave").channel.dispatchEvent(new Event("close"));
  assert.deepEqual(events.at(-1), ["down", "dave"]);
  assert.equal(t._retrying.size, 0, "retriesLink false: alice (the smaller id) does not retry");
  await t.close();
});

test("rejoining signaling offers only to whom the handler chooses", async () => {
  const { t, sent } = fakeTransport("alice", [], { chooseLinks: (present) => present.filter((p) => p !== "carol") });
  t.signalingRestored(["alice", "bob", "carol"]);
  await settle();
  assert.deepEqual(sent.map(([p, d]) => [p, d.kind]), [["bob", "offer"]]);
  await t.close();
});
