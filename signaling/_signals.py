"""Routing signals between the peers of a room: an answer is paid by a reply credit, any
other signal by the sender's bucket for that recipient and the recipient's own bucket.
A recipient on another instance (Redis) is reached through the presence: the sender's
instance charges the sender, the recipient's instance the recipient."""

from __future__ import annotations

import asyncio
from typing import Any

from ._budgets import Bucket, spend
from ._presence import PresenceError
from ._rooms import Rooms
from ._sockets import Client

__all__ = ["Signals"]


class Signals(Rooms):
    """The signal-routing layer of ``SignalingServer``."""

    def _credited(self, client: Client, message: dict[str, Any] | None) -> bool:
        """Whether this is an answer: a signal to a peer that signalled this one first."""
        if message is None or message.get("type") != "signal":
            return False
        target = message.get("to")
        return isinstance(target, str) and client.credits.get(target, 0) > 0

    async def _signal(self, client: Client, message: dict[str, Any], credited: bool) -> None:
        """Route one signal: answers are free, anything else pays the pair and the recipient."""
        target = message.get("to")
        data = message.get("data")
        if not isinstance(target, str) or not isinstance(data, dict):
            await self._error(
                client, "bad-request", "signal needs 'to' (a peer id) and 'data' (an object)"
            )
            return
        if credited:
            spend(client.credits, target)
        recipient = self.rooms.get(client.room, {}).get(target)
        if recipient is None and self._presence.shared:
            await self._signal_elsewhere(client, target, data, credited)
            return
        if recipient is None or recipient is client:
            # An answer to a peer that just left is a race, not a fault.
            recent = credited or self._presence.reserved(client.room, target)
            await self._error(
                client, "no-such-peer", f"no peer {target!r} in this room", violation=not recent
            )
            return
        if credited:
            self.stats["replies_credited"] += 1
        else:
            # A first contact (a newcomer's offer) is never starved by others' floods of
            # the recipient: it skips the receive bucket. Another costs a new peer id.
            pair, first_contact = self._pair_bucket(client, target)
            inbound = recipient.inbound
            if not pair.ready():
                self.stats["signals_rate_limited"] += 1
                self.stats["signals_rate_limited_pair"] += 1
                await self._error(
                    client, "rate-limited", f"too many signals to {target!r}; slow down"
                )
                return
            if inbound is not None and not inbound.ready() and not first_contact:
                self.stats["signals_rate_limited"] += 1
                self.stats["signals_rate_limited_recipient"] += 1
                await self._error(
                    client, "rate-limited", f"{target!r} is receiving too many signals; retry later"
                )
                return
            pair.take()
            if inbound is not None:
                inbound.take()
            self._owe_reply(recipient, client.peer_id)
        self.stats["signals"] += 1
        self._send(recipient, {"type": "signal", "from": client.peer_id, "data": data})

    async def _signal_elsewhere(
        self, client: Client, target: str, data: dict[str, Any], credited: bool
    ) -> None:
        """A signal for a peer on another instance: the pair bucket is paid here, the
        recipient's bucket there (which sends back an error if it is empty)."""
        first_contact = False
        if not credited:
            pair, first_contact = self._pair_bucket(client, target)
            if not pair.take():
                self.stats["signals_rate_limited"] += 1
                self.stats["signals_rate_limited_pair"] += 1
                await self._error(
                    client, "rate-limited", f"too many signals to {target!r}; slow down"
                )
                return
        try:
            route = await self._presence.route(
                client.room, client.peer_id, target, data, first_contact, credited
            )
        except PresenceError:
            self.stats["presence_errors"] += 1
            await self._error(
                client, "unavailable", "signals cannot be routed now; retry", violation=False
            )
            return
        if route == "sent":
            self.stats["signals_routed"] += 1
            if credited:
                self.stats["replies_credited"] += 1
            return
        # Its instance just went, or it just left: a race, not a fault.
        recent = credited or route in ("gone", "reserved")
        await self._error(
            client, "no-such-peer", f"no peer {target!r} in this room", violation=not recent
        )

    def _routed(
        self,
        room: str,
        sender: str,
        target: str,
        data: dict[str, Any],
        first_contact: bool,
        credited: bool,
        origin: str,
    ) -> None:
        """A signal from a peer on another instance for a peer here: the recipient's side
        of the budgets (its receive bucket, the reply credit it earns), then delivery."""
        recipient = self.rooms.get(room, {}).get(target)
        if recipient is None or recipient.closing or sender == target:
            return  # it left meanwhile: the sender hears peer-left
        if not credited:
            inbound = recipient.inbound
            if inbound is not None and not inbound.ready() and not first_contact:
                self.stats["signals_rate_limited"] += 1
                self.stats["signals_rate_limited_recipient"] += 1
                self._presence.bounce(
                    origin,
                    room,
                    sender,
                    "rate-limited",
                    f"{target!r} is receiving too many signals; retry later",
                )
                return
            if inbound is not None:
                inbound.take()
            self._owe_reply(recipient, sender)
        self.stats["signals"] += 1
        self._send(recipient, {"type": "signal", "from": sender, "data": data})

    def _bounced(self, room: str, peer: str, code: str, reason: str) -> None:
        """Another instance refused a signal of ``peer`` (here): its error, as if local."""
        client = self.rooms.get(room, {}).get(peer)
        if client is None or client.closing:
            return
        task = asyncio.create_task(self._report(client, code, reason))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _report(self, client: Client, code: str, reason: str) -> None:
        await self._error(client, code, reason)

    def _pair_bucket(self, client: Client, target: str) -> tuple[Bucket, bool]:
        """``client``'s bucket for signals to ``target``, and whether it is new (a first
        contact)."""
        pair = client.pair_buckets.get(target)
        if pair is not None:
            return pair, False
        self._prune_peer_map(client, client.pair_buckets)
        pair = client.pair_buckets[target] = Bucket(
            self.limits.signals_per_peer_per_second, self.limits.signals_per_peer_burst
        )
        return pair, True

    def _owe_reply(self, recipient: Client, sender: str) -> None:
        """``recipient`` may answer ``sender`` once more outside its buckets."""
        if sender not in recipient.credits:
            self._prune_peer_map(recipient, recipient.credits)
        owed = recipient.credits.get(sender, 0) + 1
        recipient.credits[sender] = min(owed, self.limits.max_reply_credits)

    def _prune_peer_map(self, client: Client, mapping: dict[str, Any]) -> None:
        """Keep a per-peer map to about a room's size: forget peers no longer there."""
        if len(mapping) < 2 * self.limits.max_peers_per_room:
            return
        members = self.rooms.get(client.room, {})
        for peer in [p for p in mapping if p not in members]:
            del mapping[peer]
