"""Exceptions the package raises besides the built-in ``TypeError``/``ValueError``."""

from __future__ import annotations

__all__ = ["AuthError", "JoinError"]


class JoinError(Exception):
    """Joining a room failed: the signaling server refused the join or could not be reached.

    ``reason`` names what happened (``room-full``, ``peer-id-taken``, ``auth-expired``,
    ``unreachable``, ``bad-url``...); ``code`` is the WebSocket close code the server
    closed with (4001 for every refused token, 4003 room full, 4009 id taken...), or
    ``None`` when there was none; ``str(exc)`` (also ``message``) explains it in words.
    """

    def __init__(self, message: str, *, reason: str = "refused", code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.code = code


class AuthError(JoinError):
    """The join token was missing, malformed, forged, expired, or for another room or peer."""
