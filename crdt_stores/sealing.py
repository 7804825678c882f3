"""End-to-end sealed signals: what the signaling server relays, it can neither read nor change.

With a room key, every signal payload (offer or answer: session id and SDP, so the
DTLS fingerprint too) travels as ChaCha20-Poly1305 ciphertext under a key derived
with HKDF-SHA256 from the room key and the room name. The associated data binds
each seal to the room, the sender and the recipient, so a server that re-addresses
or re-stamps a signal breaks it; a timestamp window and a record of seen nonces
refuse replays. Plain objects, no I/O: ``seal`` gives a dict to send, ``open``
gives the payload back or raises ``SealError`` with a reason.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections import OrderedDict
from typing import Any, NoReturn

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["ROOM_KEY_ENV", "SealError", "SignalSealer", "generate_room_key"]

ROOM_KEY_ENV = "CRDT_STORES_ROOM_KEY"
VERSION = 1
NONCE_BYTES = 12
REPLAY_WINDOW = 120.0
"""Seconds a sealed signal stays acceptable (covers clock skew between peers)."""
MAX_SEEN = 10_000
"""Nonces remembered for replay protection; older ones raise a timestamp floor instead."""
MAX_SEALED_CHARS = 48 * 1024  # under the signaling server's 64 KiB message limit
_SALT = b"crdt-stores signaling key v1"


class SealError(Exception):
    """A signal that cannot be accepted: ``reason`` names why (for events and logs)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def generate_room_key() -> str:
    """A fresh random room key (32 bytes, base64url): share it with the room's members only.

    Never one that starts with ``-``: ``--room-key KEY`` would read it as an option
    (one key in 64 did, and ``crdt-stores peer`` refused to start).
    """
    while True:
        key = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
        if not key.startswith("-"):
            return key


def derive_key(room_key: str | bytes, room: str) -> bytes:
    """The AEAD key of ``room``: HKDF-SHA256 over the room key, with the room name as info."""
    secret = room_key.encode() if isinstance(room_key, str) else bytes(room_key)
    if not secret:
        raise ValueError("the room key must not be empty")
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=_SALT,
        info=b"signal\x00" + room.encode(),
    )
    return hkdf.derive(secret)


class SignalSealer:
    """Seals signals for one room and opens them, refusing forgeries and replays."""

    def __init__(
        self,
        room_key: str | bytes,
        room: str,
        *,
        window: float = REPLAY_WINDOW,
        max_seen: int = MAX_SEEN,
    ) -> None:
        self.room = room
        self.window = window
        self.max_seen = max_seen
        self._aead = ChaCha20Poly1305(derive_key(room_key, room))
        # nonce -> timestamp of every signal opened within the window (replays refused).
        self._seen: OrderedDict[bytes, float] = OrderedDict()
        self._floor = float("-inf")  # timestamps at or below it may have been forgotten

    def _associated(self, sender: str, recipient: str) -> bytes:
        return json.dumps(["crdt-stores-signal", VERSION, self.room, sender, recipient]).encode()

    def seal(
        self, sender: str, recipient: str, payload: dict[str, Any], now: float
    ) -> dict[str, Any]:
        """The signal ``data`` carrying ``payload`` from ``sender`` to ``recipient``."""
        nonce = os.urandom(NONCE_BYTES)
        plain = json.dumps({"ts": now, "payload": payload}, separators=(",", ":")).encode()
        sealed = nonce + self._aead.encrypt(nonce, plain, self._associated(sender, recipient))
        return {"v": VERSION, "sealed": base64.b64encode(sealed).decode()}

    def open(self, sender: str, recipient: str, data: dict[str, Any], now: float) -> dict[str, Any]:
        """The payload of a sealed signal from ``sender`` to ``recipient``; raises ``SealError``."""
        text = data.get("sealed")
        if not isinstance(text, str):
            raise SealError("unsealed signal (this room uses a room key)")
        version = data.get("v")
        if type(version) not in (int, float) or version != VERSION:  # (true is not 1)
            raise SealError("unknown seal version (v is not the number 1)")
        if len(text) > MAX_SEALED_CHARS:
            raise SealError("sealed signal too large")
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise SealError("sealed signal is not base64") from None
        if len(raw) <= NONCE_BYTES:
            raise SealError("sealed signal too short")
        nonce = raw[:NONCE_BYTES]
        try:
            plain = self._aead.decrypt(
                nonce, raw[NONCE_BYTES:], self._associated(sender, recipient)
            )
        except InvalidTag:
            raise SealError(
                "seal does not verify (another room key, or altered, re-addressed or re-stamped "
                "on the way)"
            ) from None
        try:
            body = json.loads(plain, parse_constant=_no_constant)
            stamp = body["ts"]
            payload = body["payload"]
        except (ValueError, KeyError, TypeError):
            raise SealError("sealed signal holds no payload") from None
        if type(stamp) not in (int, float) or not isinstance(payload, dict):
            raise SealError("sealed signal holds no payload")
        if abs(now - stamp) > self.window:
            raise SealError(f"sealed signal is {now - stamp:+.0f} s off (stale or replayed)")
        if nonce in self._seen or stamp <= self._floor:
            raise SealError("replayed signal")
        self._remember(nonce, float(stamp), now)
        return payload

    def _remember(self, nonce: bytes, stamp: float, now: float) -> None:
        self._seen[nonce] = stamp
        # Entries are in arrival order; those past the window can go (their stamps are refused).
        while self._seen:
            oldest, oldest_stamp = next(iter(self._seen.items()))
            if oldest_stamp >= now - self.window and len(self._seen) <= self.max_seen:
                break
            del self._seen[oldest]
            if oldest_stamp >= now - self.window:
                # Forgotten while still within the window: refuse its stamp and older from now.
                self._floor = max(self._floor, oldest_stamp)


def _no_constant(name: str) -> NoReturn:
    """``json.loads`` reads ``NaN``, ``Infinity`` and ``-Infinity``, which are not JSON (a
    NaN ``ts`` would pass the window check): refused, as ``JSON.parse`` refuses them."""
    raise ValueError(f"{name} is not JSON")
