// The `updates` and `invalid_updates` vectors: what a replica holds after applying
// updates, and the updates it must refuse (with the reason and message of the reference).

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { InvalidUpdate, StoreReplica, deleteDigest, readUpdate } from "../src/index.js";
import { INDEX, STORE, assertValues, readHex, toHex } from "./helpers.js";

const DEFAULT_ITEMS = 1 << 20;
const DEFAULT_VALUE_BYTES = 1 << 20;

/** A replica with the options of a vector's `replica` field. */
function replicaFor(options = {}) {
  return new StoreReplica(STORE, {
    maxUpdateItems: options.max_update_items ?? DEFAULT_ITEMS,
    maxValueBytes: options.max_value_bytes ?? DEFAULT_VALUE_BYTES,
  });
}

function snapshot(replica) {
  return {
    values: [...replica.values()],
    stateVector: toHex(replica.stateVector()),
    digest: toHex(replica.deleteDigest()),
    entries: replica.entryCount,
  };
}

/** A delete set of index.json (`{client: [[clock, length]...]}`) as a Map. */
function deleteSetOf(typed) {
  return new Map(Object.entries(typed).map(([client, ranges]) => [Number(client), ranges]));
}

describe("updates vectors", () => {
  for (const vector of INDEX.updates) {
    test(vector.name, () => {
      const replica = replicaFor(vector.replica);
      for (const data of readHex(vector.file)) {
        const read = readUpdate(data, { maxUnits: DEFAULT_ITEMS, maxValueBytes: DEFAULT_VALUE_BYTES });
        assert.equal(read.data, data);
        replica.apply(read);
      }
      assertValues(replica.values(), vector.expected);
      assert.deepEqual(
        Object.fromEntries([...replica.stateVectorMap()].map(([client, clock]) => [String(client), clock])),
        vector.state_vector,
      );
      assert.equal(replica.entryCount, vector.live_entries);
      assert.deepEqual(replica.deleteSet(), deleteSetOf(vector.delete_set));
      assert.equal(toHex(replica.deleteDigest()), vector.delete_digest);
      assert.equal(toHex(deleteDigest(deleteSetOf(vector.delete_set))), vector.delete_digest);
      // What a late joiner gets from this replica means the same (and passes the checks).
      const joiner = replicaFor();
      joiner.apply(replica.diff());
      assertValues(joiner.values(), vector.expected, "late joiner");
      assert.equal(toHex(joiner.deleteDigest()), vector.delete_digest);
    });
  }
});

describe("invalid_updates vectors", () => {
  for (const vector of INDEX.invalid_updates) {
    test(vector.name, () => {
      const options = vector.replica ?? {};
      const replica = replicaFor(options);
      if (vector.before !== null) {
        for (const data of readHex(vector.before)) replica.apply(data);
      }
      const [data] = readHex(vector.file);
      const check = (error) => {
        assert.ok(error instanceof InvalidUpdate, String(error));
        assert.equal(error.reason, vector.reason);
        assert.ok(error.message.includes(vector.detail), `${error.message} lacks ${vector.detail}`);
        return true;
      };
      const before = snapshot(replica);
      assert.throws(() => replica.apply(data), check);
      assert.deepEqual(snapshot(replica), before);
      assert.throws(
        () =>
          readUpdate(data, {
            maxUnits: options.max_update_items ?? DEFAULT_ITEMS,
            maxValueBytes: options.max_value_bytes ?? DEFAULT_VALUE_BYTES,
          }),
        check,
      );
    });
  }
});

test("the reader counts items and skips entries below the receiver's state", () => {
  const [data] = readHex("updates/set.hex");
  const read = readUpdate(data, { maxUnits: 10, maxValueBytes: 64 });
  assert.equal(read.units, 3); // 2 structs and 1 entry
  assert.deepEqual(read.blocks, [{ client: 1, clock: 0, end: 2, count: 2, start: 4, stop: data.length - 1 }]);
  assert.equal(read.entries.length, 1);
  assert.deepEqual(read.entries[0], { key: "greeting", op: 0, payload: "hello", lamport: 1 });
  const resent = readUpdate(data, { maxUnits: 10, maxValueBytes: 64, have: new Map([[1, 2]]) });
  assert.equal(resent.entries.length, 0);
  assert.throws(() => readUpdate(data, { maxUnits: 2, maxValueBytes: 64 }), { reason: "too_many_items" });
});

test("a delete range over an array is clipped before Yjs sees it", () => {
  const [, clipping] = readHex("updates/delete_clipped.hex");
  const read = readUpdate(clipping, { maxUnits: 10, maxValueBytes: 64 });
  assert.equal(read.clipped, true);
  assert.deepEqual(read.deletes, new Map([[1, [[1, 1]]]]));
});

test("values handed out are the caller's to change", () => {
  const replica = new StoreReplica(STORE);
  for (const data of readHex("updates/late_joiner.hex")) replica.apply(data);
  replica.values().get("attendees").push("eve");
  replica.values().get("room").floor = 6;
  assert.deepEqual(replica.values().get("attendees"), ["ann", "bob"]);
  assert.deepEqual(replica.values().get("room"), { floor: 5 });
});
