// Runs a subset of the shared test vectors (tests/vectors/, fetched from /vectors/) in the
// browser, through the package as a page loads it (import map, no bundler): CBOR, values,
// updates, frames (compressed ones through src/zlib.browser.js), sealing, two sync
// engines, and two RTCPeerConnections over 127.0.0.1 carrying frames on a negotiated data
// channel. Results go to the page and to window.__results ({done, passed, failed,
// groups, failures, info}); test/browser.test.js drives it in headless Chromium.

import {
  CHUNK,
  COMPRESSED,
  Float,
  InvalidUpdate,
  KIND_NAMES,
  ProtocolError,
  Reassembler,
  SealError,
  SignalSealer,
  StoreReplica,
  SyncEngine,
  associatedData,
  decodeCbor,
  decodeFrame,
  deleteDigest,
  deriveKey,
  encodeCbor,
  encodeMessage,
  floatValue,
  frames,
  fromCbor,
  inflate,
  intake,
  isValid,
  normalize,
  readUpdate,
  sameValue,
  setField,
} from "crdt-stores";
import * as zlib from "crdt-stores/zlib";

const results = { done: false, passed: 0, failed: 0, groups: {}, failures: [], info: {} };
window.__results = results;

// --- helpers -------------------------------------------------------------------------

const toHex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
const fromHex = (hex) => Uint8Array.from(hex.match(/../g) ?? [], (h) => parseInt(h, 16));
const fromBase64 = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));

class Failure extends Error {}
function ok(condition, message = "assertion failed") {
  if (!condition) throw new Failure(message);
}
function equal(actual, expected, what = "") {
  const a = canon(actual);
  const e = canon(expected);
  ok(a === e, `${what} ${a} != ${e}`.trim());
}
function canon(value) {
  return JSON.stringify(value, (_, v) => {
    if (v instanceof Uint8Array) return `hex:${toHex(v)}`;
    if (v instanceof Map) return { $map: [...v] };
    if (typeof v === "bigint") return `${v}n`;
    return v;
  });
}
function throws(fn, check, what = "") {
  try {
    fn();
  } catch (error) {
    if (error instanceof Failure) throw error;
    ok(check(error), `${what} wrong error: ${error?.name}: ${error?.message}`);
    return;
  }
  throw new Failure(`${what} did not throw`);
}

async function check(group, name, fn) {
  const counts = (results.groups[group] ??= { passed: 0, failed: 0 });
  try {
    await fn();
    counts.passed++;
    results.passed++;
  } catch (error) {
    counts.failed++;
    results.failed++;
    results.failures.push({ group, name, error: String(error?.stack ?? error) });
  }
}

const VECTORS = "/vectors/";
const fetchText = async (path) => {
  const response = await fetch(VECTORS + path);
  ok(response.ok, `${path}: HTTP ${response.status}`);
  return response.text();
};
async function readHex(path) {
  const text = await fetchText(path);
  ok(text.endsWith("\n") && !text.includes("\r"), path);
  return text.slice(0, -1).split("\n").map(fromHex);
}

const PYTHON_FLOATS = { inf: Infinity, "-inf": -Infinity, nan: NaN };
/** Typed JSON (tests/vectors/README.md) to values, by the number rule. */
function fromTyped(value) {
  if (Array.isArray(value)) return value.map(fromTyped);
  if (value !== null && typeof value === "object") {
    const keys = Object.keys(value);
    if (keys.length === 1) {
      const [tag] = keys;
      const inner = value[tag];
      if (tag === "$int") {
        const n = BigInt(inner);
        const max = BigInt(Number.MAX_SAFE_INTEGER);
        return n >= -max && n <= max ? Number(n) : n;
      }
      if (tag === "$float") return floatValue(PYTHON_FLOATS[inner] ?? Number(inner));
      if (tag === "$bytes") return fromHex(inner);
      if (tag === "$map") {
        const out = {};
        for (const [key, item] of inner) setField(out, key, fromTyped(item));
        return out;
      }
    }
    const out = {};
    for (const key of keys) setField(out, key, fromTyped(value[key]));
    return out;
  }
  return value;
}
function assertValues(actual, typed, what = "values") {
  const got = Object.fromEntries(actual);
  ok(sameValue(got, fromTyped(typed)), `${what}: ${canon(got)} != ${canon(fromTyped(typed))}`);
}

