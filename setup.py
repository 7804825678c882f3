"""The package is pure Python; ``crdt_stores._compiled.MODULES`` (the path every entry
from a peer takes) are also compiled with mypyc when mypy and a C compiler are there.

Each module is compiled from a copy, ``crdt_stores/_c_<name>.py`` (written here and
removed once mypyc has read it), that records the SHA-256 of every source compiled:
a build is used only while they are all unchanged (``crdt_stores._compiled``). Without a
C compiler, or with ``CRDT_STORES_PURE=1`` at install time, nothing is compiled.
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path
from typing import Any

from setuptools import setup

HERE = Path(__file__).parent
PACKAGE = HERE / "crdt_stores"
_compiled = runpy.run_path(str(PACKAGE / "_compiled.py"))  # (standard library only)
MODULES: tuple[str, ...] = _compiled["MODULES"]
METADATA_ONLY = {"egg_info", "dist_info", "sdist", "clean", "--version", "--name"}


def _copies() -> list[Path]:
    """Write each module's compiled copy: its source, importing the other copies, and
    the digests of every source of the group (``SOURCES``)."""
    sources = {name: (PACKAGE / f"{name}.py").read_bytes() for name in MODULES}
    digests = {name: _compiled["source_digest"](source) for name, source in sources.items()}
    paths = []
    for name, source in sources.items():
        text = source.decode("utf-8")
        for other in MODULES:
            text = text.replace(f"from .{other} import", f"from ._c_{other} import")
        text += f"\nSOURCES = {digests!r}\n"
        path = PACKAGE / f"_c_{name}.py"
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def _extensions() -> list[Any]:
    if os.environ.get(_compiled["PURE_ENV"]) == "1" or METADATA_ONLY & set(sys.argv[1:]):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("mypyc is not installed: crdt_stores stays pure Python", file=sys.stderr)
        return []
    paths = _copies()
    try:
        extensions = mypycify(
            [str(path.relative_to(HERE)) for path in paths], group_name="crdt_stores._c"
        )
    finally:
        for path in paths:
            path.unlink(missing_ok=True)
    for extension in extensions:
        extension.optional = True  # no C compiler: the pure Python package still installs
    return extensions


setup(ext_modules=_extensions())
