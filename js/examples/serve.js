// A tiny static server for pages that load crdt-stores with no bundler: serves js/
// (src/, node_modules/, examples/, test/browser/...) at /, and the shared test vectors
// (../tests/vectors/) read-only at /vectors/. HTML pages get the import map
// (examples/importmap.js) in place of a `<!-- importmap -->` comment. Binds 127.0.0.1
// only; GET and HEAD only; refuses any path that leaves its folder.
//
//   node examples/serve.js [port]      (or PORT=...; default 8080; 0 for a free one)
//   then open http://127.0.0.1:8080/ (the example page; the vectors page is at
//   /test/browser/vectors.html)

import { createReadStream, realpathSync, statSync } from "node:fs";
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { extname, join, sep } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { JS_ROOT, importMapScript } from "./importmap.js";

const VECTORS = fileURLToPath(new URL("../../tests/vectors/", import.meta.url));

const TYPES = {
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".cjs": "text/javascript; charset=utf-8",
  ".html": "text/html; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".hex": "text/plain; charset=us-ascii",
  ".txt": "text/plain; charset=utf-8",
  ".md": "text/plain; charset=utf-8",
  ".png": "image/png",
  ".svg": "image/svg+xml",
  ".wasm": "application/wasm",
};

/** The real file under `root` for a URL path (a folder's index.html), or null (missing or outside). */
function fileIn(root, path) {
  if (path === "" || path.endsWith("/")) path += "index.html";
  let real;
  try {
    real = realpathSync(join(root, path));
  } catch {
    return null;
  }
  const base = realpathSync(root);
  if (real !== base && !real.startsWith(base.endsWith(sep) ? base : base + sep)) return null;
  return statSync(real).isFile() ? real : null;
}

/**
 * Starts the server. Resolves to the node:http server once it listens.
 * @param {{port?: number, host?: string}} [options]
 */
export function serve({ port = 8080, host = "127.0.0.1" } = {}) {
  const script = importMapScript();
  const server = createServer(async (request, response) => {
    const send = (status, text) => {
      response.writeHead(status, { "content-type": "text/plain; charset=utf-8" });
      response.end(request.method === "HEAD" ? undefined : `${text}\n`);
    };
    try {
      if (request.method !== "GET" && request.method !== "HEAD") return send(405, "GET or HEAD only");
      let path;
      try {
        path = decodeURIComponent(new URL(request.url, "http://127.0.0.1").pathname);
      } catch {
        return send(400, "bad path");
      }
      if (path.includes("\0") || path.split("/").includes("..")) return send(403, "forbidden");
      if (path === "/") {
        response.writeHead(302, { location: "/examples/" });
        return response.end();
      }
      const file = path.startsWith("/vectors/")
        ? fileIn(VECTORS, path.slice("/vectors/".length))
        : fileIn(JS_ROOT, path.slice(1));
      if (!file) return send(404, "not found");
      const type = TYPES[extname(file).toLowerCase()] ?? "application/octet-stream";
      const headers = { "content-type": type, "cache-control": "no-store", "x-content-type-options": "nosniff" };
      if (type.startsWith("text/html")) {
        const html = (await readFile(file, "utf8")).replace("<!-- importmap -->", script);
        response.writeHead(200, headers);
        return response.end(request.method === "HEAD" ? undefined : html);
      }
      response.writeHead(200, { ...headers, "content-length": statSync(file).size });
      if (request.method === "HEAD") return response.end();
      createReadStream(file).pipe(response);
    } catch (error) {
      if (!response.headersSent) send(500, String(error?.message ?? error));
      else response.destroy();
    }
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve(server));
  });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const port = Number(process.argv[2] ?? process.env.PORT ?? 8080);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`not a port: ${process.argv[2] ?? process.env.PORT}`);
    process.exit(2);
  }
  const server = await serve({ port });
  const { address, port: bound } = server.address();
  console.log(`serving ${JS_ROOT} on http://${address}:${bound}/ (the example page: /examples/)`);
}
