// The JavaScript SyncEngine against the Python reference (crdt_stores.protocol.SyncEngine),
// frames piped between them in memory: tests/js_interop_peer.py drives the Python engine
// over stdin/stdout (JSON lines, frames and values as hex). A third, JavaScript, peer
// linked only to the first checks relay (§6.5): py <-> js <-> js2.
//
// The Python interpreter: $CRDT_STORES_PYTHON, by default the repository's venv.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, before, test } from "node:test";
import { SyncEngine } from "../src/engine.js";
import { Float, sameValue } from "../src/values.js";
import { fromHex, toHex } from "./helpers.js";
import { PythonEngine } from "./python_engine.js";
import { PYTHON } from "./rooms.js";

const STEP = 0.1; // seconds of simulated time per step


/** A JavaScript engine's values of `store` as a plain object. */
function jsValues(engine, store) {
  const out = {};
  const replica = engine.store(store);
  if (replica) for (const [key, value] of replica.values()) out[key] = value;
  return out;
}

let py;
let now = 0;
const js = new SyncEngine("js");
const js2 = new SyncEngine("js2");

before(() => {
  assert.ok(existsSync(PYTHON), `no Python at ${PYTHON} (set CRDT_STORES_PYTHON)`);
  py = new PythonEngine("py");
});

after(() => py?.close());

/** Deliver frames until none moves (bounded). */
async function pump() {
  for (let round = 0; round < 100; round++) {
    let moved = 0;
    for (const [peer, frame] of js.dataToSend(now)) {
      moved++;
      if (peer === "py") await py.call({ op: "receive", peer: "js", frame: toHex(frame), now });
      else if (peer === "js2") js2.receive("js", frame, now);
    }
    for (const [peer, frame] of js2.dataToSend(now)) {
      moved++;
      if (peer === "js") js.receive("js2", frame, now);
    }
    const { frames } = await py.call({ op: "send", now });
    for (const [peer, frame] of frames) {
      moved++;
      if (peer === "js") js.receive("py", fromHex(frame), now);
    }
    if (!moved) return;
  }
  assert.fail("frames still moving after 100 rounds");
}

/** Advance simulated time by one step: every engine ticks, frames are delivered. */
async function step() {
  now = Math.round((now + STEP) * 1000) / 1000;
  js.tick(now);
  js2.tick(now);
  await py.call({ op: "tick", now });
  await pump();
}

/** Step until every peer holds the same values of `stores` and reports itself synced. */
async function converge(stores, maxSteps = 100) {
  let last = "";
  for (let i = 0; i < maxSteps; i++) {
    await step();
    const status = await py.call({ op: "status" });
    if (!status.synced || !js.isSynced() || !js2.isSynced()) {
      last = "not synced";
      continue;
    }
    let same = true;
    for (const store of stores) {
      const theirs = await py.values(store);
      if (!sameValue(theirs, jsValues(js, store)) || !sameValue(theirs, jsValues(js2, store))) {
        same = false;
        last = `${store}: py ${JSON.stringify(theirs, big)} js ${JSON.stringify(jsValues(js, store), big)}`;
      }
    }
    if (same) return status;
  }
  assert.fail(`no convergence in ${maxSteps} steps: ${last}`);
}

const big = (_key, value) => (typeof value === "bigint" ? `${value}n` : value instanceof Float ? `${value.value}f` : value);

function noViolations(stats, who) {
  for (const reason of ["violations", "bad_update", "malformed", "malformed_state", "handler_error"]) {
    assert.equal(stats instanceof Map ? stats.get(reason) : stats[reason], undefined, `${who}: ${reason}`);
  }
}

