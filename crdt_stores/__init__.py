"""crdt-stores: realtime key-value stores for meetings, replicated peer to peer.

``Meeting`` joins a room; ``meeting.stores`` holds its named ``Store`` objects,
CRDT maps kept in sync with every other participant over WebRTC data channels.
"""

from .errors import AuthError, JoinError
from .meeting import Meeting, PeerEvent
from .mesh import MeshConfig
from .store import Callback, Store, Stores, Subscription, Write
from .values import StoreValue

__version__ = "0.1.0"

__all__ = [
    "AuthError",
    "Callback",
    "JoinError",
    "Meeting",
    "MeshConfig",
    "PeerEvent",
    "Store",
    "StoreValue",
    "Stores",
    "Subscription",
    "Write",
    "__version__",
]
