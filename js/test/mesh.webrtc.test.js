// A bounded mesh (PROTOCOL.md §6.9) over real WebRTC, on 127.0.0.1 only: eight peers,
// four Node `Meeting`s and four Python ones (../../tests/js_room_peer.py), in one room
// with fullMeshMax 3 and degrees 2 / 3 / 4, so the room outgrows its full mesh at the
// fourth peer and the first ones must prune. Every peer stays within degreeHigh links
// (whenever looked at), ends with at least degreeLow, the graph is connected, signaling
// lists everyone to everyone, and concurrent writes from all eight converge by relay.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Meeting, sameValue } from "../src/index.js";
import { fromTyped } from "./helpers.js";
import { PythonPeer, assertSame, bounded, startServer, stopChild, toTyped } from "./rooms.js";

const MESH = { fullMeshMax: 3, degreeLow: 2, degree: 3, degreeHigh: 4 };
const PY_MESH = { full_mesh_max: 3, degree_low: 2, degree: 3, degree_high: 4 };
const NAMES = ["n0", "p1", "n2", "p3", "n4", "p5", "n6", "p7"]; // n: Node, p: Python

let server;
const nodes = new Map();
const pythons = new Map();

before(async () => {
  server = await startServer();
});

after(async () => {
  await Promise.all([
    ...[...nodes.values()].map((m) => bounded(m.leave(), 10_000, "leave")),
    ...[...pythons.values()].map((p) => p.close()),
  ]);
  await stopChild(server?.child);
});

/** Each peer's links and the peers signaling lists to it. */
async function snapshot() {
  const out = new Map();
  for (const [name, meeting] of nodes) out.set(name, { peers: [...meeting.peers].sort(), room: meeting.roomPeers });
  const replies = await Promise.all([...pythons].map(async ([name, peer]) => [name, await peer.call({ op: "links" })]));
  for (const [name, reply] of replies) out.set(name, { peers: reply.peers, room: reply.room_peers });
  return out;
}

function connected(links) {
  const graph = new Map([...links].map(([name]) => [name, new Set()]));
  for (const [name, { peers }] of links) {
    for (const peer of peers) {
      graph.get(name)?.add(peer);
      graph.get(peer)?.add(name);
    }
  }
  const seen = new Set([NAMES[0]]);
  const queue = [NAMES[0]];
  while (queue.length) for (const next of graph.get(queue.shift()) ?? []) if (!seen.has(next) && seen.add(next)) queue.push(next);
  return seen.size === graph.size;
}

