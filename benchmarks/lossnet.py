"""Datagram loss injected in-process: aioice's send path drops a seeded fraction.

Every datagram a peer connection sends (STUN checks and consent, DTLS, SCTP)
leaves through ``aioice.ice.StunProtocol.send_data`` or ``send_stun``; wrapping
them drops datagrams before they reach the socket, as a lossy network would,
with no emulator and no root. Shared by the tests' fixture and
``benchmarks/lossy.py``. The rate can change while installed (0 while a mesh
forms, then the loss under test).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aioice.ice import StunProtocol

__all__ = ["LossyNetwork", "lossy"]


class LossyNetwork:
    """Drops each datagram sent through aioice with probability ``rate`` (seeded)."""

    def __init__(self, rate: float = 0.0, seed: int = 0) -> None:
        if not 0.0 <= rate < 1.0:
            raise ValueError("rate must be in [0, 1)")
        self.rate = rate
        self.random = random.Random(seed)
        self.sent = 0
        self.dropped = 0
        self._saved: tuple[Any, Any] | None = None

    def _drop(self) -> bool:
        self.sent += 1
        if self.rate and self.random.random() < self.rate:
            self.dropped += 1
            return True
        return False

    def install(self) -> None:
        if self._saved is not None:
            return
        send_data, send_stun = StunProtocol.send_data, StunProtocol.send_stun
        self._saved = (send_data, send_stun)
        network = self

        async def lossy_send_data(protocol: StunProtocol, data: bytes, addr: Any) -> None:
            if not network._drop():
                await send_data(protocol, data, addr)

        def lossy_send_stun(protocol: StunProtocol, message: Any, addr: Any) -> None:
            if not network._drop():
                send_stun(protocol, message, addr)

        StunProtocol.send_data = lossy_send_data  # type: ignore[method-assign]
        StunProtocol.send_stun = lossy_send_stun  # type: ignore[method-assign]

    def uninstall(self) -> None:
        if self._saved is None:
            return
        StunProtocol.send_data, StunProtocol.send_stun = self._saved  # type: ignore[method-assign]
        self._saved = None


@contextmanager
def lossy(rate: float = 0.0, seed: int = 0) -> Iterator[LossyNetwork]:
    """``with lossy(0.2, seed=1) as network:`` every aioice datagram may be dropped."""
    network = LossyNetwork(rate, seed)
    network.install()
    try:
        yield network
    finally:
        network.uninstall()