// --- groups --------------------------------------------------------------------------

const MESSAGE_LIMIT = 4 * 1024 * 1024;

function cborAndValues(index) {
  const numberRule = [
    [1, "01"],
    [new Float(1), "fb3ff0000000000000"],
    [-0, "fb8000000000000000"],
    [0.5, "fb3fe0000000000000"],
    [2 ** 40, "1b0000010000000000"],
    [2 ** 53, "fb4340000000000000"],
    [2n ** 53n, "1b0020000000000000"],
    [-(2n ** 63n), "3b7fffffffffffffff"],
  ];
  for (const [value, hex] of numberRule) {
    check("values", `number rule ${hex}`, () => {
      equal(toHex(encodeCbor(value)), hex);
      const back = fromCbor(decodeCbor(fromHex(hex)));
      ok(sameValue(back, value), `${hex} read back as ${canon(back)}`);
    });
  }
  const every = index.updates.find((v) => v.name === "every_type");
  for (const [key, typed] of Object.entries(every.expected)) {
    check("values", `every_type ${key} round-trips`, () => {
      const value = fromTyped(typed);
      ok(sameValue(normalize(value), value));
      const item = decodeCbor(encodeCbor(value));
      ok(isValid(item));
      ok(sameValue(fromCbor(item), value));
    });
  }
  const refused = {
    ff: "break code",
    c11a00000000: "CBOR tag 1",
    "5f41ff": "indefinite",
    fc: "reserved",
    "62ffff": "UTF-8",
    "62eda080": "UTF-8",
  };
  for (const [hex, message] of Object.entries(refused)) {
    check("cbor", `refuses ${hex}`, () => throws(() => decodeCbor(fromHex(hex)), (e) => e.message.includes(message)));
  }
  check("cbor", "nesting: 40 levels, not 41", () => {
    decodeCbor(fromHex(`${"81".repeat(40)}00`));
    throws(() => decodeCbor(fromHex(`${"81".repeat(41)}00`)), (e) => /nesting depth \(40\)/.test(e.message));
  });
  check("cbor", "a BOM is kept", () => equal(decodeCbor(fromHex("63efbbbf")), "\ufeff"));
}

function replicaFor(store, options = {}) {
  return new StoreReplica(store, {
    maxUpdateItems: options.max_update_items ?? 1 << 20,
    maxValueBytes: options.max_value_bytes ?? 1 << 20,
  });
}

async function updates(index) {
  for (const vector of index.updates) {
    await check("updates", vector.name, async () => {
      const replica = replicaFor(index.store, vector.replica);
      for (const data of await readHex(vector.file)) {
        replica.apply(readUpdate(data, { maxUnits: 1 << 20, maxValueBytes: 1 << 20 }));
      }
      assertValues(replica.values(), vector.expected);
      equal(
        Object.fromEntries([...replica.stateVectorMap()].map(([c, clock]) => [String(c), clock])),
        vector.state_vector,
        "state vector",
      );
      equal(replica.entryCount, vector.live_entries, "entries");
      const deletes = new Map(Object.entries(vector.delete_set).map(([c, r]) => [Number(c), r]));
      equal(replica.deleteSet(), deletes, "delete set");
      equal(toHex(replica.deleteDigest()), vector.delete_digest, "digest");
      equal(toHex(deleteDigest(deletes)), vector.delete_digest, "digest of the set");
      const joiner = replicaFor(index.store);
      joiner.apply(replica.diff());
      assertValues(joiner.values(), vector.expected, "late joiner");
    });
  }
  for (const vector of index.invalid_updates) {
    await check("updates", `invalid: ${vector.name}`, async () => {
      const replica = replicaFor(index.store, vector.replica);
      if (vector.before !== null) for (const data of await readHex(vector.before)) replica.apply(data);
      const [data] = await readHex(vector.file);
      const before = canon([...replica.values()]) + toHex(replica.stateVector());
      throws(
        () => replica.apply(data),
        (e) => e instanceof InvalidUpdate && e.reason === vector.reason && e.message.includes(vector.detail),
      );
      equal(canon([...replica.values()]) + toHex(replica.stateVector()), before, "replica changed");
    });
  }
}

