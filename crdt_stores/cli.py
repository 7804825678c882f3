"""The ``crdt-stores`` command line: demo, interactive peer, signaling server, tokens."""

from __future__ import annotations

import argparse
import os
import sys

from .sealing import ROOM_KEY_ENV


def _token(args: argparse.Namespace) -> int:
    from signaling.tokens import mint_token

    print(mint_token(args.secret, args.room, args.peer_id, ttl=args.ttl))
    return 0


def _room_key(args: argparse.Namespace) -> int:
    from .sealing import generate_room_key

    print(generate_room_key())
    return 0


def _peer(args: argparse.Namespace) -> int:
    import asyncio

    from .shell import run_peer

    if args.ice_address:
        os.environ["CRDT_STORES_ICE_ADDRESSES"] = ",".join(args.ice_address)
    try:
        return asyncio.run(
            run_peer(args.signaling, args.room, args.name, args.token, args.room_key)
        )
    except KeyboardInterrupt:
        return 0


def _signaling(args: argparse.Namespace) -> int:
    from signaling.__main__ import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    from signaling.__main__ import add_arguments

    from .demo import add_arguments as add_demo_arguments
    from .demo import run as run_demo

    parser = argparse.ArgumentParser(
        prog="crdt-stores",
        description="Realtime key-value stores replicated peer to peer over WebRTC.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run several peers over real WebRTC and show they converge")
    add_demo_arguments(demo)
    demo.set_defaults(run=run_demo)

    peer = sub.add_parser("peer", help="an interactive peer (commands typed or piped in)")
    peer.add_argument("--signaling", required=True, metavar="URL", help="ws://host:port")
    peer.add_argument("--room", required=True)
    peer.add_argument("--name", help="peer id (default: assigned by the server or the token)")
    peer.add_argument("--token", help="join token, when the server has a secret")
    peer.add_argument(
        "--room-key",
        default=os.environ.get(ROOM_KEY_ENV) or None,
        help=f"seal signals end to end with this key (or {ROOM_KEY_ENV}); every peer of the "
        "room needs the same one. Without it the signaling server can read and change "
        "everything",
    )
    peer.add_argument(
        "--ice-address",
        action="append",
        metavar="IP",
        help="host address ICE may use (repeatable; default: CRDT_STORES_ICE_ADDRESSES or all)",
    )
    peer.set_defaults(run=_peer)

    server = sub.add_parser("signaling", help="run the signaling server")
    add_arguments(server)
    server.set_defaults(run=_signaling)

    room_key = sub.add_parser("room-key", help="print a fresh random room key")
    room_key.set_defaults(run=_room_key)

    token = sub.add_parser("token", help="print a join token for a room and peer id")
    token.add_argument("--secret", required=True, help="the signaling server's secret")
    token.add_argument("--room", required=True)
    token.add_argument("--peer-id", required=True)
    token.add_argument(
        "--ttl", type=float, default=3600.0, help="seconds of validity (default 3600)"
    )
    token.set_defaults(run=_token)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
