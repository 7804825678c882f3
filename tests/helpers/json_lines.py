"""Serve a handler over stdin/stdout, one JSON command per line, one JSON answer per line
(the scripts the JavaScript tests drive)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any


def serve(handle: Callable[[Any], Any]) -> None:
    """Answer every command until end of input; an exception answers ``{"error": ...}``."""
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            answer = handle(json.loads(line))
        except Exception as exc:  # answered, not fatal: the test reports it
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
