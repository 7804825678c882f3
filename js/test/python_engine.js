// A Python SyncEngine behind a child process (../../tests/js_interop_peer.py), driven
// one JSON line in, one out: the interop and big-sync tests pipe frames through it.

import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { decode, encode } from "../src/cbor.js";
import { fromCbor, normalize } from "../src/values.js";
import { fromHex, toHex } from "./helpers.js";
import { PYTHON, ROOT } from "./rooms.js";

const SCRIPT = `${ROOT}tests/js_interop_peer.py`;

/** A Python script in a child process, driven one JSON line in, one answer line out. */
export class PythonProcess {
  constructor(script, args = [], answerTimeoutMs = 10_000) {
    this.answerTimeoutMs = answerTimeoutMs;
    this.child = spawn(PYTHON, [script, ...args], {
      cwd: ROOT,
      env: { ...process.env, PYTHONPATH: ROOT },
      stdio: ["pipe", "pipe", "pipe"],
    });
    this.stderr = "";
    this.child.stderr.on("data", (data) => {
      this.stderr += data;
    });
    this.waiting = [];
    this.lines = createInterface({ input: this.child.stdout });
    this.lines.on("line", (line) => this.waiting.shift()?.resolve(JSON.parse(line)));
    this.child.on("exit", (code) => {
      for (const waiter of this.waiting.splice(0)) {
        waiter.reject(new Error(`python exited (${code}): ${this.stderr}`));
      }
    });
  }

  /** Send one command; its answer (rejects on an error answer or after a timeout). */
  call(command) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no answer to ${command.op ?? "a command"} in ${this.answerTimeoutMs} ms: ${this.stderr}`)),
        this.answerTimeoutMs,
      );
      this.waiting.push({
        resolve: (answer) => {
          clearTimeout(timer);
          if (answer.error) reject(new Error(`python: ${answer.error}`));
          else resolve(answer);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      this.child.stdin.write(`${JSON.stringify(command)}\n`);
    });
  }

  close() {
    this.child.stdin.end();
    this.child.kill();
  }
}

/** The Python engine behind a child process (tests/js_interop_peer.py). */
export class PythonEngine extends PythonProcess {
  constructor(peerId, answerTimeoutMs = 10_000) {
    super(SCRIPT, [peerId], answerTimeoutMs);
  }

  write(store, write, ...args) {
    return this.call({ op: "write", store, write, args: toHex(encodeArgs(args)) });
  }

  async values(store) {
    const { values } = await this.call({ op: "values", store });
    return fromCbor(decode(fromHex(values)));
  }
}

function encodeArgs(args) {
  return encode(args.map((arg) => normalize(arg)));
}
