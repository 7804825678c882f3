// Big syncs served by a JavaScript peer (issue 14): a store over the 4 MiB message limit
// goes out as DIFFs cut into parts of at most 1 MiB and 8,192 items (outbox.py), which
// a late-joining Python engine (tests/js_interop_peer.py, frames piped in memory) and a
// late-joining JavaScript engine accept; a batch of deltas bigger than a part goes out
// as several UPDATEs; and eager acks (`wantAcks`) make agreement immediate.
//
// The Python interpreter: $CRDT_STORES_PYTHON, by default the repository's venv.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, before, test } from "node:test";
import { SyncEngine } from "../src/engine.js";
import { decodeFrame, inflate } from "../src/wire.js";
import { sameValue } from "../src/values.js";
import { Meeting } from "../src/meeting.js";
import { fromHex, toHex } from "./helpers.js";
import { PythonEngine } from "./python_engine.js";
import { PYTHON, PythonPeer as RoomPeer, assertSame, bounded, startServer, stopChild } from "./rooms.js";

const MiB = 1024 * 1024;

let py;
before(() => {
  assert.ok(existsSync(PYTHON), `no Python at ${PYTHON} (set CRDT_STORES_PYTHON)`);
  py = new PythonEngine("py", 60_000);
});
after(() => py?.close());

