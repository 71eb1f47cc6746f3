"""JSON on the paths a run takes per contact (API answers, pages and plan rows in Redis):
orjson's speed with the standard library's answers.

orjson parses and writes several times faster than ``json`` (bench/PROFILE.md, session
7), but differs where the platform's data could reach it: an integer past 64 bits comes
back as a float (a record restored with a rounded value would be a wrong write); it
refuses what ``json`` takes (a lone surrogate, NaN, nesting past 1,024); it cannot
write some of what ``json`` reads (those integers, lone surrogates, non-string keys);
and it would write NaN and infinity (``1e400`` in an answer) as null. Each of those goes
to ``json``, so a value reads and writes exactly as it did before.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import orjson

# An integer orjson might not hold has 19 digits or more (its range ends at 2**64 - 1 and
# -2**63): found by turning every digit into "0" and looking for 19 in a row, ~50 us for
# a page of 500 contacts (a regular expression took ten times that). A false alarm (a
# long run of digits in a string) only parses with ``json``.
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_DIGITS = b"0" * 19


def loads(raw: bytes | bytearray | memoryview | str) -> Any:
    """``json.loads(raw)``, the same value and the same errors, at orjson's speed."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    if data.translate(_DIGITS_TO_ZERO).find(_LONG_DIGITS) != -1:
        return _json_loads(raw if isinstance(raw, str) else data)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        # What json may still take (and else raise its own error for): see the module.
        return _json_loads(raw if isinstance(raw, str) else data)


def loads_rows(rows: Sequence[bytes | str]) -> list[list[Any]]:
    """Rows of a Redis list or hash, each one JSON array, decoded as one document (a call
    per row costs several times as much). A row that is not one array (empty, or two
    joined) could still make a document: ValueError unless there is one array a row."""
    if not rows:
        return []
    joined = b",".join(
        row if isinstance(row, bytes) else row.encode("utf-8", "surrogatepass") for row in rows
    )
    decoded = loads(b"[" + joined + b"]")
    if len(decoded) != len(rows) or not all(isinstance(row, list) for row in decoded):
        raise ValueError("a stored row is not one JSON array")
    return decoded


def dumps(value: Any) -> bytes:
    """Compact JSON of ``value`` that ``loads`` reads back as ``json`` would."""
    try:
        return orjson.dumps(value)
    except TypeError:  # past 64 bits, a lone surrogate, a key that is not a string, NaN
        return json.dumps(value, separators=(",", ":")).encode()


def dumps_text(value: Any) -> str:
    return dumps(value).decode()


class _NonFinite(float):
    """NaN or an infinity, as ``json`` reads them (``NaN``, ``1e400``): orjson would write
    them as null, but it refuses a float subclass, so ``dumps`` hands a value holding one
    to ``json``, which writes it back as it was read. orjson never reads them, so in
    these paths they come only from here (walking every value written to find them
    cost more than orjson saves)."""


def _float(text: str) -> float:
    value = float(text)
    return value if math.isfinite(value) else _NonFinite(value)


def _json_loads(raw: bytes | str) -> Any:
    return json.loads(raw, parse_constant=_NonFinite, parse_float=_float)
