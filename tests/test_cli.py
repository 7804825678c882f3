"""The command line (SPEC §7): the demo converges; scripted CLI peers replicate."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from signaling import SignalingServer

from .netutil import ROOT, child_env, spawn

pytestmark = pytest.mark.timeout(120)


def test_demo_converges() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "crdt_stores.cli", "demo", "--peers", "4", "--ops", "300"],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=90,
    )
    print(done.stdout[-3000:])
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "converged" in done.stdout and "NOT converged" not in done.stdout
    assert "(left midway)" in done.stdout and "(late)" in done.stdout


class CliPeer:
    """A ``crdt-stores peer`` subprocess driven through its stdin."""

    def __init__(self, url: str, name: str, *extra: str) -> None:
        self.proc = spawn(
            "-m", "crdt_stores.cli", "peer", "--signaling", url, "--room", "r", "--name", name,
            *extra,
        )  # fmt: skip
        self.lines: asyncio.Queue[str] = asyncio.Queue()
        self.errors: asyncio.Queue[str] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        for stream, queue in ((self.proc.stdout, self.lines), (self.proc.stderr, self.errors)):
            loop.run_in_executor(None, _pump, stream, queue, loop)

    async def run(self, command: str, timeout: float = 20.0) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return await asyncio.wait_for(self.lines.get(), timeout)

    async def error(self, timeout: float = 20.0) -> str:
        while True:
            line = await asyncio.wait_for(self.errors.get(), timeout)
            if line.startswith("error:"):
                return line

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def _pump(stream, queue: asyncio.Queue, loop: asyncio.AbstractEventLoop) -> None:
    for line in stream:
        loop.call_soon_threadsafe(queue.put_nowait, line.rstrip("\n"))


async def test_two_cli_peers_replicate_and_survive_bad_input() -> None:
    async with SignalingServer("127.0.0.1", 0) as server:
        alice = CliPeer(server.url, "alice")
        bob = CliPeer(server.url, "bob")
        try:
            assert await alice.run("create notes") == "ok"
            assert await alice.run('set notes user {"name": "John Doe"}') == "ok"
            assert await alice.run('update notes user {"age": 34}') == "ok"
            assert await alice.run('set notes list ["a", "b"]') == "ok"
            assert await alice.run('update notes list ["c"]') == "ok"
            assert await alice.run("set notes gone 1.0") == "ok"
            assert await alice.run("delete notes gone") == "ok"
            assert await alice.run("sync") == "synced"
            assert await bob.run("sync") == "synced"
            assert json.loads(await bob.run("stores")) == ["notes"]
            assert await bob.run("get notes user") == '{"name": "John Doe", "age": 34}'
            assert await bob.run("get notes gone") == "null"
            assert json.loads(await bob.run("getall notes")) == {
                "user": {"name": "John Doe", "age": 34},
                "list": ["a", "b", "c"],
            }
            assert json.loads(await bob.run("peers")) == ["alice"]
            assert await bob.run("watch notes *") == "ok"
            assert await alice.run("set notes n 1.0") == "ok"
            assert await bob.lines.get() == "notes n 1.0"  # type kept: a float
            assert await alice.run("delete notes n") == "ok"
            assert await asyncio.wait_for(bob.lines.get(), 20) == "notes n null"
            # bad input: one error line each, and the peer goes on
            for bad in (
                "frobnicate",
                "set notes k {not json",
                "get nostore k",
                "set notes",
                "set notes k NaN",
                "set notes * 1",
                "unwatch notes nothing",
            ):
                bob.proc.stdin.write(bad + "\n")
                bob.proc.stdin.flush()
                assert (await bob.error()).startswith("error:"), bad
            assert await bob.run('update notes user {"from": "bob"}') == "ok"
            assert await bob.run("sync") == "synced"
            assert json.loads(await alice.run("get notes user")) == {
                "name": "John Doe",
                "age": 34,
                "from": "bob",
            }
            assert "commands" in await bob.run("help")
            bob.proc.stdin.write("quit\n")
            bob.proc.stdin.flush()
            assert await asyncio.to_thread(bob.proc.wait, 20) == 0
            for _ in range(100):  # bob's leave reaches alice promptly
                if json.loads(await alice.run("peers")) == []:
                    break
                await asyncio.sleep(0.05)
            assert json.loads(await alice.run("peers")) == []
        finally:
            alice.close()
            bob.close()


async def test_cli_peers_with_a_room_key_link_and_refuse_a_peer_without_it() -> None:
    made = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "crdt_stores.cli", "room-key"],
        cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    key = made.stdout.strip()
    assert made.returncode == 0 and len(key) >= 43, made
    async with SignalingServer("127.0.0.1", 0) as server:
        alice = CliPeer(server.url, "alice", "--room-key", key)
        bob = CliPeer(server.url, "bob", "--room-key", key)
        try:
            assert await alice.run("create notes") == "ok"
            assert await alice.run('set notes pin "4711"') == "ok"
            assert await alice.run("sync") == "synced"
            assert await bob.run("sync") == "synced"
            assert await bob.run("get notes pin") == '"4711"'
            mallory = CliPeer(server.url, "mallory")  # no key: warned, and refused by the others
            try:
                while "no room key" not in (line := await mallory.errors.get()):
                    assert not line.startswith("error:"), line
                while "refused a signal from mallory" not in await asyncio.wait_for(
                    bob.errors.get(), 20
                ):
                    pass
                assert json.loads(await mallory.run("peers")) == []
            finally:
                mallory.close()
            assert json.loads(await bob.run("peers")) == ["alice"]
        finally:
            alice.close()
            bob.close()
