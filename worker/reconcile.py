"""Make the store agree with Label Studio: the project's label config, and every task's entry.

Webhooks get lost (Label Studio sends each once and never retries), so a periodic and an
on-demand resync compare Label Studio with the store and repair it:

- the label config is fetched and stored; when it changed, every task is re-converted;
- a task is synced when the annotation the policy selects is not the one its entry was made
  from, or was updated after the state the entry was made from was observed (a state's
  ``updated_at`` is the Redis time at which its sync pulled the task: see :mod:`worker.jobs`),
  when it has no state, when its last sync failed, or when it has an entry but no usable
  annotation any more;
- a task with a state in the store but absent from Label Studio is dropped.

The store's states are read *before* Label Studio is listed: a task created meanwhile is then
either listed or has no state yet, so it is never mistaken for a deleted one.

Syncs are enqueued through the :class:`~worker.queueing.Dispatcher` (coalesced with webhook
events); the jobs pull each task again, so a task changed during the listing still ends up
in its latest state.
"""

from __future__ import annotations

from typing import Any, Literal

from ls_panoptic.labels import LabelSet, labelset_from_config
from ls_panoptic.model import ConvertOptions, Task
from ls_panoptic.selection import parse_timestamp, select_annotation

from .labelstudio import LabelStudioNotFound
from .runtime import Runtime
from .store import EntryState

__all__ = ["ConfigChange", "needs_sync", "project_labels", "refresh_project", "resync"]

ConfigChange = Literal["new", "changed", "same"]


def refresh_project(runtime: Runtime, project: int) -> tuple[LabelSet, ConfigChange]:
    """Fetch the project's label config from Label Studio and store it when it changed.

    Raises:
        LabelStudioNotFound: the project is gone.
        LabelConfigError: the config has no usable image and labels.
    """
    info = runtime.labelstudio.get_project(project)
    labels = labelset_from_config(info.label_config)
    previous = runtime.store.get_project(project)
    if previous is not None and previous.label_config == info.label_config:
        return labels, "same"
    changed = runtime.store.set_project(project, info.label_config, labels.id2label)
    if previous is None:
        return labels, "new"
    return labels, "changed" if changed else "same"


def project_labels(runtime: Runtime, project: int) -> LabelSet:
    """The current label set, for one task's sync; a change schedules the repair of the rest:
    a rebuild when the config changed, a resync when the project is new to the store."""
    labels, change = refresh_project(runtime, project)
    if change == "changed":
        runtime.dispatcher.rebuild_project(project)
    elif change == "new":
        runtime.dispatcher.resync_project(project)
    return labels


def resync(runtime: Runtime, project: int, *, force: bool = False) -> dict[str, Any]:
    """Compare Label Studio with the store for ``project`` and repair it (see module doc).

    ``force`` re-syncs every task with an annotation or an entry (a rebuild). Returns a
    JSON-serialisable summary; ``jobs`` lists the ids of the sync jobs enqueued.
    """
    try:
        _labels, change = refresh_project(runtime, project)
    except LabelStudioNotFound:
        runtime.store.drop_project(project)
        return {"project": project, "project_deleted": True}
    force = force or change == "changed"
    states = {state.task_id: state for state in runtime.store.states(project)}
    listed, to_sync = _compare(runtime, project, states, force)
    gone = sorted(set(states) - listed)
    dropped = runtime.store.delete_tasks(project, gone) if gone else 0
    jobs = [
        job_id
        for task_id in to_sync
        if (job_id := runtime.dispatcher.enqueue_sync(project, task_id, revive=True))
    ]
    return {
        "project": project,
        "config": change,
        "forced": force,
        "listed": len(listed),
        "to_sync": len(to_sync),
        "enqueued": len(jobs),
        "coalesced": len(to_sync) - len(jobs),
        "dropped": dropped,
        "jobs": jobs,
    }


def _compare(
    runtime: Runtime, project: int, states: dict[int, EntryState], force: bool
) -> tuple[set[int], list[int]]:
    """List Label Studio's tasks: the ids listed, and those to sync."""
    listed: set[int] = set()
    to_sync: list[int] = []
    for task in runtime.labelstudio.list_tasks(project):
        if task.id is None:
            continue
        listed.add(task.id)
        if needs_sync(task, states.get(task.id), runtime.options, force=force):
            to_sync.append(task.id)
    return listed, to_sync


def needs_sync(
    task: Task, state: EntryState | None, options: ConvertOptions, *, force: bool = False
) -> bool:
    """Whether ``task`` as listed by Label Studio must be synced, given its stored ``state``."""
    try:
        chosen = select_annotation(task, options.annotation, options.use_predictions)
    except ValueError:
        return True  # the sync job records why the task cannot be converted
    if chosen is None:
        return state is not None and state.status != "empty"
    if state is None or force or state.status != "ok":
        return True
    return state.annotation_id != chosen.id or _after(
        chosen.updated_at or chosen.created_at, state.updated_at
    )


def _after(edited: str, observed: str | None) -> bool:
    """Whether Label Studio's ``edited`` stamp is later than the ``observed`` pull (as
    instants; unreadable or missing stamps count as later: a needless sync is harmless)."""
    if not edited or not observed:
        return True
    try:
        return parse_timestamp(edited) > parse_timestamp(observed)
    except ValueError:
        return True
