// The zlib contract (src/zlib.d.ts) of both modules: node:zlib (src/zlib.js) and the
// browser's, on pako (src/zlib.browser.js). Each inflates what either deflates; refuses
// past a limit (exactly at it is fine); tells a stream cut short from a corrupt one;
// checks the header and the Adler-32; ignores bytes after the stream. And on thousands of
// damaged streams the browser's
// module decides exactly as the Python reference (crdt_stores.wire.inflate).

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import * as browser from "../src/zlib.browser.js";
import * as node from "../src/zlib.js";

const MODULES = { node, browser };
const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const PYTHON = process.env.CRDT_STORES_PYTHON ?? `${ROOT}.venv/bin/python`;

/** Deterministic bytes: `entropy` bits of noise a byte (compressible for entropy < 8). */
function bytes(length, entropy = 4, seed = 1) {
  const mask = (1 << entropy) - 1;
  return Uint8Array.from({ length }, () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & mask);
}

/** What `inflate` did: ["ok", hex of data] or the kind of error. */
function outcome(module, packed, limit) {
  try {
    return ["ok", Buffer.from(module.inflate(packed, limit)).toString("hex")];
  } catch (error) {
    if (error instanceof module.InflateLimitError) return ["limit"];
    if (error instanceof module.InflateTruncatedError) return ["truncated"];
    assert.ok(error instanceof Error, String(error));
    return ["corrupt"];
  }
}

const SAMPLES = [
  new Uint8Array(0),
  new Uint8Array([0]),
  new TextEncoder().encode("hello, crdt-stores"),
  bytes(5000, 4),
  bytes(70_000, 8), // incompressible: stored blocks
  bytes(300_000, 2), // several blocks, past the 32 KiB window
  new Uint8Array(200_000), // a compression bomb's kind of data
];

for (const [name, module] of Object.entries(MODULES)) {
  describe(`zlib module: ${name}`, () => {
    test("inflates what both modules deflate, at levels 0, 1, 6 and 9", () => {
      for (const data of SAMPLES) {
        for (const level of [0, 1, 6, 9]) {
          for (const from of Object.values(MODULES)) {
            const packed = from.deflate(data, level);
            assert.ok(packed instanceof Uint8Array);
            assert.equal(packed[0] & 0x0f, 8); // zlib, deflate
            assert.deepEqual(module.inflate(packed, data.length), data);
          }
        }
      }
    });

    test("refuses past the limit; exactly at it is fine", () => {
      const data = bytes(100_000, 3);
      const packed = module.deflate(data, 1);
      assert.equal(module.inflate(packed, data.length).length, data.length);
      assert.throws(() => module.inflate(packed, data.length - 1), module.InflateLimitError);
      assert.throws(() => module.inflate(packed, 0), module.InflateLimitError);
      // A bomb stops early: 4 MiB of zeros against a 64 KiB limit.
      const bomb = node.deflate(new Uint8Array(4 << 20), 9);
      assert.throws(() => module.inflate(bomb, 65_536), module.InflateLimitError);
    });

    test("tells a stream cut short from a corrupt one", () => {
      const data = bytes(20_000, 4);
      const packed = node.deflate(data, 1);
      for (const cut of [0, 1, 2, 3, 10, packed.length >> 1, packed.length - 5, packed.length - 1]) {
        assert.throws(() => module.inflate(packed.subarray(0, cut), data.length), module.InflateTruncatedError, `cut ${cut}`);
      }
      const corrupt = (edit) => {
        const copy = packed.slice();
        edit(copy);
        assert.throws(
          () => module.inflate(copy, data.length),
          (e) => !(e instanceof module.InflateTruncatedError) && !(e instanceof module.InflateLimitError),
        );
      };
      corrupt((c) => (c[0] = 0x79)); // not deflate
      corrupt((c) => (c[0] = 0x88)); // a window past 32 KiB
      corrupt((c) => (c[1] ^= 1)); // header check
      corrupt((c) => (c[0] = 0x78) && (c[1] = 0xbb)); // a preset dictionary
      corrupt((c) => (c[2] |= 6)); // block type 3
      corrupt((c) => (c[c.length - 1] ^= 1)); // Adler-32
    });

    test("ignores bytes after the end of the stream", () => {
      const data = bytes(3000, 4);
      const packed = node.deflate(data, 1);
      for (const tail of [[0], [0x78, 0x01, 0, 0], Array(5000).fill(0xff)]) {
        const longer = new Uint8Array([...packed, ...tail]);
        assert.deepEqual(module.inflate(longer, data.length), data);
      }
    });
  });
}

