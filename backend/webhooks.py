"""``POST /webhook``: Label Studio project webhooks and the ML-backend ``/webhook`` call.

Order matters: authenticate (``WEBHOOK_TOKEN``) before the body is read, then decode and validate,
then enqueue. The request only touches Redis (an annotation -> task index write, coalesced
enqueues, a counter): Label Studio waits for the answer inline in the annotator's save, gives up
after 1 s and never retries, so nothing here calls Label Studio. Lost or refused events are
repaired by the periodic resync.

Answers: 202 ``{"status": "accepted", ...}`` when work was enqueued; 200 ``{"status": "ignored"}``
for actions we do not act on (counted in ``/metrics``); 400 naming the problem for a malformed
body; 401 for bad credentials; 413 over ``MAX_CONTENT_LENGTH``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from flask import Blueprint, Response, jsonify, request
from redis.client import Pipeline

from .errors import ApiError
from .events import (
    CheckConfig,
    DropAnnotations,
    DropTasks,
    Event,
    Ignored,
    PayloadError,
    Rebuild,
    SyncTasks,
    counter_name,
    parse_event,
)
from .metrics import count_event
from .payload import BodyError, decode
from .services import Services, requires, services

__all__ = ["blueprint"]

log = logging.getLogger("ls_panoptic.backend")

blueprint = Blueprint("webhooks", __name__)


@blueprint.post("/webhook")
@requires(lambda s: s.webhook_guard)
def receive() -> tuple[Response, int]:
    svc = services()
    event = _decode_event()
    status, body = _apply(event, svc)
    log.info(
        "webhook action=%s outcome=%s project=%s",
        counter_name(event.action),
        body["status"],
        body.get("project", "-"),
    )
    return jsonify(body), status


def _decode_event() -> Event:
    raw = request.get_data(cache=False)  # 413 is raised here, past the limit
    try:
        return parse_event(decode(raw))
    except (BodyError, PayloadError) as exc:
        raise ApiError(400, str(exc)) from None


def _apply(event: Event, svc: Services) -> tuple[int, dict[str, Any]]:
    """Count the event and do what it calls for: Redis writes and enqueues only."""
    with svc.redis.pipeline(transaction=False) as pipe:
        count_event(pipe, svc.keys, event.action)
        if isinstance(event, SyncTasks):  # counted and indexed with the flags: one round trip
            _index_annotations(event, svc, pipe)
            enqueued = svc.dispatcher.sync_tasks(event.project, event.task_ids, pipe)
            tasks = list(event.task_ids)
            accepted = {"status": "accepted", "action": event.action, "project": event.project}
            return 202, accepted | {"tasks": tasks, "enqueued": enqueued}
        pipe.execute()
    return _act(event, svc)


def _act(event: Event, svc: Services) -> tuple[int, dict[str, Any]]:
    """What an event other than a sync calls for (it is counted already)."""
    accepted: dict[str, Any] = {"status": "accepted", "action": event.action}
    match event:
        case DropTasks():
            svc.dispatcher.drop_tasks(event.project, event.task_ids)
            return 202, accepted | {"project": event.project, "tasks": list(event.task_ids)}
        case DropAnnotations():
            svc.dispatcher.drop_annotations(event.annotation_ids)
            return 202, accepted | {"annotations": list(event.annotation_ids)}
        case CheckConfig() if reason := _unchanged_config(event, svc):
            ignored = {"status": "ignored", "action": event.action, "reason": reason}
            return 200, ignored | {"project": event.project}
        case CheckConfig() | Rebuild():
            job_id = svc.dispatcher.rebuild_project(event.project)
            return 202, accepted | {"project": event.project, "job_id": job_id}
        case Ignored():
            return 200, {"status": "ignored", "action": event.action, "reason": "not handled"}
        case _:  # a sync is applied by _apply; Event is a closed union: unreachable
            raise TypeError(f"unexpected event type {type(event).__name__}")


def _index_annotations(event: SyncTasks, svc: Services, pipe: Pipeline) -> None:
    """Remember annotation -> task, for ANNOTATIONS_DELETED (which carries annotation ids only)."""
    by_task: dict[int, list[int]] = defaultdict(list)
    for annotation_id, task_id in event.annotations.items():
        by_task[task_id].append(annotation_id)
    for task_id, annotation_ids in by_task.items():
        svc.store.index_annotations(event.project, task_id, annotation_ids, pipe)


def _unchanged_config(event: CheckConfig, svc: Services) -> str | None:
    """Why a PROJECT_UPDATED needs no rebuild, or ``None`` when the label config changed."""
    record = svc.store.get_project(event.project)
    if record is None:
        return "project not in the store yet: nothing to rebuild"
    if record.label_config == event.label_config:
        return "label config unchanged"
    return None
