"""Exceptions the package raises besides the built-in ``TypeError``/``ValueError``."""

from __future__ import annotations

__all__ = ["AuthError", "JoinError"]


class JoinError(Exception):
    """Joining a room failed: the signaling server refused the join or could not be reached.

    ``code`` is the server's error code (``room-full``, ``peer-id-taken``...) or
    ``unreachable``; ``reason`` is the human-readable explanation.
    """

    def __init__(self, reason: str, *, code: str = "refused") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class AuthError(JoinError):
    """The join token was missing, forged, expired, or minted for another room or peer."""