/** Frames to one message through the envelopes. */
function unwrap(frameList) {
  const envelopes = [];
  const chunks = [];
  let inflated = -1;
  let message = decodeFrame(frameList[0]);
  if (message.kind === CHUNK) {
    envelopes.push("chunk");
    const reassembler = new Reassembler(MESSAGE_LIMIT);
    let whole = null;
    for (const frame of frameList) {
      const part = decodeFrame(frame);
      chunks.push({ message_id: part.messageId, index: part.index, count: part.count, bytes: part.data.length });
      whole = reassembler.add(part.messageId, part.index, part.count, part.data);
    }
    ok(whole !== null, "the chunks do not make a whole message");
    message = decodeFrame(whole, MESSAGE_LIMIT);
  }
  if (message.kind === COMPRESSED) {
    envelopes.push("compressed");
    const data = inflate(message.packed, MESSAGE_LIMIT);
    inflated = data.length;
    equal(toHex(encodeMessage(decodeFrame(data, MESSAGE_LIMIT))), toHex(data), "inner message");
    message = decodeFrame(data, MESSAGE_LIMIT);
  }
  return { envelopes, message, chunks, inflated };
}

/** A receiving peer: reassembler, intake, replicas; what it refused. */
function receiver() {
  const reassembler = new Reassembler(MESSAGE_LIMIT);
  const stores = new Map();
  const violations = [];
  const receive = (frame) => {
    try {
      const message = reassembler.complete(frame);
      if (message === null) return;
      const checked = intake(message, { stateOf: (name) => stores.get(name)?.stateVectorMap() ?? null });
      violations.push(...checked.violations.map((v) => v.reason));
      for (const name of [...checked.updates.keys(), ...checked.states.keys()]) {
        if (!stores.has(name)) stores.set(name, new StoreReplica(name));
      }
      for (const [name, reads] of checked.updates) for (const read of reads) stores.get(name).apply(read);
    } catch (error) {
      if (!(error instanceof ProtocolError)) throw error;
      violations.push(error.reason);
    }
  };
  return { stores, violations, receive };
}

async function frameVectors(index) {
  for (const vector of index.frames) {
    await check("frames", vector.name, async () => {
      const frameList = await readHex(vector.file);
      for (const frame of frameList) equal(toHex(encodeCbor(decodeCbor(frame))), toHex(frame), "CBOR");
      const { envelopes, message, chunks, inflated } = unwrap(frameList);
      equal(envelopes, vector.envelopes, "envelopes");
      equal(chunks, vector.chunks ?? [], "chunks");
      equal(inflated, vector.inflated_bytes ?? -1, "inflated bytes");
      equal(KIND_NAMES.get(message.kind) ?? message.kind, vector.message.kind, "kind");
      if (envelopes.length) {
        // Ours (compressed by the browser's zlib module) unwrap to the same message.
        const id = vector.chunks ? vector.chunks[0].message_id : 1;
        const ours = frames(encodeMessage(message), id, envelopes[0] === "chunk" ? 1024 : undefined);
        const again = unwrap(ours);
        equal(again.envelopes, vector.envelopes, "our envelopes");
        equal(toHex(encodeMessage(again.message)), toHex(encodeMessage(message)), "our message");
        if (!envelopes.includes("compressed")) equal(ours.map(toHex), frameList.map(toHex), "our frames");
      }
      const peer = receiver();
      for (const frame of frameList) peer.receive(frame);
      equal(peer.violations, [], "violations");
      for (const [name, values] of Object.entries(vector.stores ?? {})) {
        assertValues(peer.stores.get(name).values(), values, name);
      }
    });
  }
  for (const vector of index.invalid_frames) {
    await check("frames", `invalid: ${vector.name}`, async () => {
      const frameList = await readHex(vector.file);
      const peer = receiver();
      for (const frame of frameList) peer.receive(frame);
      equal(peer.violations, [vector.reason], "violations");
      if (vector.stage === "inflate" || vector.stage === "decode") {
        const refused = (e) => e instanceof ProtocolError && e.reason === vector.reason && e.message.includes(vector.detail);
        if (vector.stage === "decode") throws(() => decodeFrame(frameList[0]), refused);
        else throws(() => inflate(decodeFrame(frameList[0]).packed, MESSAGE_LIMIT), refused);
      }
    });
  }
}

