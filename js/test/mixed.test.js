// Mixed rooms: Python peers (crdt_stores.Meeting over aiortc, tests/js_room_peer.py) and
// JavaScript peers (Meeting over node-datachannel) in the same room, through the real
// Python signaling server, on 127.0.0.1 only. Every wait is bounded.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Float, Meeting } from "../src/index.js";
import { PythonPeer, assertSame, bounded, show, startServer, stopChild } from "./rooms.js";

let server;
const meetings = [];
const pythons = [];

before(async () => {
  server = await startServer();
});

after(async () => {
  for (const meeting of meetings) await bounded(meeting.leave(), 10_000, "leave");
  await Promise.all(pythons.map((peer) => peer.close()));
  await stopChild(server?.child);
});

function jsPeer(room, peerId) {
  const made = new Meeting({ url: server.url, room, peerId, iceAddresses: ["127.0.0.1"], logger: process.env.DEBUG_MEETING ? console : null });
  meetings.push(made);
  return made;
}

function pyPeer(name) {
  const made = new PythonPeer(name);
  pythons.push(made);
  return made;
}

/** Every store of a JS meeting, as plain objects. */
function jsValues(meeting) {
  const out = {};
  for (const name of meeting.stores) out[name] = meeting.stores.get(name).getAll();
  return out;
}

test("two Python peers and a Node peer write concurrently and converge", async () => {
  const room = "mixed";
  const py1 = pyPeer("py1");
  const py2 = pyPeer("py2");
  const node = jsPeer(room, "node");
  await py1.join(server.url, room);
  // The Node peer offers to py1, and answers py2 (the newcomer offers).
  await bounded(node.join(), 30_000, "node joins");
  assert.deepEqual(node.peers, ["py1"]);
  const joined = await py2.join(server.url, room);
  assert.deepEqual(joined.peers, ["node", "py1"]);
  await py1.call({ op: "wait_peers", peers: ["node", "py2"], timeout: 20 });
  await bounded(
    (async () => {
      while (node.peers.length < 2) await new Promise((resolve) => node.on("peer_joined", resolve));
    })(),
    20_000,
    "node linked to py2",
  );
  assert.deepEqual([...node.peers].sort(), ["py1", "py2"]);

  const shared = node.stores.create("shared");
  // Concurrent writes: nobody waits for anybody between them.
  const writes = [
    py1.write("shared", "set", "user", { name: "Ada", langs: ["py"] }),
    py2.write("shared", "set", "counter", 1),
    py1.write("shared", "update", "user", { age: 36 }),
    py2.write("shared", "update", "user", { city: "London" }),
    py1.write("shared", "set", "log", ["py1"]),
    py2.write("shared", "update", "log", ["py2"]),
    py1.write("shared", "bulk_set", { a: 1, b: new Float(2), c: 2n ** 60n, d: "dee" }),
    py2.write("shared", "set", "float", 1.5),
    py2.write("shared", "set", "tmp", "to delete"),
    py1.write("pyStore", "set", "only-python", [null, true, false, -7]),
    py2.write("shared", "set", "same", "py2"),
    py1.write("shared", "set", "same", "py1"),
  ];
  await shared.set("fromNode", { n: 1, f: new Float(1), big: -(2n ** 62n), z: -0 });
  await shared.update("user", { node: true });
  await shared.update("log", ["node"]);
  await shared.bulkSet([
    ["e", new Float(5)],
    ["g", [1, [2, [3]]]],
  ]);
  await shared.set("same", "node");
  await shared.set("nodeTmp", 1);
  await Promise.all(writes);
  const allSynced = () =>
    Promise.all([
      py1.call({ op: "synced", timeout: 30 }),
      py2.call({ op: "synced", timeout: 30 }),
      node.synced({ timeout: 30 }),
    ]);
  await allSynced();
  // Second round, concurrent again, on keys every peer holds now.
  await Promise.all([
    py2.write("shared", "delete", "tmp"),
    py1.write("shared", "bulk_delete", ["d", "nodeTmp"]),
    shared.delete("counter"),
    shared.update("log", ["node2"]),
    py1.write("shared", "update", "log", ["py1-2"]),
    py2.write("shared", "update", "user", { late: 1 }),
  ]);
  await allSynced();
  // Agreement once more, after everyone reported: nothing is in flight.
  await allSynced();

  const atNode = jsValues(node);
  const [at1, at2] = await Promise.all([py1.values(), py2.values()]);
  console.log(`mixed room, node: ${show(atNode)}`);
  console.log(`mixed room, py1:  ${show(at1)}`);
  console.log(`mixed room, py2:  ${show(at2)}`);
  assertSame(at1, atNode, "py1 and node");
  assertSame(at2, atNode, "py2 and node");

  // The values, by the merge rules (one winner for the concurrent sets of "same").
  const s = atNode.shared;
  assert.deepEqual(Object.keys(atNode).sort(), ["pyStore", "shared"]);
  assertSame(s.fromNode, { n: 1, f: new Float(1), big: -(2n ** 62n), z: -0 }, "typed values from node");
  assertSame(s.a, 1, "a");
  assertSame(s.b, new Float(2), "2.0 from Python stays a float");
  assertSame(s.c, 2n ** 60n, "2**60 from Python stays an exact integer");
  assertSame(s.float, 1.5, "float");
  assertSame(s.e, new Float(5), "e");
  assertSame(s.g, [1, [2, [3]]], "g");
  assert.ok(!("d" in s) && !("tmp" in s) && !("nodeTmp" in s) && !("counter" in s), "deleted keys");
  assert.ok(["py1", "py2", "node"].includes(s.same), `one winner: ${s.same}`);
  // Concurrent appends of the second round both stay (in one order on every peer).
  assert.ok(s.log.includes("node2") && s.log.includes("py1-2"), show(s.log));
  assert.equal(s.user.late, 1, show(s.user));
  assertSame(atNode.pyStore, { "only-python": [null, true, false, -7] }, "a store created in Python");
  assert.equal(node.stats.violations ?? 0, 0);
});

