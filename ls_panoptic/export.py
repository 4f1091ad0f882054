"""Read Label Studio exports (JSON and JSON_MIN) into :class:`~ls_panoptic.model.Task` objects.

JSON (the full export) is a list of tasks: ``{"id", "data", "annotations", "predictions", ...}``.
JSON_MIN is a list of rows, one per annotation: the task's data fields at the top level, one
key per control (``from_name``) holding a region or a list of regions with their ``value``
fields flattened, plus ``id`` (task), ``annotation_id``, ``annotator``, ``created_at`` and
``updated_at``. JSON_MIN rows are turned into JSON-shaped tasks, their regions into result
items with an inferred ``type`` and no ``id`` (JSON_MIN keeps none).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from . import jsonload
from ._results import infer_type
from .errors import ExportError, Remedy
from .model import Task
from .tasks import task_from_dict

__all__ = ["ExportFormat", "parse_export", "read_export"]

ExportFormat = Literal["JSON", "JSON_MIN"]

_MIN_META = frozenset(
    {
        "id",
        "annotation_id",
        "annotator",
        "created_at",
        "updated_at",
        "lead_time",
        "drafts",
        "predictions",
        "agreement",
        "total_annotations",
        "cancelled_annotations",
    }
)
_SIZE_KEYS = ("original_width", "original_height", "image_rotation")
_RLE = frozenset({"rle"})


def read_export(path: Path) -> tuple[list[Task], ExportFormat]:
    """Read an export file (``.json``); see :func:`parse_export`."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ExportError(f"cannot read export {path}: {exc.strerror}") from exc
    return parse_export_text(raw, str(path))


def parse_export_text(
    text: str | bytes, source: str = "<stdin>"
) -> tuple[list[Task], ExportFormat]:
    """Parse export JSON (UTF-8 bytes, or text); ``source`` names it in error messages.

    Brush RLE lists arrive as int64 arrays (:mod:`ls_panoptic.jsonload`): reading a 12 MP
    export is then mostly simdjson's work, not the making of Python ints.
    """
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    try:
        data = jsonload.loads(raw, arrays=_RLE, encoding="utf-8")
    except json.JSONDecodeError as exc:
        raise ExportError(
            f"{source} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            "export the project as JSON or JSON_MIN"
        ) from exc
    except UnicodeDecodeError as exc:
        raise ExportError(f"export {source} is not UTF-8 text (is it a JSON export?)") from exc
    except RecursionError as exc:
        raise ExportError(f"{source}: JSON nested too deeply to be an export") from exc
    except ValueError as exc:  # an integer past Python's digit limit
        raise ExportError(f"{source}: {exc}") from exc
    return parse_export(data, source)


def parse_export(data: Any, source: str = "export") -> tuple[list[Task], ExportFormat]:
    """Turn decoded export JSON into tasks and tell which format it was.

    Takes a list of tasks (JSON), a list of rows (JSON_MIN), a ``{"tasks": [...]}`` dump, or
    one task object (as Label Studio imports it). A task that cannot be read does not stop the
    others: it comes back with its ``problem`` set and fails alone.
    """
    if isinstance(data, Mapping) and isinstance(data.get("tasks"), list):
        data = data["tasks"]  # a single-project dump wrapped in an object
    elif isinstance(data, Mapping) and any(k in data for k in ("annotations", "data")):
        data = [data]  # one task object, as Label Studio's import takes it
    if not isinstance(data, list):
        raise ExportError(f"{source}: expected a list of tasks (a JSON or JSON_MIN export)")
    if not data:
        return [], "JSON"
    rows = [row for row in data if isinstance(row, Mapping)]
    if any("annotations" in row or "data" in row for row in rows):
        return [_task(row, n) for n, row in enumerate(data)], "JSON"
    if len(rows) != len(data):
        raise ExportError(f"{source}: every element must be an object (a task or a JSON_MIN row)")
    if all(_is_prediction(row) for row in rows):
        raise ExportError(
            f"{source} holds predictions (model_version, score, result) without their tasks, as "
            "an ML backend returns them: nothing names their images. Import them into Label "
            'Studio as predictions of their tasks, or wrap each as {"data": {"image": URL}, '
            '"predictions": [...]} and convert predictions',
            remedy=Remedy.PREDICTIONS,
        )
    return _tasks_from_min(rows), "JSON_MIN"


def _is_prediction(row: Mapping[str, Any]) -> bool:
    return isinstance(row.get("result"), list) and ("model_version" in row or "score" in row)


def _task(row: Any, index: int) -> Task:
    if not isinstance(row, Mapping):
        return Task(None, {}, problem=f"task #{index} is not an object ({type(row).__name__})")
    try:
        return task_from_dict(row)
    except (TypeError, ValueError, KeyError) as exc:
        raw_id = row.get("id")
        task_id = raw_id if isinstance(raw_id, int) and not isinstance(raw_id, bool) else None
        return Task(task_id, {}, problem=f"task #{index} of the export is malformed: {exc}")


def _region_items(control: str, value: Any) -> list[dict[str, Any]] | None:
    """JSON_MIN control value -> result items, or None when it is not a list of regions.

    The control's name becomes the items' ``from_name``: a tool with a separate ``<Labels>``
    appears under both names, and parsing joins the two by it (:mod:`ls_panoptic.parse`)."""
    regions = value if isinstance(value, list) else [value]
    if not regions or not all(isinstance(r, Mapping) for r in regions):
        return None
    items = []
    for region in regions:
        body = {k: v for k, v in region.items() if k not in _SIZE_KEYS}
        item: dict[str, Any] = {"type": infer_type(body), "value": body, "from_name": control}
        item.update({k: region[k] for k in _SIZE_KEYS if k in region})
        items.append(item)
    return items


def _tasks_from_min(rows: list[Mapping[str, Any]]) -> list[Task]:
    by_task: dict[Any, dict[str, Any]] = {}
    for index, row in enumerate(rows):
        data: dict[str, Any] = {}
        result: list[dict[str, Any]] = []
        for key, value in row.items():
            if key in _MIN_META:
                continue
            items = _region_items(key, value)
            if items is None:
                data[key] = value
            else:
                result.extend(items)
        task_id = row.get("id", f"row{index}")
        task = by_task.setdefault(task_id, {"id": row.get("id"), "data": data, "annotations": []})
        if row.get("annotation_id") is None and not result:
            continue  # a task exported without any annotation (download_all_tasks=true)
        annotator = row.get("annotator")
        task["annotations"].append(
            {
                "id": row.get("annotation_id"),
                "result": result,
                "created_at": row.get("created_at", ""),
                "updated_at": row.get("updated_at", ""),
                "completed_by": annotator if isinstance(annotator, int) else None,
            }
        )
    return [task_from_dict(task) for task in by_task.values()]
