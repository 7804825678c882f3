"""The baselines: plain aiortc data channels, and pycrdt's own websocket server.

* ``RawPeer`` is one endpoint of a mesh of plain aiortc data channels: the floor
  of what crdt-stores' transport can do. It uses the same ICE setup as the
  library (loopback only, no STUN) and the same socket buffer sizes, so the
  comparison is about everything above the transport.
* ``PycrdtServer`` / ``PycrdtClient`` are pycrdt-websocket's server (star topology)
  and pycrdt ``Provider`` clients over the ``websockets`` library.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from pycrdt import Doc, Map, Provider
from pycrdt.websocket import WebsocketServer
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from crdt_stores.transport._aiortc import (
    enlarge_socket_buffers,
    ice_scope,
    install_address_hook,
)

from .common import ICE_ADDRESSES, LOOPBACK


class RawPeer:
    """One peer of a mesh of plain aiortc data channels (SDP passed by the caller)."""

    def __init__(self, name: str, on_message: Callable[[str, bytes], None]) -> None:
        install_address_hook()
        self.name = name
        self.on_message = on_message
        self.pcs: dict[str, RTCPeerConnection] = {}
        self.channels: dict[str, Any] = {}
        self._open: dict[str, asyncio.Event] = {}

    def _new(self, peer: str) -> RTCPeerConnection:
        with ice_scope(tuple(ICE_ADDRESSES)):
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        channel = pc.createDataChannel("raw", negotiated=True, id=0, ordered=True)
        opened = self._open[peer] = asyncio.Event()

        @channel.on("open")
        def on_open() -> None:
            enlarge_socket_buffers(pc)
            opened.set()

        @channel.on("message")
        def on_message(data: bytes) -> None:
            self.on_message(peer, data)

        self.pcs[peer] = pc
        self.channels[peer] = channel
        return pc

    async def offer(self, peer: str) -> str:
        pc = self._new(peer)
        with ice_scope(tuple(ICE_ADDRESSES)):
            await pc.setLocalDescription(await pc.createOffer())
        return pc.localDescription.sdp

    async def answer(self, peer: str, sdp: str) -> str:
        pc = self._new(peer)
        with ice_scope(tuple(ICE_ADDRESSES)):
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        return pc.localDescription.sdp

    async def accept(self, peer: str, sdp: str) -> None:
        with ice_scope(tuple(ICE_ADDRESSES)):
            await self.pcs[peer].setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    async def wait_open(self, timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            for event in self._open.values():
                await event.wait()

    def send(self, peer: str, data: bytes) -> None:
        self.channels[peer].send(data)

    def broadcast(self, data: bytes) -> None:
        for channel in self.channels.values():
            channel.send(data)

    def buffered(self) -> int:
        return sum(channel.bufferedAmount for channel in self.channels.values())

    async def close(self) -> None:
        await asyncio.gather(*(pc.close() for pc in self.pcs.values()), return_exceptions=True)


async def raw_mesh(
    names: list[str], on_message: Callable[[str, str, bytes], None]
) -> dict[str, RawPeer]:
    """A full mesh of RawPeers in this process (SDP handed over directly)."""
    peers = {name: RawPeer(name, _bind(on_message, name)) for name in names}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            offer = await peers[a].offer(b)
            answer = await peers[b].answer(a, offer)
            await peers[a].accept(b, answer)
    await asyncio.gather(*(peer.wait_open() for peer in peers.values()))
    return peers


def _bind(callback: Callable[[str, str, bytes], None], me: str) -> Callable[[str, bytes], None]:
    return lambda peer, data: callback(me, peer, data)


# -- pycrdt-websocket ----------------------------------------------------------------


class _ServerChannel:
    """pycrdt's Channel over a websockets server connection."""

    def __init__(self, ws: ServerConnection) -> None:
        self._ws = ws
        assert ws.request is not None
        self.path = ws.request.path

    def __aiter__(self) -> _ServerChannel:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.recv()
        except ConnectionClosed:
            raise StopAsyncIteration from None

    async def send(self, message: bytes) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self._ws.send(message)

    async def recv(self) -> bytes:
        data = await self._ws.recv()
        return data if isinstance(data, bytes) else data.encode()


class _ClientChannel(_ServerChannel):
    def __init__(self, ws: ClientConnection, path: str) -> None:
        self._ws = ws  # type: ignore[assignment]
        self.path = path


class PycrdtServer:
    """pycrdt-websocket's ``WebsocketServer`` behind a ``websockets`` listener."""

    def __init__(self) -> None:
        self.ystore = WebsocketServer(auto_clean_rooms=False)
        self.port = 0
        self._server: Any = None
        self._stack = contextlib.AsyncExitStack()

    @property
    def url(self) -> str:
        return f"ws://{LOOPBACK}:{self.port}"

    async def start(self) -> None:
        await self._stack.enter_async_context(self.ystore)

        async def handler(ws: ServerConnection) -> None:
            await self.ystore.serve(_ServerChannel(ws))

        self._server = await serve(handler, LOOPBACK, 0, max_size=None, compression=None)
        self.port = next(iter(self._server.sockets)).getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await self._stack.aclose()


class PycrdtClient:
    """A pycrdt ``Doc`` synced through a ``Provider`` with the server's room."""

    def __init__(self, url: str, room: str) -> None:
        self.url = url
        self.room = room
        self.doc: Doc = Doc()
        self.data: Map = self.doc.get("data", type=Map)
        self._ws: ClientConnection | None = None
        self._provider: Provider | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._ws = await connect(f"{self.url}/{self.room}", max_size=None, compression=None)
        self._provider = Provider(self.doc, _ClientChannel(self._ws, f"/{self.room}"))
        self._task = asyncio.create_task(self._provider.start())
        async with asyncio.timeout(30):
            await self._provider.started.wait()
            await self._provider.synced.wait()

    async def stop(self) -> None:
        if self._provider is not None:
            with contextlib.suppress(Exception):
                await self._provider.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        if self._ws is not None:
            await self._ws.close()
