"""The ``crdt-stores`` command line: demo, interactive peer, signaling server, tokens."""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn

from .sealing import ROOM_KEY_ENV

SECRET_ENV = "CRDT_STORES_SECRET"
MIN_SECRET_BYTES = 32


def _token(args: argparse.Namespace) -> int:
    import warnings

    from signaling.tokens import mint_token

    if not args.secret:
        print(f"crdt-stores token: error: give --secret (or {SECRET_ENV})", file=sys.stderr)
        return 2
    if args.ttl <= 0:
        print(
            f"crdt-stores token: error: --ttl must be positive, not {args.ttl:g}",
            file=sys.stderr,
        )
        return 2
    if len(args.secret.encode()) < MIN_SECRET_BYTES:
        print(
            f"warning: the secret has {len(args.secret.encode())} bytes; use at least "
            f"{MIN_SECRET_BYTES} (a short one can be guessed from any token)",
            file=sys.stderr,
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyJWT's own short-key warning: said above, in a line
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


class _Parser(argparse.ArgumentParser):
    """One line for a bad argument (argparse prints the whole usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from signaling.__main__ import add_arguments

    from . import __version__
    from .demo import add_arguments as add_demo_arguments
    from .demo import run as run_demo

    parser = _Parser(
        prog="crdt-stores",
        description="Realtime key-value stores replicated peer to peer over WebRTC.",
    )
    parser.add_argument("--version", action="version", version=f"crdt-stores {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run several peers over real WebRTC and show they converge")
    add_demo_arguments(demo)
    demo.set_defaults(run=run_demo)

    peer = sub.add_parser(
        "peer",
        help="an interactive peer (commands typed or piped in)",
        description="An interactive peer: type commands (help lists them), or pipe them in. "
        "Two peers on one host need --ice-address 127.0.0.1 (ICE leaves loopback out).",
    )
    peer.add_argument(
        "--signaling",
        required=True,
        action="append",
        metavar="URL",
        help="the signaling server, ws://host:port; repeat it for instances sharing rooms "
        "(Redis): they are tried in turn, and the peer fails over to the next",
    )
    peer.add_argument("--room", required=True, help="the room to join (any name)")
    peer.add_argument("--name", help="peer id (default: assigned by the server or the token)")
    peer.add_argument(
        "--token",
        help="join token, when the server has a secret (crdt-stores token mints one); "
        "its peer id is used when --name is omitted",
    )
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
        help="host address ICE may use (repeatable; default: CRDT_STORES_ICE_ADDRESSES or "
        "every interface but loopback: two peers on one host need 127.0.0.1)",
    )
    peer.set_defaults(run=_peer)

    server = sub.add_parser("signaling", help="run the signaling server")
    add_arguments(server)
    server.set_defaults(run=_signaling)

    room_key = sub.add_parser("room-key", help="print a fresh random room key")
    room_key.set_defaults(run=_room_key)

    token = sub.add_parser("token", help="print a join token for a room and peer id")
    token.add_argument(
        "--secret",
        default=os.environ.get(SECRET_ENV),
        help=f"the signaling server's secret (or {SECRET_ENV}, as the server reads it)",
    )
    token.add_argument("--room", required=True, help="the room the token admits to")
    token.add_argument("--peer-id", required=True, help="the peer id the token is for")
    token.add_argument(
        "--ttl",
        type=float,
        default=3600.0,
        help="seconds of validity (default 3600; servers refuse more than their --max-ttl, "
        "24 h by default, and accept an expired token for 5 s of clock skew)",
    )
    token.set_defaults(run=_token)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
