"""The crdt-stores signaling service: introduces the peers of a room, holds no data.

Run it with ``python -m signaling --host 127.0.0.1 --port 8787 [--secret S] [--redis URL]``
or embed it: ``async with SignalingServer("127.0.0.1", 0) as server: ... server.url``.
With a Redis URL any number of instances serve the same rooms.
"""

from .server import CLOSE_CODES, STAT_NAMES, Limits, PresenceError, SignalingServer
from .tokens import TokenClaims, TokenError, mint_token, verify_token, verify_token_claims

__all__ = [
    "CLOSE_CODES",
    "STAT_NAMES",
    "Limits",
    "PresenceError",
    "SignalingServer",
    "TokenClaims",
    "TokenError",
    "mint_token",
    "verify_token",
    "verify_token_claims",
]
