// The frames tests again, with the browser's zlib module (src/zlib.browser.js, pako) in
// place of node:zlib for every module that imports src/zlib.js, as in a browser.

import assert from "node:assert/strict";
import { register } from "node:module";
import { test } from "node:test";

register("./browser-zlib-hooks.js", import.meta.url);

const viaHook = await import("../src/zlib.js");
const browser = await import("../src/zlib.browser.js");

test("the browser's zlib module is the one in use", () => {
  assert.equal(viaHook.inflate, browser.inflate);
  assert.equal(viaHook.deflate, browser.deflate);
});

await import("./frames.test.js");
