"""Late join: a newcomer downloads stores of 1, 10 and 50 MB in total.

Two processes: a peer holding the store, and a newcomer. ``crdt_stores``: from
the newcomer's ``Meeting.join`` call until its store covers the holder's state
vector. ``raw_aiortc``: from the start of a plain aiortc connection until the
same number of bytes crdt-stores moved has arrived in 64 KiB messages (the
transport's floor for that volume). MB/s is the store size over that time.
"""

from __future__ import annotations

from typing import Any

from signaling import SignalingServer

from .common import LOOPBACK, Worker, close_all


async def crdt(megabytes: float) -> dict[str, Any]:
    async with SignalingServer(LOOPBACK, 0) as server:
        holder = await Worker.start("crdt", "holder", url=server.url)
        newcomer = await Worker.start("crdt", "newcomer", url=server.url)
        try:
            await holder.send(op="join")
            await holder.expect("joined")
            await holder.send(op="fill", megabytes=megabytes)
            filled = await holder.expect("filled", 600)
            await newcomer.send(op="join")
            joined = await newcomer.expect("joined", 120)
            await newcomer.send(op="await_state", target=filled["sv"])
            covered = await newcomer.expect("covered", 900)
            seconds = covered["t"] - joined["t0"]
            return {
                "impl": "crdt_stores",
                "megabytes": megabytes,
                "seconds": round(seconds, 3),
                "mb_per_s": round(megabytes / seconds, 3),
                "bytes": covered["stats"].get("bytes_in", 0),
                "store_update_bytes": filled["update_bytes"],
            }
        finally:
            await close_all([holder, newcomer])


async def raw(megabytes: float, wire_bytes: int) -> dict[str, Any]:
    holder = await Worker.start("raw", "holder")
    newcomer = await Worker.start("raw", "newcomer")
    try:
        await newcomer.send(op="offer", peer="holder")  # the clock starts at the newcomer
        offer = (await newcomer.expect("sdp"))["sdp"]
        await holder.send(op="answer", peer="newcomer", sdp=offer)
        answer = (await holder.expect("sdp"))["sdp"]
        await newcomer.send(op="accept", peer="holder", sdp=answer)
        await newcomer.expect("accepted")
        await holder.send(op="wait_open")
        await holder.expect("ready")
        await newcomer.send(op="expect_bytes", bytes=wire_bytes)
        await holder.send(op="blast", peer="newcomer", bytes=wire_bytes)
        received = await newcomer.expect("received", 900)
        seconds = received["t1"] - received["t0"]
        return {
            "impl": "raw_aiortc",
            "megabytes": megabytes,
            "seconds": round(seconds, 3),
            "mb_per_s": round(megabytes / seconds, 3),
            "bytes": received["bytes"],
        }
    finally:
        await close_all([holder, newcomer])


async def run(quick: bool, report: Any = print) -> list[dict[str, Any]]:
    rows = []
    for megabytes in (1, 10) if quick else (1, 10, 50):
        ours = await crdt(megabytes)
        floor = await raw(megabytes, ours["bytes"])
        for row in (ours, floor):
            rows.append(row)
            report(
                f"late join {megabytes:>3} MB {row['impl']:17s} {row['seconds']:7.2f} s "
                f"{row['mb_per_s']:7.2f} MB/s ({row['bytes']} bytes on the wire)"
            )
    return rows


def main() -> None:
    from .__main__ import standalone

    standalone("late_join")


if __name__ == "__main__":
    main()
