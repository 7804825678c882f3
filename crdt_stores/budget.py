"""A byte budget shared by several holders (the links of a meeting, its stores)."""

from __future__ import annotations

__all__ = ["Budget"]


class Budget:
    """Bytes that may be held at once; ``take`` refuses what would exceed the limit."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, amount: int) -> bool:
        if self.used + amount > self.limit:
            return False
        self.used += amount
        return True

    def give(self, amount: int) -> None:
        self.used = max(0, self.used - amount)

    def __repr__(self) -> str:
        return f"<Budget {self.used}/{self.limit}>"
