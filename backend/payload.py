"""Webhook bodies -> plain Python values, without building what the service never reads.

Label Studio posts the whole annotation with every event: its ``result`` holds each brush
stroke as a list of thousands of integers, so a 1080p annotation with 30 regions is a body of
~270 KB, and ``json.loads`` spends most of the acknowledgement's time making Python ints the
receiver then throws away (the worker pulls the task from Label Studio anyway: DESIGN 4).

So bodies are read by :func:`ls_panoptic.jsonload.loads` (simdjson; the whole document is still
validated) with the bulky fields (:data:`BULKY`) left unbuilt, replaced by :data:`SKIPPED`. What
simdjson refuses goes through ``json.loads``: odd bodies get the standard library's answers.
"""

from __future__ import annotations

import json
from typing import Any

from ls_panoptic.jsonload import SKIPPED, loads

__all__ = ["BULKY", "SKIPPED", "BodyError", "decode"]

#: keys whose values are never read by the receiver: annotation/prediction results and drafts
BULKY = frozenset({"result", "prediction", "predictions", "drafts"})


class BodyError(ValueError):
    """The body is not a JSON document the receiver can use; the message says why."""


def decode(raw: bytes) -> Any:
    """The body's JSON value, bulky fields replaced by :data:`SKIPPED`; ``BodyError`` if none."""
    if not raw.strip():
        raise BodyError("empty body: expected a JSON object with an 'action'")
    try:
        return loads(raw, skip=BULKY)
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
