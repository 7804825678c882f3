export const VERSION: 1;
export const NONCE_BYTES: 12;
export const REPLAY_WINDOW: number;
export const MAX_SEEN: number;
export const MAX_SEALED_CHARS: number;

/** The `data` of a sealed signal. */
export interface SealedData {
  v: 1;
  sealed: string;
}

/** A signal that cannot be accepted; `reason` says why. */
export class SealError extends Error {
  constructor(reason: string);
  readonly reason: string;
}

/** The AEAD key of `room` (HKDF-SHA256 with WebCrypto). */
export function deriveKey(roomKey: string | Uint8Array, room: string): Promise<Uint8Array>;
/** JSON as Python's `json.dumps` writes it (ensure_ascii). */
export function pythonJson(value: unknown, compact?: boolean): string;
/** The associated data of a seal, in UTF-8. */
export function associatedData(room: string, sender: string, recipient: string): Uint8Array;
/** A fresh random room key (32 bytes, base64url, unpadded). */
export function generateRoomKey(): string;

/** Seals signals for one room and opens them, refusing forgeries and replays. */
export class SignalSealer {
  static create(
    roomKey: string | Uint8Array,
    room: string,
    options?: { window?: number; maxSeen?: number },
  ): Promise<SignalSealer>;
  constructor(key: Uint8Array, room: string, options?: { window?: number; maxSeen?: number });
  readonly room: string;
  readonly window: number;
  readonly maxSeen: number;
  seal(
    sender: string,
    recipient: string,
    payload: Record<string, unknown>,
    now: number,
    nonce?: Uint8Array,
  ): SealedData;
  open(
    sender: string,
    recipient: string,
    data: Record<string, unknown>,
    now: number,
  ): Record<string, unknown>;
}
