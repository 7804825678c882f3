// The example page (examples/index.html) against a real Python peer: the Python signaling
// server on a free loopback port, examples/serve.js, and `crdt-stores peer` (driven over
// stdin) in one room; headless Chromium opens the page with autojoin and the two share a
// store over WebRTC on 127.0.0.1. Writes go both ways (through the page's form and
// buttons, and the peer's commands), show up in the page's table and in the peer's
// `watch` output, and both ends converge to the same typed values. A screenshot goes to
// test-artifacts/example.png. Chromium and the Python interpreter are required: without
// them this test fails (CHROMIUM_PATH, else /usr/bin/chromium; CRDT_STORES_PYTHON, else
// the repository's .venv/bin/python).

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import puppeteer from "puppeteer-core";
import { serve } from "../examples/serve.js";
import { generateRoomKey } from "../src/sealing.js";
import { CHROMIUM, CHROMIUM_FLAGS } from "./chromium.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const PYTHON = process.env.CRDT_STORES_PYTHON || `${ROOT}.venv/bin/python`;
const ARTIFACTS = fileURLToPath(new URL("../test-artifacts/", import.meta.url));
const STORE = "demo";

function childEnv() {
  const env = { ...process.env, PYTHONPATH: ROOT, CRDT_STORES_SECRET: "", CRDT_STORES_REDIS: "" };
  delete env.CRDT_STORES_ROOM_KEY; // no sealing unless asked
  delete env.CRDT_STORES_ICE_ADDRESSES; // the peer gets --ice-address
  return env;
}

/** `promise`, or a rejection after `ms` (the timer is cleared either way). */
function bounded(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Stops a child started here (SIGTERM, then SIGKILL after 3 s). */
async function stopChild(child) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
  await exited;
  clearTimeout(timer);
}

/** `python -m signaling` on a free loopback port: `{ child, url }`. */
async function startSignaling() {
  const child = spawn(PYTHON, ["-m", "signaling", "--host", "127.0.0.1", "--port", "0"], {
    cwd: ROOT,
    env: childEnv(),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (chunk) => {
    stderr += chunk;
  });
  const url = new Promise((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (chunk) => {
      out += chunk;
      const found = /listening on (ws:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (found) resolve(found[1]);
    });
    child.once("exit", (code) => reject(new Error(`the signaling server exited (${code}): ${stderr}`)));
  });
  try {
    return { child, url: await bounded(url, 15_000, "the signaling server to listen") };
  } catch (error) {
    await stopChild(child);
    throw error;
  }
}

/**
 * `crdt-stores peer`, its commands written to stdin. Each command answers one stdout
 * line, or one `error: ...` line on stderr; `watch` output (`STORE key json`) is kept
 * apart, as `changes`.
 */
class CliPeer {
  constructor(args) {
    this.child = spawn(PYTHON, ["-m", "crdt_stores.cli", "peer", ...args], { cwd: ROOT, env: childEnv() });
    this.stderr = "";
    this.changes = []; // [key, json text]
    this.pending = []; // {resolve, reject} per command, in order
    this.waiters = new Set(); // re-checked on every line
    let out = "";
    let err = "";
    this.child.stdout.setEncoding("utf8");
    this.child.stderr.setEncoding("utf8");
    this.child.stdout.on("data", (chunk) => {
      out += chunk;
      let newline;
      while ((newline = out.indexOf("\n")) >= 0) {
        const line = out.slice(0, newline);
        out = out.slice(newline + 1);
        if (line.startsWith(`${STORE} `)) {
          const rest = line.slice(STORE.length + 1);
          const space = rest.indexOf(" ");
          this.changes.push([rest.slice(0, space), rest.slice(space + 1)]);
        } else {
          this.pending.shift()?.resolve(line);
        }
        this._check();
      }
    });
    this.child.stderr.on("data", (chunk) => {
      this.stderr += chunk;
      err += chunk;
      let newline;
      while ((newline = err.indexOf("\n")) >= 0) {
        const line = err.slice(0, newline);
        err = err.slice(newline + 1);
        if (line.startsWith("error:")) this.pending.shift()?.reject(new Error(`py: ${line}`));
      }
      this._check();
    });
    this.exited = new Promise((resolve) => this.child.once("exit", resolve));
    this.exited.then((code) => {
      for (const { reject } of this.pending.splice(0)) reject(new Error(`the peer exited (${code})`));
      this._check();
    });
  }

  _check() {
    for (const waiter of [...this.waiters]) waiter();
  }

  /** Resolves once `predicate()` holds (checked on every output line); bounded. */
  until(predicate, ms, what) {
    let waiter;
    const done = new Promise((resolve, reject) => {
      waiter = () => {
        const value = predicate();
        if (value) resolve(value);
        else if (this.child.exitCode !== null) reject(new Error(`the peer exited: ${this.stderr.slice(-2000)}`));
      };
      this.waiters.add(waiter);
      waiter();
    });
    return bounded(done, ms, `py: ${what}\n--- its stderr ---\n${this.stderr.slice(-2000)}`).finally(() =>
      this.waiters.delete(waiter),
    );
  }

  /** The last value `watch` printed for `key` (JSON text), once it is `json`. */
  change(key, json, ms = 10_000) {
    const last = () => this.changes.findLast(([k]) => k === key)?.[1];
    return this.until(() => last() === json, ms, `${key} = ${json} (last seen: ${last()})`);
  }

  command(line, ms = 15_000) {
    const reply = new Promise((resolve, reject) => this.pending.push({ resolve, reject }));
    this.child.stdin.write(`${line}\n`);
    return bounded(reply, ms, `py: ${line}`);
  }

  async close() {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.stdin.end("quit\n");
      const timer = setTimeout(() => this.child.kill("SIGTERM"), 5000);
      await this.exited;
      clearTimeout(timer);
    }
  }
}

