"""Compiled copies of the hot modules, used when built from the very sources beside them.

``setup.py`` compiles ``<name>.py`` for each name in ``MODULES`` with mypyc (when mypy
and a C compiler are there at install time) into ``crdt_stores._c_<name>``; the copies
call one another directly, and each records the SHA-256 of every source of the group
(``SOURCES``). At the end of its own import, ``<name>`` calls ``adopt``: the compiled
functions and classes replace the Python ones only if every one of those sources is
unchanged, so an edited source never runs beside, or behind, a stale build.
``CRDT_STORES_PURE=1`` keeps everything in Python.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import sys
from pathlib import Path

__all__ = ["MODULES", "PURE_ENV", "active", "adopt", "source_digest"]

MODULES = ("values", "entries", "updates", "merge")
"""What every entry a peer sends goes through: reading and checking updates (``updates``,
``entries``, ``values``) and folding entries into values (``merge``). Order: imports first."""

PURE_ENV = "CRDT_STORES_PURE"

log = logging.getLogger("crdt_stores")

active: dict[str, str] = {}
"""Module name -> the compiled file now running it."""


def source_digest(source: bytes) -> str:
    return hashlib.sha256(source).hexdigest()


def _unchanged(sources: object, folder: Path) -> bool:
    if not isinstance(sources, dict) or not sources:
        return False
    for short, digest in sources.items():
        path = folder / f"{short}.py"
        if path not in _digests:
            try:
                _digests[path] = source_digest(path.read_bytes())
            except OSError:
                return False
        if _digests[path] != digest:
            return False
    return True


_digests: dict[Path, str] = {}


def adopt(name: str, source_file: str) -> bool:
    """Give module ``name`` (from ``source_file``) the contents of its compiled copy if
    the copy's group was built from the sources as they are now; returns whether it
    did. Called at the end of the module, before any importer sees its names."""
    if os.environ.get(PURE_ENV) == "1":
        return False
    package, _, short = name.rpartition(".")
    try:
        compiled = importlib.import_module(f"{package}._c_{short}")
    except ImportError:
        return False
    if not _unchanged(getattr(compiled, "SOURCES", None), Path(source_file).parent):
        log.warning(
            "%s: its compiled copy (%s) was built from other versions of the sources; "
            "running the Python source (reinstall the package to rebuild it)",
            name,
            compiled.__file__,
        )
        return False
    sys.modules[name].__dict__.update(
        (key, value)
        for key, value in vars(compiled).items()
        if not key.startswith("__") and key != "SOURCES"
    )
    active[name] = str(compiled.__file__)
    return True
