// Meetings of JavaScript peers over real WebRTC data channels (node-datachannel), found
// through the real Python signaling server, on 127.0.0.1 only.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Float, Meeting } from "../src/index.js";
import { assertSame, bounded, nextEvent, startServer, stopChild } from "./rooms.js";

let server;
const meetings = [];

before(async () => {
  server = await startServer();
});

after(async () => {
  for (const meeting of meetings) await bounded(meeting.leave(), 10_000, "leave");
  await stopChild(server?.child);
});

function meeting(room, peerId, extra = {}) {
  const made = new Meeting({ url: server.url, room, peerId, iceAddresses: ["127.0.0.1"], ...extra });
  meetings.push(made);
  return made;
}

test("two JavaScript peers replicate every kind of write and see each other leave", async () => {
  const alice = meeting("js-js", "alice");
  await bounded(alice.join(), 20_000, "alice joins");
  assert.deepEqual(alice.peers, []);
  const a = alice.stores.create("myStore");
  assert.equal(alice.stores.create("myStore"), a, "create is idempotent");
  assert.equal(alice.stores.get("myStore"), a);
  assert.equal(alice.stores.get("nope"), undefined);
  await a.set("user", { name: "John" });

  const bob = meeting("js-js", "bob");
  const joined = nextEvent(alice, "peer_joined", (peer) => peer === "bob");
  await bounded(bob.join(), 20_000, "bob joins");
  assert.deepEqual(await joined, ["bob"]);
  assert.deepEqual(bob.peers, ["alice"]);
  assert.deepEqual(await bob.synced({ timeout: 10 }), ["alice"]);
  const b = bob.stores.get("myStore");
  assert.ok(b, "a store created before the link exists on the late joiner");
  assertSame(b.getAll(), { user: { name: "John" } }, "late joiner");

  // Subscribers: remote changes always, own writes only with emit.
  const seenByBob = [];
  const seenByAlice = [];
  b.subscribe("*", (key, value) => seenByBob.push([key, value]));
  const userOnly = [];
  b.subscribe("user", (key, value) => userOnly.push([key, value]));
  a.subscribe("*", (key, value) => seenByAlice.push([key, value]));

  await a.update("user", { age: 34 });
  await a.set("list", [1, 2]);
  await a.update("list", [new Float(3)]);
  await a.bulkSet([
    ["big", 2n ** 60n],
    ["neg", -0],
    ["f", 0.5],
  ]);
  await a.bulkSet({ gone: 1, gone2: 2 });
  await a.bulkDelete(["gone", "gone2", "never-there"]);
  await a.set("emitted", true, { emit: true });
  await b.set("fromBob", "hi");
  await a.delete("fromBob-missing");
  assert.deepEqual(await alice.synced({ timeout: 10 }), ["bob"]);
  assert.deepEqual(await bob.synced({ timeout: 10 }), ["alice"]);

  const expected = {
    user: { name: "John", age: 34 },
    list: [1, 2, new Float(3)],
    big: 2n ** 60n,
    neg: -0,
    f: 0.5,
    emitted: true,
    fromBob: "hi",
  };
  assertSame(a.getAll(), expected, "alice");
  assertSame(b.getAll(), expected, "bob");
  assertSame(b.get("user"), { name: "John", age: 34 }, "get");
  assert.equal(b.get("missing"), undefined);
  assert.equal(b.get("missing", 7), 7);
  assert.ok(b.has("neg") && !b.has("gone"));
  assert.equal(b.size, 7);
  assert.deepEqual(
    userOnly.map(([k]) => k),
    ["user"],
  );
  assertSame(userOnly[0][1], { name: "John", age: 34 }, "key subscriber");
  const keysSeen = new Set(seenByBob.map(([k]) => k));
  for (const key of ["user", "list", "big", "neg", "f", "gone", "gone2", "emitted"]) assert.ok(keysSeen.has(key), key);
  assert.ok(!keysSeen.has("fromBob"), "own writes do not call own subscribers");
  assert.ok(seenByBob.some(([k, v]) => k === "gone" && v === null), "a delete calls back with null");
  assert.deepEqual(
    seenByAlice.map(([k]) => k),
    ["emitted", "fromBob"],
    "alice saw her emit=true write and bob's write only",
  );

  // A copy: changing what get returned changes nothing.
  const copy = b.get("user");
  copy.name = "changed";
  assert.equal(b.get("user").name, "John");

  // unsubscribe(key, cb) and unsubscribe(key).
  b.unsubscribe("*");
  b.unsubscribe("user");
  const before = seenByBob.length;
  await a.clear();
  await alice.synced({ timeout: 10 });
  assert.deepEqual(b.getAll(), {});
  assert.equal(seenByBob.length, before);

  const left = nextEvent(alice, "peer_left", (peer) => peer === "bob");
  await bounded(bob.leave(), 10_000, "bob leaves");
  assert.deepEqual(await left, ["bob"]);
  assert.deepEqual(alice.peers, []);
  await assert.rejects(b.set("after", 1), /left/);
  assert.ok(alice.stats.frames_in > 0);
});

