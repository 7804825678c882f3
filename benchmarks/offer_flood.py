"""Offer floods (issue 9 row 4): many connections offer to one peer as fast as they can.

    python -m benchmarks.offer_flood                        # this checkout, 20 s
    python -m benchmarks.offer_flood --baseline /tmp/old    # and an older checkout

The signaling server (``python -m signaling``) and the victim
(``tests/helpers/echo_peer.py``) run as processes of the code under test. Ten
flooder connections of this process join the room and send offers to the victim,
166 per second in all, each a real aiortc offer whose ICE candidate points at a
UDP socket of this process: every datagram arriving there is an ICE check the
victim sent where the attacker chose. An observer watches the room's presence,
and an honest newcomer joins mid-flood. Measured from outside the victim: answers
it sent, CPU it used, datagrams to the attacker's address, presence flaps, and
how long the newcomer took to link with it. Writes ``results/offer_flood.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aiortc import RTCPeerConnection
from websockets.asyncio.client import ClientConnection, connect

from crdt_stores import Meeting
from crdt_stores.transport import _aiortc

from .common import RESULTS, ROOT, machine

VICTIM = str(ROOT / "tests" / "helpers" / "echo_peer.py")
FLOODERS = 10
RATE = 166.0  # offers per second, all flooders together
LOOPBACK = ("127.0.0.1",)


def _cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Sink(asyncio.DatagramProtocol):
    """The address the attacker chose: counts the datagrams (ICE checks) it receives."""

    def __init__(self) -> None:
        self.count = 0

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.count += 1


async def _forged_offer(sink_port: int) -> str:
    """A genuine aiortc offer whose only ICE candidate is the sink."""
    with _aiortc.ice_scope(LOOPBACK):
        pc = RTCPeerConnection()
        pc.createDataChannel("crdt-stores", negotiated=True, id=0)
        await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    sdp = re.sub(r"a=candidate:[^\r\n]*\r\n", "", sdp)
    candidate = f"a=candidate:1 1 UDP 2130706431 127.0.0.1 {sink_port} typ host\r\n"
    return sdp.replace("a=end-of-candidates", candidate + "a=end-of-candidates", 1)


async def _join(url: str, room: str, peer_id: str) -> ClientConnection:
    ws = await connect(url, open_timeout=10)
    await ws.send(json.dumps({"type": "join", "room": room, "peer_id": peer_id}))
    welcome = json.loads(await asyncio.wait_for(ws.recv(), 10))
    if welcome.get("type") != "welcome":
        raise RuntimeError(f"flooder {peer_id} not admitted: {welcome}")
    return ws


async def measure(code: Path, duration: float = 20.0) -> dict[str, Any]:
    """One flood against the server and victim of ``code``; returns the figures."""
    env = dict(os.environ, PYTHONPATH=f"{code}{os.pathsep}{ROOT}")
    env["CRDT_STORES_ICE_ADDRESSES"] = "127.0.0.1"
    env.pop("CRDT_STORES_ROOM_KEY", None)
    port = _free_port()
    url = f"ws://127.0.0.1:{port}"
    room = "flood"
    server = subprocess.Popen(  # noqa: ASYNC220 - started once, before any timing
        [sys.executable, "-m", "signaling", "--port", str(port)],
        cwd=code, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    victim: subprocess.Popen[str] | None = None
    loop = asyncio.get_running_loop()
    transport, sink = await loop.create_datagram_endpoint(_Sink, local_addr=("127.0.0.1", 0))
    sockets: list[ClientConnection] = []
    newcomer: Meeting | None = None
    try:
        assert server.stdout is not None
        await asyncio.wait_for(asyncio.to_thread(server.stdout.readline), 20)
        victim = subprocess.Popen(  # noqa: ASYNC220
            [sys.executable, VICTIM, url, room, "victim"],
            cwd=code, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        assert victim.stdout is not None
        assert (await asyncio.wait_for(asyncio.to_thread(victim.stdout.readline), 30)).strip() == (
            "ready"
        )
        sdp = await _forged_offer(transport.get_extra_info("sockname")[1])
        observer = await _join(url, room, "observer")
        flooders = [await _join(url, room, f"flooder-{i}") for i in range(FLOODERS)]
        sockets = [observer, *flooders]
        answers = 0
        flaps = 0
        refusals = 0

        async def read(ws: ClientConnection, watch: bool) -> None:
            nonlocal answers, flaps, refusals
            with contextlib.suppress(Exception):
                async for raw in ws:
                    message = json.loads(raw)
                    if message.get("type") == "signal" and message.get("from") == "victim":
                        answers += 1
                    elif message.get("type") == "error":
                        refusals += 1
                    elif watch and message.get("peer_id") == "victim":
                        flaps += message.get("type") == "peer-left"

        readers = [asyncio.ensure_future(read(ws, ws is observer)) for ws in sockets]
        cpu_before = _cpu(victim.pid)
        started = time.perf_counter()
        sent = 0

        async def newcomer_joins() -> float | None:
            """Seconds from the newcomer's start to its link with the victim (None: never)."""
            nonlocal newcomer
            await asyncio.sleep(duration / 2)
            linked = loop.create_future()
            newcomer = Meeting(url, room, peer_id="newcomer", ice_addresses=["127.0.0.1"])
            newcomer.on(
                "peer_joined", lambda peer: peer == "victim" and not linked.done() and
                linked.set_result(None),
            )  # fmt: skip
            began = time.perf_counter()
            starting = asyncio.ensure_future(newcomer.__aenter__())
            try:
                await asyncio.wait_for(asyncio.shield(linked), 30)
                return time.perf_counter() - began
            except TimeoutError:
                return None
            finally:
                await asyncio.wait_for(starting, 30)  # links to flooders are given up on

        joining = asyncio.ensure_future(newcomer_joins())
        while (elapsed := time.perf_counter() - started) < duration:
            due = int(elapsed * RATE) + 1
            while sent < due:
                ws = flooders[sent % FLOODERS]
                data = {"kind": "offer", "session": f"s{sent}", "sdp": sdp}
                with contextlib.suppress(Exception):
                    await ws.send(json.dumps({"type": "signal", "to": "victim", "data": data}))
                sent += 1
            await asyncio.sleep(0.005)
        cpu = _cpu(victim.pid) - cpu_before
        link_time = await asyncio.wait_for(joining, 60)
        datagrams = sink.count
        for reader in readers:
            reader.cancel()
        return {
            "code": str(code),
            "duration_s": duration,
            "offers_sent": sent,
            "answers_from_victim": answers,
            "victim_cpu_s": round(cpu, 2),
            "victim_cpu_share": round(cpu / duration, 3),
            "datagrams_to_attacker_address": datagrams,
            "victim_presence_flaps": flaps,
            "errors_to_flooders": refusals,
            "newcomer_linked_s": None if link_time is None else round(link_time, 2),
            "victim_alive": victim.poll() is None,
        }
    finally:
        if newcomer is not None:
            await newcomer.leave()
        for ws in sockets:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 2)
        transport.close()
        for proc in (victim, server):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


def _table(rows: list[dict[str, Any]]) -> str:
    keys = [k for k in rows[0] if k not in ("code",)]
    width = max(len(k) for k in keys)
    lines = [f"{'':{width}}  " + "  ".join(f"{Path(r['code']).name[:14]:>14}" for r in rows)]
    for key in keys:
        lines.append(f"{key:{width}}  " + "  ".join(f"{r[key]!s:>14}" for r in rows))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--baseline", type=Path, help="an older checkout to measure first")
    args = parser.parse_args(argv)
    rows = []
    for code in ([args.baseline] if args.baseline else []) + [ROOT]:
        rows.append(asyncio.run(measure(code.resolve(), args.duration)))
    print(_table(rows))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "offer_flood.json").write_text(
        json.dumps({"machine": machine(), "rows": rows}, indent=2) + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
