"""Join tokens: HS256 JWTs naming a room, a peer id and an expiry."""

from __future__ import annotations

import time

import jwt

__all__ = ["TokenError", "mint_token", "verify_token"]

LEEWAY_SECONDS = 5  # clock skew tolerated on the expiry


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


def verify_token(secret: str, token: object, room: str, peer_id: str | None) -> str:
    """Check ``token`` for a join of ``room``; returns the peer id it was minted for."""
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
    except jwt.InvalidTokenError as exc:
        raise TokenError("auth-invalid", f"the token is not valid: {exc}") from None
    if claims["room"] != room:
        raise TokenError("auth-room", f"the token is for room {claims['room']!r}, not {room!r}")
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject:
        raise TokenError("auth-invalid", "the token's peer id is not a string")
    if peer_id is not None and peer_id != subject:
        raise TokenError("auth-peer", f"the token is for peer id {subject!r}, not {peer_id!r}")
    return subject
