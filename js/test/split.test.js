// Big updates cut into bounded parts (`split` in src/updates.js) against the reference
// (crdt_stores._update_writing.split, driven by tests/js_split_peer.py): the same parts,
// byte for byte, on updates of every shape (one writer or several, long entry lists,
// entries bigger than a part, deleted and garbage-collected structs, delete sets, diffs
// from a state vector), under tight and default limits; and the parts, applied in
// order, do what the whole does.
//
// The Python interpreter: $CRDT_STORES_PYTHON, by default the repository's venv.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, before, test } from "node:test";
import { StoreReplica } from "../src/replica.js";
import { readUpdate, split } from "../src/updates.js";
import { DEFAULT_MAX_VALUE_BYTES, sameValue } from "../src/values.js";
import { fromHex, seeded, toHex } from "./helpers.js";
import { PythonProcess } from "./python_engine.js";
import { PYTHON, ROOT } from "./rooms.js";

const SCRIPT = `${ROOT}tests/js_split_peer.py`;
const ANSWER_TIMEOUT_MS = 30_000;

/** Python's split behind a child process (tests/js_split_peer.py). */
class PythonSplitter extends PythonProcess {
  constructor() {
    super(SCRIPT, [], ANSWER_TIMEOUT_MS);
  }

  split(update, maxBytes, maxUnits) {
    return this.call({ update: toHex(update), max_bytes: maxBytes, max_units: maxUnits });
  }
}

let python;
before(() => {
  assert.ok(existsSync(PYTHON), `no Python at ${PYTHON} (set CRDT_STORES_PYTHON)`);
  python = new PythonSplitter();
});
after(() => python?.close());

const read = (data) =>
  readUpdate(data, { maxUnits: Number.MAX_SAFE_INTEGER, maxValueBytes: DEFAULT_MAX_VALUE_BYTES, checkEntries: false, keepStructs: true });

const replica = (name, clientId) => new StoreReplica(name, { clientId });

/** Deliver everything each replica holds to every other one. */
function syncAll(replicas) {
  for (const from of replicas) for (const to of replicas) if (from !== to) to.apply(from.diff(to.stateVector()));
}

/** Random writes by 1-3 writers, sometimes synced in between: the updates to split. */
function randomCase(seed) {
  const random = seeded(seed);
  const pick = (n) => Math.floor(random() * n);
  const writers = Array.from({ length: 1 + pick(3) }, (_, i) => replica("s", 1000 + seed * 7 + i));
  const steps = 5 + pick(60);
  for (let i = 0; i < steps; i++) {
    const w = writers[pick(writers.length)];
    const key = `k${pick(12)}`;
    switch (pick(7)) {
      case 0:
        w.set(key, pick(1000));
        break;
      case 1:
        w.set(key, "x".repeat(pick(3) === 0 ? 200 + pick(3000) : pick(40)));
        break;
      case 2:
        w.update(key, { [`f${pick(4)}`]: pick(9) });
        break;
      case 3:
        w.update(`list${pick(2)}`, [pick(5), "a"]);
        break;
      case 4:
        w.delete(key);
        break;
      case 5: {
        const bulk = {};
        for (let j = pick(80); j > 0; j--) bulk[`b${pick(200)}`] = pick(3) ? j : "y".repeat(pick(300));
        w.bulkSet(bulk);
        break;
      }
      default:
        if (writers.length > 1 && pick(2)) syncAll(writers);
        else if (pick(3) === 0) w.bulkDelete([...w.values().keys()].slice(0, pick(20)));
    }
  }
  const first = writers[0];
  const out = [first.diff()];
  if (writers.length > 1) {
    out.push(first.diff(writers[1].stateVector())); // a diff from a state vector
    syncAll(writers);
    out.push(first.diff());
  }
  out.push(...first.takeOutbox().slice(-3));
  return out;
}