/** `size` pseudo-random hex characters (seeded): incompressible past 2x, like real data. */
function hexString(seed, size) {
  let a = seed >>> 0;
  const digits = "0123456789abcdef";
  let out = "";
  while (out.length < size) {
    let chunk = "";
    for (let i = 0; i < 4096 && out.length + chunk.length < size; i++) {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = Math.imul(a ^ (a >>> 15), a | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      chunk += digits[((t ^ (t >>> 14)) >>> 0) & 15];
    }
    out += chunk;
  }
  return out;
}

function jsValues(engine, store) {
  const out = {};
  const replica = engine.store(store);
  if (replica) for (const [key, value] of replica.values()) out[key] = value;
  return out;
}

/** The messages a list of frames carries (chunks joined, compressed ones inflated). */
function messagesOf(frames) {
  const out = [];
  const partial = new Map();
  for (const frame of frames) {
    let message = decodeFrame(frame, 64 * 1024);
    if (message.kind === 7) {
      const parts = partial.get(message.messageId) ?? [];
      parts[message.index] = message.data;
      partial.set(message.messageId, parts);
      if (parts.filter(Boolean).length < message.count) continue;
      partial.delete(message.messageId);
      const joined = Buffer.concat(parts);
      out.push({ size: joined.length, message: decodeFrame(new Uint8Array(joined), 8 * MiB) });
      continue;
    }
    out.push({ size: frame.length, message });
  }
  return out.map(({ size, message }) => {
    if (message.kind !== 8) return { size, message };
    const inflated = inflate(message.packed, 4 * MiB);
    return { size: inflated.length, message: decodeFrame(inflated, 4 * MiB) };
  });
}

test("a JS engine holding 10 MB serves late-joining Python and JS engines, in bounded parts", async () => {
  const keys = 10;
  const size = 1_000_000;
  const js = new SyncEngine("js");
  js.createStore("big");
  for (let i = 0; i < keys; i++) js.write("big", "set", `big-${i}`, hexString(i + 1, size));
  js.createStore("many"); // 20,000 small entries: over the 8,192 items of a part
  const many = {};
  for (let i = 0; i < 20_000; i++) many[`m${i}`] = i;
  js.write("many", "bulkSet", many);
  js.createStore("small");
  js.write("small", "set", "k", 1);
  assert.ok(js.store("big").diff().length > 10_000_000);

  // Python: link, pump frames until both report agreement (simulated time, bounded).
  const started = performance.now();
  let now = 0;
  const sentToPython = [];
  js.linkUp("py", now);
  await py.call({ op: "link_up", peer: "js", now });
  let synced = false;
  for (let step = 0; step < 60 && !synced; step++) {
    for (let round = 0; round < 50; round++) {
      let moved = 0;
      for (const [peer, frame] of js.dataToSend(now)) {
        if (peer !== "py") continue;
        moved++;
        sentToPython.push(frame);
        await py.call({ op: "receive", peer: "js", frame: toHex(frame), now });
      }
      const { frames } = await py.call({ op: "send", now });
      for (const [, frame] of frames) {
        moved++;
        js.receive("py", fromHex(frame), now);
      }
      if (!moved) break;
    }
    const status = await py.call({ op: "status" });
    synced = status.synced && js.isSynced();
    if (!synced) {
      now = Math.round((now + 0.1) * 1000) / 1000;
      js.tick(now);
      await py.call({ op: "tick", now });
    }
  }
  const seconds = (performance.now() - started) / 1000;
  assert.ok(synced, "python and js agree");
  const status = await py.call({ op: "status" });
  for (const reason of ["violations", "oversize", "too_many_items", "bad_update", "malformed", "handler_error"]) {
    assert.equal(status.stats[reason], undefined, `python: ${reason}`);
  }
  assert.ok(now <= 0.5, `took ${now} s of simulated time`); // no repair was needed
  for (const store of ["big", "many", "small"]) {
    assert.ok(sameValue(await py.values(store), jsValues(js, store)), store);
  }
  // Every message within the limits, and the diffs cut into parts of at most 1 MiB.
  const messages = messagesOf(sentToPython);
  const diffs = messages.filter(({ message }) => message.kind === 2);
  assert.ok(diffs.length >= 12, `${diffs.length} DIFFs`);
  for (const { size: bytes, message } of diffs) {
    assert.ok(bytes <= MiB + 64 * 1024, `a DIFF of ${bytes} bytes`);
    assert.ok(message.diffs.size >= 1);
  }
  assert.equal(status.stats["in:diff"], diffs.length);
  console.log(
    `10 MB (and 20,000 entries) from JS to a late Python engine: ${diffs.length} DIFFs, ` +
      `${sentToPython.length} frames, ${seconds.toFixed(2)} s wall`,
  );

  // A JavaScript late joiner, linked to the same peer.
  const js2 = new SyncEngine("js2");
  const started2 = performance.now();
  js.linkUp("js2", now);
  js2.linkUp("js", now);
  let agreed = false;
  for (let step = 0; step < 60 && !agreed; step++) {
    for (let round = 0; round < 50; round++) {
      let moved = 0;
      for (const [peer, frame] of js.dataToSend(now)) {
        moved++;
        if (peer === "js2") js2.receive("js", frame, now);
        else await py.call({ op: "receive", peer: "js", frame: toHex(frame), now });
      }
      for (const [, frame] of js2.dataToSend(now)) {
        moved++;
        js.receive("js2", frame, now);
      }
      for (const [, frame] of (await py.call({ op: "send", now })).frames) {
        moved++;
        js.receive("py", fromHex(frame), now);
      }
      if (!moved) break;
    }
    agreed = js.isSynced() && js2.isSynced();
    if (!agreed) {
      now = Math.round((now + 0.1) * 1000) / 1000;
      js.tick(now);
      js2.tick(now);
      await py.call({ op: "tick", now });
    }
  }
  assert.ok(agreed, "js and js2 agree");
  for (const reason of ["violations", "oversize", "too_many_items", "bad_update"]) {
    assert.equal(js2.stats.get(reason), undefined, `js2: ${reason}`);
  }
  for (const store of ["big", "many", "small"]) {
    assert.ok(sameValue(jsValues(js2, store), jsValues(js, store)), store);
  }
  console.log(`the same to a late JS engine: ${((performance.now() - started2) / 1000).toFixed(2)} s wall`);

  // A batch bigger than a part (writes of 3 MB in one flush) goes out as several UPDATEs.
  for (let i = 0; i < 3; i++) js.write("big", "set", `more-${i}`, hexString(100 + i, 1_000_000));
  const batch = js.dataToSend(now);
  const toPython = batch.filter(([peer]) => peer === "py").map(([, frame]) => frame);
  const updates = messagesOf(toPython).filter(({ message }) => message.kind === 3);
  assert.ok(updates.length >= 3, `${updates.length} UPDATEs`);
  for (const { size: bytes } of updates) assert.ok(bytes <= MiB + 64 * 1024, `an UPDATE of ${bytes} bytes`);
  // (the same parts, encoded once, go to both links)
  assert.equal(batch.filter(([peer]) => peer === "js2").length, toPython.length);
  for (const frame of toPython) await py.call({ op: "receive", peer: "js", frame: toHex(frame), now });
  for (const [peer, frame] of batch) if (peer === "js2") js2.receive("js", frame, now);
  const atPython = await py.values("big");
  for (let i = 0; i < 3; i++) assert.equal(atPython[`more-${i}`].length, 1_000_000);
  assert.ok(sameValue(jsValues(js2, "big"), jsValues(js, "big")));
  js.linkDown("py");
  await py.call({ op: "link_down", peer: "js" });
});

test("eager acks: while someone awaits agreement, acks need no ack delay", async () => {
  let now = 100;
  const a = new SyncEngine("a");
  const b = new SyncEngine("b");
  a.createStore("s");
  a.linkUp("b", now);
  b.linkUp("a", now);
  const pump = () => {
    for (let round = 0; round < 20; round++) {
      const fromA = a.dataToSend(now);
      const fromB = b.dataToSend(now);
      for (const [, frame] of fromA) b.receive("a", frame, now);
      for (const [, frame] of fromB) a.receive("b", frame, now);
      if (!fromA.length && !fromB.length) return;
    }
  };
  pump();
  assert.ok(a.isSynced() && b.isSynced());

  // Lazy: a write is acknowledged only after ackDelay.
  a.write("s", "set", "k", 1);
  pump();
  assert.ok(!a.isSynced(), "lazy ack: not yet");
  now += a.config.ackDelay;
  b.tick(now);
  pump();
  assert.ok(a.isSynced());

  // Eager: the UPDATE asks for an immediate ack, and gets it in the same exchange.
  a.wantAcks(true);
  assert.ok(a.hasOutput()); // our state to every peer, asking for theirs
  a.write("s", "set", "k", 2);
  pump();
  assert.ok(a.isSynced(), "eager: agreed at once");
  // Eager on the receiving side: its acks of UPDATEs go at once as well.
  b.wantAcks(true);
  pump();
  b.write("s", "set", "k", 3);
  pump();
  assert.ok(b.isSynced() && a.isSynced());
  a.wantAcks(false);
  b.wantAcks(false);
  a.write("s", "set", "k", 4);
  pump();
  assert.ok(!a.isSynced(), "lazy again");

  // Against Python: the UPDATE's want_ack is answered at once.
  const pyNow = 200;
  a.linkUp("py", pyNow);
  await py.call({ op: "link_up", peer: "a", now: pyNow });
  const exchange = async () => {
    for (let round = 0; round < 20; round++) {
      let moved = 0;
      for (const [peer, frame] of a.dataToSend(pyNow)) {
        if (peer !== "py") continue;
        moved++;
        await py.call({ op: "receive", peer: "a", frame: toHex(frame), now: pyNow });
      }
      for (const [, frame] of (await py.call({ op: "send", now: pyNow })).frames) {
        moved++;
        a.receive("py", fromHex(frame), pyNow);
      }
      if (!moved) return;
    }
  };
  a.linkDown("b");
  await exchange();
  a.wantAcks(true);
  a.write("s", "set", "k", 5);
  await exchange();
  assert.ok(a.isSynced(), "python acknowledged at once");
  assert.equal((await py.values("s")).k, 5);
});

test("a Node Meeting holding 10 MB serves a Python late joiner over WebRTC; synced() is eager", async () => {
  const server = await startServer();
  const node = new Meeting({ url: server.url, room: "big-from-node", peerId: "node-writer", iceAddresses: ["127.0.0.1"], logger: null });
  const late = new RoomPeer("late-py");
  try {
    await bounded(node.join(), 30_000, "node joins");
    const store = node.stores.create("big");
    const keys = 10;
    const size = 1_000_000;
    for (let i = 0; i < keys; i++) await store.set(`big-${i}`, hexString(1000 + i, size));
    await node.stores.create("small").set("k", 1);

    const started = performance.now();
    const { peers } = await late.join(server.url, "big-from-node");
    assert.deepEqual(peers, ["node-writer"]);
    await late.call({ op: "synced", timeout: 60 }, 90_000);
    const seconds = (performance.now() - started) / 1000;
    const atPython = await late.values();
    let total = 0;
    for (const value of Object.values(atPython.big)) total += value.length;
    assert.equal(total, keys * size);
    console.log(`Python late joiner: ${total} bytes from a Node peer in ${seconds.toFixed(2)} s (join to synced)`);
    assertSame(atPython.big, store.getAll(), "the late joiner's values");
    assertSame(atPython.small, { k: 1 }, "small");
    assert.equal(node.stats.violations ?? 0, 0);
    const stats = (await late.call({ op: "stats" })).stats ?? {};
    for (const reason of ["violations", "oversize", "too_many_items"]) assert.ok(!stats[reason], `python: ${reason}`);

    // synced() with eager acks: a write agreed on in well under ack_delay (0.25 s).
    await bounded(node.synced({ timeout: 30 }), 35_000, "node synced");
    const times = [];
    for (let i = 0; i < 7; i++) {
      const t = performance.now();
      await store.set("tick", i);
      await node.synced({ timeout: 10 });
      times.push(performance.now() - t);
    }
    times.sort((a, b) => a - b);
    const median = times[3];
    console.log(`write + synced() with a Python peer: median ${median.toFixed(1)} ms (${times.map((t) => t.toFixed(0)).join(", ")})`);
    assert.ok(median < 200, `median ${median} ms`);
    assert.equal(node.engine.eager, false, "eager only while synced() waits");
  } finally {
    await bounded(node.leave(), 10_000, "leave");
    await late.close();
    await stopChild(server.child);
  }
});