async function zlibChecks() {
  await check("zlib", "the browser module is the one in use", async () => {
    const swapped = await import("/src/zlib.js"); // mapped to /src/zlib.browser.js
    const direct = await import("/src/zlib.browser.js");
    ok(swapped.inflate === direct.inflate && zlib.inflate === direct.inflate, "not the same module");
  });
  await check("zlib", "round trip, limit, truncation, corruption", () => {
    const data = Uint8Array.from({ length: 50_000 }, (_, i) => (i * 7919) % 13);
    const packed = zlib.deflate(data, 1);
    equal([packed[0], packed[1]], [0x78, 0x01], "zlib header");
    equal(toHex(zlib.inflate(packed, data.length)), toHex(data));
    throws(() => zlib.inflate(packed, data.length - 1), (e) => e instanceof zlib.InflateLimitError);
    throws(() => zlib.inflate(packed.subarray(0, 100), data.length), (e) => e instanceof zlib.InflateTruncatedError);
    const bad = packed.slice();
    bad[bad.length - 1] ^= 1;
    throws(
      () => zlib.inflate(bad, data.length),
      (e) => !(e instanceof zlib.InflateTruncatedError) && /incorrect data check/.test(e.message),
    );
  });
}

async function sealing(index) {
  for (const vector of index.signals) {
    await check("sealing", vector.name, async () => {
      const key = await deriveKey(vector.room_key, vector.room);
      equal(toHex(key), vector.derived_key, "derived key");
      equal(new TextDecoder().decode(associatedData(vector.room, vector.sender, vector.recipient)), vector.associated_data);
      equal(fromBase64(vector.data.sealed).subarray(0, 12), fromHex(vector.nonce), "nonce");
      const sealer = await SignalSealer.create(vector.room_key, vector.room);
      equal(sealer.open(vector.sender, vector.recipient, vector.data, vector.ts), vector.payload, "payload");
      throws(() => sealer.open(vector.sender, vector.recipient, vector.data, vector.ts), (e) => e.reason === "replayed signal");
      equal(sealer.seal(vector.sender, vector.recipient, vector.payload, vector.ts, fromHex(vector.nonce)), vector.data, "sealed");
    });
  }
  for (const vector of index.invalid_signals) {
    await check("sealing", `invalid: ${vector.name}`, async () => {
      const sealer = await SignalSealer.create(vector.room_key, vector.room);
      throws(
        () => sealer.open(vector.sender, vector.recipient, vector.data, vector.now),
        (e) => e instanceof SealError && e.reason.includes(vector.detail),
      );
    });
  }
}

/** A value big and repetitive enough to travel COMPRESSED. */
const bigValue = () => Array.from({ length: 400 }, (_, i) => `item ${i % 37} of the browser's list`);

async function engines() {
  await check("engine", "two engines converge in memory (compressed frames)", () => {
    const a = new SyncEngine("a");
    const b = new SyncEngine("b");
    const engines = { a, b };
    let compressed = 0;
    const pump = (now) => {
      for (let round = 0; round < 100; round++) {
        let moved = false;
        for (const [id, engine] of Object.entries(engines)) {
          for (const [peer, frame] of engine.dataToSend(now)) {
            moved = true;
            if (decodeFrame(frame).kind === COMPRESSED) compressed++;
            engines[peer].receive(id, frame, now);
          }
        }
        if (!moved) return;
      }
      throw new Failure("frames still moving");
    };
    a.createStore("s");
    a.write("s", "set", "list", bigValue());
    a.linkUp("b", 0);
    b.linkUp("a", 0);
    pump(0);
    b.write("s", "set", "k", new Float(1));
    for (let i = 1; i <= 5; i++) {
      a.tick(i / 10);
      b.tick(i / 10);
      pump(i / 10);
    }
    ok(sameValue(Object.fromEntries(a.store("s").values()), Object.fromEntries(b.store("s").values())), "diverged");
    ok(sameValue(b.store("s").values().get("k"), new Float(1)), "k");
    ok(compressed > 0, "no compressed frame went through");
  });
}

