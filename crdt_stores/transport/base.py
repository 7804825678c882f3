"""What a ``Meeting`` needs from a network: links to peers that carry frames."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Protocol

__all__ = ["Transport", "TransportHandler"]


class TransportHandler(Protocol):
    """Callbacks a transport makes, always from the event loop's thread."""

    def link_up(self, peer: str) -> None:
        """A reliable, ordered channel to ``peer`` is open."""

    def link_down(self, peer: str) -> None:
        """The channel to ``peer`` closed (or failed)."""

    def frame(self, peer: str, data: bytes) -> None:
        """One frame arrived from ``peer``."""

    def signal_refused(self, peer: str, reason: str) -> None:
        """A signal claiming to come from ``peer`` was refused (forged, replayed, a flood)."""

    def choose_links(self, present: list[str]) -> list[str]:
        """Joining a room where ``present`` are: which of them to dial (``mesh``)."""
        return present

    def accepts_link(self, peer: str) -> bool:
        """Whether to accept a link ``peer`` dials (a large room bounds each peer's links)."""
        return True

    def retries_link(self, peer: str) -> bool:
        """Whether to reconnect a link to ``peer`` that failed (a large room's mesh
        picks its own replacements instead)."""
        return True

    def link_refused(self, peer: str) -> None:
        """``peer`` refused a link this peer dialed (it has all the links it takes)."""


class Transport(ABC):
    """A mesh of links to the other peers of one room."""

    peer_id: str
    stats: dict[str, int]
    """Counters of the transport (signals refused, offers answered...)."""

    @abstractmethod
    async def start(self, handler: TransportHandler) -> None:
        """Join the room; ``peer_id`` is set when this returns."""

    @abstractmethod
    def send(self, peer: str, data: bytes) -> None:
        """Queue one frame for ``peer`` (dropped when there is no open link)."""

    @abstractmethod
    def close_link(self, peer: str) -> None:
        """Tear down the link to ``peer`` (for example after a missed heartbeat)."""

    @abstractmethod
    async def close(self) -> None:
        """Leave: deliver what is queued, close every link, release resources."""

    def present_peers(self) -> set[str]:
        """Other peers in the room as far as the transport knows (signaling), linked or not."""
        return set()

    def room_size(self) -> int:
        """Peers in the room, this one counted (cheaper than ``present_peers``)."""
        return len(self.present_peers()) + 1

    def dial(self, peer: str) -> None:  # noqa: B027 - optional hook
        """Open a link to ``peer`` (a large room's mesh repairing itself)."""

    def drop_link(self, peer: str) -> None:
        """Close the link to ``peer`` for good (it is not reopened, unlike ``close_link``)."""
        self.close_link(peer)

    def last_heard(self, peer: str) -> float | None:
        """When (``time.monotonic()``) the network last brought anything from ``peer``,
        frames or not: a sign of life below the frames, or None if the transport cannot tell."""
        return None

    def buffered_to(self, peer: str) -> int:
        """Bytes accepted by ``send`` for ``peer`` and not yet handed to the network."""
        return 0

    def buffered_amount(self) -> int:
        """Bytes accepted by ``send`` but not yet handed to the network."""
        return 0

    async def drain(self, low_water: int) -> None:  # noqa: B027 - optional hook
        """Wait until ``buffered_amount()`` is at most ``low_water``."""
