"""The compiled hot path (``setup.py``, mypyc; ``crdt_stores._compiled``): built from the
source it runs for, and doing exactly what the Python source does."""

from __future__ import annotations

import logging
import subprocess
import sys
import types
from pathlib import Path

import pytest

from crdt_stores import _compiled

from .netutil import ROOT, child_env

DIFFERENTIAL_INPUTS = 1500


def _run(*args: str, pure: bool, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = child_env()
    env.pop(_compiled.PURE_ENV, None)
    if pure:
        env[_compiled.PURE_ENV] = "1"
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_the_install_runs_the_compiled_modules() -> None:
    """The README's install compiles them (mypy is a build requirement; this machine has
    a C compiler), and each build matches its source: a stale one would not be used."""
    probe = "import crdt_stores, crdt_stores._compiled as c; print(sorted(c.active))"
    compiled = _run("-c", probe, pure=False)
    assert compiled.returncode == 0, compiled.stderr
    expected = str(sorted(f"crdt_stores.{m}" for m in _compiled.MODULES))
    assert compiled.stdout.strip() == expected, (
        "not all compiled: a source edited since the install (reinstall: pip install -e .), "
        f"or no C compiler at install time\n{compiled.stderr}"
    )
    pure = _run("-c", probe, pure=True)
    assert pure.stdout.strip() == "[]"


@pytest.mark.timeout(300)
def test_compiled_and_pure_python_do_the_same_with_every_input() -> None:
    """Fuzzer inputs (valid, mutated and random updates and frames) through a fresh peer:
    the same refusals and messages, counters, events and values either way."""
    args = ("-m", "tests.fuzzer", "--outcomes", str(DIFFERENTIAL_INPUTS), "--start", "0")
    compiled, pure = _run(*args, pure=False), _run(*args, pure=True)
    assert compiled.returncode == 0 and pure.returncode == 0, compiled.stderr + pure.stderr
    a, b = compiled.stdout.split(), pure.stdout.split()
    assert len(a) == DIFFERENTIAL_INPUTS
    assert len(set(a)) > 50  # (the inputs do different things)
    different = [seed for seed, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
    assert different == [], f"inputs that differ: {different[:20]} (tests.fuzzer.generate)"


@pytest.mark.timeout(300)
def test_the_pure_python_package_passes_the_core_tests() -> None:
    """The rest of the suite runs compiled; the sans-IO core is also run without it."""
    done = _run(
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/test_protocol.py",
        "tests/test_properties.py",
        "tests/test_squash.py",
        "tests/test_vectors.py",
        pure=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout and " failed" not in done.stdout


@pytest.fixture
def module(monkeypatch, tmp_path: Path) -> tuple[types.ModuleType, Path]:
    """A module ``crdt_stores.example`` with a "compiled copy" ``crdt_stores._c_example``."""
    source = tmp_path / "example.py"
    source.write_bytes(b"def f():\n    return 'python'\n")
    plain = types.ModuleType("crdt_stores.example")
    plain.f = lambda: "python"  # type: ignore[attr-defined]
    copy = types.ModuleType("crdt_stores._c_example")
    copy.f = lambda: "compiled"  # type: ignore[attr-defined]
    copy.SOURCES = {"example": _compiled.source_digest(source.read_bytes())}  # type: ignore[attr-defined]
    copy.__file__ = str(tmp_path / "_c_example.so")
    monkeypatch.setitem(sys.modules, "crdt_stores.example", plain)
    monkeypatch.setitem(sys.modules, "crdt_stores._c_example", copy)
    monkeypatch.delenv(_compiled.PURE_ENV, raising=False)
    monkeypatch.setattr(_compiled, "active", {})
    monkeypatch.setattr(_compiled, "_digests", {})
    return plain, source


def test_a_copy_built_from_this_source_replaces_the_module(module) -> None:
    plain, source = module
    assert _compiled.adopt("crdt_stores.example", str(source))
    assert plain.f() == "compiled" and "SOURCES" not in vars(plain)
    assert "crdt_stores.example" in _compiled.active


def test_an_edited_source_is_never_shadowed_by_an_old_build(module, caplog) -> None:
    plain, source = module
    source.write_bytes(b"def f():\n    return 'edited'\n")
    with caplog.at_level(logging.WARNING, "crdt_stores"):
        assert not _compiled.adopt("crdt_stores.example", str(source))
    assert plain.f() == "python" and not _compiled.active
    assert "built from other versions of the sources" in caplog.text


def test_a_build_is_not_used_when_another_module_of_its_group_changed(module, caplog) -> None:
    """The copies call one another: an edited ``entries`` must not leave a compiled
    ``updates`` running the old ``entries``."""
    plain, source = module
    other = source.parent / "other.py"
    other.write_bytes(b"X = 1\n")
    copy = sys.modules["crdt_stores._c_example"]
    copy.SOURCES["other"] = _compiled.source_digest(other.read_bytes())
    other.write_bytes(b"X = 2\n")
    with caplog.at_level(logging.WARNING, "crdt_stores"):
        assert not _compiled.adopt("crdt_stores.example", str(source))
    assert plain.f() == "python"


def test_pure_mode_and_missing_builds_keep_the_python_source(module, monkeypatch) -> None:
    plain, source = module
    monkeypatch.setenv(_compiled.PURE_ENV, "1")
    assert not _compiled.adopt("crdt_stores.example", str(source))
    monkeypatch.delenv(_compiled.PURE_ENV)
    monkeypatch.delitem(sys.modules, "crdt_stores._c_example")
    assert not _compiled.adopt("crdt_stores.example", str(source))  # (no such module)
    assert plain.f() == "python"
