// Type declarations of index.js (hand-written; every module has its own .d.ts).

export { CborError, Float, MAX_NESTING, Simple, decode as decodeCbor, encode as encodeCbor } from "./cbor.js";
export type { CborItem } from "./cbor.js";
export type { StoreValue } from "./values.js";
export type { Op, ParsedEntry } from "./entries.js";
export type { Block, DeleteSet, ReadOptions, Update } from "./updates.js";
export type { StateVector } from "./statevector.js";
export type {
  Ack,
  Blobs,
  Chunk,
  Compressed,
  Diff,
  Heartbeat,
  Hello,
  Links,
  Message,
  Sync,
  Unknown,
  Update as UpdateMessage,
} from "./messages.js";
export type { Intake, IntakeOptions, Violation } from "./intake.js";
export type { Entry } from "./merge.js";
export type { SealedData } from "./sealing.js";
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
export { DEFAULT_CONFIG, EngineConfig, EngineEvent, SyncEngine, VIOLATIONS } from "./engine.js";
export {
  SealError,
  SignalSealer,
  associatedData,
  deriveKey,
  generateRoomKey,
  pythonJson,
} from "./sealing.js";
export { Meeting, MeetingOptions, PEER_EVENTS, PeerEvent, SyncTimeoutError, tokenSubject } from "./meeting.js";
export { MeshConfig, MeshOptions, Topology } from "./mesh.js";
export { BulkSetData, Store, StoreCallback, Stores, WriteOptions } from "./store.js";
export { JoinError, SignalingClient } from "./signaling.js";
export {
  IceServer,
  WebRTCTransport,
  candidateAddress,
  countCandidates,
  filterCandidates,
  hostAddresses,
  idLess,
  parseIceServers,
  readSignal,
} from "./transport/webrtc.js";
