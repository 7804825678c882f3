"""``python -m signaling``: run the signaling server until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import sys

from .server import Limits, PresenceError, SignalingServer


def build_parser(prog: str = "python -m signaling") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="crdt-stores signaling server")
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8787, help="port (default 8787; 0 picks one)")
    parser.add_argument(
        "--secret",
        default=os.environ.get("CRDT_STORES_SECRET"),
        help="HS256 secret for join tokens (or CRDT_STORES_SECRET; at least 32 bytes); "
        "without it the server is open",
    )
    parser.add_argument(
        "--max-ttl",
        type=float,
        default=24 * 3600.0,
        help="refuse tokens that expire further ahead, in seconds (default 86400: 24 h); "
        "expired tokens are accepted for 5 s of clock skew",
    )
    parser.add_argument(
        "--max-peers",
        type=int,
        default=Limits.max_peers_per_room,
        help=f"peers per room, over all instances (default {Limits.max_peers_per_room})",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=20.0,
        help="messages per second per connection, bursts of 60 (default 20)",
    )
    parser.add_argument(
        "--reserve",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="keep a departed peer's id for its resume secret this long; in token mode, "
        "tokens issued before a start need the secret this long after it (default 30)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="close joined sockets that send nothing this long (default 30)",
    )
    parser.add_argument(
        "--max-per-address",
        type=int,
        default=32,
        metavar="N",
        help="joined peer ids per client address, all rooms together (default 32)",
    )
    parser.add_argument(
        "--trust-proxy",
        action="append",
        default=[],
        type=_ip,
        metavar="ADDR",
        help="a reverse proxy whose X-Forwarded-For names the client (repeatable)",
    )
    parser.add_argument(
        "--redis",
        metavar="URL",
        default=os.environ.get("CRDT_STORES_REDIS") or None,
        help="share rooms with every instance on this Redis (redis://host:port/db, or "
        "CRDT_STORES_REDIS); without it this server is the only instance",
    )
    parser.add_argument(
        "--redis-prefix",
        default="crdt-stores:",
        metavar="PREFIX",
        help="prefix of the Redis keys and channels (default crdt-stores:)",
    )
    parser.add_argument(
        "--presence-ttl",
        type=float,
        default=Limits.presence_ttl,
        metavar="SECONDS",
        help="with --redis: a peer's presence expires this long after its instance last "
        f"refreshed it (default {Limits.presence_ttl:g}); the peers of a dead instance "
        "leave within ttl + refresh",
    )
    parser.add_argument(
        "--presence-refresh",
        type=float,
        default=Limits.presence_refresh,
        metavar="SECONDS",
        help="with --redis: how often presence is refreshed and expired peers swept "
        f"(default {Limits.presence_refresh:g})",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every join and leave")


def _ip(text: str) -> str:
    """An IP address argument, refused early when it is not one."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IP address: {text!r}") from None


async def serve(args: argparse.Namespace) -> None:
    limits = Limits(
        max_peers_per_room=args.max_peers,
        messages_per_second=args.rate,
        reserve_seconds=args.reserve,
        idle_timeout=args.idle_timeout,
        max_joined_per_address=args.max_per_address,
        presence_ttl=args.presence_ttl,
        presence_refresh=args.presence_refresh,
    )
    server = SignalingServer(
        args.host,
        args.port,
        secret=args.secret,
        max_token_ttl=args.max_ttl,
        limits=limits,
        trusted_proxies=args.trust_proxy,
        redis_url=args.redis,
        redis_prefix=args.redis_prefix,
    )
    if args.secret and len(args.secret.encode()) < 32:
        print(
            f"warning: the secret has {len(args.secret.encode())} bytes; use at least 32 "
            "(a short one can be guessed from any token)",
            file=sys.stderr,
            flush=True,
        )
    await server.start()
    mode = "tokens required" if server.secret else "OPEN (no --secret: anyone can join any room)"
    shared = ""
    if args.redis:
        from ._redis import redacted

        shared = f"; rooms shared through Redis at {redacted(args.redis)}"
    print(f"signaling server listening on {server.url} - {mode}{shared}", flush=True)
    try:
        await server.serve_forever()
    finally:
        await server.stop()


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass
    except PresenceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # limits that do not fit together
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
