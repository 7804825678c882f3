"""The ``crdt-stores`` command line: demo, interactive peer, signaling server, tokens."""

from __future__ import annotations

import argparse
import sys


def _token(args: argparse.Namespace) -> int:
    from signaling.tokens import mint_token

    print(mint_token(args.secret, args.room, args.peer_id, ttl=args.ttl))
    return 0


def _signaling(args: argparse.Namespace) -> int:
    from signaling.__main__ import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    from signaling.__main__ import add_arguments

    parser = argparse.ArgumentParser(
        prog="crdt-stores",
        description="Realtime key-value stores replicated peer to peer over WebRTC.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run several peers over real WebRTC and show they converge")
    demo.set_defaults(run=lambda args: _not_yet("demo"))

    server = sub.add_parser("signaling", help="run the signaling server")
    add_arguments(server)
    server.set_defaults(run=_signaling)

    token = sub.add_parser("token", help="print a join token for a room and peer id")
    token.add_argument("--secret", required=True, help="the signaling server's secret")
    token.add_argument("--room", required=True)
    token.add_argument("--peer-id", required=True)
    token.add_argument(
        "--ttl", type=float, default=3600.0, help="seconds of validity (default 3600)"
    )
    token.set_defaults(run=_token)
    return parser


def _not_yet(what: str) -> int:
    print(f"crdt-stores {what}: not yet")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
