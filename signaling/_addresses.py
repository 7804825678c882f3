"""Client addresses as the per-address limits count them: one spelling per IP, IPv6 per
/64, a trusted proxy's ``X-Forwarded-For``; and the per-address counters."""

from __future__ import annotations

import ipaddress

from websockets.asyncio.server import ServerConnection

__all__ = ["canonical_ip", "client_address", "decrement", "limit_key"]


def client_address(ws: ServerConnection, trusted_proxies: frozenset[str]) -> str:
    """The address limits count: the TCP peer's, or a trusted proxy's X-Forwarded-For."""
    remote = ws.remote_address
    address = canonical_ip(str(remote[0])) if remote else "unknown"
    if address in trusted_proxies and ws.request is not None:
        forwarded = ws.request.headers.get_all("X-Forwarded-For")
        if forwarded:
            last = forwarded[-1].split(",")[-1].strip()
            if last:
                address = canonical_ip(last)
    return limit_key(address)


def decrement(counts: dict[str, int], key: str) -> None:
    """One fewer for ``key``; a count that reaches zero goes (the map holds only live ones)."""
    left = counts.get(key, 0) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)


def canonical_ip(text: str, *, strict: bool = False) -> str:
    """One spelling per IP address (IPv4-mapped IPv6 as IPv4); not an IP: kept, cut short."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        if strict:
            raise ValueError(f"not an IP address: {text!r}") from None
        return text.strip()[:64]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def limit_key(address: str) -> str:
    """IPv6 clients are counted per /64 (one host usually holds a whole /64)."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return address
