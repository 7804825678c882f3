/** Client id to clock (values past 2^53 - 1, which a peer may report, are bigints). */
export type StateVector = Map<number | bigint, number | bigint>;

/** How many entries an encoded state vector announces; `RangeError` if malformed. */
export function countEntries(data: Uint8Array): number | bigint;
/** Decode an encoded state vector as the reference does; `RangeError` if malformed. */
export function decodeStateVector(data: Uint8Array, maxEntries?: number): StateVector;
/** Encode a state vector the way Yjs does. */
export function encodeStateVector(vector: Map<number, number>): Uint8Array;
/** True when `have` holds everything `want` describes. */
export function covers(have: StateVector, want: StateVector): boolean;
/** Delete ranges sorted, overlapping and touching ones joined. */
export function mergeRanges(ranges: Array<[number, number]>): Array<[number, number]>;
/** The digest of a delete set (§6.7): BLAKE2b-64 of its canonical CBOR. */
export function deleteDigest(deletes: Map<number, Array<[number, number]>>): Uint8Array;
