// The signaling client against the real Python server (python -m signaling), on loopback.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { createServer } from "node:net";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { WebSocket } from "ws";
import { JoinError, MAX_MESSAGE_BYTES, SignalingClient } from "../src/signaling.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const PYTHON = process.env.CRDT_STORES_PYTHON || `${ROOT}.venv/bin/python`;
const HAVE_PYTHON = existsSync(PYTHON);
const WS_OPTIONS = { maxPayload: MAX_MESSAGE_BYTES };

const servers = [];
let liveUrl = null;
const clients = [];

/** `setup(done)` arranges to call `done(value)` and returns its cleanup; rejects after `ms`. */
function within(ms, what, setup) {
  return new Promise((resolve, reject) => {
    let cleanup = () => {};
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
    }, ms);
    cleanup = setup((value) => {
      clearTimeout(timer);
      cleanup();
      resolve(value);
    }) ?? (() => {});
  });
}

const next = (client, type, match = () => true, ms = 5000) =>
  within(ms, `${type} at ${client.peerId}`, (done) =>
    client.on(type, (detail) => {
      if (match(detail)) done(detail);
    }),
  );

/** `promise`, or a rejection after `ms` (the timer is cleared either way). */
function bounded(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

function client(options) {
  const made = new SignalingClient({ WebSocket, webSocketOptions: WS_OPTIONS, openTimeout: 5, ...options });
  clients.push(made);
  return made;
}

/** Starts `python -m signaling` on `port` (0: any); resolves to `{ child, url }`. */
async function startServer(port = 0, extra = []) {
  const child = spawn(PYTHON, ["-m", "signaling", "--host", "127.0.0.1", "--port", String(port), ...extra], {
    cwd: ROOT,
    env: { ...process.env, PYTHONPATH: ROOT, CRDT_STORES_SECRET: "", CRDT_STORES_REDIS: "" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  servers.push(child);
  let stderr = "";
  child.stderr.on("data", (chunk) => {
    stderr += chunk;
  });
  const url = await within(15000, "the signaling server to listen", (done) => {
    let out = "";
    const onData = (chunk) => {
      out += chunk;
      const found = /listening on (ws:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (found) done(found[1]);
    };
    const onExit = (code) => done(Promise.reject(new Error(`the server exited (${code}): ${stderr}`)));
    child.stdout.on("data", onData);
    child.once("exit", onExit);
    return () => {
      child.stdout.off("data", onData);
      child.off("exit", onExit);
    };
  });
  return { child, url };
}

/** Stops a server started here (SIGTERM, then SIGKILL after 3 s); bounded. */
async function stopServer(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
  await exited;
  clearTimeout(timer);
}

before(async () => {
  // The real server is required: without it these tests fail, they do not skip.
  assert.ok(HAVE_PYTHON, `no Python at ${PYTHON} (set CRDT_STORES_PYTHON)`);
  liveUrl = (await startServer()).url;
});

after(async () => {
  for (const made of clients) made.close();
  for (const child of servers) await stopServer(child);
});

test("two clients meet, signal both ways, and see each other leave", async () => {
  const a = client({ url: liveUrl, room: "lobby", peerId: "alice" });
  const b = client({ url: liveUrl, room: "lobby", peerId: "bob" });
  try {
    assert.deepEqual(await bounded(a.join(), 5000, "alice's welcome"), []);
    assert.equal(a.peerId, "alice");
    assert.equal(typeof a.resume, "string");
    assert.ok(a.heartbeat > 0);
    const joined = next(a, "peerJoined", (d) => d.peer === "bob");
    assert.deepEqual(await bounded(b.join(), 5000, "bob's welcome"), ["alice"]);
    assert.deepEqual(await joined, { peer: "bob" });
    assert.deepEqual([...a.peers], ["bob"]);
    assert.deepEqual([...b.peers], ["alice"]);

    const atBob = next(b, "signal");
    assert.equal(a.signal("bob", { kind: "offer", sdp: "v=0 hello" }), true);
    assert.deepEqual(await atBob, { peer: "alice", data: { kind: "offer", sdp: "v=0 hello" } });
    const atAlice = next(a, "signal");
    assert.equal(b.signal("alice", { kind: "answer", n: [1, 2] }), true);
    assert.deepEqual(await atAlice, { peer: "bob", data: { kind: "answer", n: [1, 2] } });

    // A throwing listener neither breaks the client nor escapes.
    const thrown = [];
    const unlisten = a.on("signal", () => {
      throw new Error("listener bug");
    });
    a._onListenerError = (error) => thrown.push(error.message);
    const again = next(a, "signal");
    assert.equal(b.signal("alice", { kind: "candidate" }), true);
    assert.deepEqual((await again).data, { kind: "candidate" });
    assert.deepEqual(thrown, ["listener bug"]);
    unlisten();

    const left = next(a, "peerLeft");
    b.close();
    assert.deepEqual(await left, { peer: "bob" });
    assert.equal(a.peers.size, 0);
    assert.equal(a.connected, true);
  } finally {
    a.close();
    b.close();
  }
});

test("a client given a dead URL first joins through the live one", async () => {
  const deadUrl = `ws://127.0.0.1:${await freePort()}`;
  const a = client({ url: liveUrl, room: "failover", peerId: "anchor" });
  const c = client({ url: [deadUrl, liveUrl], room: "failover" });
  try {
    await bounded(a.join(), 5000, "anchor's welcome");
    const joined = next(a, "peerJoined");
    const peers = await bounded(c.join(), 8000, "the welcome through the live URL");
    assert.deepEqual(peers, ["anchor"]);
    assert.equal(c.url, liveUrl);
    assert.match(c.peerId, /^[0-9a-f]{12}$/); // picked by the server
    assert.deepEqual(await joined, { peer: c.peerId });
  } finally {
    a.close();
    c.close();
  }
});

test("a client reconnects with backoff when its server restarts", async () => {
  const port = await freePort();
  const deadUrl = `ws://127.0.0.1:${await freePort()}`;
  let { child, url } = await startServer(port);
  const c = client({ url: [deadUrl, url], room: "phoenix", peerId: "phoenix-1", maxBackoff: 0.5 });
  try {
    await bounded(c.join(), 8000, "the first welcome");
    const secret = c.resume;
    assert.equal(typeof secret, "string");
    const lost = next(c, "disconnected", () => true, 5000);
    await stopServer(child);
    await lost;
    assert.equal(c.connected, false);
    assert.equal(c.signal("someone", { a: 1 }), false);
    const restored = next(c, "restored", () => true, 15000);
    ({ child } = await startServer(port));
    assert.deepEqual(await restored, { peers: [] });
    assert.equal(c.connected, true);
    assert.equal(c.peerId, "phoenix-1");
    assert.equal(c.url, url);
    // The rejoined peer is findable again.
    const other = client({ url, room: "phoenix", peerId: "phoenix-2" });
    assert.deepEqual(await bounded(other.join(), 5000, "the second welcome"), ["phoenix-1"]);
    other.close();
  } finally {
    c.close();
    await stopServer(child);
  }
});

test("pings at the server's heartbeat keep an idle client joined", async () => {
  const { child, url } = await startServer(0, ["--idle-timeout", "1.2"]);
  const c = client({ url, room: "quiet", peerId: "quiet-1" });
  try {
    await bounded(c.join(), 5000, "the welcome");
    assert.ok(c.heartbeat > 0 && c.heartbeat < 1.2, `heartbeat ${c.heartbeat}`);
    const dropped = [];
    c.on("disconnected", (d) => dropped.push(d));
    await new Promise((resolve) => setTimeout(resolve, 3000)); // 2.5 idle timeouts
    assert.deepEqual(dropped, []);
    assert.equal(c.connected, true);
  } finally {
    c.close();
    await stopServer(child);
  }
});

test("refusals reject with a JoinError", async () => {
  const a = client({ url: liveUrl, room: "taken", peerId: "same" });
  const b = client({ url: liveUrl, room: "taken", peerId: "same" });
  try {
    await bounded(a.join(), 5000, "the first welcome");
    const error = await bounded(b.join().then(() => null, (e) => e), 5000, "the refusal");
    assert.ok(error instanceof JoinError);
    assert.equal(error.reason, "peer-id-taken");
    assert.equal(error.code, 4009);
    assert.equal(b.connected, false);
  } finally {
    a.close();
    b.close();
  }
});

test("nothing listening: every URL is tried, then a JoinError", async () => {
  const urls = [`ws://127.0.0.1:${await freePort()}`, `ws://127.0.0.1:${await freePort()}`];
  const c = client({ url: urls, room: "r" });
  const error = await bounded(c.join().then(() => null, (e) => e), 8000, "the failure");
  assert.ok(error instanceof JoinError);
  assert.equal(error.reason, "unreachable");
  assert.match(error.message, /no signaling server welcomed/);
  c.close();
});

test("a server that never answers the handshake times out; close() ends a pending join", async () => {
  const sockets = new Set();
  const silent = createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => {});
  });
  await new Promise((resolve) => silent.listen(0, "127.0.0.1", resolve));
  const url = `ws://127.0.0.1:${silent.address().port}`;
  try {
    const c = client({ url, room: "r", openTimeout: 0.3 });
    const error = await bounded(c.join().then(() => null, (e) => e), 5000, "the timeout");
    assert.ok(error instanceof JoinError);
    assert.equal(error.reason, "timeout");
    const d = client({ url, room: "r", openTimeout: 30 });
    const pending = d.join().then(() => null, (e) => e);
    await new Promise((resolve) => setTimeout(resolve, 100));
    d.close();
    const closed = await bounded(pending, 5000, "the closed join");
    assert.ok(closed instanceof JoinError);
    await new Promise((resolve) => setTimeout(resolve, 100)); // any late 'error' would surface here
  } finally {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => silent.close(resolve));
  }
});

test("hostile server messages are ignored, never thrown", () => {
  const c = new SignalingClient({ url: "ws://127.0.0.1:1", room: "r", peerId: "me", WebSocket });
  const seen = [];
  for (const type of ["peerJoined", "peerLeft", "signal", "serverError"]) c.on(type, (d) => seen.push([type, d]));
  for (const raw of [
    undefined,
    null,
    42,
    new Uint8Array(3),
    "not json",
    "[]",
    "null",
    '{"type": 5}',
    '{"type": "peer-joined"}',
    '{"type": "peer-joined", "peer_id": ""}',
    '{"type": "peer-joined", "peer_id": "me"}',
    `{"type": "peer-joined", "peer_id": "${"x".repeat(257)}"}`,
    '{"type": "signal", "from": "p", "data": [1]}',
    '{"type": "signal", "from": "p", "data": null}',
    '{"type": "signal", "from": 3, "data": {}}',
    '{"type": "pong"}',
    '{"type": "something-new", "x": 1}',
    `{"type": "signal", "from": "p", "data": {"big": "${"y".repeat(MAX_MESSAGE_BYTES)}"}}`,
  ]) {
    c._dispatch(raw);
  }
  assert.deepEqual(seen, []);
  c._dispatch('{"type": "peer-joined", "peer_id": "p"}');
  c._dispatch('{"type": "signal", "from": "p", "data": {"a": 1}}');
  c._dispatch('{"type": "error", "code": "no-such-peer", "reason": {"nested": true}}');
  c._dispatch('{"type": "peer-left", "peer_id": "p"}');
  assert.deepEqual(seen, [
    ["peerJoined", { peer: "p" }],
    ["signal", { peer: "p", data: { a: 1 } }],
    ["serverError", { code: "no-such-peer", reason: "" }],
    ["peerLeft", { peer: "p" }],
  ]);
  assert.equal(c.signal("p", { a: 1 }), false); // not connected
  assert.throws(() => c.signal("", {}), TypeError);
  assert.throws(() => c.signal("p", [1]), TypeError);
  assert.throws(() => new SignalingClient({ url: [], room: "r", WebSocket }), TypeError);
  c.close();
});
