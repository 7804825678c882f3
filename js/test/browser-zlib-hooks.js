// Module resolution hooks (node:module `register`) that give every importer of
// src/zlib.js the browser module src/zlib.browser.js instead, as the package.json
// "browser" field and a page's import map do in a browser: frames.browser.test.js runs
// the frames tests through it.

const NODE = new URL("../src/zlib.js", import.meta.url).href;
const BROWSER = new URL("../src/zlib.browser.js", import.meta.url).href;

export async function resolve(specifier, context, nextResolve) {
  const resolved = await nextResolve(specifier, context);
  return resolved.url === NODE ? { ...resolved, url: BROWSER } : resolved;
}
