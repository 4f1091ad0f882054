"""ls_panoptic.jsonload: json.loads' values, RLE lists as int64 arrays, skipped keys unbuilt."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ls_panoptic.jsonload import SKIPPED, loads

ARRAYS = frozenset({"rle"})
SKIP = frozenset({"result"})


def expected(value: Any) -> Any:
    """``value`` (from json.loads) as loads() should return it."""
    if isinstance(value, dict):
        return {k: member(k, v) for k, v in value.items()}
    if isinstance(value, list):
        return [expected(v) for v in value]
    return value


def member(key: str, value: Any) -> Any:
    if key in SKIP:
        return SKIPPED
    ints = isinstance(value, list) and all(type(v) is int and -(2**63) <= v < 2**63 for v in value)
    return ("int64", value) if key in ARRAYS and ints else expected(value)


def comparable(value: Any) -> Any:
    """loads()' result with int64 arrays tagged, for ==."""
    if isinstance(value, np.ndarray):
        assert value.dtype == np.int64 and value.ndim == 1
        return ("int64", value.tolist())
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


KEYS = st.sampled_from(["rle", "result", "id", "value", "\u00e9"]) | st.text(max_size=4)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**65), max_value=2**65)  # past int64 and uint64
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
)
JSON = st.recursive(
    SCALARS | st.lists(st.integers(-(2**64), 2**64), max_size=8),  # RLE-like lists
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(KEYS, kids, max_size=4),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(JSON)
def test_values_are_those_of_json_loads_with_arrays_and_skips(value: Any) -> None:
    raw = json.dumps(value).encode()
    got = loads(raw, arrays=ARRAYS, skip=SKIP)
    want = expected(json.loads(raw))
    assert comparable(got) == want or _flattened_blind_spot(value)


def _flattened_blind_spot(value: Any) -> bool:
    """True when ``value`` holds an "rle" list with nested lists (the documented blind spot:
    ``[1, [2]]`` reads as ``[1, 2]``)."""
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "rle" and isinstance(v, list) and any(isinstance(x, list) for x in v):
                return True
            if _flattened_blind_spot(v):
                return True
    if isinstance(value, list):
        return any(_flattened_blind_spot(v) for v in value)
    return False


def test_an_rle_list_is_one_int64_array() -> None:
    rle = list(range(256)) * 50
    raw = json.dumps([{"value": {"rle": rle, "format": "rle"}, "result": [rle]}]).encode()
    (item,) = loads(raw, arrays=ARRAYS, skip=SKIP)
    assert isinstance(item["value"]["rle"], np.ndarray)
    assert item["value"]["rle"].tolist() == rle
    assert item["result"] == SKIPPED


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": NaN}',  # Python's extension
        b'{"rle": [1, 2], "rle": [3]}',  # duplicate keys: the last wins
        b'{"a\\u0000b": 1, "a": 2}',  # a NUL in a key
        b'{"rle": [123456789012345678901234567890]}',  # past 64 bits
    ],
)
def test_what_simdjson_cannot_read_right_goes_through_json_loads(raw: bytes) -> None:
    got = loads(raw, arrays=ARRAYS)
    want = expected(json.loads(raw))
    assert repr(comparable(got)) == repr(want)


def test_errors_are_json_loads_errors() -> None:
    with pytest.raises(json.JSONDecodeError, match="Expecting value"):
        loads(b'{"a": }')
    with pytest.raises(UnicodeDecodeError):
        loads('{"a": "\u00e9"}'.encode("utf-16"), encoding="utf-8")
    assert loads('{"a": "\u00e9"}'.encode("utf-16")) == {"a": "\u00e9"}  # json.loads' detection
