"""Task and annotation dicts (exports, webhooks, the SDK) -> model objects; ISO timestamps.

Shapes accepted: tasks and annotations of a JSON export, the ``annotation`` / ``task`` objects
of a webhook, and SDK objects turned into dicts (``model_dump()``). ``completed_by`` is an
integer in exports and webhooks and a user object ``{"id": 3, "email": ...}`` from the SDK's
``tasks.get``; both give the user id. Ids may be integers or digit strings. Drafts are never
read; predictions a JSON export lists as bare ids are counted, not read.

Timestamps are ISO 8601 (``Z`` or an offset; naive ones are taken as UTC), parsed by
:func:`parse_timestamp`, never compared as strings. Bad input raises ``ValueError`` with the
reason; callers add the task id.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from ls_panoptic.model import Annotation, Task

__all__ = ["annotation_from_dict", "parse_timestamp", "task_from_dict"]

_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?"
    r"\s*(?:(?P<utc>[Zz])|(?P<sign>[+-])(?P<oh>\d{2}):?(?P<om>\d{2})?)?"
)


def parse_timestamp(value: str) -> datetime:
    """An aware UTC datetime from an ISO 8601 string (any number of fraction digits).

    Raises:
        ValueError: not a timestamp.
    """
    match = _TIMESTAMP.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"{value!r} is not an ISO 8601 timestamp")
    year, month, day, hour, minute, second = (int(part or 0) for part in match.groups()[:6])
    micro = int((match[7] or "0")[:6].ljust(6, "0"))
    try:
        stamp = datetime(year, month, day, hour, minute, second, micro, tzinfo=timezone.utc)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid timestamp: {exc}") from None
    if match["sign"]:
        offset = timedelta(hours=int(match["oh"]), minutes=int(match["om"] or 0))
        stamp -= offset if match["sign"] == "+" else -offset
    return stamp


def annotation_from_dict(d: Mapping[str, Any], *, is_prediction: bool = False) -> Annotation:
    """An :class:`Annotation` from an export, webhook or SDK annotation (or prediction) dict.

    Raises:
        ValueError: a field has the wrong type (the message names it).
    """
    if not isinstance(d, Mapping):
        raise ValueError(f"an annotation must be an object, got {type(d).__name__}")
    user = d.get("completed_by")
    if isinstance(user, Mapping):
        user = user.get("id")
    return Annotation(
        id=_optional_int(d.get("id"), "annotation id"),
        result=_result(d.get("result")),
        updated_at=_timestamp(d.get("updated_at"), "updated_at"),
        created_at=_timestamp(d.get("created_at"), "created_at"),
        completed_by=_optional_int(user, "completed_by"),
        ground_truth=_flag(d.get("ground_truth"), "ground_truth"),
        was_cancelled=_flag(d.get("was_cancelled"), "was_cancelled"),
        is_prediction=is_prediction,
    )


def task_from_dict(d: Mapping[str, Any]) -> Task:
    """A :class:`Task` from an export or SDK task dict (annotations and predictions; no drafts).

    Predictions given as bare ids (JSON exports) are counted in ``prediction_ids``, not read.

    Raises:
        ValueError: no ``data`` object, or malformed annotations (the message names which).
    """
    if not isinstance(d, Mapping):
        raise ValueError(f"a task must be an object, got {type(d).__name__}")
    data = d.get("data")
    if not isinstance(data, Mapping):
        raise ValueError("the task has no 'data' object")
    predictions = d.get("predictions")
    ids = 0
    if isinstance(predictions, list):  # JSON exports list them by id: nothing to convert
        ids = sum(1 for p in predictions if isinstance(p, int) and not isinstance(p, bool))
        predictions = [p for p in predictions if not isinstance(p, int) or isinstance(p, bool)]
    return Task(
        id=_optional_int(d.get("id"), "task id"),
        data=data,
        annotations=_annotations(d.get("annotations"), "annotations", is_prediction=False),
        predictions=_annotations(predictions, "predictions", is_prediction=True),
        prediction_ids=ids,
    )


def _annotations(items: object, what: str, *, is_prediction: bool) -> list[Annotation]:
    if items is None:
        return []
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise ValueError(f"task {what} must be a list, got {type(items).__name__}")
    out = []
    for n, item in enumerate(items):
        try:
            out.append(annotation_from_dict(item, is_prediction=is_prediction))
        except ValueError as exc:
            raise ValueError(f"{what}[{n}]: {exc}") from None
    return out


def _result(result: object) -> list[dict[str, Any]]:
    if result is None:
        return []
    if isinstance(result, (str, bytes)) or not isinstance(result, Sequence):
        raise ValueError(f"'result' must be a list, got {type(result).__name__}")
    bad = [n for n, item in enumerate(result) if not isinstance(item, Mapping)]
    if bad:
        raise ValueError(f"'result' item {bad[0]} is not an object")
    return [dict(item) for item in result]


def _optional_int(value: object, what: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit() and value.strip().isascii():
        return int(value.strip())
    raise ValueError(f"{what} must be an integer, got {value!r}")


def _flag(value: object, what: str) -> bool:
    if value is None:
        return False
    if isinstance(value, bool) or value in (0, 1):
        return bool(value)
    raise ValueError(f"{what} must be true or false, got {value!r}")


def _timestamp(value: object, what: str) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, datetime):
        value = value.isoformat()
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a timestamp string, got {value!r}")
    try:
        parse_timestamp(value)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None
    return value