/** Hand-made shapes: one long entry list, entries bigger than a part, many deletions. */
function shapedCases() {
  const one = replica("s", 42);
  const bulk = {};
  for (let i = 0; i < 3000; i++) bulk[`key-${i}`] = i % 7 ? i : `v${"z".repeat(i % 97)}`;
  one.bulkSet(bulk); // one struct of 3,000 entries
  const long = one.diff();
  one.set("huge", "h".repeat(70_000)); // an entry bigger than small parts
  one.set("huge2", "i".repeat(5_000));
  const huge = one.diff();
  one.bulkDelete(Object.keys(bulk).filter((_, i) => i % 3 === 0)); // a delete set of many ranges
  const deleted = one.diff();
  const two = replica("s", 43);
  two.apply(deleted);
  for (let i = 0; i < 200; i++) two.set(`key-${i * 5}`, -i); // compaction of remote entries
  const merged = two.diff();
  return [long, huge, deleted, merged, two.diff(one.stateVector())];
}

const LIMITS = [
  [80, 2],
  [100, 3],
  [300, 7],
  [1000, 50],
  [4096, 300],
  [64 * 1024, 1000],
  [1024 * 1024, 8192],
];

/** Check `split` against the reference on `update`, for every pair of limits. */
async function same(update, label) {
  const parsed = read(update);
  for (const [maxBytes, maxUnits] of LIMITS) {
    const ours = split(parsed, maxBytes, maxUnits).map(toHex);
    const theirs = await python.split(update, maxBytes, maxUnits);
    assert.equal(parsed.units, theirs.units, `${label}: units`);
    assert.equal(ours.length, theirs.parts.length, `${label} ${maxBytes}/${maxUnits}: number of parts`);
    assert.deepEqual(ours, theirs.parts, `${label} ${maxBytes}/${maxUnits}: parts`);
  }
  return parsed;
}

/** Applied in order, the parts do what the whole does; each part is within the limits. */
function sameEffect(update, maxBytes, maxUnits) {
  const whole = replica("s", 1);
  whole.apply(update);
  const parts = split(read(update), maxBytes, maxUnits);
  const pieces = replica("s", 1);
  for (const part of parts) {
    const { units, blocks } = read(part);
    const structs = blocks.reduce((n, block) => n + block.count, 0);
    assert.ok(units <= maxUnits, `a part of ${units} units`);
    // (the reference keeps 32 bytes for the headers: a part holding several writers'
    // blocks may pass the limit by a few bytes; a single entry bigger than a part is alone)
    assert.ok(part.length <= maxBytes + 16 * blocks.length || structs === 1, `a part of ${part.length} bytes, ${structs} structs`);
    pieces.apply(part);
  }
  assert.ok(sameValue(pieces.stateVector(), whole.stateVector()));
  assert.ok(sameValue(pieces.deleteDigest(), whole.deleteDigest()));
  assert.ok(sameValue(Object.fromEntries(pieces.values()), Object.fromEntries(whole.values())));
  return parts.length;
}

test("split cuts hand-made updates where the reference does", async () => {
  const cases = shapedCases();
  for (const [i, update] of cases.entries()) await same(update, `shaped ${i}`);
  let parts = 0;
  // (a replica applies each part in time linear in what it holds: thousands of tiny
  // parts would take long, so the effect is checked under the wider limits)
  for (const update of cases) for (const [maxBytes, maxUnits] of LIMITS.slice(3)) parts += sameEffect(update, maxBytes, maxUnits);
  assert.ok(parts > 20, `only ${parts} parts`);
  // Trivial inputs: an empty update, and one that fits.
  assert.deepEqual(split(read(new Uint8Array([0, 0])), 100, 10).map(toHex), ["0000"]);
  assert.deepEqual((await python.split(new Uint8Array([0, 0]), 100, 10)).parts, ["0000"]);
});

test("split cuts random updates where the reference does, parts doing what the whole does", async () => {
  let updates = 0;
  for (let seed = 1; seed <= 60; seed++) {
    for (const update of randomCase(seed)) {
      await same(update, `seed ${seed}`);
      sameEffect(update, 300, 7);
      updates++;
    }
  }
  assert.ok(updates >= 150, `only ${updates} updates`);
});
