// Helpers of the meeting tests: the real Python signaling server, Python peers of a room
// (../../tests/js_room_peer.py, driven over stdin/stdout), typed JSON, bounded waits.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Float } from "../src/cbor.js";
import { sameValue } from "../src/values.js";
import { fromTyped } from "./helpers.js";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));
export const PYTHON = process.env.CRDT_STORES_PYTHON || `${ROOT}.venv/bin/python`;
export const HAVE_PYTHON = existsSync(PYTHON);
const CHILD_ENV = {
  ...process.env,
  PYTHONPATH: ROOT,
  CRDT_STORES_SECRET: "",
  CRDT_STORES_REDIS: "",
  CRDT_STORES_ICE_ADDRESSES: "127.0.0.1",
};

/** `promise`, or a rejection after `ms` (the timer is cleared either way). */
export function bounded(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Resolves with the first `event` of `meeting` whose arguments pass `match`; bounded. */
export function nextEvent(meeting, event, match = () => true, ms = 10_000) {
  let off = () => {};
  const seen = new Promise((resolve) => {
    off = meeting.on(event, (...args) => {
      if (match(...args)) resolve(args);
    });
  });
  return bounded(seen, ms, `${event} at ${meeting.room}`).finally(() => off());
}

/** Starts `python -m signaling` on a free loopback port; resolves to `{ child, url }`. */
export async function startServer() {
  assert.ok(HAVE_PYTHON, `no Python at ${PYTHON} (set CRDT_STORES_PYTHON)`);
  const child = spawn(PYTHON, ["-m", "signaling", "--host", "127.0.0.1", "--port", "0"], {
    cwd: ROOT,
    env: CHILD_ENV,
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
  return { child, url: await bounded(url, 15_000, "the signaling server to listen") };
}

/** Stops a child process started here (SIGTERM, then SIGKILL after 3 s); bounded. */
export async function stopChild(child) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
  await exited;
  clearTimeout(timer);
}

/** A Python `Meeting` in its own process, one JSON command per line (js_room_peer.py). */
export class PythonPeer {
  constructor(name) {
    this.name = name;
    this.child = spawn(PYTHON, [`${ROOT}tests/js_room_peer.py`], { cwd: ROOT, env: CHILD_ENV });
    this.stderr = "";
    this.child.stderr.on("data", (chunk) => {
      this.stderr += chunk;
    });
    this.buffer = "";
    this.pending = [];
    this.child.stdout.on("data", (chunk) => {
      this.buffer += chunk;
      let newline;
      while ((newline = this.buffer.indexOf("\n")) >= 0) {
        const line = this.buffer.slice(0, newline);
        this.buffer = this.buffer.slice(newline + 1);
        this.pending.shift()?.(line);
      }
    });
    this.exited = new Promise((resolve) => this.child.once("exit", resolve));
  }

  /** One command; its reply (an `error` reply rejects). */
  async call(command, ms = 30_000) {
    const line = new Promise((resolve) => this.pending.push(resolve));
    this.child.stdin.write(`${JSON.stringify(command)}\n`);
    const reply = JSON.parse(
      await bounded(
        Promise.race([line, this.exited.then((code) => JSON.stringify({ error: `exited (${code})` }))]),
        ms,
        `${this.name}: ${command.op}`,
      ),
    );
    if (reply.error) throw new Error(`${this.name} ${command.op}: ${reply.error}\n${this.stderr.slice(-3000)}`);
    return reply;
  }

  join(url, room, options = {}) {
    return this.call({ op: "join", url, room, peer_id: this.name, room_key: options.roomKey ?? null });
  }

  write(store, write, ...args) {
    return this.call({ op: "write", store, write, args: args.map(toTyped) });
  }

  /** Every store's values, read by the number rule. */
  async values() {
    const { values } = await this.call({ op: "values" }, 60_000);
    const out = {};
    for (const [name, typed] of Object.entries(values)) out[name] = fromTyped(typed);
    return out;
  }

  async close() {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      try {
        await this.call({ op: "leave" }, 10_000);
      } catch {
        /* killed below */
      }
    }
    this.child.stdin.end();
    await stopChild(this.child);
  }
}

/** A value in typed JSON (tests/vectors/README.md), by this package's number rule. */
export function toTyped(value) {
  if (typeof value === "bigint") return { $int: String(value) };
  if (value instanceof Float) return { $float: pythonFloat(value.value) };
  if (typeof value === "number") {
    return Number.isSafeInteger(value) && !Object.is(value, -0) ? value : { $float: pythonFloat(value) };
  }
  if (Array.isArray(value)) return value.map(toTyped);
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value).map(([k, v]) => [k, toTyped(v)]);
    if (entries.some(([k]) => k.startsWith("$"))) return { $map: entries };
    return Object.fromEntries(entries);
  }
  return value;
}

function pythonFloat(n) {
  return Object.is(n, -0) ? "-0.0" : String(n);
}

/** Values as text that tells `1` from `1.0` (`Float(1)`) and shows bigints (`5n`). */
export function show(value) {
  const mark = (v) => {
    if (typeof v === "bigint") return `${v}n`;
    if (v instanceof Float) return `Float(${Object.is(v.value, -0) ? "-0" : v.value})`;
    if (typeof v === "number") return Number.isSafeInteger(v) && !Object.is(v, -0) ? v : `float ${Object.is(v, -0) ? "-0" : v}`;
    if (Array.isArray(v)) return v.map(mark);
    if (v !== null && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, mark(x)]));
    return v;
  };
  return JSON.stringify(mark(value));
}

export function assertSame(actual, expected, what) {
  assert.ok(sameValue(actual, expected), `${what}:\n  ${show(actual)}\n  ${show(expected)}`);
}
