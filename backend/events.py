"""Label Studio webhook payloads -> the work they call for (pure: no Flask, no Redis).

Payloads as Label Studio 1.23 sends them (``webhooks/models.py``; ``project`` is the full project
object whenever the hook has "Send payload" on; ids are integers)::

    ANNOTATION_CREATED/UPDATED  annotation: {id, task: <id>, ...}, task: {id, project, ...}
    ANNOTATIONS_CREATED         annotation: [{id, task: <id>, ...}], task: [{id, ...}]
    ANNOTATIONS_DELETED         annotations: [{id}]
    TASKS_CREATED               tasks: [{id, project, data, ...}]
    TASKS_DELETED               tasks: [{id}]
    PROJECT_UPDATED             project: {id, label_config, ...}
    START_TRAINING              project: {id, label_config, ...}  (ML backend "Start training")

Anything else is ``Ignored``. A payload that lacks what its action needs raises ``PayloadError``
naming the field (values are never echoed: they may be large or private).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "HANDLED_ACTIONS",
    "CheckConfig",
    "DropAnnotations",
    "DropTasks",
    "Event",
    "Ignored",
    "PayloadError",
    "Rebuild",
    "SyncTasks",
    "counter_name",
    "parse_event",
]


class PayloadError(ValueError):
    """The payload cannot be acted on; the message names the action and the field."""


@dataclass(frozen=True)
class SyncTasks:
    action: str
    project: int
    task_ids: tuple[int, ...]
    annotations: Mapping[int, int] = field(default_factory=dict)  # annotation id -> task id


@dataclass(frozen=True)
class DropTasks:
    action: str
    project: int
    task_ids: tuple[int, ...]


@dataclass(frozen=True)
class DropAnnotations:
    action: str
    annotation_ids: tuple[int, ...]


@dataclass(frozen=True)
class CheckConfig:
    """Rebuild the project if ``label_config`` differs from the stored one."""

    action: str
    project: int
    label_config: str


@dataclass(frozen=True)
class Rebuild:
    action: str
    project: int


@dataclass(frozen=True)
class Ignored:
    action: str


Event = SyncTasks | DropTasks | DropAnnotations | CheckConfig | Rebuild | Ignored

_ACTION = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
MAX_ID = 2**63 - 1  # Label Studio's ids are database integers: larger ones name nothing


def counter_name(action: str) -> str:
    """The name an action is counted under: itself if it looks like one, else ``OTHER``."""
    return action if _ACTION.fullmatch(action) else "OTHER"


def _int_id(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise PayloadError(f"{where} must be a positive integer id, got {type(value).__name__}")
    if value > MAX_ID:
        raise PayloadError(f"{where} must be a positive integer id, got one above {MAX_ID}")
    return value


def _ref_id(value: object, where: str) -> int:
    """A reference: an integer id or an object with one (``task: 5`` or ``task: {id: 5}``)."""
    return _int_id(value.get("id") if isinstance(value, Mapping) else value, where)


def _object(payload: Mapping[str, Any], key: str, action: str) -> Mapping[str, Any]:
    value = payload.get(key)
    if not isinstance(value, Mapping):
        raise PayloadError(
            f"{action}: '{key}' must be an object, got {type(value).__name__} "
            "(is 'Send payload' on in the webhook settings?)"
        )
    return value


def _objects(payload: Mapping[str, Any], key: str, action: str) -> list[Mapping[str, Any]]:
    value = payload.get(key)
    if not isinstance(value, list) or not all(isinstance(item, Mapping) for item in value):
        raise PayloadError(f"{action}: '{key}' must be a list of objects")
    return value


def _project(payload: Mapping[str, Any], action: str, *fallbacks: object) -> int:
    """``project.id`` (or a bare ``project`` id), else the first fallback that is set."""
    for value in (payload.get("project"), *fallbacks):
        if value is not None:
            return _ref_id(value, f"{action}: 'project.id'")
    raise PayloadError(f"{action}: no project id ('project.id' missing)")


def _annotation_event(action: str, payload: Mapping[str, Any]) -> SyncTasks:
    annotation = _object(payload, "annotation", action)
    task = payload.get("task")
    task_ref = task if isinstance(task, Mapping) else annotation.get("task")
    task_id = _ref_id(task_ref, f"{action}: 'task.id'")
    task_project = task.get("project") if isinstance(task, Mapping) else None
    project = _project(payload, action, task_project, annotation.get("project"))
    annotation_id = _int_id(annotation.get("id"), f"{action}: 'annotation.id'")
    return SyncTasks(action, project, (task_id,), {annotation_id: task_id})


def _annotations_created(action: str, payload: Mapping[str, Any]) -> SyncTasks:
    items = _objects(payload, "annotation", action)
    index: dict[int, int] = {}
    for n, item in enumerate(items):
        where = f"{action}: 'annotation[{n}]"
        index[_int_id(item.get("id"), where + ".id'")] = _ref_id(item.get("task"), where + ".task'")
    firsts = [item.get("project") for item in items[:1]]
    project = _project(payload, action, *firsts)
    return SyncTasks(action, project, tuple(dict.fromkeys(index.values())), index)


def _tasks_event(action: str, payload: Mapping[str, Any]) -> SyncTasks | DropTasks:
    items = _objects(payload, "tasks", action)
    ids = tuple(_int_id(t.get("id"), f"{action}: 'tasks[{n}].id'") for n, t in enumerate(items))
    project = _project(payload, action, *[t.get("project") for t in items[:1]])
    if action == "TASKS_DELETED":
        return DropTasks(action, project, ids)
    return SyncTasks(action, project, ids)


def _annotations_deleted(action: str, payload: Mapping[str, Any]) -> DropAnnotations:
    items = _objects(payload, "annotations", action)
    ids = (_int_id(a.get("id"), f"{action}: 'annotations[{n}].id'") for n, a in enumerate(items))
    return DropAnnotations(action, tuple(ids))


def _project_updated(action: str, payload: Mapping[str, Any]) -> CheckConfig:
    project = _object(payload, "project", action)
    config = project.get("label_config")
    if not isinstance(config, str):
        raise PayloadError(f"{action}: 'project.label_config' must be a string")
    return CheckConfig(action, _int_id(project.get("id"), f"{action}: 'project.id'"), config)


def _start_training(action: str, payload: Mapping[str, Any]) -> Rebuild:
    return Rebuild(action, _project(payload, action))


_PARSERS: dict[str, Callable[[str, Mapping[str, Any]], Event]] = {
    "ANNOTATION_CREATED": _annotation_event,
    "ANNOTATION_UPDATED": _annotation_event,
    "ANNOTATIONS_CREATED": _annotations_created,
    "ANNOTATIONS_DELETED": _annotations_deleted,
    "TASKS_CREATED": _tasks_event,
    "TASKS_DELETED": _tasks_event,
    "PROJECT_UPDATED": _project_updated,
    "START_TRAINING": _start_training,
}
HANDLED_ACTIONS = frozenset(_PARSERS)


def parse_event(payload: object) -> Event:
    """The work a decoded JSON payload calls for; ``PayloadError`` if it is malformed."""
    if not isinstance(payload, Mapping):
        raise PayloadError(f"body must be a JSON object, got {type(payload).__name__}")
    action = payload.get("action")
    if not isinstance(action, str) or not action:
        raise PayloadError("'action' must be a non-empty string")
    parser = _PARSERS.get(action)
    return Ignored(action) if parser is None else parser(action, payload)
