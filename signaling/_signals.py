"""Routing signals between the peers of a room: an answer is paid by a reply credit, any
other signal by the sender's bucket for that recipient and the recipient's own bucket."""

from __future__ import annotations

from typing import Any

from ._budgets import Bucket, spend
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
        if recipient is None or recipient is client:
            # An answer to a peer that just left is a race, not a fault.
            recent = credited or self._reservation(client.room, target) is not None
            await self._error(
                client, "no-such-peer", f"no peer {target!r} in this room", violation=not recent
            )
            return
        if credited:
            self.stats["replies_credited"] += 1
        else:
            pair = client.pair_buckets.get(target)
            # A first contact (a newcomer's offer) is never starved by others' floods of
            # the recipient: it skips the receive bucket. Another costs a new peer id.
            first_contact = pair is None
            if pair is None:
                self._prune_peer_map(client, client.pair_buckets)
                pair = client.pair_buckets[target] = Bucket(
                    self.limits.signals_per_peer_per_second, self.limits.signals_per_peer_burst
                )
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
            if client.peer_id not in recipient.credits:
                self._prune_peer_map(recipient, recipient.credits)
            owed = recipient.credits.get(client.peer_id, 0) + 1
            recipient.credits[client.peer_id] = min(owed, self.limits.max_reply_credits)
        self.stats["signals"] += 1
        self._send(recipient, {"type": "signal", "from": client.peer_id, "data": data})

    def _prune_peer_map(self, client: Client, mapping: dict[str, Any]) -> None:
        """Keep a per-peer map to about a room's size: forget peers no longer there."""
        if len(mapping) < 2 * self.limits.max_peers_per_room:
            return
        members = self.rooms.get(client.room, {})
        for peer in [p for p in mapping if p not in members]:
            del mapping[peer]