test("bad values and keys are refused and change nothing", async () => {
  const solo = meeting("refusals", "solo");
  await bounded(solo.join(), 20_000, "join");
  const store = solo.stores.create("s");
  await store.set("ok", 1);
  const bad = [
    [() => store.set("k", undefined), TypeError],
    [() => store.set("k", () => 1), TypeError],
    [() => store.set("k", new Uint8Array(2)), TypeError],
    [() => store.set("k", NaN), RangeError],
    [() => store.set("k", Infinity), RangeError],
    [() => store.set("k", 2n ** 63n), RangeError],
    [() => store.set("k", new Date()), TypeError],
    [() => store.set("*", 1), RangeError],
    [() => store.set("", 1), RangeError],
    [() => store.set(5, 1), TypeError],
    [() => store.set("k", "x".repeat(1024 * 1024 + 1)), RangeError],
    [() => store.update("k", { nested: [1, NaN] }), RangeError],
    [() => store.bulkSet([["a", 1], ["b", Symbol("x")]]), TypeError],
    [() => store.bulkDelete("ab"), TypeError],
    [() => store.set("k", 1, false), RangeError],
  ];
  let deep = 1;
  for (let i = 0; i < 40; i++) deep = [deep];
  bad.push([() => store.set("k", deep), RangeError]);
  for (const [write, kind] of bad) await assert.rejects(write(), kind);
  assertSame(store.getAll(), { ok: 1 }, "nothing changed");
  assert.throws(() => solo.stores.create(""), RangeError);
  assert.throws(() => solo.stores.create(3), TypeError);
  assert.throws(() => store.subscribe("k", "not a function"), TypeError);
  assert.throws(() => solo.on("nonsense", () => {}), RangeError);
  assert.throws(() => new Meeting({ url: server.url, room: "" }), TypeError);
  assert.throws(() => new Meeting({ url: server.url, room: "r", frobnicate: 1 }), TypeError);
  // Alone in the room: synced at once.
  assert.deepEqual(await solo.synced({ timeout: 1 }), []);
});

test("a callback that throws or rejects breaks neither replication nor other callbacks", async () => {
  const errors = [];
  const logger = { error: (...args) => errors.push(args), warn() {}, debug() {} };
  const p = meeting("callbacks", "p", { logger });
  const q = meeting("callbacks", "q", { logger });
  await bounded(p.join(), 20_000, "p joins");
  await bounded(q.join(), 20_000, "q joins");
  const qs = q.stores.create("s");
  const got = [];
  qs.subscribe("*", () => {
    throw new Error("boom");
  });
  qs.subscribe("*", async () => {
    throw new Error("async boom");
  });
  qs.subscribe("*", (key, value) => got.push([key, value]));
  const ps = p.stores.create("s");
  await ps.set("a", 1);
  await ps.set("b", 2);
  await p.synced({ timeout: 10 });
  assertSame(qs.getAll(), { a: 1, b: 2 }, "q");
  assert.deepEqual(got, [
    ["a", 1],
    ["b", 2],
  ]);
  await bounded(
    (async () => {
      while (errors.length < 4) await new Promise((resolve) => setImmediate(resolve));
    })(),
    5000,
    "the errors to be logged",
  );
  assert.equal(errors.length, 4);
});

test("sealed signals: peers with the room key link, a peer without it does not", async () => {
  const roomKey = "correct horse battery staple";
  const x = meeting("sealed", "x", { roomKey });
  const y = meeting("sealed", "y", { roomKey });
  await bounded(x.join(), 20_000, "x joins");
  await bounded(y.join(), 20_000, "y joins");
  assert.deepEqual(y.peers, ["x"]);
  const refused = nextEvent(x, "signal_refused", (peer) => peer === "z");
  const z = meeting("sealed", "z", { connectTimeout: 3, spareAfter: 10, joinTimeout: 1 });
  await bounded(z.join(), 20_000, "z joins");
  const [, reason] = await refused;
  assert.match(reason, /sealed|seal|not sealed/i);
  assert.ok(!x.peers.includes("z"));
  assert.ok(x.stats.signals_refused >= 1);
});
