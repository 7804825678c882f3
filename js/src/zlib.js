// zlib (RFC 1950) for COMPRESSED messages, behind two functions so that a browser build
// can swap this module (node:zlib) for another implementation of the same contract.

import { deflateSync, inflateSync } from "node:zlib";

/** The inflated data would pass the caller's limit. */
export class InflateLimitError extends Error {}

/** The stream ends before its end (no final block or Adler-32). */
export class InflateTruncatedError extends Error {}

/**
 * A zlib stream of `data` at `level` (the reference sends level 1).
 * @param {Uint8Array} data
 * @param {number} level
 * @returns {Uint8Array}
 */
export function deflate(data, level) {
  return new Uint8Array(deflateSync(data, { level }));
}

/**
 * The data of the zlib stream `packed`, at most `limit` bytes. Throws
 * `InflateLimitError` past `limit`, `InflateTruncatedError` for a stream cut short and
 * any other `Error` for a corrupt one. Bytes after the end of the stream are ignored
 * (as the reference does).
 * @param {Uint8Array} packed
 * @param {number} limit
 * @returns {Uint8Array}
 */
export function inflate(packed, limit) {
  try {
    const out = inflateSync(packed, { maxOutputLength: Math.max(limit, 1) });
    if (out.length > limit) throw new InflateLimitError(`inflates past ${limit} bytes`);
    return new Uint8Array(out.buffer, out.byteOffset, out.length);
  } catch (error) {
    if (error?.code === "ERR_BUFFER_TOO_LARGE") throw new InflateLimitError(`inflates past ${limit} bytes`);
    if (error?.code === "Z_BUF_ERROR") throw new InflateTruncatedError(error.message);
    throw error;
  }
}
