// What a peer checks of a well-formed message before any store sees it (PROTOCOL.md
// §11), in the reference engine's order: the work its state vectors announce, store
// names, each update (read and checked against the item budget left), and the state
// vectors themselves. Pure: it reports violations and hands back what may be used.

import { DIFF, ProtocolError, UPDATE, stateItems, SV_ENTRIES_PER_ITEM } from "./messages.js";
import { decodeStateVector } from "./statevector.js";
import { InvalidUpdate, readUpdate } from "./updates.js";
import { DEFAULT_MAX_VALUE_BYTES, checkKey } from "./values.js";
import { MAX_MESSAGE_ITEMS } from "./wire.js";

/**
 * True when `name` is a store name (1 to 1,024 UTF-8 bytes of valid Unicode).
 * @param {string} name
 */
export function isStoreName(name) {
  try {
    checkKey(name, "store name");
    return true;
  } catch {
    return false;
  }
}

/**
 * Check a message (from `Reassembler.complete`) as the reference engine does before it
 * applies anything. Throws `ProtocolError` when the whole message is refused (state
 * vectors that are malformed from their first byte or announce more than
 * `maxMessageItems`); otherwise returns the violations it found, one reason each (a bad
 * store name, a refused update, a malformed state vector: that part is dropped, the rest
 * is used), the checked updates per store, and the decoded state vectors. An update over
 * the item budget refuses every update of the message, and its state vectors.
 * `stateOf(name)` gives the receiver's state vector of a store, if it holds it.
 * @param {any} message
 * @param {{maxMessageItems?: number, maxValueBytes?: number, stateOf?: (name: string) => Map<number, number> | null}} [options]
 */
export function intake(
  message,
  { maxMessageItems = MAX_MESSAGE_ITEMS, maxValueBytes = DEFAULT_MAX_VALUE_BYTES, stateOf = () => null } = {},
) {
  const violations = [];
  const updates = new Map();
  const states = new Map();
  if (!message.states) return { violations, updates, states };
  const items = stateItems(message.states);
  if (items > maxMessageItems) {
    throw new ProtocolError("too_many_items", "state vectors too large");
  }
  if (message.kind === DIFF || message.kind === UPDATE) {
    const incoming =
      message.kind === DIFF
        ? new Map([...message.diffs].map(([name, delta]) => [name, [delta]]))
        : message.updates;
    let budget = maxMessageItems - items;
    for (const [name, deltas] of incoming) {
      if (!isStoreName(name)) {
        violations.push({ reason: "bad_store_name", detail: "" });
        continue;
      }
      const reads = [];
      for (const delta of deltas) {
        let read;
        try {
          read = readUpdate(delta, { maxUnits: budget, maxValueBytes, have: stateOf(name) });
        } catch (error) {
          if (!(error instanceof InvalidUpdate)) throw error;
          violations.push({ reason: error.reason, detail: error.message });
          if (error.reason === "too_many_items") {
            return { violations, updates: new Map(), states: new Map() };
          }
          continue;
        }
        budget -= read.units;
        reads.push(read);
      }
      updates.set(name, reads);
    }
  }
  for (const [name, encoded] of message.states) {
    if (!isStoreName(name)) {
      violations.push({ reason: "bad_store_name", detail: "" });
      continue;
    }
    try {
      states.set(name, decodeStateVector(encoded, maxMessageItems * SV_ENTRIES_PER_ITEM));
    } catch {
      violations.push({ reason: "malformed_state", detail: "malformed state vector" });
    }
  }
  return { violations, updates, states };
}