// --- WebRTC over loopback --------------------------------------------------------------

const isLoopback = (candidate) => / 127\.0\.0\.1 \d+ typ host/.test(candidate);

/** Two RTCPeerConnections linked through 127.0.0.1 host candidates only, each with the
 * negotiated data channel (id 0, "crdt-stores"); resolves once both channels are open. */
async function loopbackPair() {
  // Chromium offers host candidates beyond the default route's address (so loopback's,
  // with --allow-loopback-in-peer-connection) only to a page allowed a microphone or a
  // camera: ask for one (the test's flags answer with a fake device) and let it go.
  if (navigator.mediaDevices?.getUserMedia) {
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      for (const track of stream.getTracks()) track.stop();
      results.info.media = "granted";
    } catch (error) {
      results.info.media = `refused: ${error?.name}`;
    }
  }
  const pcs = [new RTCPeerConnection({ iceServers: [] }), new RTCPeerConnection({ iceServers: [] })];
  const seen = [[], []];
  pcs.forEach((pc, i) => {
    pc.onicecandidate = ({ candidate }) => {
      if (!candidate || !candidate.candidate) return;
      seen[i].push(candidate.candidate);
      if (isLoopback(candidate.candidate)) pcs[1 - i].addIceCandidate(candidate).catch(() => {});
    };
  });
  const channels = pcs.map((pc) => {
    const channel = pc.createDataChannel("crdt-stores", { negotiated: true, id: 0, ordered: true });
    channel.binaryType = "arraybuffer";
    return channel;
  });
  const open = channels.map(
    (c) =>
      new Promise((resolve, reject) => {
        c.onopen = resolve;
        c.onerror = (e) => reject(e.error ?? e);
      }),
  );
  await pcs[0].setLocalDescription();
  await pcs[1].setRemoteDescription(pcs[0].localDescription);
  await pcs[1].setLocalDescription();
  await pcs[0].setRemoteDescription(pcs[1].localDescription);
  const timeout = new Promise((_, reject) =>
    setTimeout(() => reject(new Failure(`no connection in 10 s; candidates: ${canon(seen)}`)), 10_000),
  );
  await Promise.race([Promise.all(open), timeout]);
  return { pcs, channels, seen };
}

async function selectedPair(pc) {
  const stats = await pc.getStats();
  for (const report of stats.values()) {
    if (report.type === "transport" && report.selectedCandidatePairId) {
      const pair = stats.get(report.selectedCandidatePairId);
      const local = stats.get(pair.localCandidateId);
      const remote = stats.get(pair.remoteCandidateId);
      return {
        local: `${local.address ?? local.ip}:${local.port}`,
        remote: `${remote.address ?? remote.ip}:${remote.port}`, // (a peer-reflexive address is hidden)
        remoteType: remote.candidateType,
        protocol: local.protocol,
      };
    }
  }
  return null;
}

