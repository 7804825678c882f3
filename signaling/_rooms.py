"""Rooms and who is in them: admitting a join (tokens, resume secrets, the per-address and
per-room caps), leaving, and the ids reserved for departed peers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass

from ._addresses import decrement
from ._budgets import Bucket
from ._sockets import Client, Sockets, parse
from .tokens import MAX_NAME_LENGTH, TokenError, verify_token_claims

__all__ = ["Rooms"]

log = logging.getLogger("signaling")

MAX_RESUME_LENGTH = 128


@dataclass
class _Reservation:
    """A departed peer's id, kept for whoever holds its resume secret until ``expires``."""

    expires: float
    secret: str
    address: str


class Rooms(Sockets):
    """The rooms layer of ``SignalingServer`` (state set up by its ``__init__``)."""

    secret: str | None
    max_token_ttl: float
    rooms: dict[str, dict[str, Client]]
    _resume_key: bytes
    _started_wall: float
    _started: float
    _joined_by_address: dict[str, int]
    _reserved: dict[tuple[str, str], _Reservation]  # oldest first
    _reserved_by_address: dict[str, dict[tuple[str, str], None]]

    def _evict(self, client: Client) -> None:
        """Out of the join queue, and out of its room too (at once, not when it closes)."""
        super()._evict(client)
        self._leave(client)

    async def _join(self, client: Client, raw: str | bytes) -> bool:
        """Admit or refuse a join; a reserved or live id needs its resume secret."""
        message = parse(raw)
        if message is None or message.get("type") != "join":
            return await self._bad_join(client, "the first message must be a JSON join")
        room = message.get("room")
        peer_id = message.get("peer_id")
        resume = message.get("resume")
        if not isinstance(room, str) or not _name(room):
            return await self._bad_join(client, "join needs a room (a non-empty string)")
        if peer_id is not None and (not isinstance(peer_id, str) or not _name(peer_id)):
            return await self._bad_join(client, "peer_id must be a non-empty string")
        if resume is not None and (
            not isinstance(resume, str) or not 0 < len(resume) <= MAX_RESUME_LENGTH
        ):
            return await self._bad_join(client, "resume must be the secret from a welcome")
        token: str | None = None
        issued_before_start = False
        if self.secret is not None:
            try:
                claims = verify_token_claims(
                    self.secret, message.get("token"), room, peer_id, self.max_token_ttl
                )
            except TokenError as exc:
                log.info("refused a join of room %r: %s", room, exc.reason)
                self.stats["refused_auth"] += 1
                await self._refuse(client, exc.code, exc.reason)
                return False
            peer_id = claims.peer_id
            token = str(message["token"])
            # iat has one-second resolution: a token of the start's second counts as after.
            issued_before_start = claims.issued_at is None or claims.issued_at < int(
                self._started_wall
            )
        members = self.rooms.get(room, {})
        if peer_id is None:
            peer_id = secrets.token_hex(6)
            while peer_id in members or self._reservation(room, peer_id) is not None:
                peer_id = secrets.token_hex(6)
        secret = self._resume_secret(room, peer_id, token)
        live = members.get(peer_id)
        reservation = self._reservation(room, peer_id) if live is None else None
        accepted = [secret]
        if live is not None:
            accepted.append(live.resume)
        if reservation is not None:
            accepted.append(reservation.secret)
        resumed = resume is not None and any(_same(resume, s) for s in accepted)
        if live is not None and not resumed:
            self.stats["refused_taken"] += 1
            await self._refuse(
                client, "peer-id-taken", f"peer id {peer_id!r} is already in the room"
            )
            return False
        if reservation is not None and not resumed:
            self.stats["refused_reserved"] += 1
            left = max(0.0, reservation.expires - time.monotonic())
            await self._refuse(
                client,
                "peer-id-taken",
                f"peer id {peer_id!r} is reserved for its previous session for {left:.0f} s"
                " more; rejoin with its resume secret",
            )
            return False
        if (
            live is None
            and reservation is None
            and not resumed
            and self.secret is not None
            and issued_before_start
            and time.monotonic() < self._started + self.limits.reserve_seconds
        ):
            self.stats["refused_restart_grace"] += 1
            await self._refuse(
                client,
                "peer-id-taken",
                f"peer id {peer_id!r} is reserved: the server restarted moments ago and this"
                " token is older; rejoin with the resume secret or a new token",
            )
            return False
        freed = 1 if live is not None and live.address == client.address else 0
        joined = self._joined_by_address.get(client.address, 0) - freed
        if joined >= self.limits.max_joined_per_address:
            self.stats["refused_joined_per_address"] += 1
            await self._refuse(
                client,
                "too-many-connections",
                f"too many peers joined from {client.address}",
            )
            return False
        if live is None and len(members) >= self.limits.max_peers_per_room:
            self.stats["refused_room_full"] += 1
            await self._refuse(client, "room-full", f"room {room!r} is full")
            return False
        # Admitted.
        members = self.rooms.setdefault(room, members)
        self._pending.pop(client, None)
        self._unreserve((room, peer_id))
        client.room = room
        client.peer_id = peer_id
        client.resume = secret
        client.joined = True
        client.inbound = Bucket(
            self.limits.signals_received_per_second, self.limits.signals_received_burst
        )
        self._joined_by_address[client.address] = joined + freed + 1
        members[peer_id] = client
        if resumed:
            self.stats["resumed"] += 1
        peers = [other for other in members if other != peer_id]
        self.stats["joins"] += 1
        self._send(
            client,
            {
                "type": "welcome",
                "peer_id": peer_id,
                "room": room,
                "peers": peers,
                "auth": self.secret is not None,
                "resume": secret,
                "heartbeat": self.limits.idle_timeout / 3,
            },
        )
        if live is not None:
            # Same peer, new socket: nobody else needs to hear about it.
            self.stats["taken_over"] += 1
            client.credits = live.credits
            client.pair_buckets = live.pair_buckets
            self._leave(live, announce=False)
            self._close_later(live, "peer-id-taken", "replaced by a resumed session")
            log.info("%s resumed in room %r on a new socket", peer_id, room)
            return True
        for other in [members[p] for p in peers]:
            self._send(other, {"type": "peer-joined", "peer_id": peer_id})
        log.info("%s joined room %r (%d peers)", peer_id, room, len(members))
        return True

    async def _bad_join(self, client: Client, reason: str) -> bool:
        """Refuse a malformed join (always returns False, for ``return await``)."""
        self.stats["refused_bad_request"] += 1
        await self._refuse(client, "bad-request", reason)
        return False

    def _leave(self, client: Client, *, announce: bool = True) -> None:
        """Take a joined peer out of its room; ``announce`` tells the others and reserves the id."""
        if not client.joined:
            return
        client.joined = False
        decrement(self._joined_by_address, client.address)
        members = self.rooms.get(client.room)
        if not members or members.get(client.peer_id) is not client:
            return
        del members[client.peer_id]
        if announce:
            self._reserve(client)
            for other in list(members.values()):
                other.credits.pop(client.peer_id, None)
                self._send(other, {"type": "peer-left", "peer_id": client.peer_id})
        log.info("%s left room %r (%d peers)", client.peer_id, client.room, len(members))
        self._drop_empty(client.room)

    def _drop_empty(self, room: str) -> None:
        if not self.rooms.get(room):
            self.rooms.pop(room, None)

    # -- reserved ids and resume secrets ----------------------------------------------

    def _resume_secret(self, room: str, peer_id: str, token: str | None) -> str:
        """HMAC of room, peer id and (token mode) the token: a new token, a new secret."""
        fields = [room, peer_id] if token is None else [room, peer_id, token]
        data = json.dumps(fields, separators=(",", ":")).encode()
        digest = hmac.new(self._resume_key, data, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def _reserve(self, client: Client) -> None:
        """Keep a departed peer's id for its secret; the caps drop the oldest first."""
        if self.limits.reserve_seconds <= 0:
            return
        key = (client.room, client.peer_id)
        self._unreserve(key)
        expires = time.monotonic() + self.limits.reserve_seconds
        self._reserved[key] = _Reservation(expires, client.resume, client.address)
        mine = self._reserved_by_address.setdefault(client.address, {})
        mine[key] = None
        while len(mine) > self.limits.max_reserved_per_address:
            self.stats["reservations_evicted"] += 1
            self._unreserve(next(iter(mine)))
        while len(self._reserved) > self.limits.max_reserved:
            self.stats["reservations_evicted"] += 1
            self._unreserve(next(iter(self._reserved)))

    def _reservation(self, room: str, peer_id: str) -> _Reservation | None:
        """The live reservation of an id, if any (expired ones are dropped here)."""
        now = time.monotonic()
        while self._reserved:
            key, oldest = next(iter(self._reserved.items()))
            if oldest.expires > now:
                break
            self._unreserve(key)
        return self._reserved.get((room, peer_id))

    def _unreserve(self, key: tuple[str, str]) -> None:
        reservation = self._reserved.pop(key, None)
        if reservation is None:
            return
        mine = self._reserved_by_address.get(reservation.address)
        if mine is not None:
            mine.pop(key, None)
            if not mine:
                del self._reserved_by_address[reservation.address]


def _name(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_NAME_LENGTH


def _same(given: str, expected: str) -> bool:
    """Constant-time comparison of a resume secret (any text, compared as UTF-8)."""
    return hmac.compare_digest(given.encode(), expected.encode())
