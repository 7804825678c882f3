"""Rooms and who is in them: admitting a join (tokens, resume secrets, the per-address and
per-room caps) and leaving. Whether an id is free, reserved or live, and who hears about
a join or a leave, is the presence's business (``_presence``: this process alone, or
``_redis``: every instance on one Redis)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time

from ._addresses import decrement
from ._budgets import Bucket
from ._presence import (
    Decision,
    JoinRequest,
    LocalPresence,
    Presence,
    PresenceError,
    Reservation,
)
from ._sockets import Client, Sockets, parse
from .tokens import MAX_NAME_LENGTH, TokenError, verify_token_claims

__all__ = ["Rooms"]

log = logging.getLogger("signaling")

MAX_RESUME_LENGTH = 128


class Rooms(Sockets):
    """The rooms layer of ``SignalingServer`` (state set up by its ``__init__``)."""

    secret: str | None
    max_token_ttl: float
    rooms: dict[str, dict[str, Client]]
    _resume_key: bytes
    _started_wall: float
    _started: float
    _joined_by_address: dict[str, int]
    _presence: Presence

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
        if peer_id is None:
            peer_id = await self._presence.fresh_id(room)
        secret = self._resume_secret(room, peer_id, token)
        live = self.rooms.get(room, {}).get(peer_id)
        freed = 1 if live is not None and live.address == client.address else 0
        joined = self._joined_by_address.get(client.address, 0) - freed
        request = JoinRequest(
            room=room,
            peer_id=peer_id,
            secret=secret,
            resume=resume,
            address=client.address,
            session=secrets.token_hex(8),
            grace=self.secret is not None
            and issued_before_start
            and time.monotonic() < self._started + self.limits.reserve_seconds,
            address_full=joined >= self.limits.max_joined_per_address,
        )
        try:
            decision = await self._presence.claim(request)
        except PresenceError as exc:
            self.stats["presence_errors"] += 1
            log.warning("refused a join of room %r: %s", room, exc)
            await self._refuse(client, "unavailable", "the signaling service is unavailable")
            return False
        if decision.outcome != "ok":
            return await self._refused(client, request, decision)
        # Admitted. (With a shared presence the local room may have changed meanwhile.)
        members = self.rooms.setdefault(room, {})
        live = members.get(peer_id)
        self._pending.pop(client, None)
        client.room = room
        client.peer_id = peer_id
        client.resume = secret
        client.session = request.session
        client.joined = True
        client.inbound = Bucket(
            self.limits.signals_received_per_second, self.limits.signals_received_burst
        )
        self._joined_by_address[client.address] = self._joined_by_address.get(client.address, 0) + 1
        members[peer_id] = client
        if decision.resumed:
            self.stats["resumed"] += 1
        self.stats["joins"] += 1
        self._send(
            client,
            {
                "type": "welcome",
                "peer_id": peer_id,
                "room": room,
                "peers": decision.peers,
                "auth": self.secret is not None,
                "resume": secret,
                "heartbeat": self.limits.idle_timeout / 3,
            },
        )
        self._presence.admitted(client, decision, replaced=live is not None)
        if live is not None:
            # Same peer, new socket: nobody else needs to hear about it.
            self.stats["taken_over"] += 1
            client.credits = live.credits
            client.pair_buckets = live.pair_buckets
            self._leave(live, announce=False)
            self._close_later(live, "peer-id-taken", "replaced by a resumed session")
            log.info("%s resumed in room %r on a new socket", peer_id, room)
            return True
        log.info("%s joined room %r (%d peers here)", peer_id, room, len(members))
        return True

    async def _refused(self, client: Client, request: JoinRequest, decision: Decision) -> bool:
        """Refuse a join the presence did not admit (always returns False)."""
        peer_id = request.peer_id
        outcome = decision.outcome
        if outcome == "taken":
            self.stats["refused_taken"] += 1
            await self._refuse(
                client, "peer-id-taken", f"peer id {peer_id!r} is already in the room"
            )
        elif outcome == "reserved":
            self.stats["refused_reserved"] += 1
            await self._refuse(
                client,
                "peer-id-taken",
                f"peer id {peer_id!r} is reserved for its previous session for"
                f" {max(0.0, decision.reserved_for):.0f} s more; rejoin with its resume secret",
            )
        elif outcome == "grace":
            self.stats["refused_restart_grace"] += 1
            await self._refuse(
                client,
                "peer-id-taken",
                f"peer id {peer_id!r} is reserved: the server restarted moments ago and this"
                " token is older; rejoin with the resume secret or a new token",
            )
        elif outcome == "address":
            self.stats["refused_joined_per_address"] += 1
            await self._refuse(
                client,
                "too-many-connections",
                f"too many peers joined from {client.address}",
            )
        elif outcome == "full":
            self.stats["refused_room_full"] += 1
            await self._refuse(client, "room-full", f"room {request.room!r} is full")
        else:
            return await self._bad_join(client, "this room name or peer id cannot be used")
        return False

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
            self._presence.left(client, members)
        log.info("%s left room %r (%d peers here)", client.peer_id, client.room, len(members))
        self._drop_empty(client.room)

    def _reservation(self, room: str, peer_id: str) -> Reservation | None:
        """The reservation of a departed peer's id, if any (with Redis: None, they live
        in Redis). For tests and debugging."""
        if not isinstance(self._presence, LocalPresence):
            return None
        return self._presence.reservations.get((room, peer_id))

    def _drop_empty(self, room: str) -> None:
        if not self.rooms.get(room):
            self.rooms.pop(room, None)

    # -- resume secrets -----------------------------------------------------------------

    def _resume_secret(self, room: str, peer_id: str, token: str | None) -> str:
        """HMAC of room, peer id and (token mode) the token: a new token, a new secret."""
        fields = [room, peer_id] if token is None else [room, peer_id, token]
        data = json.dumps(fields, separators=(",", ":")).encode()
        digest = hmac.new(self._resume_key, data, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _name(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_NAME_LENGTH