/** The page's table row of `key` (its value cell's text), once it is `text`. */
async function pageRow(page, key, text, ms = 10_000) {
  try {
    await page.waitForFunction(
      (k, t) => document.querySelector(`#entries tr[data-key="${CSS.escape(k)}"] td.value`)?.textContent === t,
      { timeout: ms },
      key,
      text,
    );
  } catch (error) {
    const seen = await page.evaluate(
      (k) => document.querySelector(`#entries tr[data-key="${CSS.escape(k)}"] td.value`)?.textContent ?? "(no row)",
      key,
    );
    throw new Error(`the page's row ${key} is not ${text} after ${ms} ms; it shows ${seen} (${error.message})`);
  }
}

/** Every row of the page's table: {key: value text}. */
const pageTable = (page) =>
  page.evaluate(() =>
    Object.fromEntries(
      [...document.querySelectorAll("#entries tr")].map((row) => [row.dataset.key, row.cells[1].textContent]),
    ),
  );

let signaling = null;
let http = null;
let browser = null;
let profile = null;
let base = "";

before(async () => {
  // Both are required: without them this test fails, it does not skip.
  assert.ok(
    existsSync(CHROMIUM),
    `Chromium is required for this test and was not found at ${CHROMIUM}: install Debian's ` +
      "(apt-get install chromium; .ci/run does) or set CHROMIUM_PATH",
  );
  assert.ok(existsSync(PYTHON), `no Python at ${PYTHON} (set CRDT_STORES_PYTHON)`);
  signaling = await startSignaling();
  http = await serve({ port: 0 });
  base = `http://127.0.0.1:${http.address().port}/examples/index.html`;
  profile = mkdtempSync(join(tmpdir(), "crdt-stores-chromium-"));
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: false, // (--headless=new is in the flags)
    pipe: true,
    userDataDir: profile,
    args: CHROMIUM_FLAGS,
    timeout: 30_000,
  });
});

after(async () => {
  await browser?.close().catch(() => {});
  http?.close();
  await stopChild(signaling?.child);
  if (profile) rmSync(profile, { recursive: true, force: true });
});

/** A new tab on the example page, watched for errors and for requests off 127.0.0.1. */
async function openPage(query) {
  const page = await browser.newPage();
  const watch = { offsite: [], problems: [] };
  page.on("request", (request) => {
    const url = new URL(request.url());
    if (url.protocol !== "data:" && url.hostname !== "127.0.0.1") watch.offsite.push(request.url());
  });
  page.on("pageerror", (error) => watch.problems.push(`page error: ${error.message}`));
  page.on("requestfailed", (request) => watch.problems.push(`failed: ${request.url()}`));
  page.on("console", (message) => {
    if (message.type() === "error") watch.problems.push(`console: ${message.text()}`);
  });
  await page.setViewport({ width: 1100, height: 800 });
  await page.goto(`${base}?${new URLSearchParams(query)}`, { waitUntil: "load" });
  return { page, watch };
}