test("handshake: stores and values written before the link reach every peer", async () => {
  js.createStore("s");
  js.write("s", "set", "from_js", 1);
  await py.call({ op: "create", store: "s" });
  await py.call({ op: "create", store: "py_only" });
  await py.write("s", "set", "from_py", new Float(1));
  await py.write("py_only", "update", "list", [1, 2]);
  js2.createStore("js2_only");
  js2.write("js2_only", "set", "k", "v");

  await py.call({ op: "link_up", peer: "js", now });
  js.linkUp("py", now);
  js.linkUp("js2", now);
  js2.linkUp("js", now);
  const status = await converge(["s", "py_only", "js2_only"]);
  assert.deepEqual(status.stores, ["js2_only", "py_only", "s"]);
  const s = await py.values("s");
  assert.ok(sameValue(s, { from_js: 1, from_py: new Float(1) }), JSON.stringify(s, big));
  assert.ok(sameValue(jsValues(js2, "py_only"), { list: [1, 2] }));
});

test("concurrent writes of every kind converge, with typed numbers", async () => {
  // Both sides write without delivering anything in between.
  js.write("s", "set", "x", 1);
  js.write("s", "update", "d", { a: 1, f: new Float(2) });
  js.write("s", "update", "l", [1, "two"]);
  js.write("s", "bulkSet", { k1: true, k2: null, big: 2n ** 60n, neg: -0 });
  js.write("s", "set", "gone", "bye");
  js2.write("s", "update", "l", [{ nested: [new Float(0.5)] }]);
  await py.write("s", "set", "x", new Float(1));
  await py.write("s", "update", "d", { b: 2 });
  await py.write("s", "update", "l", [3]);
  await py.write("s", "bulk_set", { k2: "py", k3: [1.5] });
  await py.write("s", "delete", "from_js");
  await converge(["s"]);

  const s = jsValues(js, "s");
  assert.ok(sameValue(s.d, { a: 1, f: new Float(2), b: 2 }), JSON.stringify(s.d, big));
  assert.equal(s.l.length, 4);
  assert.ok(sameValue(s.big, 2n ** 60n) && Object.is(s.neg, -0));
  assert.ok(sameValue(s.x, 1) || sameValue(s.x, new Float(1)));
  assert.equal(s.from_js, undefined);

  // Second round: deletes, overwrites of fresh entries, a clear, while the other writes.
  js.write("s", "delete", "gone");
  js.write("s", "update", "d", { a: 6 });
  js2.write("s", "bulkDelete", ["k2", "absent"]);
  js.write("py_only", "clear");
  await py.write("s", "bulk_delete", ["k1", "k3"]);
  await py.write("s", "update", "d", { a: 5, c: [] });
  await py.write("py_only", "set", "after_clear", { z: null });
  const status = await converge(["s", "py_only", "js2_only"]);

  const t = jsValues(js2, "s");
  for (const key of ["gone", "k1", "k2", "k3"]) assert.equal(t[key], undefined, key);
  assert.ok(t.d.a === 5 || t.d.a === 6);
  assert.ok(sameValue(t.d.c, []));
  assert.ok(sameValue(jsValues(js, "py_only"), { after_clear: { z: null } }));
  noViolations(status.stats, "python");
  noViolations(js.stats, "js");
  noViolations(js2.stats, "js2");
  // Compaction: every peer holds the same entries (same structs, same delete set), and
  // superseded ones are gone: sets and deletes leave one entry per key, the four appends
  // of "l" and the merges of "d" whose fields no later merge covers stay.
  for (const store of ["s", "py_only", "js2_only"]) {
    assert.equal(js.store(store).entryCount, status.entries[store], store);
    assert.equal(js2.store(store).entryCount, status.entries[store], store);
    assert.ok(sameValue(js.store(store).deleteDigest(), js2.store(store).deleteDigest()));
  }
  const keys = [...js.store("s").entries()].map((entry) => entry.key).sort();
  assert.equal(keys.filter((key) => key !== "l" && key !== "d").length, new Set(keys).size - 2, keys.join());
});

test("a link that goes silent is declared dead", async () => {
  py.close();
  for (let i = 0; i < 80 && js.peers.includes("py"); i++) {
    now += STEP;
    js.tick(now);
    js.dataToSend(now);
  }
  assert.ok(!js.peers.includes("py"));
  assert.ok(js.takeEvents().some((event) => event.type === "LinkDead" && event.peer === "py"));
});
