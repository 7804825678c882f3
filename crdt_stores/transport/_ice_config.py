"""ICE configuration of the mesh: the STUN/TURN servers, and the host addresses ICE may offer."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from aiortc import RTCIceServer

__all__ = ["ICE_ADDRESSES_ENV", "host_addresses", "parse_ice_servers"]

ICE_ADDRESSES_ENV = "CRDT_STORES_ICE_ADDRESSES"


def parse_ice_servers(servers: Sequence[Any] | None) -> list[RTCIceServer]:
    """ICE servers from URLs, ``{"urls", "username", "credential"}`` dicts or ``RTCIceServer``."""
    out: list[RTCIceServer] = []
    for server in servers or ():
        if isinstance(server, RTCIceServer):
            out.append(server)
        elif isinstance(server, str):
            out.append(RTCIceServer(urls=server))
        elif isinstance(server, dict) and "urls" in server:
            out.append(
                RTCIceServer(
                    urls=server["urls"],
                    username=server.get("username"),
                    credential=server.get("credential"),
                )
            )
        else:
            raise TypeError(f"cannot use {server!r} as an ICE server")
    return out


def host_addresses(given: Sequence[str] | None) -> tuple[str, ...] | None:
    """The host addresses ICE may offer: ``given``, else the comma-separated list in
    ``CRDT_STORES_ICE_ADDRESSES``, else None (every address, as aioice does)."""
    if given is None and os.environ.get(ICE_ADDRESSES_ENV):
        given = [a.strip() for a in os.environ[ICE_ADDRESSES_ENV].split(",") if a.strip()]
    return tuple(given) if given is not None else None
