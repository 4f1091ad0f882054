"""Webhook bodies -> plain Python values, without building what the service never reads.

Label Studio posts the whole annotation with every event: its ``result`` holds each brush
stroke as a list of thousands of integers, so a 1080p annotation with 30 regions is a body of
~270 KB, and ``json.loads`` spends most of the acknowledgement's time making Python ints the
receiver then throws away (the worker pulls the task from Label Studio anyway: DESIGN 4).

So bodies are parsed by simdjson (C++, validates the whole document, UTF-8 included), and only
the values outside the bulky fields (:data:`BULKY`) become Python objects; a bulky field's value
becomes :data:`SKIPPED`. Anything simdjson refuses (or cannot represent: integers past 64 bits,
UTF-16 text, duplicate keys) goes through ``json.loads`` instead, which accepts what it accepts
and otherwise names the problem: odd bodies get exactly the standard library's answers.
"""

from __future__ import annotations

import json
from typing import Any

import simdjson

__all__ = ["BULKY", "SKIPPED", "BodyError", "decode"]

#: keys whose values are never read by the receiver: annotation/prediction results and drafts
BULKY = frozenset({"result", "prediction", "predictions", "drafts"})

#: what a bulky field's value is replaced by (it was valid JSON, of any size)
SKIPPED = "<skipped>"

_SIMDJSON_REFUSALS = (ValueError, RuntimeError)  # UnicodeDecodeError is a ValueError


class BodyError(ValueError):
    """The body is not a JSON document the receiver can use; the message says why."""


def decode(raw: bytes) -> Any:
    """The body's JSON value, bulky fields replaced by :data:`SKIPPED`; ``BodyError`` if none."""
    if not raw.strip():
        raise BodyError("empty body: expected a JSON object with an 'action'")
    try:
        document = simdjson.Parser().parse(raw)
    except _SIMDJSON_REFUSALS:
        return _standard(raw)
    try:
        return _plain(document)
    except _KeysOutOfReach:
        return _standard(raw)
    except RecursionError:
        raise BodyError("body is not usable JSON: nested too deeply") from None


class _KeysOutOfReach(Exception):
    """Key lookups would go wrong: simdjson finds the first of equal keys (``json.loads`` keeps
    the last) and cuts keys at a NUL character."""


def _plain(value: Any) -> Any:
    # items() and as_dict() would build every nested value: look up key by key instead
    if isinstance(value, simdjson.Object):
        keys = list(value.keys())
        if len(set(keys)) != len(keys) or any("\x00" in k for k in keys):
            raise _KeysOutOfReach
        return {k: SKIPPED if k in BULKY else _plain(value[k]) for k in keys}
    if isinstance(value, simdjson.Array):
        return [_plain(v) for v in value]
    return value


def _skip_bulky(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: SKIPPED if k in BULKY else _skip_bulky(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_skip_bulky(v) for v in value]
    return value


def _standard(raw: bytes) -> Any:
    try:
        return _skip_bulky(json.loads(raw))
    except json.JSONDecodeError as exc:
        raise BodyError(
            f"body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except UnicodeDecodeError:
        raise BodyError("body is not valid JSON: not UTF-8/16/32 text") from None
    except RecursionError:
        raise BodyError("body is not usable JSON: nested too deeply") from None
    except ValueError:  # an integer past Python's digit limit (sys.get_int_max_str_digits)
        raise BodyError("body is not usable JSON: a number is too long") from None
