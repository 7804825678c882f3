"""Join tokens: HS256 JWTs naming a room, a peer id and an expiry."""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

__all__ = [
    "DEFAULT_MAX_TTL",
    "MAX_NAME_LENGTH",
    "TokenClaims",
    "TokenError",
    "mint_token",
    "verify_token",
    "verify_token_claims",
]

LEEWAY_SECONDS = 5  # clock skew tolerated on the expiry
DEFAULT_MAX_TTL = 24 * 3600.0
"""How far ahead a token's expiry may be (``--max-ttl``): a leaked token stops working."""
MAX_NAME_LENGTH = 256
"""Longest room name and peer id (characters), in tokens as in join messages."""


class TokenError(Exception):
    """A token that does not allow this join; ``reason`` says why, ``code`` names it."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def mint_token(secret: str, room: str, peer_id: str, ttl: float = 3600.0) -> str:
    """A token that lets ``peer_id`` join ``room`` for ``ttl`` seconds."""
    if not secret:
        raise ValueError("a secret is needed to mint tokens")
    if ttl <= 0:
        raise ValueError("ttl must be positive")
    now = int(time.time())
    claims = {"room": room, "sub": peer_id, "iat": now, "exp": now + int(ttl)}
    return jwt.encode(claims, secret, algorithm="HS256")


@dataclass(frozen=True)
class TokenClaims:
    """What a verified token says: whom it admits, where, and when it was issued."""

    peer_id: str
    room: str
    expires_at: float
    issued_at: float | None
    """The ``iat`` claim (seconds since the epoch); ``None`` when the token has none."""


def verify_token(
    secret: str,
    token: object,
    room: str,
    peer_id: str | None,
    max_ttl: float = DEFAULT_MAX_TTL,
) -> str:
    """Check ``token`` for a join of ``room``; returns the peer id it was minted for.

    See ``verify_token_claims`` for the checks; this keeps the older, shorter answer.
    """
    return verify_token_claims(secret, token, room, peer_id, max_ttl).peer_id


def verify_token_claims(
    secret: str,
    token: object,
    room: str,
    peer_id: str | None,
    max_ttl: float = DEFAULT_MAX_TTL,
) -> TokenClaims:
    """Check ``token`` for a join of ``room``; returns its claims.

    PyJWT checks the signature, the algorithm and the expiry; this adds what it lets
    through: an expiry or issue time that is not a number, an expiry more than
    ``max_ttl`` ahead, and names past the signaling limits.
    """
    if not token:
        raise TokenError("auth-required", "this server requires a join token")
    if not isinstance(token, str):
        raise TokenError("auth-invalid", "the token must be a string")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "room", "sub"]},
        )
    except jwt.ExpiredSignatureError:
        raise TokenError("auth-expired", "the token has expired") from None
    except jwt.InvalidSignatureError:
        raise TokenError(
            "auth-invalid", "the token signature is invalid (forged or another secret)"
        ) from None
    except jwt.MissingRequiredClaimError as exc:
        raise TokenError("auth-invalid", f"the token lacks the {exc.claim!r} claim") from None
    except jwt.DecodeError:
        raise TokenError(
            "auth-invalid", "malformed token (not a JWT: three base64url parts)"
        ) from None
    except jwt.InvalidTokenError as exc:
        raise TokenError("auth-invalid", f"the token is not valid: {exc}") from None
    expiry = claims["exp"]
    if type(expiry) not in (int, float):  # PyJWT takes "1796080016" (a string) too
        raise TokenError("auth-invalid", "the token's expiry (exp) must be a number")
    if expiry > time.time() + max_ttl + LEEWAY_SECONDS:
        raise TokenError(
            "auth-invalid",
            f"the token expires more than {max_ttl:.0f} s ahead (the server's limit)",
        )
    token_room = claims["room"]
    if not isinstance(token_room, str) or not 0 < len(token_room) <= MAX_NAME_LENGTH:
        raise TokenError("auth-invalid", "the token's room is not a name")
    if token_room != room:
        raise TokenError("auth-room", f"the token is for room {token_room[:64]!r}, not {room!r}")
    subject = claims["sub"]
    if not isinstance(subject, str) or not 0 < len(subject) <= MAX_NAME_LENGTH:
        raise TokenError(
            "auth-invalid",
            f"the token's peer id is not a name of 1 to {MAX_NAME_LENGTH} characters",
        )
    if peer_id is not None and peer_id != subject:
        raise TokenError("auth-peer", f"the token is for peer id {subject!r}, not {peer_id!r}")
    issued = claims.get("iat")
    if issued is not None and type(issued) not in (int, float):  # PyJWT takes "123" too
        raise TokenError("auth-invalid", "the token's issue time (iat) must be a number")
    return TokenClaims(
        subject, token_room, float(expiry), None if issued is None else float(issued)
    )
