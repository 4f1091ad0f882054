"""JSON documents -> Python values like ``json.loads``, with two shortcuts for Label Studio's bulk.

A brush stroke is a JSON list of thousands of integers (``value.rle``); a 12 MP annotation holds
hundreds of thousands. ``json.loads`` makes a Python int of each, which is most of the time spent
reading an export, and all of the time spent reading a webhook that never looks at them.

:func:`loads` parses with simdjson (C++, validates the whole document, UTF-8 included) and builds
Python values key by key, so that

- a value under a key in ``arrays`` that is a list of integers becomes a 1-D ``int64`` numpy
  array, copied out of the parsed document in one go (any other value is built as usual; one
  blind spot: simdjson's export flattens nested lists, so ``[1, [2]]``, and only lists whose
  nested lists each hold exactly one element, reads as ``[1, 2]``);
- a value under a key in ``skip`` is not built at all: it becomes :data:`SKIPPED`.

Whatever simdjson refuses or cannot represent (integers past 64 bits, ``NaN``, UTF-16 text,
invalid JSON) and what its key lookups would get wrong (duplicate keys, where ``json.loads``
keeps the last; keys holding NUL) goes through ``json.loads`` instead, so that the values and
the errors (``json.JSONDecodeError``, ``UnicodeDecodeError``, ``RecursionError``,
``ValueError``) are the standard library's.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import simdjson

__all__ = ["SKIPPED", "loads"]

#: what the value of a skipped key becomes (it was valid JSON, of any size)
SKIPPED = "<skipped>"

_NONE: frozenset[str] = frozenset()


class _KeysOutOfReach(Exception):
    """simdjson's lookup finds the first of equal keys and cuts keys at a NUL character."""


def loads(
    raw: bytes,
    *,
    arrays: frozenset[str] = _NONE,
    skip: frozenset[str] = _NONE,
    encoding: str | None = None,
) -> Any:
    """The JSON value of ``raw``, as ``json.loads`` gives it but for ``arrays`` and ``skip``.

    ``encoding``: decode ``raw`` with it instead of letting ``json.loads`` detect UTF-8, -16
    or -32 (``"utf-8"``: anything else raises ``UnicodeDecodeError``).
    """
    try:
        document = simdjson.Parser().parse(raw)
    except (ValueError, RuntimeError):  # UnicodeDecodeError is a ValueError
        return _standard(_json_loads(raw, encoding), arrays, skip)
    try:
        return _Builder(arrays, skip).build(document)
    except _KeysOutOfReach:
        return _standard(_json_loads(raw, encoding), arrays, skip)


def _json_loads(raw: bytes, encoding: str | None) -> Any:
    return json.loads(raw if encoding is None else raw.decode(encoding))


class _Builder:
    def __init__(self, arrays: frozenset[str], skip: frozenset[str]) -> None:
        self.arrays, self.skip = arrays, skip

    def build(self, value: Any) -> Any:
        if isinstance(value, simdjson.Object):
            # items() and as_dict() would build every nested value: look up key by key instead
            keys = list(value.keys())
            if len(set(keys)) != len(keys) or any("\x00" in k for k in keys):
                raise _KeysOutOfReach
            return {k: self.member(k, value[k]) for k in keys}
        if isinstance(value, simdjson.Array):
            return [self.build(v) for v in value]
        return value

    def member(self, key: str, value: Any) -> Any:
        if key in self.skip:
            return SKIPPED
        if key in self.arrays and isinstance(value, simdjson.Array):
            try:  # every element an integer that fits int64, else built as a list
                flat = np.frombuffer(value.as_buffer(of_type="i"), dtype=np.int64)
            except (ValueError, TypeError, RuntimeError):
                flat = None
            if flat is not None and flat.size == len(value):  # as_buffer flattens nested lists
                return flat
        return self.build(value)


def _standard(value: Any, arrays: frozenset[str], skip: frozenset[str]) -> Any:
    """``value`` from ``json.loads`` given the same shortcuts (so both paths agree)."""
    if isinstance(value, dict):
        return {k: _member(k, v, arrays, skip) for k, v in value.items()}
    if isinstance(value, list):
        return [_standard(v, arrays, skip) for v in value]
    return value


def _member(key: str, value: Any, arrays: frozenset[str], skip: frozenset[str]) -> Any:
    if key in skip:
        return SKIPPED
    if key in arrays and isinstance(value, list) and _int64s(value):
        return np.array(value, dtype=np.int64).reshape(len(value))
    return _standard(value, arrays, skip)


def _int64s(values: list[Any]) -> bool:
    return all(type(v) is int and -(2**63) <= v < 2**63 for v in values)
