// The import map that lets a page load crdt-stores and its dependencies straight from
// js/src/ and js/node_modules/ (served at / by examples/serve.js), with no bundler: it
// follows every import from src/index.js as a browser would and resolves each bare
// specifier by its package's "exports" under the browser conditions. src/zlib.js
// (node:zlib) is mapped to src/zlib.browser.js. Throws if the graph reaches a node:
// builtin or an import that nothing resolves.
//
//   node examples/importmap.js      prints the map (to paste into a page served elsewhere)

import { existsSync, readFileSync } from "node:fs";
import { dirname, join, relative, sep } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

export const JS_ROOT = fileURLToPath(new URL("../", import.meta.url));
const CONDITIONS = new Set(["browser", "import", "module", "default"]);
const SWAPS = { "src/zlib.js": "src/zlib.browser.js" };

/** A file under js/ as the URL path the server gives it. */
const urlOf = (file) => `/${relative(JS_ROOT, file).split(sep).join("/")}`;

/** The target of an "exports" entry under CONDITIONS (Node's algorithm, no patterns). */
function pick(target) {
  if (typeof target === "string") return target;
  if (Array.isArray(target)) {
    for (const item of target) {
      const found = pick(item);
      if (found) return found;
    }
    return null;
  }
  if (target && typeof target === "object") {
    for (const [condition, inner] of Object.entries(target)) {
      if (!CONDITIONS.has(condition)) continue;
      const found = pick(inner);
      if (found) return found;
    }
  }
  return null;
}

/** A bare specifier ("yjs", "lib0/encoding", "@noble/hashes/blake2.js") to a file. */
function resolveBare(specifier, root) {
  const parts = specifier.split("/");
  const name = specifier.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0];
  const subpath = `.${specifier.slice(name.length)}`;
  const dir = name === "crdt-stores" ? root : join(root, "node_modules", name);
  const pkgFile = join(dir, "package.json");
  if (!existsSync(pkgFile)) throw new Error(`${specifier}: package ${name} is not installed`);
  const pkg = JSON.parse(readFileSync(pkgFile, "utf8"));
  let target = null;
  if (pkg.exports !== undefined) {
    const exp = pkg.exports;
    const map = typeof exp === "string" || Array.isArray(exp) || !Object.keys(exp).some((k) => k.startsWith("."))
      ? { ".": exp }
      : exp;
    if (subpath in map) target = pick(map[subpath]);
  } else if (subpath === ".") {
    target = (typeof pkg.browser === "string" && pkg.browser) || pkg.module || pkg.main || "index.js";
  } else {
    target = subpath;
  }
  if (!target) throw new Error(`${specifier}: not exported for the browser by ${name}`);
  const file = join(dir, target);
  if (!existsSync(file)) throw new Error(`${specifier}: ${file} does not exist`);
  return file;
}

const IMPORT = /(?:^|[;\s}])(?:import|export)\s*(?:[\w*${}\s,]*?\sfrom\s*)?["']([^"']+)["']|\bimport\s*\(\s*["']([^"']+)["']\s*\)/g;

/** The specifiers a module imports (static, re-exports and literal dynamic imports). */
function importsOf(source) {
  const clean = source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|[^:"'\\])\/\/.*$/gm, "$1");
  return [...clean.matchAll(IMPORT)].map((m) => m[1] ?? m[2]);
}

/**
 * The import map ({imports}) for a page, as URL paths on a server of js/.
 * @param {string} [root] js/
 */
export function importMap(root = JS_ROOT) {
  const imports = {};
  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
  const entries = Object.keys(pkg.exports).filter((k) => k !== "./package.json");
  const queue = [];
  for (const entry of entries) {
    const specifier = entry === "." ? "crdt-stores" : `crdt-stores/${entry.slice(2)}`;
    const file = resolveBare(specifier, root);
    imports[specifier] = urlOf(file);
    queue.push(file);
  }
  for (const [from, to] of Object.entries(SWAPS)) imports[`/${from}`] = `/${to}`;
  const seen = new Set();
  while (queue.length) {
    let file = queue.pop();
    const swapped = SWAPS[relative(root, file).split(sep).join("/")];
    if (swapped) file = join(root, swapped);
    if (seen.has(file)) continue;
    seen.add(file);
    for (const specifier of importsOf(readFileSync(file, "utf8"))) {
      if (specifier.startsWith("node:")) throw new Error(`${urlOf(file)} imports ${specifier}`);
      if (/^\.{0,2}\//.test(specifier)) {
        const target = join(dirname(file), specifier);
        if (!existsSync(target)) throw new Error(`${urlOf(file)} imports ${specifier}: no such file`);
        queue.push(target);
        continue;
      }
      if (/^[a-z][a-z0-9+.-]*:/i.test(specifier)) throw new Error(`${urlOf(file)} imports ${specifier}`);
      const target = resolveBare(specifier, root);
      if (specifier in imports && imports[specifier] !== urlOf(target)) {
        throw new Error(`${specifier} resolves to two files`);
      }
      imports[specifier] = urlOf(target);
      queue.push(target);
    }
  }
  return { imports: Object.fromEntries(Object.entries(imports).sort(([a], [b]) => a.localeCompare(b))) };
}

/** The map as an HTML element. */
export function importMapScript(root = JS_ROOT) {
  return `<script type="importmap">\n${JSON.stringify(importMap(root), null, 2)}\n</script>`;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  console.log(JSON.stringify(importMap(), null, 2));
}
