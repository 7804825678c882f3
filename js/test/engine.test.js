// The sans-IO SyncEngine between JavaScript peers, frames delivered in memory
// (the Python interop is in interop.test.js).

import assert from "node:assert/strict";
import { test } from "node:test";
import { SyncEngine } from "../src/engine.js";
import { sameValue } from "../src/values.js";

function network(...ids) {
  const engines = new Map(ids.map((id) => [id, new SyncEngine(id)]));
  const net = { engines, now: 0 };
  net.link = (a, b) => {
    engines.get(a).linkUp(b, net.now);
    engines.get(b).linkUp(a, net.now);
  };
  net.pump = () => {
    for (let round = 0; round < 100; round++) {
      let moved = false;
      for (const [id, engine] of engines) {
        for (const [peer, frame] of engine.dataToSend(net.now)) {
          moved = true;
          engines.get(peer).receive(id, frame, net.now);
        }
      }
      if (!moved) return;
    }
    assert.fail("frames still moving");
  };
  net.step = (n = 1) => {
    for (let i = 0; i < n; i++) {
      net.now += 0.1;
      for (const engine of engines.values()) engine.tick(net.now);
      net.pump();
    }
  };
  return net;
}

const values = (engine, store) => Object.fromEntries(engine.store(store)?.values() ?? []);

test("two peers: handshake, live updates, acks, synced", () => {
  const net = network("a", "b");
  const [a, b] = net.engines.values();
  a.createStore("s");
  a.write("s", "set", "k", 1);
  net.link("a", "b");
  net.pump();
  assert.ok(sameValue(values(b, "s"), { k: 1 }));
  b.write("s", "update", "k2", { x: [1] });
  a.write("s", "delete", "k");
  net.step(5);
  assert.ok(sameValue(values(a, "s"), { k2: { x: [1] } }));
  assert.ok(sameValue(values(a, "s"), values(b, "s")));
  assert.ok(a.isSynced() && b.isSynced());
  const events = b.takeEvents().map((event) => event.type);
  assert.ok(events.includes("StoreAdded") && events.includes("StoreChanged"));
});

test("relay: a line of three peers carries writes end to end", () => {
  const net = network("a", "b", "c");
  const [a, , c] = net.engines.values();
  net.link("a", "b");
  net.link("b", "c");
  a.createStore("s");
  net.step(3);
  a.write("s", "set", "from_a", 1);
  c.write("s", "bulkSet", { from_c: 2 });
  net.pump(); // no timers: relay alone
  assert.ok(sameValue(values(c, "s"), { from_a: 1, from_c: 2 }));
  assert.ok(sameValue(values(a, "s"), values(c, "s")));
});

test("heartbeats keep a quiet link alive; a silent one dies", () => {
  const net = network("a", "b");
  const [a, b] = net.engines.values();
  net.link("a", "b");
  net.step(100); // 10 s of quiet: heartbeats
  assert.deepEqual(a.peers, ["b"]);
  assert.ok(a.nextDeadline() <= net.now + 1);
  for (let i = 0; i < 70; i++) a.tick((net.now += 0.1)); // b no longer heard
  assert.deepEqual(a.peers, []);
  assert.deepEqual(a.takeEvents(), [{ type: "LinkDead", peer: "b" }]);
  assert.equal(a.nextDeadline(), null);
  assert.deepEqual(b.peers, ["a"]);
});

test("garbage counts against the violation budget; past it the link is closed", () => {
  const net = network("a", "b");
  const [a] = net.engines.values();
  net.link("a", "b");
  for (let i = 0; i < 17; i++) a.receive("b", new Uint8Array([0xff, i]), net.now);
  assert.deepEqual(a.peers, []);
  const last = a.takeEvents().at(-1);
  assert.equal(last.type, "PeerMisbehaved");
  assert.equal(last.peer, "b");
  assert.equal(a.stats.get("malformed"), 17);
});
