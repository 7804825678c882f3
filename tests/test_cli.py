"""The command line (SPEC §7): the demo converges; scripted CLI peers replicate."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from signaling import SignalingServer, verify_token

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


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "crdt_stores.cli", *args]
    return subprocess.run(
        command, cwd=ROOT, env=env or child_env(), capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["demo", "--ops", "0"], "--ops must be 1 to"),
        (["demo", "--ops", "-5"], "--ops must be 1 to"),
        (["demo", "--peers", "100"], "--peers must be 3 to"),
        (["demo", "--ops", "many"], "whole number"),
        (["token", "--room", "r", "--peer-id", "a", "--secret", ""], "give --secret"),
        (["token", "--room", "r", "--peer-id", "a", "--secret", "s" * 40, "--ttl", "0"], "--ttl"),
        (["token", "--room", "r", "--peer-id", "a", "--secret", "s" * 40, "--ttl", "-5"], "--ttl"),
    ],
)
def test_bad_arguments_get_one_line_at_once(args, fragment) -> None:
    env = {k: v for k, v in child_env().items() if k != "CRDT_STORES_SECRET"}
    started = time.perf_counter()
    done = _cli(*args, env=env)
    assert done.returncode == 2, done
    assert fragment in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr and time.perf_counter() - started < 10


def test_token_command_reads_the_env_and_warns_about_short_secrets_in_one_line() -> None:
    env = dict(child_env(), CRDT_STORES_SECRET="x" * 40)
    done = _cli("token", "--room", "r", "--peer-id", "alice", env=env)
    assert done.returncode == 0 and done.stderr == ""
    assert verify_token("x" * 40, done.stdout.strip(), "r", None) == "alice"
    short = _cli("token", "--room", "r", "--peer-id", "a", "--secret", "abc")
    assert short.returncode == 0 and short.stdout.count(".") == 2
    assert short.stderr.startswith("warning: the secret has 3 bytes")
    assert len(short.stderr.strip().splitlines()) == 1 and "site-packages" not in short.stderr


def test_version_and_help_say_what_a_newcomer_needs() -> None:
    assert _cli("--version").stdout.strip().startswith("crdt-stores ")
    peer_help = _cli("peer", "--help").stdout
    assert "--ice-address 127.0.0.1" in peer_help.replace("\n", " ").replace("  ", " ")
    assert "the room to join" in peer_help
    assert "default 20" in _cli("signaling", "--help").stdout


def test_ctrl_c_during_the_demo_exits_quietly_with_130() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "crdt_stores.cli", "demo", "--ops", "50000"],
        cwd=ROOT,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    while "signaling server on" not in (line := proc.stdout.readline()):  # bounded: timeout
        assert line, proc.stderr.read() if proc.stderr else ""
    for _ in range(300):  # until the peer processes are writing (bounded)
        group = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True)
        if len(group.stdout.split()) >= 4:
            break
        time.sleep(0.05)
    time.sleep(1.0)  # well into the writes: this is what Ctrl-C interrupts
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, (out[-500:], err[-2000:])
    assert "Traceback" not in err and "CancelledError" not in err and len(err.splitlines()) <= 1


async def test_cli_peer_quoted_keys_long_lines_hints_and_presence() -> None:
    async with SignalingServer("127.0.0.1", 0) as server:
        alice = CliPeer(server.url, "alice")
        try:
            assert await alice.run("create notes") == "ok"
            bob = CliPeer(server.url, "bob")
            try:
                while "peer bob joined" not in await asyncio.wait_for(alice.errors.get(), 20):
                    pass
                assert await alice.run('set notes "a b" 1') == "ok"
                assert await alice.run('get notes "a b"') == "1"
                assert await alice.run('set notes "say \\"hi\\"" true') == "ok"
                big = "x" * 200_000  # a 200 KB line: over asyncio's 64 KiB default
                assert await alice.run(f'set notes big "{big}"') == "ok"
                assert await alice.run("sync") == "synced"
                assert await bob.run("sync") == "synced"
                assert await bob.run('get notes "a b"') == "1"
                assert json.loads(await bob.run("get notes big")) == big
                assert json.loads(await bob.run("getall notes"))['say "hi"'] is True
                for bad, hint in (
                    ("get notes user extra args", "unexpected extra arguments"),
                    ("set notes k hello", 'strings need quotes: "hello"'),
                    ('get notes "unclosed', "quoted name must be a JSON string"),
                ):
                    bob.proc.stdin.write(bad + "\n")
                    bob.proc.stdin.flush()
                    assert hint in await bob.error(), bad
                bob.proc.stdin.write("quit\n")
                bob.proc.stdin.flush()
                assert await asyncio.to_thread(bob.proc.wait, 20) == 0
                while "peer bob left" not in await asyncio.wait_for(alice.errors.get(), 20):
                    pass
            finally:
                bob.close()
        finally:
            alice.close()
