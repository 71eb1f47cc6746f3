"""cxsweep.jsoncodec: orjson's speed, the standard library's values and errors."""

from __future__ import annotations

import json
import math
import uuid
from typing import Any

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from cxsweep import jsoncodec
from cxsweep.runs.model import PlanEntry
from cxsweep.runs.store import RunStore

# JSON values as the platform could send them: integers far past 64 bits, any text
# (lone surrogates included), nesting. Not NaN: it is not JSON, and orjson writes it null.
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_VALUES)
def test_values_read_and_write_as_the_standard_library_does(value: Any) -> None:
    by_json = json.dumps(value)
    assert jsoncodec.loads(by_json) == json.loads(by_json)
    assert jsoncodec.loads(by_json.encode()) == json.loads(by_json)
    assert jsoncodec.loads(jsoncodec.dumps(value)) == json.loads(by_json)


@pytest.mark.parametrize(
    "raw",
    [
        b"[18446744073709551616]",  # 2**64: orjson alone gives a float
        b"[-9223372036854775809]",
        b'{"id": 123456789012345678901234567890}',
        b'["\\ud800"]',  # a lone surrogate: orjson alone refuses it
        b"[1e400]",
    ],
)
def test_what_orjson_alone_gets_wrong_comes_back_exact(raw: bytes) -> None:
    got = jsoncodec.loads(raw)
    assert got == json.loads(raw)
    assert repr(got) == repr(json.loads(raw))  # an int stays an int, not an equal float


def test_nan_and_infinity_are_written_back_as_they_were_read() -> None:
    # 1e400 is JSON by the grammar; json reads it as infinity (orjson refuses it), and
    # orjson alone would write NaN and infinity as null: a record restored with null.
    raw = b'{"weight": 1e400, "low": -1e400, "ratio": NaN, "lim": -Infinity, "x": 1.5}'
    value = jsoncodec.loads(raw)
    assert value == {**json.loads(raw), "ratio": value["ratio"]}
    assert math.isnan(value["ratio"])
    written = jsoncodec.dumps(value)
    assert b"null" not in written
    back = jsoncodec.loads(written)
    assert back["weight"] == math.inf and back["low"] == back["lim"] == -math.inf
    assert math.isnan(back["ratio"]) and back["x"] == 1.5


@pytest.mark.parametrize(
    "rows",
    [[b""], [b" "], [b'["a",{},null,"r"],["b",{},null,"r"]'], [b"1,2"], [b"{}"]],
)
def test_plan_rows_that_are_not_one_array_each_are_refused(rows: list[bytes]) -> None:
    # Each is refused alone; joined into one document, none may pass (or be dropped, or
    # split in two) either.
    with pytest.raises((ValueError, TypeError)):
        PlanEntry.from_json(rows[0])
    with pytest.raises(ValueError):
        PlanEntry.many_from_json(rows)


@pytest.mark.parametrize("raw", [b"[1,", b"\xff", b"", b"{'a': 1}"])
def test_what_is_not_json_raises_a_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError):
        jsoncodec.loads(raw)


def test_nesting_past_the_recursion_limit_raises_as_the_standard_library_does() -> None:
    with pytest.raises(RecursionError):
        jsoncodec.loads(b"[" * 200_000 + b"]" * 200_000)


def test_a_page_and_a_plan_row_keep_their_values_through_redis(redis_client: redis.Redis) -> None:
    store = RunStore(redis_client, f"codec-{uuid.uuid4().hex[:8]}")
    contacts: list[dict[str, Any]] = [
        {"id": "c1", "phone": "+12025550123", "account": 2**70, "note": "\ud800 odd"},
        {"id": 2, "phone": None, "score": 0.1},
        jsoncodec.loads(b'{"id": "c3", "weight": 1e400, "ratio": NaN}'),
    ]
    store.store_page(0, contacts)
    loaded = store.load_page(0)
    assert loaded is not None and loaded[:2] == contacts[:2]
    assert loaded[2]["weight"] == math.inf and math.isnan(loaded[2]["ratio"])
    entry = PlanEntry("c1", {"phone": "x"}, None, "invalid", record=contacts[0])
    assert PlanEntry.from_json(entry.to_json()) == entry
