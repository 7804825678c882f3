// crdt-stores for JavaScript: the I/O-free parts of the protocol (PROTOCOL.md). Every
// module is also importable on its own (`crdt-stores/values`, `crdt-stores/wire`...).

export { CborError, Float, MAX_NESTING, Simple, decode as decodeCbor, encode as encodeCbor } from "./cbor.js";
export {
  DEFAULT_MAX_VALUE_BYTES,
  INT64_MAX,
  INT64_MIN,
  MAX_DEPTH,
  MAX_KEY_BYTES,
  checkKey,
  copyValue,
  encodeValue,
  floatValue,
  fromCbor,
  isValid,
  normalize,
  sameValue,
  setField,
  utf8Length,
} from "./values.js";
export {
  APPEND,
  DELETE,
  EntryError,
  LAMPORT_MAX,
  MERGE,
  SET,
  WILDCARD,
  encodeEntry,
  entryLimit,
  parseEntry,
  writeKey,
} from "./entries.js";
export { InvalidUpdate, MAX_CLIENT, MAX_CLOCK, applicable, encodeDeletes, readUpdate } from "./updates.js";
export {
  countEntries,
  covers,
  decodeStateVector,
  deleteDigest,
  encodeStateVector,
  mergeRanges,
} from "./statevector.js";
export {
  ACK,
  CHUNK,
  COMPRESSED,
  DIFF,
  HEARTBEAT,
  HELLO,
  KIND_NAMES,
  LINKS,
  ProtocolError,
  SV_ENTRIES_PER_ITEM,
  SYNC,
  UPDATE,
  ack,
  chunk,
  compressed,
  diff,
  heartbeat,
  hello,
  links,
  messageBody,
  parseMessage,
  stateItems,
  sync,
  update,
} from "./messages.js";
export {
  Budget,
  CHUNK_OVERHEAD,
  COMPRESS_MIN_BYTES,
  MAX_FRAME_BYTES,
  MAX_INFLATE_RATIO,
  MAX_MESSAGE_BYTES,
  MAX_MESSAGE_ITEMS,
  PROTOCOL_VERSION,
  Reassembler,
  countItems,
  decodeFrame,
  encodeMessage,
  encodeRaw,
  frames,
  inflate,
} from "./wire.js";
export { intake, isStoreName } from "./intake.js";
export { MISSING, applyOp, compareOrder, fold, foldAll, sortEntries, tiebreakBytes } from "./merge.js";
export { StoreReplica, deadEntries } from "./replica.js";
export { DEFAULT_CONFIG, SyncEngine, VIOLATIONS } from "./engine.js";
export {
  SealError,
  SignalSealer,
  associatedData,
  deriveKey,
  generateRoomKey,
  pythonJson,
} from "./sealing.js";
export { Meeting, PEER_EVENTS, SyncTimeoutError, tokenSubject } from "./meeting.js";
export { MeshConfig, Topology } from "./mesh.js";
export { Store, Stores } from "./store.js";
export { JoinError, SignalingClient } from "./signaling.js";
export {
  WebRTCTransport,
  candidateAddress,
  countCandidates,
  filterCandidates,
  hostAddresses,
  idLess,
  parseIceServers,
  readSignal,
} from "./transport/webrtc.js";
