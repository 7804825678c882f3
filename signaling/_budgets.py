"""Per-connection budgets: token buckets for messages and signals, and the reply credits
that let an answer through without paying them."""

from __future__ import annotations

import time

__all__ = ["Bucket", "spend"]


class Bucket:
    """Token bucket: ``rate`` messages per second, bursts of ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def ready(self) -> bool:
        """Whether a token is there, without taking it."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return self.tokens >= 1

    def take(self) -> bool:
        if not self.ready():
            return False
        self.tokens -= 1
        return True


def spend(credits: dict[str, int], peer: str) -> None:
    """Use one reply credit towards ``peer``; the last one takes its entry with it."""
    left = credits.get(peer, 0) - 1
    if left > 0:
        credits[peer] = left
    else:
        credits.pop(peer, None)