/** Waits until the page has joined (and, with `peer`, is linked to it); says why not. */
async function pageJoined(page, watch, py, peer = null, ms = 25_000) {
  try {
    await page.waitForFunction(
      (p) => globalThis.demo?.status.ready && (p === null || globalThis.demo.status.peers.includes(p)),
      { timeout: ms },
      peer,
    );
  } catch (error) {
    const status = await page.evaluate(() => globalThis.demo?.status ?? null).catch(() => null);
    const shown = await page.evaluate(() => document.getElementById("log")?.textContent).catch(() => "");
    throw new Error(
      `the page did not ${peer ? `link to ${peer}` : "join"}: ${error.message}\nstatus: ${JSON.stringify(status)}\n` +
        `problems: ${watch.problems.join("\n")}\npage log:\n${shown}\npy stderr:\n${py?.stderr.slice(-2000) ?? ""}`,
    );
  }
}

/** Types into a form field, replacing what it held. */
async function fill(page, selector, text) {
  await page.$eval(selector, (box) => {
    box.value = "";
  });
  await page.type(selector, text);
}

/** Both ends agree (synced) and hold the same keys, each printed the same way. */
async function converged(page, py, keys) {
  assert.equal(await py.command("sync 15", 20_000), "synced");
  await bounded(page.evaluate(() => globalThis.demo.meeting.synced({ timeout: 15 })), 20_000, "the page's meeting to sync");
  const table = await pageTable(page);
  assert.deepEqual(Object.keys(table).sort(), keys);
  assert.deepEqual(Object.keys(JSON.parse(await py.command(`getall ${STORE}`))).sort(), keys);
  for (const [key, text] of Object.entries(table)) {
    assert.equal(await py.command(`get ${STORE} ${key}`), text, `py and the page differ on ${key}`);
  }
  return table;
}

const pyArgs = (room, extra = []) => [
  "--signaling",
  signaling.url,
  "--room",
  room,
  "--name",
  "py",
  "--ice-address",
  "127.0.0.1",
  ...extra,
];

