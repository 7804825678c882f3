"""The in-process network: ``from crdt_stores.memory import MemoryNetwork``."""

from .transport.memory import Faults, MemoryNetwork

__all__ = ["Faults", "MemoryNetwork"]