test("on damaged streams the browser's module decides as the reference", (t) => {
  let seed = 7;
  const random = (n) => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) % n;
  const sources = [bytes(600, 4, 3), bytes(3000, 2, 5), bytes(40_000, 8, 9), new Uint8Array(2000)];
  const cases = [];
  for (let round = 0; round < 3000; round++) {
    const data = sources[round % sources.length];
    const packed = (round % 2 ? browser : node).deflate(data, round % 3 ? 1 : 6).slice();
    const edits = random(3); // 0: an intact stream
    for (let i = 0; i < edits; i++) {
      const at = random(packed.length);
      if (random(2)) packed[at] ^= 1 << random(8);
      else packed[at] = random(256);
    }
    // (a limit of 0 is no limit for Python's decompress: the reference never passes one)
    const cut = random(8) ? packed.length : 1 + random(packed.length - 1);
    const max = random(4) ? data.length : 1 + random(data.length);
    cases.push([packed.subarray(0, cut), max]);
  }
  // The reference (crdt_stores.wire.inflate) decides each: ok, limit, truncated or corrupt.
  const script = [
    "import json, sys",
    "from crdt_stores.wire import ProtocolError, inflate",
    "out = []",
    "for packed, limit in json.load(sys.stdin):",
    "    try:",
    "        out.append(['ok', inflate(bytes.fromhex(packed), limit).hex()])",
    "    except ProtocolError as e:",
    "        out.append(['limit' if e.reason == 'oversize' else 'truncated' if 'truncated' in str(e) else 'corrupt'])",
    "print(json.dumps(out))",
  ].join("\n");
  assert.ok(existsSync(PYTHON), `no Python at ${PYTHON} (set CRDT_STORES_PYTHON)`);
  const run = spawnSync(PYTHON, ["-c", script], {
    cwd: ROOT,
    input: JSON.stringify(cases.map(([p, m]) => [Buffer.from(p).toString("hex"), m])),
    maxBuffer: 1 << 28,
    encoding: "utf8",
  });
  assert.equal(run.status, 0, run.stderr);
  const reference = JSON.parse(run.stdout);
  const counts = {};
  const differ = { node: {}, browser: {} };
  cases.forEach(([packed, max], i) => {
    const limit = Math.min(max, packed.length * 64); // as wire.inflate
    const expected = reference[i];
    counts[expected[0]] = (counts[expected[0]] ?? 0) + 1;
    for (const [name, module] of Object.entries(MODULES)) {
      const got = outcome(module, packed, limit);
      if (got[0] !== expected[0] || got[1] !== expected[1]) {
        const kind = `${expected[0]} -> ${got[0]}`;
        differ[name][kind] = (differ[name][kind] ?? 0) + 1;
      }
    }
  });
  t.diagnostic(`reference: ${JSON.stringify(counts)}; node:zlib differs: ${JSON.stringify(differ.node)}`);
  assert.ok(counts.ok > 150 && counts.corrupt > 300 && counts.limit > 100 && counts.truncated > 100, JSON.stringify(counts));
  assert.deepEqual(differ.browser, {});
  // node:zlib makes 16 KiB at a time past the limit, so it may find a fault there first:
  // the reason differs (malformed, not oversize), never whether the frame is refused.
  for (const kind of Object.keys(differ.node)) assert.match(kind, /^limit -> (corrupt|truncated)$/);
});
