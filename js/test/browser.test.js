// The package in a real browser: Debian's headless Chromium (puppeteer-core drives it over
// a pipe) opens test/browser/vectors.html from examples/serve.js on a free loopback port.
// The page loads crdt-stores through its import map (no bundler, src/zlib.browser.js for
// node:zlib), runs the shared vectors, two sync engines, and two RTCPeerConnections over
// 127.0.0.1; every check must pass. A screenshot goes to test-artifacts/vectors.png.
// Chromium is required: without it this test fails (CHROMIUM_PATH, else /usr/bin/chromium).
// The browser is kept offline: no host but 127.0.0.1 resolves, every other request goes
// to a proxy that is not there, and the background services are off.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import puppeteer from "puppeteer-core";
import { serve } from "../examples/serve.js";
import { CHROMIUM, CHROMIUM_FLAGS } from "./chromium.js";

const ARTIFACTS = fileURLToPath(new URL("../test-artifacts/", import.meta.url));


test("the shared vectors and WebRTC pass in headless Chromium", { timeout: 120_000 }, async (t) => {
  assert.ok(
    existsSync(CHROMIUM),
    `Chromium is required for this test and was not found at ${CHROMIUM}: install Debian's ` +
      "(apt-get install chromium; .ci/run does) or set CHROMIUM_PATH",
  );
  const started = performance.now();
  const version = execFileSync(CHROMIUM, ["--version"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  const server = await serve({ port: 0 });
  const { port } = server.address();
  const profile = mkdtempSync(join(tmpdir(), "crdt-stores-chromium-"));
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: false, // (--headless=new is in the flags)
    pipe: true,
    userDataDir: profile,
    args: CHROMIUM_FLAGS,
    timeout: 60_000,
  });
  try {
    const page = await browser.newPage();
    const offsite = [];
    const problems = [];
    page.on("request", (request) => {
      const url = new URL(request.url());
      if (url.protocol !== "data:" && url.hostname !== "127.0.0.1") offsite.push(request.url());
    });
    page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
    page.on("requestfailed", (request) => problems.push(`failed: ${request.url()}`));
    page.on("console", (message) => {
      if (message.type() === "error") problems.push(`console: ${message.text()}`);
    });
    await page.setViewport({ width: 900, height: 700 });
    await page.goto(`http://127.0.0.1:${port}/test/browser/vectors.html`, { waitUntil: "load" });
    await page.waitForFunction(() => window.__results?.done === true, { timeout: 90_000 });
    const results = await page.evaluate(() => window.__results);
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, "vectors.png"), fullPage: true });
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    t.diagnostic(`${version}: ${results.passed} passed, ${results.failed} failed in ${seconds} s`);
    t.diagnostic(`groups: ${JSON.stringify(results.groups)}`);
    t.diagnostic(`webrtc: ${JSON.stringify(results.info.webrtc)}, media ${results.info.media}`);
    for (const failure of results.failures) t.diagnostic(`FAILED ${failure.group} / ${failure.name}: ${failure.error}`);
    assert.deepEqual(results.failures, []);
    assert.equal(results.failed, 0);
    for (const group of ["cbor", "values", "updates", "frames", "zlib", "sealing", "engine", "webrtc"]) {
      assert.ok(results.groups[group]?.passed > 0, `no ${group} checks ran`);
    }
    assert.ok(results.passed >= 100, `only ${results.passed} checks ran`);
    assert.deepEqual(problems, [], "the page had problems");
    assert.deepEqual(offsite, [], "the page asked for another host");
  } finally {
    await browser.close();
    server.close();
    rmSync(profile, { recursive: true, force: true });
  }
});
