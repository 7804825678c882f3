// zlib (RFC 1950) for COMPRESSED messages in a browser: the contract of zlib.js (same two
// functions, same errors) on pako, a synchronous port of zlib itself with no Node
// dependency, so that it refuses what zlib refuses, where zlib does. The package.json
// "browser" field and "./zlib" export, and a page's import map (examples/importmap.js),
// put this module in place of zlib.js; it also runs in Node, where test/zlib.test.js and
// test/frames.browser.test.js check it against node:zlib and the vectors.

import {
  ZStream,
  Z_BUF_ERROR,
  Z_NEED_DICT,
  Z_NO_FLUSH,
  Z_OK,
  Z_STREAM_END,
  deflate as pakoDeflate,
  zlibInflate,
  zlibInflateEnd,
  zlibInflateInit2,
} from "pako";

/** The inflated data would pass the caller's limit. */
export class InflateLimitError extends Error {}

/** The stream ends before its end (no final block or Adler-32). */
export class InflateTruncatedError extends Error {}

/** Output is made in pieces of at most this size. */
const PIECE = 64 * 1024;

/**
 * A zlib stream of `data` at `level` (the reference sends level 1).
 * @param {Uint8Array} data
 * @param {number} level
 * @returns {Uint8Array}
 */
export function deflate(data, level) {
  return pakoDeflate(data, { level });
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
  const strm = new ZStream();
  if (zlibInflateInit2(strm, 15) !== Z_OK) throw new Error("zlib: cannot start an inflater");
  strm.input = packed;
  strm.next_in = 0;
  strm.avail_in = packed.length;
  const pieces = [];
  let total = 0;
  try {
    for (;;) {
      // Room for `limit` bytes in all, as the reference's decompress(packed, limit) has.
      const size = Math.min(PIECE, limit - total);
      strm.output = new Uint8Array(size);
      strm.next_out = 0;
      strm.avail_out = size;
      const status = zlibInflate(strm, Z_NO_FLUSH);
      if (strm.next_out) {
        pieces.push(strm.next_out === size ? strm.output : strm.output.subarray(0, strm.next_out));
        total += strm.next_out;
      }
      if (status === Z_STREAM_END) break; // (bytes after the stream are left unread)
      if (status === Z_NEED_DICT) throw new Error("missing dictionary");
      if (status !== Z_OK && status !== Z_BUF_ERROR) throw new Error(strm.msg || `zlib error ${status}`);
      // zlib stopped for want of input or of room. At the limit with input left, the data
      // goes on past it; with none left (the reference's eof is false), it is cut short.
      if (strm.avail_out > 0 || total === limit) {
        if (strm.avail_in > 0 && total === limit) throw new InflateLimitError(`inflates past ${limit} bytes`);
        throw new InflateTruncatedError("unexpected end of file");
      }
    }
  } finally {
    zlibInflateEnd(strm);
  }
  if (pieces.length === 1) return pieces[0];
  const out = new Uint8Array(total);
  let at = 0;
  for (const piece of pieces) {
    out.set(piece, at);
    at += piece.length;
  }
  return out;
}
