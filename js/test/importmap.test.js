// The import map a page without a bundler uses (examples/importmap.js), and the static
// server (examples/serve.js): every import of the package resolves to a served file, the
// browser zlib module replaces node:zlib, and nothing outside js/ (but the vectors) is served.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { request } from "node:http";
import { join } from "node:path";
import { test } from "node:test";
import { JS_ROOT, importMap } from "../examples/importmap.js";
import { serve } from "../examples/serve.js";

test("the import map resolves the whole module graph for the browser", () => {
  const { imports } = importMap(); // (throws on node: imports and on unresolved ones)
  assert.equal(imports["crdt-stores"], "/src/index.js");
  assert.equal(imports["/src/zlib.js"], "/src/zlib.browser.js");
  assert.equal(imports["crdt-stores/zlib"], "/src/zlib.browser.js");
  for (const name of ["yjs", "pako", "lib0/encoding", "@noble/hashes/blake2.js", "@noble/ciphers/chacha.js"]) {
    assert.ok(imports[name], name);
  }
  for (const [specifier, path] of Object.entries(imports)) {
    assert.ok(existsSync(join(JS_ROOT, path)), `${specifier}: ${path}`);
    assert.ok(/\.m?js$/.test(path), `${specifier}: ${path}`);
  }
});

const get = (port, path, method = "GET") =>
  new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, method }, (res) => {
      let body = "";
      res.on("data", (d) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode, type: res.headers["content-type"], body }));
    });
    req.on("error", reject);
    req.end();
  });

test("the static server: types, the import map, the vectors, and nothing outside", async () => {
  const server = await serve({ port: 0 });
  try {
    const { address, port } = server.address();
    assert.equal(address, "127.0.0.1");
    const js = await get(port, "/src/index.js");
    assert.equal(js.status, 200);
    assert.equal(js.type, "text/javascript; charset=utf-8");
    assert.equal((await get(port, "/node_modules/pako/dist/pako.mjs")).type, "text/javascript; charset=utf-8");
    assert.equal((await get(port, "/vectors/index.json")).type, "application/json; charset=utf-8");
    const page = await get(port, "/test/browser/vectors.html");
    assert.equal(page.type, "text/html; charset=utf-8");
    assert.match(page.body, /<script type="importmap">\s*\{\s*"imports"/);
    assert.equal(JSON.parse(page.body.match(/<script type="importmap">([\s\S]*?)<\/script>/)[1]).imports.yjs, importMap().imports.yjs);
    for (const path of ["/..%2fREADME.md", "/vectors/..%2f..%2fREADME.md", "/%2e%2e%2fREADME.md"]) {
      assert.equal((await get(port, path)).status, 403, path);
    }
    assert.equal((await get(port, "/../README.md")).body.includes("crdt-stores for JavaScript"), true); // js/README.md
    assert.equal((await get(port, "/nope.js")).status, 404);
    const example = await get(port, "/examples/"); // a folder serves its index.html
    assert.equal(example.status, 200);
    assert.match(example.body, /<script type="importmap">/);
    assert.equal((await get(port, "/src/index.js", "POST")).status, 405);
  } finally {
    server.close();
  }
});
