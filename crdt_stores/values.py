"""Store values: validation, exact-type CBOR encoding, copies and digests.

pycrdt's own value conversion turns ``1`` into ``1.0`` and panics on big ints and
non-``str`` dict keys, so values never reach pycrdt as Python objects: every value
is checked here and travels as CBOR bytes, which keep ``int``/``float``/``bool``
apart and represent every signed 64-bit integer exactly.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from collections.abc import Iterator, Mapping
from typing import Any, TypeAlias

import cbor2

__all__ = [
    "DEFAULT_MAX_VALUE_BYTES",
    "MAX_DEPTH",
    "MAX_KEY_BYTES",
    "StoreValue",
    "check_key",
    "copy_value",
    "decode",
    "digest",
    "encode",
    "flat_and_plain",
    "is_valid",
    "normalize",
    "same_value",
]

StoreValue: TypeAlias = (
    str | int | float | bool | list["StoreValue"] | dict[str, "StoreValue"] | None
)
"""What a store holds: JSON-like data with exact ``int``/``float``/``bool`` types."""

MAX_DEPTH = 32
"""Deepest container nesting accepted (a list inside a list ... 32 levels)."""

DEFAULT_MAX_VALUE_BYTES = 1 << 20
"""Default limit on one written value, measured as its CBOR encoding."""

MAX_KEY_BYTES = 1024
"""Longest store key, in UTF-8 bytes (store names use the same limit)."""

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

# cbor2 refuses to decode deeper than this; a little above MAX_DEPTH so that the
# depth check below, with its clear message, is the one that normally fires.
_DECODE_MAX_DEPTH = MAX_DEPTH + 8


def plain_key(key: Any) -> Any:
    """A ``str`` subclass (``StrEnum``...) as its text, for lookups; anything else as is."""
    return str.__str__(key) if isinstance(key, str) and type(key) is not str else key


def check_key(key: object, what: str = "key") -> str:
    """Return ``key`` if it is a usable store key (or store name); raise otherwise."""
    if type(key) is not str:
        if isinstance(key, str):
            key = str.__str__(key)  # the text itself: str() of an Enum member names the member
        else:
            raise TypeError(f"{what} must be a str, not {type(key).__name__}")
    if not key:
        raise ValueError(f"{what} must not be empty")
    if key.isascii():
        size = len(key)
    else:
        try:
            size = len(key.encode("utf-8"))
        except UnicodeEncodeError:
            raise ValueError(f"{what} is not valid Unicode (lone surrogate)") from None
    if size > MAX_KEY_BYTES:
        raise ValueError(f"{what} is {size} bytes long; the limit is {MAX_KEY_BYTES}")
    return key


class _Refused(Exception):
    """Raised inside ``_normalize``; the path is collected while unwinding."""

    def __init__(self, error: type[Exception], message: str) -> None:
        self.error = error
        self.message = message
        self.path: list[object] = []


def normalize(value: object) -> StoreValue:
    """Return a private, validated copy of ``value``.

    Tuples become lists and subclasses of ``str``/``int``/``float``/``list``/``dict``
    become their base type. Raises ``TypeError`` for types a store cannot hold and
    ``ValueError`` for values out of range (big ints, NaN, infinities, deep nesting);
    the message names where in the value the problem is.
    """
    if type(value) is dict and flat_and_plain(value):
        return dict(value)  # the usual small record: no recursion needed
    try:
        return _normalize(value, 0)
    except _Refused as refused:
        path = "value" + "".join(f"[{part!r}]" for part in reversed(refused.path))
        raise refused.error(f"{path}: {refused.message}") from None


def flat_and_plain(value: dict[Any, Any]) -> bool:
    """A dict of ASCII ``str`` keys and valid scalar values (the fast path of ``normalize``)."""
    for key, item in value.items():
        if type(key) is not str or not key.isascii():
            return False
        kind = type(item)
        if kind is str:
            if not item.isascii():
                return False
        elif kind is int:
            if not INT64_MIN <= item <= INT64_MAX:
                return False
        elif kind is float:
            if not math.isfinite(item):
                return False
        elif item is not None and kind is not bool:
            return False
    return True


def _normalize(value: object, depth: int) -> StoreValue:
    kind = type(value)
    if value is None or kind is bool:
        return value  # type: ignore[return-value]
    if kind is str:
        if not value.isascii():  # type: ignore[attr-defined]
            _check_text(value)  # type: ignore[arg-type]
        return value  # type: ignore[return-value]
    if kind is int:
        if not INT64_MIN <= value <= INT64_MAX:  # type: ignore[operator]
            raise _Refused(ValueError, f"int {value} is outside the signed 64-bit range")
        return value  # type: ignore[return-value]
    if kind is float:
        if not math.isfinite(value):  # type: ignore[arg-type]
            raise _Refused(
                ValueError, f"float {value} is not finite (NaN and infinities are refused)"
            )
        return value  # type: ignore[return-value]
    if isinstance(value, (list, tuple, dict)):
        if depth >= MAX_DEPTH:
            raise _Refused(ValueError, f"nesting is deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            out: dict[str, StoreValue] = {}
            for k, v in value.items():
                if type(k) is not str:
                    if not isinstance(k, str):
                        raise _Refused(
                            TypeError, f"dict keys must be str, not {type(k).__name__} ({k!r})"
                        )
                    k = str.__str__(k)
                if not k.isascii():
                    try:
                        _check_text(k)
                    except _Refused as refused:
                        refused.message = f"key {k!r}: {refused.message}"
                        raise
                try:
                    out[k] = _normalize(v, depth + 1)
                except _Refused as refused:
                    refused.path.append(k)
                    raise
            return out
        items: list[StoreValue] = []
        for index, v in enumerate(value):
            try:
                items.append(_normalize(v, depth + 1))
            except _Refused as refused:
                refused.path.append(index)
                raise
        return items
    # Subclasses of the scalar types (IntEnum, str subclasses...) keep their base type.
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return _normalize(str.__str__(value), depth)
    if isinstance(value, int):
        return _normalize(int(value), depth)
    if isinstance(value, float):
        return _normalize(float(value), depth)
    raise _Refused(
        TypeError,
        f"{kind.__name__} is not a store value "
        "(use str, int, float, bool, None, list, tuple or dict with str keys)",
    )


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _Refused(ValueError, "string is not valid Unicode (lone surrogate)") from None


def is_valid(value: object, _depth: int = 0) -> bool:
    """True when a decoded value (from a peer) is a store value; nothing is copied."""
    kind = type(value)
    if kind is dict and _depth < MAX_DEPTH and flat_and_plain(value):  # type: ignore[arg-type]
        return True  # (a map of scalars inside as many containers as a local write allows)
    if value is None or kind is bool or kind is str:
        return True
    if kind is int:
        return INT64_MIN <= value <= INT64_MAX  # type: ignore[operator]
    if kind is float:
        return math.isfinite(value)  # type: ignore[arg-type]
    if _depth >= MAX_DEPTH:
        return False
    if kind is list:
        return all(is_valid(v, _depth + 1) for v in value)  # type: ignore[attr-defined]
    if kind is dict:
        return all(
            type(k) is str and is_valid(v, _depth + 1)
            for k, v in value.items()  # type: ignore[attr-defined]
        )
    return False


def encode(value: object) -> bytes:
    """CBOR-encode an already normalized value (or a structure holding such values)."""
    return cbor2.dumps(value)


class _NoTags(Mapping[int, Any]):
    """cbor2's table of tag decoders, refusing every tag.

    This library never writes a CBOR tag. cbor2 would otherwise build dates,
    regular expressions, bignums and shared references (cyclic or exponentially
    repeated structures from a few bytes) out of what a peer sends.
    """

    def __getitem__(self, tag: int) -> Any:
        def refuse(*_: Any) -> Any:
            raise ValueError(f"CBOR tag {tag} is not allowed")

        return refuse

    def get(self, tag: int, default: Any = None) -> Any:
        return self[tag]

    def __contains__(self, tag: object) -> bool:
        return True

    def __iter__(self) -> Iterator[int]:
        return iter(())

    def __len__(self) -> int:
        return 0


_NO_TAGS = _NoTags()


def _refuse_tag(_decoder: Any, tag: Any) -> Any:
    raise ValueError(f"CBOR tag {tag.tag} is not allowed")


_strict_loads = functools.partial(
    cbor2.loads,
    max_depth=_DECODE_MAX_DEPTH,
    semantic_decoders=_NO_TAGS,
    tag_hook=_refuse_tag,
    allow_indefinite=False,
)


# Bytes that may start a tag or an indefinite length: data without any of them cannot
# hold one, and decodes faster without the strict options.
_MAYBE_TAG_OR_INDEFINITE = re.compile(rb"[\xc0-\xdf\x5f\x7f\x9f\xbf\xdf\xff]")


def decode(data: bytes | bytearray) -> Any:
    """Decode CBOR from a peer; raises ``ValueError`` on anything malformed.

    Strict: no tags, no indefinite lengths, bounded depth (none of which this
    library writes). The result is *not* validated as a store value: callers
    validate the parts they use.
    """
    try:
        if _MAYBE_TAG_OR_INDEFINITE.search(data) is None:
            return cbor2.loads(data, max_depth=_DECODE_MAX_DEPTH)
        return _strict_loads(data)
    except (cbor2.CBORDecodeError, RecursionError, ValueError, TypeError, OverflowError) as exc:
        raise ValueError(f"malformed CBOR: {exc}") from None


def copy_value(value: StoreValue) -> StoreValue:
    """Deep copy of a store value (faster than ``copy.deepcopy`` for this shape)."""
    kind = type(value)
    if kind is list:
        return [copy_value(v) for v in value]  # type: ignore[union-attr]
    if kind is dict:
        return {k: copy_value(v) for k, v in value.items()}  # type: ignore[union-attr]
    return value


def same_value(a: object, b: object) -> bool:
    """Equality that also compares types: ``1``, ``1.0`` and ``True`` all differ."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(v, b[k]) for k, v in a.items())
    return a == b


def digest(value: object) -> str:
    """Short stable hash of a value, independent of dict ordering, types included."""
    return hashlib.sha256(cbor2.dumps(value, canonical=True)).hexdigest()[:16]


if __name__ == "crdt_stores.values":  # (not in the compiled copy, crdt_stores._c_values)
    from ._compiled import adopt

    adopt(__name__, __file__)
