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
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from ls_panoptic.comparisons import compare_task, stuff_ids
from ls_panoptic.convert import Conversion
from ls_panoptic.errors import PanopticError
from ls_panoptic.labels import LabelSet
from ls_panoptic.model import Annotation, Entry, Task
from ls_panoptic.naming import image_key, image_url
from ls_panoptic.sidecar import failure_message

from . import reconcile, runtime
from .labelstudio import (
    LabelStudioAuthError,
    LabelStudioError,
    LabelStudioNotFound,
    LabelStudioUnavailable,
)
from .remedies import service_remedy
from .store import TaskAgreement

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
    ids = [a.id for a in task.annotations if a.id is not None]
    rt.store.index_annotations(project, task_id, ids)
    agreement = _agreement(rt, task, labels)
    try:
        converted = _convert(rt, task, labels)
        if converted is None:
            return "empty" if rt.store.mark_empty(project, task_id, observed) else "stale"
        entry, url = converted
        stored = rt.store.put_entry(
            project, task_id, entry, observed, config_hash, agreement, image_url=url
        )
        return "ok" if stored else "stale"
    except (LabelStudioUnavailable, LabelStudioAuthError):
        raise
    except _ConversionFailed as failed:  # fingerprinted: reconcile.failure_fingerprint
        message = failure_message(task_id, failed.cause)  # the batch's words, for live = batch
        fingerprint = reconcile.failure_fingerprint(
            task, failed.annotation, config_hash, rt.options
        )
        remedy = _remedy(failed.cause)
        rt.store.record_error(
            project, task_id, message, observed, fingerprint, failed.key, remedy, agreement
        )
        _log_failure(project, message, failed.cause)
        return "error"
    except (PanopticError, LabelStudioError, ValueError) as exc:  # a retry may mend these
        message = failure_message(task_id, exc)
        rt.store.record_error(
            project, task_id, message, observed, remedy=_remedy(exc), agreement=agreement
        )
        _log_failure(project, message, exc)
        return "error"


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


class _ConversionFailed(Exception):
    """The conversion of the selected ``annotation`` failed (``cause``): the same inputs would
    fail the same way (its fingerprint is taken only then, off the successful path). ``key``:
    the image key it was for (``None`` when the image URL gave none), which snapshots list."""

    def __init__(
        self, cause: PanopticError | ValueError, annotation: Annotation, key: str | None
    ) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.annotation = annotation
        self.key = key


def _convert(rt: runtime.Runtime, task: Task, labels: LabelSet) -> tuple[Entry, str] | None:
    """The task's entry and image URL, ``None`` when it has no usable annotation. The
    annotation is selected and parsed once: to tell whether the image is needed, and to convert.

    Raises:
        _ConversionFailed: converting the selected annotation failed (see module doc).
        LabelStudioError: downloading the image failed (subclasses as for any call).
        PanopticError: the image file is not a readable image.
        ValueError: the annotation policy is unusable.
    """
    options = rt.options
    conversion = Conversion.of(task, options)
    if conversion is None:
        return None
    key: str | None = None
    try:
        url = image_url(task.data, labels.image_value)
        key = image_key(url, options.key, task.id)
        if not conversion.needs_image():  # see module doc
            return conversion.run(key, labels), url
    except (PanopticError, ValueError) as exc:
        raise _ConversionFailed(exc, conversion.annotation, key) from exc
    with tempfile.TemporaryDirectory(dir=rt.scratch_dir) as folder:
        # not fingerprinted: a download may pass later, a file may be replaced (failure_fingerprint)
        image = rt.labelstudio.image_info(url, Path(folder), task_id=task.id)
        try:
            return conversion.run(key, labels, image), url
        except PanopticError as exc:
            raise _ConversionFailed(exc, conversion.annotation, key) from exc


def _agreement(rt: runtime.Runtime, task: Task, labels: LabelSet) -> TaskAgreement | None:
    """The PQ of each pair of the task's usable annotations, each converted as
    ``ls-panoptic agreement`` converts it without ``--images`` (sizes from the results);
    ``None`` with fewer than two, at no cost. Advisory: an annotation that fails to convert
    only loses its pairs (logged), and nothing here fails the sync."""
    if sum(not a.was_cancelled for a in task.annotations) < 2:
        return None
    try:
        compared = compare_task(task, labels, rt.options)
    except (PanopticError, ValueError) as exc:
        compared = None
        log.info("agreement skipped task=%s: %s", task.id, exc)
    for failure in compared.failures if compared else ():
        log.info("agreement: %s", failure.message)
    if not compared or not compared.comparisons:
        return None
    return TaskAgreement(compared.comparisons, stuff_ids(labels, rt.options))


def _remedy(exc: BaseException) -> str | None:
    """The ``Remedy`` of a core error, as the store keeps it (``EntryState.remedy``)."""
    remedy = exc.remedy if isinstance(exc, PanopticError) else None
    return None if remedy is None else remedy.value


def _log_failure(project: int, message: str, exc: BaseException) -> None:
    """A recorded failure, with what an operator can do about it (:mod:`worker.remedies`)."""
    advice = service_remedy(exc)
    log.warning("sync failed project=%d %s%s", project, message, f"; {advice}" if advice else "")