async function webrtc() {
  let pair = null;
  await check("webrtc", "a negotiated data channel opens over 127.0.0.1", async () => {
    ok(typeof RTCPeerConnection === "function", "no RTCPeerConnection");
    pair = await loopbackPair();
    equal([pair.channels[0].label, pair.channels[0].id, pair.channels[1].id], ["crdt-stores", 0, 0]);
    // Only 127.0.0.1 candidates were passed on, and each end's selected pair has one. (An
    // end may pair another of its addresses with the other's 127.0.0.1 candidate, which
    // the kernel routes over lo too, and then keep it: Chromium gives loopback a network
    // cost of 50, and prefers cheaper pairs.)
    const used = await Promise.all(pair.pcs.map(selectedPair));
    results.info.webrtc = { selected: used, candidates: pair.seen };
    const loopback = (u) => u && (u.local.startsWith("127.0.0.1:") || u.remote.startsWith("127.0.0.1:"));
    ok(used.every(loopback), `selected pairs ${canon(used)}`);
    ok(pair.seen.every((list) => list.some(isLoopback)), "no 127.0.0.1 host candidate");
  });
  if (!pair) return;
  await check("webrtc", "a binary frame crosses the channel byte for byte", async () => {
    const [frame] = frames(encodeMessage(decodeFrame(fromHex("82010b"))), 1); // HEARTBEAT
    const got = new Promise((resolve) => (pair.channels[1].onmessage = (e) => resolve(new Uint8Array(e.data))));
    pair.channels[0].send(frame);
    equal(toHex(await got), toHex(frame));
  });
  await check("webrtc", "two sync engines converge over the channel", async () => {
    const engines = [new SyncEngine("a"), new SyncEngine("b")];
    const ids = ["a", "b"];
    let compressed = 0;
    const flush = () => {
      engines.forEach((engine, i) => {
        for (const [, frame] of engine.dataToSend(performance.now() / 1000)) {
          if (decodeFrame(frame).kind === COMPRESSED) compressed++;
          pair.channels[i].send(frame);
        }
      });
    };
    pair.channels.forEach((channel, i) => {
      channel.onmessage = (e) => {
        engines[i].receive(ids[1 - i], new Uint8Array(e.data), performance.now() / 1000);
        flush();
      };
    });
    engines[0].createStore("s");
    engines[0].write("s", "set", "list", bigValue());
    engines[1].createStore("s");
    engines[1].write("s", "update", "room", { floor: 5, float: new Float(2) });
    engines[0].linkUp("b", performance.now() / 1000);
    engines[1].linkUp("a", performance.now() / 1000);
    flush();
    const deadline = performance.now() + 10_000;
    const same = () =>
      engines[1].store("s")?.values().has("list") &&
      engines[0].store("s")?.values().has("room") &&
      sameValue(Object.fromEntries(engines[0].store("s").values()), Object.fromEntries(engines[1].store("s").values()));
    while (!same()) {
      ok(performance.now() < deadline, "no convergence in 10 s");
      await new Promise((r) => setTimeout(r, 20));
      engines.forEach((engine) => engine.tick(performance.now() / 1000));
      flush();
    }
    ok(compressed > 0, "no compressed frame crossed");
  });
  pair.pcs.forEach((pc) => pc.close());
}

// --- run -----------------------------------------------------------------------------

function render() {
  const summary = document.getElementById("summary");
  summary.textContent = `${results.passed} passed, ${results.failed} failed`;
  summary.className = results.failed || !results.passed ? "fail" : "pass";
  document.getElementById("groups").replaceChildren(
    ...Object.entries(results.groups).map(([group, c]) => {
      const row = document.createElement("tr");
      for (const [text, cls] of [[group, ""], [c.passed, "pass"], [c.failed, c.failed ? "fail" : ""]]) {
        const cell = document.createElement("td");
        cell.textContent = String(text);
        cell.className = cls;
        row.append(cell);
      }
      return row;
    }),
  );
  document.getElementById("failures").replaceChildren(
    ...results.failures.map((f) => {
      const pre = document.createElement("pre");
      pre.className = "fail";
      pre.textContent = `${f.group} / ${f.name}: ${f.error}`;
      return pre;
    }),
  );
}

try {
  results.info.userAgent = navigator.userAgent;
  const index = JSON.parse(await fetchText("index.json"));
  cborAndValues(index);
  await updates(index);
  await frameVectors(index);
  await zlibChecks();
  await sealing(index);
  await engines();
  await webrtc();
} catch (error) {
  results.failed++;
  results.failures.push({ group: "page", name: "run", error: String(error?.stack ?? error) });
} finally {
  results.done = true;
  render();
}