test("the example page and a crdt-stores peer share a store both ways", { timeout: 60_000 }, async (t) => {
  const started = performance.now();
  const lap = (what) => t.diagnostic(`${what}: ${((performance.now() - started) / 1000).toFixed(1)} s`);
  const room = `example-${randomBytes(4).toString("hex")}`;
  let py = null;
  let page = null;
  try {
    // The Python peer is there first (the page offers), with a key already written.
    py = new CliPeer(pyArgs(room));
    await py.until(() => /joined room/.test(py.stderr), 20_000, "joining");
    assert.equal(await py.command(`create ${STORE}`), "ok");
    assert.equal(await py.command(`watch ${STORE} *`), "ok");
    assert.equal(await py.command(`set ${STORE} early {"from": "py", "n": 1}`), "ok");
    lap("python peer joined");

    const opened = await openPage({ signaling: signaling.url, room, name: "web", store: STORE, ice: "127.0.0.1", media: "1", autojoin: "1" });
    page = opened.page;
    const { watch } = opened;
    await pageJoined(page, watch, py, "py");
    lap("page joined and linked");
    // What the peer wrote before the page came is in the table.
    await pageRow(page, "early", '{"from": "py", "n": 1}');

    // The page writes through its form: the peer sees it, types kept (1.0 stays a float).
    await fill(page, "#write-key", "from-web");
    await fill(page, "#write-value", '{"n": 1, "ratio": 1.0, "tags": ["a", "b"]}');
    await page.click("#set");
    await py.change("from-web", '{"n": 1, "ratio": 1.0, "tags": ["a", "b"]}');

    // The peer writes: the page's table shows it (a 64-bit integer, floats, null).
    const fromPy = '{"big": 9007199254740993, "x": 2.5, "one": 1.0, "ok": true, "none": null}';
    assert.equal(await py.command(`set ${STORE} from-py ${fromPy}`), "ok");
    await pageRow(page, "from-py", fromPy);
    assert.equal(await page.evaluate(() => typeof globalThis.demo.store.get("from-py").big), "bigint");

    // An update from the peer merges into the page's value; a delete in the page (the
    // row's button) and an update through its Update button reach the peer.
    assert.equal(await py.command(`update ${STORE} from-web {"m": 2}`), "ok");
    await pageRow(page, "from-web", '{"n": 1, "ratio": 1.0, "tags": ["a", "b"], "m": 2}');
    await page.click('#entries tr[data-key="early"] button.delete');
    await py.change("early", "null");
    assert.equal(await py.command(`get ${STORE} early`), "null");
    await fill(page, "#write-key", "from-web");
    await fill(page, "#write-value", '{"tags": ["c"], "by": "web"}');
    await page.click("#update");
    const merged = '{"n": 1, "ratio": 1.0, "tags": ["c"], "m": 2, "by": "web"}';
    await py.change("from-web", merged);
    lap("writes crossed both ways");

    // Both ends agree, and hold the same typed values (printed the same way).
    const table = await converged(page, py, ["from-py", "from-web"]);
    assert.equal(table["from-web"], merged);
    assert.equal(table["from-py"], fromPy);
    const status = await page.evaluate(() => globalThis.demo.status);
    assert.equal(status.state, "joined");
    assert.deepEqual(status.peers, ["py"]);
    assert.equal(await page.$eval('#peers li[data-peer="py"]', (item) => item.className), "linked");
    assert.equal(await page.$eval("#state", (node) => node.textContent), "joined");
    assert.equal(await page.$eval("#error", (node) => node.textContent), "");

    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, "example.png"), fullPage: true });
    assert.deepEqual(watch.problems, [], "the page had problems");
    assert.deepEqual(watch.offsite, [], "the page asked for another host");

    // Leaving from the page: the peer sees it go.
    await page.click("#leave");
    await py.until(() => /peer web left/.test(py.stderr), 10_000, "the page to leave");
    assert.equal(await page.$eval("#state", (node) => node.textContent), "left");
    lap("done");
  } finally {
    await page?.close().catch(() => {});
    await py?.close();
  }
});

test("with a room key, the page first: sealed signals, the peer offers", { timeout: 60_000 }, async (t) => {
  const started = performance.now();
  const lap = (what) => t.diagnostic(`${what}: ${((performance.now() - started) / 1000).toFixed(1)} s`);
  const room = `example-sealed-${randomBytes(4).toString("hex")}`;
  const key = generateRoomKey();
  let py = null;
  let page = null;
  try {
    // The page as in the README's recipe (no microphone, no ice parameter: the peer's
    // 127.0.0.1 candidates are enough), alone in the room at first.
    const opened = await openPage({ signaling: signaling.url, room, name: "tab", key, autojoin: "1" });
    page = opened.page;
    const { watch } = opened;
    await pageJoined(page, watch, null);
    assert.match(await page.$eval("#sealed", (node) => node.textContent), /^yes/);
    await fill(page, "#write-key", "before");
    await fill(page, "#write-value", '"the page was alone"');
    await page.click("#set");
    lap("page joined alone");

    py = new CliPeer(pyArgs(room, ["--room-key", key]));
    await py.until(() => /joined room/.test(py.stderr), 20_000, "joining");
    await pageJoined(page, watch, py, "py");
    lap("python peer joined and linked");
    assert.equal(await py.command(`create ${STORE}`), "ok");
    assert.equal(await py.command(`watch ${STORE} *`), "ok");
    assert.equal(await py.command("sync 15", 20_000), "synced"); // the late joiner got the page's key
    assert.equal(await py.command(`get ${STORE} before`), '"the page was alone"');
    assert.equal(await py.command(`set ${STORE} reply [1, 2.0, "three"]`), "ok");
    await pageRow(page, "reply", '[1, 2.0, "three"]');
    await fill(page, "#write-key", "reply");
    await fill(page, "#write-value", "[4]");
    await page.click("#update");
    await py.change("reply", '[1, 2.0, "three", 4]');
    await converged(page, py, ["before", "reply"]);
    assert.deepEqual(watch.problems, [], "the page had problems");
    assert.deepEqual(watch.offsite, [], "the page asked for another host");
    lap("done");
  } finally {
    await page?.close().catch(() => {});
    await py?.close();
  }
});