test("a Node late joiner receives a 10 MB store written by Python", async () => {
  const room = "big";
  const writer = pyPeer("bigwriter");
  await writer.join(server.url, room);
  const keys = 10;
  const size = 1_000_000;
  const { written } = await writer.call({ op: "big", store: "big", keys, size, seed: 7 }, 60_000);
  assert.equal(written, keys * size);
  await writer.write("small", "set", "k", 1);

  const started = performance.now();
  const late = jsPeer(room, "late-node");
  await bounded(late.join(), 30_000, "late joins");
  assert.deepEqual(late.peers, ["bigwriter"], show({ stats: late.stats, room: late.roomPeers, t: performance.now() - started }));
  await late.synced({ timeout: 60 });
  const seconds = (performance.now() - started) / 1000;
  const big = late.stores.get("big");
  assert.ok(big, "the big store arrived");
  assert.equal(big.size, keys);
  let total = 0;
  for (const key of big.keys()) total += big.get(key).length;
  console.log(`late joiner: ${total} bytes in ${keys} keys in ${seconds.toFixed(2)} s (join to synced)`);
  assert.equal(total, keys * size);
  const fromPython = await writer.values();
  assertSame(jsValues(late), fromPython, "the late joiner's values");
  assert.equal(late.stats.violations ?? 0, 0);
});

test("a Python late joiner receives what the Node peer wrote", async () => {
  const room = "late-python";
  const node = jsPeer(room, "early-node");
  await bounded(node.join(), 30_000, "node joins");
  const store = node.stores.create("notes");
  await store.set("title", "from node");
  await store.bulkSet([
    ["int", 1],
    ["float", new Float(1)],
    ["big", 2n ** 63n - 1n],
    ["neg", -(2n ** 63n)],
    ["frac", 0.1],
    ["nested", { $weird: [1, { a: null }], "": "empty key" }],
  ]);
  await store.update("nested", { more: [new Float(-0.0)] });
  await store.set("gone", 1);
  await store.delete("gone");
  const blob = "x".repeat(900_000); // one value near the 1 MiB limit
  await store.set("blob", blob);

  const late = pyPeer("late-py");
  const { peers } = await late.join(server.url, room);
  assert.deepEqual(peers, ["early-node"]);
  await late.call({ op: "synced", timeout: 30 });
  const atPython = await late.values();
  const atNode = jsValues(node);
  assertSame(atPython, atNode, "the Python late joiner's values");
  assertSame(atPython.notes.float, new Float(1), "1.0 stays a float");
  assertSame(atPython.notes.int, 1, "1 stays an int");
  assertSame(atPython.notes.big, 2n ** 63n - 1n, "int64 max");
  assert.equal(atPython.notes.blob.length, blob.length);
  assert.ok(!("gone" in atPython.notes));
});
