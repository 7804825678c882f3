"""The ``crdt-stores`` command line: demo, interactive peer, signaling server, tokens."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crdt-stores", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="run several peers over real WebRTC and show they converge")
    args = parser.parse_args(argv)
    if args.command == "demo":
        print("crdt-stores demo: not yet (the CLI issue adds it)")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
