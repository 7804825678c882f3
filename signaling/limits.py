"""What the signaling server allows one connection, address and peer, and how it reports
refusing: the ``Limits``, the close code of each refusal and the names of its counters."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CLOSE_CODES", "STAT_NAMES", "Limits"]

CLOSE_CODES = {
    "bad-request": 4000,
    "auth-required": 4001,
    "auth-invalid": 4001,
    "auth-expired": 4001,
    "auth-room": 4001,
    "auth-peer": 4001,
    "room-full": 4003,
    "rate-limited": 4008,
    "too-many-connections": 4008,
    "peer-id-taken": 4009,
    "join-timeout": 4010,
    "idle": 4010,
    "presence-lost": 4011,  # Redis lost this peer's presence (an instance too slow): rejoin
    "unavailable": 4013,  # Redis cannot be reached: try another instance
}

STAT_NAMES = (
    "connections",  # sockets accepted (the WebSocket handshake done)
    "joins",  # welcomes sent, resumed sessions included
    "errors",  # error messages sent
    "signals",  # signals delivered
    "resumed",  # joins let in by their resume secret
    "taken_over",  # live sockets replaced by a resumed session of the same peer
    "refused_taken",  # joins for a live peer id without its resume secret
    "refused_reserved",  # joins for a reserved (recently departed) id without its secret
    "refused_restart_grace",  # token joins issued before the start, without the secret
    "refused_per_address",  # sockets over max_connections_per_address
    "refused_joined_per_address",  # joins over max_joined_per_address
    "refused_room_full",
    "refused_auth",
    "refused_bad_request",  # bad joins, and sockets closed for too many bad messages
    "join_timeouts",
    "pending_evicted",  # not-yet-joined sockets closed for max_pending_joins
    "idle_closed",
    "rate_limited",  # messages over the per-connection bucket
    "signals_rate_limited",  # signals dropped: the two below together
    "signals_rate_limited_recipient",  # ... the recipient's receive bucket was empty
    "signals_rate_limited_pair",  # ... the (sender, recipient) bucket was empty
    "replies_credited",  # signals sent as answers, outside the sender's buckets
    "closed_violations",  # sockets closed for too many errors
    "send_queue_full",  # sockets closed for not reading their messages
    "reservations_evicted",  # reservations dropped early by the reservation caps
    "signals_routed",  # signals sent through Redis to a peer on another instance
    "presence_lost",  # joined sockets closed because Redis no longer held their presence
    "presence_errors",  # Redis operations that failed (joins refused as "unavailable"...)
    "bus_ignored",  # malformed or unexpected messages from Redis pub/sub, ignored
)


@dataclass(frozen=True)
class Limits:
    """What one connection, one client address and one peer may do."""

    max_message_bytes: int = 64 * 1024
    """The largest message a client may send (the server's own messages may be larger: a
    welcome lists the room, see ``crdt_stores.signaling_client.MAX_MESSAGE_BYTES``)."""
    max_peers_per_room: int = 1000
    """Peers in one room, over all instances sharing it: rooms past ``full_mesh_max`` use a
    bounded-degree mesh, so a room of 1,000 costs each peer a few links, not 999."""
    messages_per_second: float = 20.0
    burst: int = 60
    max_violations: int = 20  # rate-limit or protocol errors before the socket is closed
    join_timeout: float = 10.0
    max_pending_sends: int = 256
    reserve_seconds: float = 30.0
    """A departed peer's id is kept this long for its resume secret; in token mode,
    tokens issued before the server started need the secret this long after the start."""
    idle_timeout: float = 30.0
    """A joined socket that sends no message for this long is closed (4010 "idle")."""
    signals_received_per_second: float = 20.0
    signals_received_burst: int = 40
    signals_per_peer_per_second: float = 1.0
    signals_per_peer_burst: int = 8
    max_reply_credits: int = 16
    """Answers a peer may owe another: each signal received earns one, up to this."""
    max_connections_per_address: int = 128  # open sockets, joined or not
    max_joined_per_address: int = 32  # joined peer ids, all rooms together
    max_pending_joins: int = 1024  # not-yet-joined sockets in all; the oldest goes first
    max_reserved_per_address: int = 128  # past it an address's oldest reservation goes
    max_reserved: int = 100_000  # reservations in all; past it the oldest goes
    presence_ttl: float = 5.0
    """With Redis: a peer's presence expires this long after its instance last refreshed
    it, so the peers of an instance that dies leave the room within ``presence_ttl`` +
    ``presence_refresh`` seconds (the other instances sweep expired peers that often)."""
    presence_refresh: float = 1.0
    """With Redis: how often each instance refreshes its peers' presence and sweeps the
    expired peers of its rooms (must be well under ``presence_ttl``)."""
