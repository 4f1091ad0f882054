"""The RQ job functions. Thin: arguments are ints and lists of ints (JSON), the context comes
from :func:`worker.runtime.current`, results are JSON (shown in rq-dashboard).

``sync_task`` pulls the task's CURRENT state from Label Studio, whatever the event said
(payloads can be stale or reordered), once its burst of events has settled
(:meth:`worker.dispatcher.Dispatcher.await_quiet`). It returns ``ok`` (entry stored), ``empty``
(no usable annotation), ``error`` (recorded in the task's state; snapshots list it instead of
an entry), ``stale`` (a newer state was stored meanwhile) or ``dropped`` (the task is gone).
Every write carries the Redis time taken between the clearing of the pending flag and the pull,
and the store lets no older stamp replace a newer one (not ``updated_at``: deleting the newest
annotation makes an older one current). The image is read or downloaded only when the mask
depends on it (``orientation=file``, or no result gives the size), so the batch's EXIF check is
not made live. Label Studio or Redis unavailable fails the job, which rq retries; anything wrong
with one image is recorded in its task's state (:func:`worker.reconcile.failure_fingerprint`).
A task with two or more usable annotations also gets its agreement (:func:`_agreement`), stored
with its state.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any

from ls_panoptic.errors import PanopticError

from . import reconcile, runtime
from .labelstudio import (
    LabelStudioAuthError,
    LabelStudioError,
    LabelStudioNotFound,
    LabelStudioUnavailable,
)
from .outcome import task_outcome

__all__ = [
    "drop_annotations",
    "drop_tasks",
    "rebuild_project",
    "resync_all",
    "resync_project",
    "sync_task",
]

log = logging.getLogger(__name__)


def sync_task(project: int, task_id: int) -> str:
    """Pull one task from Label Studio, convert it and store the result (see module doc)."""
    rt = runtime.current()
    started = time.monotonic()
    settings = rt.settings
    # let a burst of events for the task settle first (bounded), so it costs one conversion
    rt.dispatcher.await_quiet(
        project, task_id, settings.debounce_ms / 1000, started + settings.debounce_max_s
    )
    rt.dispatcher.clear_pending(project, task_id)  # before the pull: later events re-enqueue
    observed = rt.clock()
    try:
        owner, task = rt.labelstudio.get_task(task_id)
        if owner != project:  # Label Studio on SQLite reuses the ids of deleted tasks
            raise LabelStudioNotFound(f"task {task_id} is no longer in project {project}")
        labels, config_hash = reconcile.project_labels(rt, project)
    except LabelStudioNotFound:  # gone by the time of the pull: older pulls must not revive it
        rt.store.delete_tasks(project, [task_id], observed)
        return "dropped"
    except PanopticError as exc:  # the project's label config is unusable
        rt.store.record_error(project, task_id, f"project {project}: {exc}", observed)
        return "error"
    except (LabelStudioUnavailable, LabelStudioAuthError):
        raise  # rq retries with backoff
    except LabelStudioError as exc:  # e.g. task data the client cannot use: a retry won't help
        rt.store.record_error(project, task_id, str(exc), observed)
        return "error"
    result = task_outcome(
        rt.options, project, task, labels, config_hash,
        images=rt.labelstudio, scratch_dir=rt.scratch_dir,
    )  # fmt: skip
    assert result is not None  # the image is downloaded when needed
    rt.store.index_annotations(project, task_id, result.annotation_ids)
    if result.status == "empty":
        return "empty" if rt.store.mark_empty(project, task_id, observed) else "stale"
    if result.status == "error":
        rt.store.record_error(
            project, task_id, result.message, observed, result.fingerprint, result.key,
            result.remedy, result.agreement,
        )  # fmt: skip
        return "error"
    assert result.entry is not None
    stored = rt.store.put_entry(
        project, task_id, result.entry, observed, config_hash, result.agreement,
        image_url=result.image_url,
    )  # fmt: skip
    return "ok" if stored else "stale"


def drop_tasks(project: int, task_ids: list[int]) -> int:
    """Remove the entries and states of deleted tasks; returns how many were removed."""
    rt = runtime.current()
    return rt.store.delete_tasks(project, task_ids, rt.clock())


def drop_annotations(annotation_ids: list[int]) -> int:
    """Re-sync the tasks whose annotations were deleted; returns how many tasks."""
    rt = runtime.current()
    tasks: defaultdict[int, set[int]] = defaultdict(set)
    for annotation_id in annotation_ids:
        found = rt.store.task_for_annotation(annotation_id)
        if found is not None:
            tasks[found[0]].add(found[1])
    rt.store.forget_annotations(annotation_ids)
    for project, task_ids in sorted(tasks.items()):
        rt.dispatcher.sync_tasks(project, sorted(task_ids))
    return sum(len(ids) for ids in tasks.values())


def rebuild_project(project: int) -> dict[str, Any]:
    """Refresh the label config and re-convert every task (label config changed, training)."""
    return reconcile.resync(runtime.current(), project, force=True)


def resync_project(project: int) -> dict[str, Any]:
    """Repair what lost webhooks left out of date; returns :func:`reconcile.resync`'s summary."""
    return reconcile.resync(runtime.current(), project)


def resync_all() -> dict[str, Any]:
    """The periodic resync: one resync job per known project, then schedule the next round."""
    rt = runtime.current()
    projects = sorted(rt.store.project_ids())
    jobs = [rt.dispatcher.resync_project(project) for project in projects]
    following = rt.dispatcher.schedule_resync_all(rt.settings.resync_interval)
    return {"projects": projects, "jobs": jobs, "next": following}
