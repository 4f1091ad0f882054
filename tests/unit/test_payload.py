"""backend.payload: webhook bodies decoded like ``json.loads``, bulky results skipped (the
values in general: tests/unit/test_jsonload.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from backend.payload import SKIPPED, BodyError, decode


def test_an_annotation_event_keeps_what_the_receiver_reads() -> None:
    rle = list(range(256)) * 400
    body = {
        "action": "ANNOTATION_UPDATED",
        "annotation": {"id": 9, "task": 5, "result": [{"value": {"rle": rle}}], "drafts": []},
        "task": {"id": 5, "project": 3, "data": {"image": "/data/upload/3/a.png"}},
        "project": {"id": 3, "label_config": "<View/>"},
    }
    decoded = decode(json.dumps(body).encode())
    assert decoded["annotation"] == {"id": 9, "task": 5, "result": SKIPPED, "drafts": SKIPPED}
    assert decoded["task"] == body["task"] and decoded["project"] == body["project"]
    assert type(decoded["annotation"]["id"]) is int


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"a": NaN, "b": Infinity}', "nan"),  # Python's extension: accepted as before
        ('{"a": "\u00e9"}'.encode("utf-16"), {"a": "\u00e9"}),  # UTF-16 text: accepted
        (b'{"id": 123456789012345678901234567890}', {"id": 123456789012345678901234567890}),
        (b'{"a": 1, "a": 2}', {"a": 2}),  # the last duplicate wins, as in json.loads
    ],
)
def test_what_simdjson_refuses_but_json_accepts_is_accepted(raw: bytes, expected: Any) -> None:
    decoded = decode(raw)
    if expected == "nan":
        assert decoded["a"] != decoded["a"] and decoded["b"] == float("inf")
    else:
        assert decoded == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "empty body"),
        (b"  \n", "empty body"),
        (b'{"a": 1} x', "not valid JSON: Extra data (line 1, column 10)"),
        (b'{"a": }', "not valid JSON: Expecting value"),
        (b"\xff\xfe\xfd", "not UTF-8/16/32"),
        (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
        (b"[" + b"9" * 5000 + b"]", "a number is too long"),
    ],
)
def test_bodies_that_are_not_json_name_the_problem(raw: bytes, message: str) -> None:
    with pytest.raises(BodyError, match="body") as caught:
        decode(raw)
    assert message in str(caught.value)
