export class InflateLimitError extends Error {}
export class InflateTruncatedError extends Error {}
/** A zlib stream of `data` at `level`. */
export function deflate(data: Uint8Array, level: number): Uint8Array;
/** The data of the zlib stream `packed`, at most `limit` bytes. */
export function inflate(packed: Uint8Array, limit: number): Uint8Array;
