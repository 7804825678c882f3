// Local writes (§10.2, §10.3): the deltas a writer produces, byte for byte as the
// reference's (the single-writer update vectors), and compaction of remote entries.

import assert from "node:assert/strict";
import { test } from "node:test";
import { StoreReplica } from "../src/replica.js";
import { sameValue } from "../src/values.js";
import { readHex, toHex } from "./helpers.js";

/** Writer 1's steps for the vectors whose every update is one local write. */
const SCRIPTS = {
  set: [(r) => r.set("greeting", "hello")],
  set_overwrite: [(r) => r.set("k", 1), (r) => r.set("k", 2)],
  update_list_append: [(r) => r.set("log", [1]), (r) => r.update("log", [2, 3])],
  delete: [(r) => r.set("a", 1), (r) => r.set("b", 2), (r) => r.delete("a")],
  bulk: [(r) => r.bulkSet({ x: 1, y: 2, z: 3 }), (r) => r.bulkDelete(["x", "y"])],
  clear: [(r) => r.bulkSet({ p: 1, q: [1], r: { s: null } }), (r) => r.clear()],
};

for (const [name, steps] of Object.entries(SCRIPTS)) {
  test(`local writes give the reference's deltas: ${name}`, () => {
    const expected = readHex(`updates/${name}.hex`);
    const replica = new StoreReplica("s", { clientId: 1 });
    const deltas = [];
    for (const step of steps) {
      step(replica);
      deltas.push(...replica.takeOutbox());
    }
    assert.deepEqual(deltas.map(toHex), expected.map(toHex));
    const other = new StoreReplica("s", { clientId: 2 });
    for (const delta of expected) other.apply(delta);
    assert.ok(sameValue(Object.fromEntries(replica.values()), Object.fromEntries(other.values())));
  });
}

test("a remote entry beaten by one of ours is compacted in a delta of our own", () => {
  const a = new StoreReplica("s", { clientId: 1 });
  const b = new StoreReplica("s", { clientId: 2 });
  a.set("k", "from A");
  b.set("k", "from B"); // same lamport, bigger writer: B's wins
  for (const delta of a.takeOutbox()) b.apply(delta);
  const [compaction] = b.takeOutbox().slice(-1);
  assert.equal(b.entryCount, 1);
  assert.equal(b.values().get("k"), "from B");
  const last = readHex("updates/compaction_delta.hex").at(-1);
  assert.equal(toHex(compaction), toHex(last));
});

test("lamport clocks: max seen plus one; updates merge and append", () => {
  const a = new StoreReplica("s", { clientId: 5, trackChanges: true });
  a.update("m", { x: 1 });
  a.update("m", { y: 2 });
  a.update("m", { x: 3, y: 4 });
  a.update("n", 7);
  assert.equal(a.lamport, 4);
  assert.ok(sameValue(Object.fromEntries(a.values()), { m: { x: 3, y: 4 }, n: 7 }));
  assert.equal(a.entryCount, 2); // both earlier merges are covered by the last one
  assert.equal(a.takeChanges().length, 4);
  assert.throws(() => a.set("*", 1), RangeError);
  assert.throws(() => a.set("k", undefined), TypeError);
  assert.equal(a.takeOutbox().length, 4);
});