/** Polls (bounded) until `done(snapshot)`; checks degreeHigh on every snapshot it takes. */
async function watch(done, ms, what, maxSeen) {
  const deadline = performance.now() + ms;
  let last;
  for (;;) {
    last = await snapshot();
    for (const [name, { peers }] of last) {
      maxSeen.set(name, Math.max(maxSeen.get(name) ?? 0, peers.length));
      assert.ok(peers.length <= MESH.degreeHigh, `${name} has ${peers.length} links: ${peers}`);
    }
    if (done(last)) return last;
    if (performance.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${what}: ${JSON.stringify(Object.fromEntries(last))}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

test("a bounded mesh of Node and Python peers: degrees kept, room listed, concurrent writes converge", { timeout: 90_000 }, async () => {
  const started = performance.now();
  for (const name of NAMES) if (name.startsWith("p")) pythons.set(name, new PythonPeer(name));
  const maxSeen = new Map();
  // Peers join one after another: the room outgrows its full mesh at the fourth.
  for (const name of NAMES) {
    if (name.startsWith("n")) {
      const meeting = new Meeting({ url: server.url, room: "mesh", peerId: name, iceAddresses: ["127.0.0.1"], mesh: MESH, logger: null });
      nodes.set(name, meeting);
      await bounded(meeting.join(), 20_000, `${name} joins`);
    } else {
      await pythons.get(name).call({ op: "join", url: server.url, room: "mesh", peer_id: name, room_key: null, mesh: PY_MESH });
    }
  }
  const joined = performance.now();
  const settled = await watch(
    (links) =>
      [...links].every(([name, { peers, room }]) => peers.length >= MESH.degreeLow && room.length === NAMES.length - 1 && !room.includes(name)) &&
      connected(links),
    25_000,
    "every peer within its degrees, everyone listed, the graph connected",
    maxSeen,
  );
  const meshed = performance.now();
  for (const [name, { room }] of settled) assert.deepEqual(room, NAMES.filter((n) => n !== name).sort(), `${name}'s roomPeers`);

  // Concurrent writes: each peer its own key, and all of them the same key.
  const written = performance.now();
  await Promise.all(
    NAMES.map((name) => {
      if (nodes.has(name)) {
        const store = nodes.get(name).stores.create("s");
        return Promise.all([store.set(`k-${name}`, { by: name, n: 1 }), store.set("shared", name), store.update("log", [name])]);
      }
      const peer = pythons.get(name);
      return (async () => {
        await peer.call({ op: "write", store: "s", write: "set", args: [`k-${name}`, toTyped({ by: name, n: 1 })] });
        await peer.call({ op: "write", store: "s", write: "set", args: ["shared", name] });
        await peer.call({ op: "write", store: "s", write: "update", args: ["log", [name]] });
      })();
    }),
  );
  const keys = [...NAMES.map((n) => `k-${n}`), "shared", "log"];
  const fullLog = (values) => Array.isArray(values?.log) && values.log.length === NAMES.length;
  await Promise.all([
    ...[...pythons.values()].map((peer) => peer.call({ op: "wait_keys", store: "s", keys, timeout: 20 }, 25_000)),
    ...[...nodes.values()].map((meeting) =>
      bounded(
        new Promise((resolve) => {
          const check = () => {
            const store = meeting.stores.get("s");
            if (store && keys.every((k) => store.has(k)) && fullLog(store.getAll())) {
              clearInterval(timer);
              resolve(undefined);
            }
          };
          const timer = setInterval(check, 20);
          check();
        }),
        20_000,
        `${meeting.peerId}: every key`,
      ),
    ),
  ]);
  // Python's wait_keys waits for keys, not for every append: wait until all agree.
  let values;
  const agreeBy = performance.now() + 20_000;
  for (;;) {
    values = new Map();
    for (const [name, meeting] of nodes) values.set(name, meeting.stores.get("s").getAll());
    for (const [name, peer] of pythons) values.set(name, (await peer.call({ op: "values" })).values.s);
    for (const [name, v] of values) if (pythons.has(name)) values.set(name, fromTyped(v));
    const all = [...values.values()];
    if (all.every((v) => fullLog(v) && sameValue(v, all[0]))) break;
    if (performance.now() > agreeBy) break; // assertSame below says what differs
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const converged = performance.now();
  const reference = values.get(NAMES[0]);
  assert.equal(reference.log.length, NAMES.length);
  assert.deepEqual([...reference.log].sort(), [...NAMES].sort());
  assert.ok(NAMES.includes(reference.shared));
  for (const name of NAMES) assertSame(reference[`k-${name}`], { by: name, n: 1 }, `k-${name}`);
  for (const [name, v] of values) assertSame(v, reference, `${name} agrees with ${NAMES[0]}`);

  const final = await watch(() => true, 0, "links", maxSeen);
  const linksNow = Object.fromEntries([...final].map(([name, { peers }]) => [name, peers.length]));
  const stats = [...nodes.values()].map((m) => m.stats);
  const sum = (key) => stats.reduce((total, s) => total + (s[key] ?? 0), 0);
  console.log(
    `# bounded mesh (fullMeshMax 3, degrees 2/3/4), ${NAMES.length} peers (4 Node, 4 Python): ` +
      `links now ${JSON.stringify(linksNow)}, most seen ${JSON.stringify(Object.fromEntries(maxSeen))}; ` +
      `joins ${((joined - started) / 1000).toFixed(1)} s, mesh settled ${((meshed - joined) / 1000).toFixed(1)} s later, ` +
      `concurrent writes converged in ${((converged - written) / 1000).toFixed(2)} s; ` +
      `Node peers: ${sum("links_dropped")} links pruned, ${sum("offers_declined")} offers declined, ${sum("offers_declined_by_peer")} declined by peers, ` +
      `${sum("offers_answered")} answered, ${sum("spare_attempts")} spare attempts`,
  );
});
