"""Which peers to link to: all of a small room, a few random ones of a large room.

A room of up to ``full_mesh_max`` peers is a full mesh: every write reaches every
peer in one hop, as it always did. Past that, each peer keeps between
``degree_low`` and ``degree_high`` links (gossipsub's D_lo and D_hi):

* a newcomer dials ``degree`` random peers; a peer whose links fall under
  ``degree_low`` (neighbours left, links died) dials more, back up to ``degree``;
* a dialed peer accepts (up to twice ``degree_high``, a hard cap) and, past
  ``degree_high``, drops the links to the neighbours that reported the most links
  of their own: those can spare one, and a newcomer's few links are kept (a room
  outgrowing its full mesh thins out this way, without shutting newcomers out);
* every ``rewire_interval`` a peer swaps one link for a link to a random peer:
  random links keep the graph connected with high probability, and the swaps
  mend the rare split (a group linked only among itself) within a few intervals.

Random links with a minimum degree of 4 make a graph of small diameter (about
log N / log 6 hops); writes cross it by the engine's relay: each peer forwards
what it applied to its other links, once. ``Topology`` is plain state, no I/O:
the driver tells it what the transport did and asks whom to dial or drop.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["MeshConfig", "Topology"]


@dataclass(frozen=True)
class MeshConfig:
    """Room sizes and link counts of the mesh (README, "Large rooms")."""

    full_mesh_max: int = 16
    """Largest room that is a full mesh (this peer counted). Measured
    (``benchmarks/large_room.py``, 20 ms links): at 16 peers both meshes deliver a
    write in the same time at about the same cost; at 32 the full mesh saves one hop
    (20 ms) for twice the bytes per peer and 31 connections per peer."""
    degree: int = 6
    """Links a peer of a large room dials to (gossipsub's D)."""
    degree_low: int = 4
    """Fewer links than this and a peer dials more (back up to ``degree``)."""
    degree_high: int = 12
    """More links than this and a peer drops some (a link is accepted up to twice this)."""
    dial_timeout: float = 15.0
    """A dial that has not opened a link by then is given up (another is tried)."""
    refused_cooldown: float = 5.0
    """A peer that refused a link is not dialed again for this long."""
    rewire_interval: float = 30.0
    """About how often (jittered) a peer of a large room swaps a link for a random one."""

    def __post_init__(self) -> None:
        if self.full_mesh_max < 2:
            raise ValueError("full_mesh_max must be at least 2")
        if not 1 <= self.degree_low <= self.degree <= self.degree_high:
            raise ValueError("need 1 <= degree_low <= degree <= degree_high")
        if self.dial_timeout <= 0 or self.rewire_interval <= 0 or self.refused_cooldown < 0:
            raise ValueError("dial_timeout and rewire_interval must be positive")


class Topology:
    """One peer's view of its links, and the choice of which to open or close."""

    def __init__(self, config: MeshConfig | None = None, rng: random.Random | None = None) -> None:
        self.config = config or MeshConfig()
        self.linked: set[str] = set()
        self._dialing: dict[str, float] = {}  # peer -> when the dial is given up
        self._refused: dict[str, float] = {}  # peer -> until when it is not dialed
        self._rng = rng or random.Random()
        # When the next rewiring is due; None while the room is a full mesh (it is set
        # the first time this peer sees the room bounded, and cleared if it shrinks back).
        self._rewire_at: float | None = None
        self._swapping: str | None = None  # a rewiring link: once up, another goes

    def bounded(self, room_size: int) -> bool:
        """Whether a room of ``room_size`` peers (this one counted) is a bounded mesh."""
        return room_size > self.config.full_mesh_max

    @property
    def degree(self) -> int:
        """Links open or being opened."""
        return len(self.linked) + len(self._dialing)

    # -- what the transport did ---------------------------------------------------------

    def link_up(self, peer: str) -> None:
        self.linked.add(peer)
        self._dialing.pop(peer, None)
        self._refused.pop(peer, None)

    def link_down(self, peer: str) -> None:
        self.linked.discard(peer)
        self._dialing.pop(peer, None)
        if peer == self._swapping:
            self._swapping = None

    def refused(self, peer: str, now: float) -> None:
        """``peer`` would not link (at its hard cap): try others for a while."""
        self._dialing.pop(peer, None)
        self._refused[peer] = now + self.config.refused_cooldown
        if peer == self._swapping:
            self._swapping = None

    # -- choices --------------------------------------------------------------------------

    def choose(self, present: Iterable[str], now: float) -> list[str]:
        """Whom to dial among the ``present`` peers (all others in the room), joining or
        rejoining: every one not linked yet in a small room; in a large one, random
        ones up to ``degree`` links."""
        present = set(present)
        peers = sorted(p for p in present if p not in self.linked and p not in self._dialing)
        if not self.bounded(len(present) + 1):
            chosen = peers
        else:
            self._enter_bounded(now)
            wanted = max(0, min(self.config.degree - self.degree, len(peers)))
            chosen = self._rng.sample(peers, wanted)
        self._dial(chosen, now)
        return chosen

    def accepts(self, peer: str, room_size: int) -> bool:
        """Whether to accept a link ``peer`` dials: always in a small room; in a large
        one up to twice ``degree_high`` (``to_drop`` then trims back)."""
        if peer in self.linked or peer in self._dialing or not self.bounded(room_size):
            return True
        return len(self.linked) < 2 * self.config.degree_high

    def to_dial(self, present: set[str], now: float) -> list[str]:
        """Peers to dial now: back up to ``degree`` after falling under ``degree_low``;
        one random peer when a rewiring is due; every present peer it lacks once a
        room shrinks back to a full mesh. (Usually empty.)"""
        config = self.config
        for peer, until in list(self._dialing.items()):
            if until <= now:
                del self._dialing[peer]
                if peer == self._swapping:
                    self._swapping = None
        for peer, until in list(self._refused.items()):  # (in a full mesh too: a refusal
            if until <= now:  # left from a bounded room must not stay a deadline past)
                del self._refused[peer]
        if not self.bounded(len(present) + 1):
            if self._rewire_at is None:
                return []  # a full mesh links itself: the newcomer dials everyone
            self._rewire_at = None
            wanted = [p for p in present if p not in self.linked and p not in self._dialing]
            self._dial(wanted, now)
            return wanted
        self._enter_bounded(now)
        missing = config.degree - self.degree if self.degree < config.degree_low else 0
        rewire = self._rewire_at is not None and now >= self._rewire_at
        if rewire:
            self._rewire_at = now + config.rewire_interval * self._rng.uniform(0.5, 1.5)
        if not missing and not (rewire and self._swapping is None):
            return []
        candidates = [
            p
            for p in present
            if p not in self.linked and p not in self._dialing and p not in self._refused
        ]
        wanted = self._rng.sample(candidates, min(max(missing, 1), len(candidates)))
        if not missing and wanted:
            self._swapping = wanted[0]
        self._dial(wanted, now)
        return wanted

    def to_drop(self, room_size: int, degrees: Mapping[str, int]) -> list[str]:
        """Links to close: past ``degree_high``, or one for a rewiring link that opened.
        ``degrees``: how many links each neighbour reported; the best-linked go first,
        and a swap only drops a neighbour that stays above ``degree_low``."""
        if not self.bounded(room_size):
            return []
        config = self.config
        excess = len(self.linked) - config.degree_high
        swap = self._swapping
        swapped = swap is not None and swap in self.linked
        if swapped:
            self._swapping = None
        if excess <= 0 and not (swapped and len(self.linked) > config.degree_low):
            return []
        ranked = sorted(
            (p for p in self.linked if p != swap),
            key=lambda p: (-degrees.get(p, 0), self._rng.random()),
        )
        if excess > 0:
            dropped = ranked[:excess]
        else:
            dropped = [p for p in ranked[:1] if degrees.get(p, 0) > config.degree_low]
        for peer in dropped:
            self.linked.discard(peer)
        return dropped

    def next_deadline(self) -> float | None:
        """When a dial times out, a rewiring is due, or a refusal ends while links are
        missing (None: nothing timed)."""
        times = list(self._dialing.values())
        if self._rewire_at is not None:
            times.append(self._rewire_at)
        if self.degree < self.config.degree_low:
            times.extend(self._refused.values())
        return min(times, default=None)

    def needs_attention(self, room_size: int, now: float) -> bool:
        """Whether ``to_dial``/``to_drop`` may have work (cheap: no look at presence)."""
        config = self.config
        if self.bounded(room_size):
            if self._rewire_at is None or now >= self._rewire_at or self._swapping in self.linked:
                return True
            if self.degree < config.degree_low or len(self.linked) > config.degree_high:
                return True
        elif self._rewire_at is not None:
            return True
        return any(until <= now for until in self._dialing.values()) or any(
            until <= now for until in self._refused.values()
        )

    # -- internals ------------------------------------------------------------------------

    def _enter_bounded(self, now: float) -> None:
        if self._rewire_at is None:
            self._rewire_at = now + self.config.rewire_interval * self._rng.uniform(0.5, 1.5)

    def _dial(self, peers: list[str], now: float) -> None:
        for peer in peers:
            self._dialing[peer] = now + self.config.dial_timeout
