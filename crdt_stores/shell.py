"""``crdt-stores peer``: an interactive peer whose commands are typed or piped in.

Values are JSON. Results go to stdout (one line each); errors go to stderr as one
``error: ...`` line and the peer carries on. In a terminal the prompt has line
editing and history (prompt_toolkit); otherwise commands are read from stdin, so
the peer can be scripted.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .meeting import Meeting
from .store import Store

__all__ = ["HELP", "PeerShell", "run_peer"]

_DECODER = json.JSONDecoder()
MAX_LINE_BYTES = 16 * 1024 * 1024
"""Longest command line read from a pipe: a 1 MiB value can take several MiB as JSON."""

HELP = """commands (values are JSON; a store or key with spaces is a JSON string: "a b"):
  create <store>                 create a store (on every peer)
  set <store> <key> <json>       overwrite a key
  update <store> <key> <json>    merge a dict / append a list / else set
  delete <store> <key>           delete a key
  get <store> <key>              print the value (null when missing)
  getall <store>                 print every key as one JSON object
  watch <store> <key|*>          print remote changes: <store> <key> <json>
  unwatch <store> <key|*>        stop printing them
  peers                          linked peer ids
  stores                         store names
  sync                           wait until every linked peer holds the same data
  help                           this text
  quit                           leave the room and exit"""


class ShellError(Exception):
    """A command that cannot run; printed as one error line."""


class PeerShell:
    """Parses and runs commands against a meeting; no terminal handling in here."""

    def __init__(self, meeting: Meeting, out: Callable[[str], None], err: Callable[[str], None]):
        self.meeting = meeting
        self.out = out
        self.err = err
        self._watchers: dict[tuple[str, str], Callable[[str, Any], None]] = {}

    async def execute(self, line: str) -> bool:
        """Run one command line; returns False when the shell should quit."""
        line = line.strip()
        if not line or line.startswith("#"):
            return True
        name, _, rest = line.partition(" ")
        handler = getattr(self, f"_cmd_{name.lower()}", None)
        if handler is None:
            self.err(f"error: unknown command {name!r} (try: help)")
            return True
        try:
            result = await handler(rest.strip())
        except ShellError as exc:
            self.err(f"error: {exc}")
            return True
        except (TypeError, ValueError, RuntimeError, TimeoutError) as exc:
            self.err(f"error: {exc}")
            return True
        return result is not False

    # -- helpers --------------------------------------------------------------------

    def _store(self, name: str) -> Store:
        store = self.meeting.stores.get(name)
        if store is None:
            raise ShellError(
                f"no store named {name!r} (create it first; stores: {list(self.meeting.stores)})"
            )
        return store

    @staticmethod
    def _args(rest: str, count: int, usage: str, *, value: bool = False) -> list[str]:
        """Split ``rest`` into ``count`` names, or names then a JSON value (``value``).

        A name is a word, or a JSON string for one with spaces or quotes
        (``"a b"``); the value is the rest of the line. Too few or too many
        arguments say the usage.
        """
        names = count - 1 if value else count
        parts: list[str] = []
        text = rest.strip()
        for _ in range(names):
            if not text:
                raise ShellError(f"usage: {usage}")
            if text.startswith('"'):
                try:
                    name, end = _DECODER.raw_decode(text)
                except ValueError:
                    raise ShellError(
                        f'a quoted name must be a JSON string, as in "a b" (usage: {usage})'
                    ) from None
                if end < len(text) and not text[end].isspace():
                    raise ShellError(f"put a space after the quoted name (usage: {usage})")
            else:
                name, _, _ = text.partition(" ")
                name = name.split(None, 1)[0]
                end = len(name)
            parts.append(name)
            text = text[end:].strip()
        if value:
            if not text:
                raise ShellError(f"usage: {usage}")
            parts.append(text)
        elif text:
            raise ShellError(f"unexpected extra arguments {text!r} (usage: {usage})")
        return parts

    @staticmethod
    def _json(text: str) -> Any:
        try:
            return json.loads(text)
        except ValueError as exc:
            hint = ""
            if text[:1].isalpha() and text not in ("true", "false", "null"):
                hint = f'; strings need quotes: "{text}"' if " " not in text else ""
                hint = hint or "; strings need double quotes"
            raise ShellError(f"the value is not valid JSON ({exc}){hint}") from None

    @staticmethod
    def _dump(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False)

    # -- commands -------------------------------------------------------------------

    async def _cmd_create(self, rest: str) -> None:
        (name,) = self._args(rest, 1, "create <store>")
        self.meeting.stores.create(name)
        self.out("ok")

    async def _cmd_set(self, rest: str) -> None:
        store, key, value = self._args(rest, 3, "set <store> <key> <json>", value=True)
        await self._store(store).set(key, self._json(value))
        self.out("ok")

    async def _cmd_update(self, rest: str) -> None:
        store, key, value = self._args(rest, 3, "update <store> <key> <json>", value=True)
        await self._store(store).update(key, self._json(value))
        self.out("ok")

    async def _cmd_delete(self, rest: str) -> None:
        store, key = self._args(rest, 2, "delete <store> <key>")
        await self._store(store).delete(key)
        self.out("ok")

    async def _cmd_get(self, rest: str) -> None:
        store, key = self._args(rest, 2, "get <store> <key>")
        self.out(self._dump(self._store(store).get(key)))

    async def _cmd_getall(self, rest: str) -> None:
        (store,) = self._args(rest, 1, "getall <store>")
        self.out(self._dump(self._store(store).get_all()))

    async def _cmd_watch(self, rest: str) -> None:
        store_name, key = self._args(rest, 2, "watch <store> <key|*>")
        store = self._store(store_name)
        if (store_name, key) in self._watchers:
            self.out("ok")
            return

        def show(changed: str, value: Any) -> None:
            self.out(f"{store_name} {changed} {self._dump(value)}")

        store.subscribe(key, show)
        self._watchers[(store_name, key)] = show
        self.out("ok")

    async def _cmd_unwatch(self, rest: str) -> None:
        store_name, key = self._args(rest, 2, "unwatch <store> <key|*>")
        callback = self._watchers.pop((store_name, key), None)
        if callback is None:
            raise ShellError(f"not watching {store_name} {key}")
        self._store(store_name).unsubscribe(key, callback)
        self.out("ok")

    async def _cmd_peers(self, rest: str) -> None:
        self.out(self._dump(sorted(self.meeting.peers)))

    async def _cmd_stores(self, rest: str) -> None:
        self.out(self._dump(sorted(self.meeting.stores)))

    async def _cmd_sync(self, rest: str) -> None:
        covered = await self.meeting.synced(timeout=float(rest) if rest else 30.0)
        self.out("synced")
        # What the agreement covers: a peer dropped as dead is not among them.
        self.err(f"synced with {', '.join(covered) if covered else 'no linked peer'}")

    async def _cmd_help(self, rest: str) -> None:
        self.out(HELP)

    async def _cmd_quit(self, rest: str) -> bool:
        return False

    _cmd_exit = _cmd_quit


async def run_peer(
    url: str | Sequence[str],
    room: str,
    name: str | None,
    token: str | None,
    room_key: str | None = None,
) -> int:
    """Join and run the shell until ``quit`` or end of input."""
    from .errors import JoinError

    def err(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    try:
        meeting = await Meeting.join(url, room, peer_id=name, token=token, room_key=room_key)
    except JoinError as exc:
        err(f"error: cannot join: {exc}")
        return 1
    try:
        err(
            f"joined room {room!r} as {meeting.peer_id}; peers: {sorted(meeting.peers)} (type help)"
        )
        if room_key is None:
            err("no room key: the signaling server can read and change what peers exchange")
        told: set[tuple[str, str]] = set()

        def refused(peer: str, why: str) -> None:
            if (peer, why) not in told and len(told) < 256:  # once each, not once per flood
                told.add((peer, why))
                err(f"refused a signal from {peer}: {why}")

        meeting.on("signal_refused", refused)
        meeting.on("peer_joined", lambda peer: err(f"peer {peer} joined"))
        meeting.on("peer_left", lambda peer: err(f"peer {peer} left"))
        if sys.stdin.isatty():
            await _interactive(meeting, err)
        else:
            await _scripted(meeting, err)
    finally:
        await meeting.leave()
    return 0


async def _interactive(meeting: Meeting, err: Callable[[str], None]) -> None:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import InMemoryHistory
    from prompt_toolkit.patch_stdout import patch_stdout

    session: PromptSession[str] = PromptSession(history=InMemoryHistory())
    with patch_stdout():
        shell = PeerShell(meeting, lambda text: print(text, flush=True), err)
        while True:
            try:
                line = await session.prompt_async(f"{meeting.peer_id}> ")
            except (EOFError, KeyboardInterrupt):
                return
            if not await shell.execute(line):
                return


async def _scripted(meeting: Meeting, err: Callable[[str], None]) -> None:
    shell = PeerShell(meeting, lambda text: print(text, flush=True), err)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_LINE_BYTES)
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    except ValueError:  # a regular file: read it in a thread
        reader = None  # type: ignore[assignment]
    while True:
        if reader is not None:
            try:
                raw = await reader.readline()
            except ValueError:  # over the limit: that line is dropped, the peer goes on
                err(f"error: a command line over {MAX_LINE_BYTES // 2**20} MiB was skipped")
                continue
            line = raw.decode("utf-8", errors="replace")
        else:
            line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            return
        if not await shell.execute(line):
            return
