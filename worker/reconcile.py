"""Make the store agree with Label Studio: the project's label config, and every task's entry.

Webhooks get lost (Label Studio sends each once and never retries), so a periodic and an
on-demand :func:`resync` compares Label Studio with the store and repairs it: it fetches the
label config (a change re-converts every task), syncs every task :func:`needs_sync` picks, and
drops the tasks Label Studio no longer lists. A failure of the listing itself (Label Studio
unreachable, an HTTP error) fails the resync, which rq retries; nothing is dropped then.

The listing carries each task's annotations, so a task to sync is converted from it, in the
resync, the way a sync job converts a pulled one (:func:`worker.outcome.task_outcome`; many
in worker processes: :mod:`worker._convert_pool`), and stored :data:`BATCH` tasks per
transaction (:meth:`worker.store.Store.put_outcomes`). Its
state is stamped with the Redis time taken *before* the listing page that carried it was
requested, as a sync job stamps its pull: a webhook's job that pulls later stamps later, so an
older listing never overwrites what it stored, and whatever the listing stored is overwritten
by the next pull. A task is left to a sync job (enqueued through the
:class:`~worker.dispatcher.Dispatcher`, coalesced with webhook events; it pulls the task
again) where the listing may be stale or is not enough: an event for it is pending (its job
will pull a newer state anyway), the listing gave it incomplete or unusable
(:class:`~worker.labelstudio.UnusableTask`), or its mask needs the image. One task's sync takes
its label config from :func:`project_labels`.

A resync of a project the store knows first lists only each task's stamp (:func:`_quick`):
when few tasks may have changed since their state was made, those are pulled by sync jobs and
the annotations of the others are never listed. At least every :data:`FULL_LISTING_SECONDS`
a resync lists every task in full again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal, TypeVar

from ls_panoptic.labels import LabelSet, labelset_from_config
from ls_panoptic.model import Annotation, ConvertOptions, Task
from ls_panoptic.selection import select_annotation
from ls_panoptic.tasks import parse_timestamp

from ._convert_pool import Converter
from ._store_batch import TaskWrite
from .labelstudio import LabelStudioNotFound, UnusableTask
from .runtime import Runtime
from .store import EntryState, config_hash

#: seconds a deleted task's tombstone is kept: far longer than any sync job may run
#: (``jobqueue.sync_timeout``), the only writer it guards against
TOMBSTONE_SECONDS = 24 * 3600
#: listed tasks converted, then stored in one transaction
BATCH = 100
#: tasks a resync pulls (sync jobs) at most, rather than listing every task in full, when
#: Label Studio's task stamps show only these may have changed (or up to 2% of the tasks)
QUICK_PULLS = 20
#: seconds after a resync that listed every task in full during which resyncs may decide from
#: task stamps alone (then the next one lists in full again): a change Label Studio makes
#: without moving the task's ``updated_at`` (a bulk action's query, say), whose webhook was
#: lost, is repaired within that time
FULL_LISTING_SECONDS = 3600
#: seconds a listing stamp is reused for (see ``_stamped``)
STAMP_SECONDS = 0.5

__all__ = [
    "ConfigChange",
    "cached_labels",
    "failure_fingerprint",
    "needs_sync",
    "project_labels",
    "refresh_project",
    "resync",
]

ConfigChange = Literal["new", "changed", "same"]
_T = TypeVar("_T")


def refresh_project(runtime: Runtime, project: int) -> tuple[LabelSet, ConfigChange, str]:
    """Fetch the project's label config from Label Studio and store it when it changed;
    returns its label set, the change, and its hash (``store.config_hash``).

    Raises:
        LabelStudioNotFound: the project is gone.
        LabelConfigError: the config has no usable image and labels.
    """
    info = runtime.labelstudio.get_project(project)
    labels = labelset_from_config(info.label_config)
    digest = config_hash(info.label_config)
    previous = runtime.store.get_project(project)
    change: ConfigChange = "same"
    if previous is None or previous.label_config != info.label_config:
        changed = runtime.store.set_project(project, info.label_config, labels.id2label)
        change = "new" if previous is None else "changed" if changed else "same"
    runtime.config_cache.remember(project, digest)
    return labels, change, digest


def cached_labels(runtime: Runtime, project: int) -> tuple[LabelSet, str] | None:
    """The stored label set and its config's hash when that config was fetched from Label
    Studio less than ``LS_PANOPTIC_CONFIG_TTL_S`` ago (and not invalidated since: a rebuild
    being enqueued invalidates it), else ``None``."""
    digest = runtime.config_cache.fetched_hash(project)
    if digest is None:
        return None
    record = runtime.store.get_project(project)
    if record is None or record.config_hash != digest:
        return None
    return labelset_from_config(record.label_config), record.config_hash


def project_labels(runtime: Runtime, project: int) -> tuple[LabelSet, str]:
    """The current label set and its config's hash, for one task's sync: the stored one while
    fresh (:func:`cached_labels`), else fetched; a change schedules the repair of the rest: a
    rebuild when the config changed, a resync when the project is new to the store."""
    cached = cached_labels(runtime, project)
    if cached is not None:
        return cached
    labels, change, digest = refresh_project(runtime, project)
    if change == "changed":
        runtime.dispatcher.rebuild_project(project)
    elif change == "new":
        runtime.dispatcher.resync_project(project)
    return labels, digest


def _before(stamp: str, seconds: float) -> str:
    return (parse_timestamp(stamp) - dt.timedelta(seconds=seconds)).isoformat()


def resync(runtime: Runtime, project: int, *, force: bool = False) -> dict[str, Any]:
    """Compare Label Studio with the store for ``project`` and repair it (see module doc).

    ``force`` re-syncs every task with an annotation or an entry (a rebuild). Returns a
    JSON-serialisable summary: ``to_sync`` tasks needed a sync, ``converted`` of them were
    converted from the listing (``stale``: of those, how many a newer state had overtaken);
    ``jobs`` lists the ids of the sync jobs enqueued for the others, ``pending`` those of the
    not yet started jobs that already cover the rest (waiting for both waits for every repair
    this resync found needed).
    """
    try:
        labels, change, digest = refresh_project(runtime, project)
    except LabelStudioNotFound:
        runtime.store.drop_project(project)
        return {"project": project, "project_deleted": True}
    force = force or change == "changed"
    listing_started = runtime.clock()  # tasks it does not list were deleted by then
    # states are read before the listing: a task created meanwhile is then either listed or
    # has no state yet, so it is never mistaken for a deleted one
    states = {state.task_id: state for state in runtime.store.states(project)}
    compared = _Compare(runtime, project, labels, digest)
    full_listed = runtime.dispatcher.keys.listed_in_full(project)
    quick = None
    if not force and states and runtime.redis.exists(full_listed):
        quick = _quick(runtime, project, states, digest)
    if quick is not None:
        listed, to_sync = quick[0], len(quick[1])
        compared.to_pull = quick[1]
    else:
        listed, to_sync = compared.run(states, force)
        runtime.redis.set(full_listed, listing_started, ex=FULL_LISTING_SECONDS)
    gone = sorted(set(states) - listed)
    dropped = runtime.store.delete_tasks(project, gone, listing_started) if gone else 0
    runtime.store.forget_tombstones(project, _before(listing_started, TOMBSTONE_SECONDS))
    jobs: list[str] = []
    pending: list[str] = []
    for task_id in compared.to_pull:
        job_id, new = runtime.dispatcher.sync_job(project, task_id, revive=True)
        (jobs if new else pending).append(job_id)
    return {
        "project": project,
        "config": change,
        "forced": force,
        "listed": len(listed),
        "to_sync": to_sync,
        "converted": compared.converted,
        "stale": compared.stale,
        "quick": quick is not None,
        "enqueued": len(jobs),
        "coalesced": len(pending),
        "dropped": dropped,
        "jobs": jobs,
        "pending": pending,
    }


class _Compare:
    """One pass over Label Studio's listing: the ids listed, the tasks to sync converted from
    it in batches (one batch converting while the next page is listed), ``to_pull`` those left
    to a sync job (see module doc)."""

    def __init__(self, runtime: Runtime, project: int, labels: LabelSet, digest: str) -> None:
        self.rt, self.project, self.digest = runtime, project, digest
        self.to_pull: list[int] = []
        self.converted = self.stale = 0
        self._batch: list[tuple[Task, str]] = []
        self._converter = Converter(runtime.options, project, labels, digest, pool_from=BATCH)
        self._in_flight: tuple[list[int], Callable[[], list[TaskWrite | None]]] | None = None

    def run(self, states: dict[int, EntryState], force: bool) -> tuple[set[int], int]:
        """``(ids listed, how many tasks needed a sync)``."""
        listed: set[int] = set()
        to_sync = 0
        with self._converter:
            for task, observed in _stamped(self.rt, self.rt.labelstudio.list_tasks(self.project)):
                # data the listing cannot give whole: listed, and left to a job that pulls it
                if isinstance(task, UnusableTask):
                    listed.add(task.id)
                    to_sync += 1
                    self.to_pull.append(task.id)
                    continue
                if task.id is None:
                    continue
                listed.add(task.id)
                state = states.get(task.id)
                if needs_sync(task, state, self.rt.options, force=force, config_hash=self.digest):
                    to_sync += 1
                    self._batch.append((task, observed))
                    if len(self._batch) >= BATCH:
                        self._flush()
            self._flush()
            self._store()
        return listed, to_sync

    def _flush(self) -> None:
        """Start converting the batch (tasks with an event pending go to their job), then
        store the one before it."""
        batch, self._batch = self._batch, []
        if not batch:
            return
        keys = self.rt.dispatcher.keys
        flags = self.rt.redis.mget([keys.pending(self.project, int(t.id or 0)) for t, _ in batch])
        for (task, _observed), flag in zip(batch, flags, strict=True):
            if flag is not None:
                self.to_pull.append(int(task.id or 0))
        chosen = [item for item, flag in zip(batch, flags, strict=True) if flag is None]
        started = self._converter.submit(chosen)
        self._store()
        self._in_flight = [int(task.id or 0) for task, _ in chosen], started

    def _store(self) -> None:
        """Wait for the batch in flight and store it; a task whose mask needs the image goes
        to a job."""
        if self._in_flight is None:
            return
        (task_ids, wait), self._in_flight = self._in_flight, None
        writes: list[TaskWrite] = []
        for task_id, write in zip(task_ids, wait(), strict=True):
            if write is None:
                self.to_pull.append(task_id)
            else:
                writes.append(write)
        stored = self.rt.store.put_outcomes(self.project, writes)
        self.converted += len(writes)
        self.stale += stored.count(False)


def _quick(
    runtime: Runtime, project: int, states: dict[int, EntryState], digest: str
) -> tuple[set[int], list[int]] | None:
    """``(ids listed, tasks to pull)`` from Label Studio's task stamps alone, when few tasks
    may have changed; ``None`` otherwise: the full listing then decides, and converts.

    A task may have changed when it is new with an annotation (or a prediction, when those are
    used), when Label Studio's ``updated_at`` of it is later than the pull or listing its state
    was made from (Label Studio moves it whenever an annotation or prediction of the task is
    created, edited or deleted, and when the task is), or when its entry was converted under
    another label config. Failed tasks that did not change are listed in full and checked by
    :func:`needs_sync` (their fingerprint holds what a stamp does not show: the options).
    """
    client = runtime.labelstudio
    listed: set[int] = set()
    maybe: list[int] = []
    failed: list[int] = []
    options = runtime.options
    for stamp in client.task_stamps(project):
        listed.add(stamp.id)
        state = states.get(stamp.id)
        if state is None:
            if stamp.annotations or (options.use_predictions and stamp.predictions):
                maybe.append(stamp.id)
        elif _after(stamp.updated_at or "", state.updated_at):
            maybe.append(stamp.id)
        elif state.status == "error":
            failed.append(stamp.id)
        elif state.status == "ok" and state.config_hash != digest:
            maybe.append(stamp.id)
    if len(maybe) + len(failed) > max(QUICK_PULLS, len(listed) // 50):
        return None  # many to pull or to list: the full listing costs less
    for task in client.list_tasks(project, failed) if failed else ():
        task_id = task.id
        if isinstance(task, UnusableTask) or (
            task_id is not None
            and needs_sync(task, states.get(task_id), options, config_hash=digest)
        ):
            maybe.append(int(task_id or 0))
    return listed, maybe


def _stamped(runtime: Runtime, tasks: Iterator[_T]) -> Iterator[tuple[_T, str]]:
    """Each item of the lazy listing ``tasks`` with a Redis time taken before it was asked
    for, so before the request of the page that carried it. An earlier time is as safe (it
    loses to any later pull), so one is taken every :data:`STAMP_SECONDS` only, not per item;
    the cost is a needless sync, by the next resync, of a task edited within that time."""
    iterator = iter(tasks)
    observed, taken = "", -math.inf
    while True:
        if time.monotonic() - taken >= STAMP_SECONDS:
            taken, observed = time.monotonic(), runtime.clock()
        try:
            item = next(iterator)
        except StopIteration:
            return
        yield item, observed


def needs_sync(
    task: Task,
    state: EntryState | None,
    options: ConvertOptions,
    *,
    force: bool = False,
    config_hash: str | None = None,
) -> bool:
    """Whether ``task`` as listed by Label Studio must be synced, given its stored ``state``
    and the hash of the project's current label config (``None``: not compared; a failed task
    is then synced). ``force`` (a rebuild) syncs every task with a selected annotation, and
    every other one whose state is not ``empty``.

    Otherwise a task is synced when it has no state; when it has an entry but no usable
    annotation any more; when the annotation the policy selects is not the one its entry was
    made from, or was edited after the pull its state was made from (a state's ``updated_at``
    is the Redis time of that pull: :func:`worker.jobs.sync_task`); when its entry was
    converted under another label config (recorded per state: a config change another job
    stored first leaves ``same`` in :func:`resync`, and its rebuild may still be queued, or
    lost); and when its last sync failed, unless :func:`failure_fingerprint` tells that nothing
    the failure depends on changed.
    """
    try:
        chosen = select_annotation(task, options.annotation, options.use_predictions)
    except ValueError:
        return True  # the sync job records why the task cannot be converted
    if chosen is None:
        return state is not None and state.status != "empty"
    if state is None or force:
        return True
    if state.status == "error":  # retried unless the same inputs failed the same way
        return (
            state.error_fingerprint is None
            or config_hash is None
            or state.error_fingerprint != failure_fingerprint(task, chosen, config_hash, options)
        )
    if state.status != "ok":
        return True
    if config_hash is not None and state.config_hash != config_hash:
        return True  # converted under another label config: its rebuild may be lost or late
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


def failure_fingerprint(
    task: Task, annotation: Annotation, config_hash: str, options: ConvertOptions
) -> str | None:
    """What converting ``annotation`` (the one the policy selects) of ``task`` depends on, as
    one compact string.

    The same inputs fail the same way: a task whose conversion failed is recorded with this
    fingerprint (``EntryState.error_fingerprint``), and resyncs leave it alone while Label
    Studio lists it with the same one (events for the task and rebuilds still convert it).

    ``"annotation <id> updated <stamp>; inputs <hex>"`` (``prediction`` for a prediction): the
    annotation's id and its ``updated_at`` (else ``created_at``; Label Studio moves it on every
    edit) as a UTC ISO stamp, and a digest of the rest of what the conversion reads: the label
    config's hash (``store.config_hash``), the task's whole ``data`` (the image URL is one of its
    values: which one, the label config says), and the conversion options (``LS_PANOPTIC_*``:
    raising a pixel, region or time limit, or skipping unknown labels, may mend a failure).

    The image's bytes are not in it, so :mod:`worker.jobs` records without a fingerprint (and
    every resync retries) whatever fails before the conversion: an unusable label config or task
    data, and every failure to get the image, its download (which may pass later) or its file
    (the object behind an unchanged URL can be replaced in cloud storage or in
    ``LS_PANOPTIC_IMAGES_DIR``, and nothing Label Studio lists would show it). A conversion that
    read the image and then failed is fingerprinted like any other: a mismatch with a replaced
    image is mended by the next event for the task, or a rebuild.

    ``None`` when it cannot be told (an annotation without id or timestamp, data that is not
    JSON): such a failure is retried by every resync.
    """
    stamp = annotation.updated_at or annotation.created_at
    if annotation.id is None or not stamp:
        return None
    try:
        edited = parse_timestamp(stamp).isoformat()
        inputs = json.dumps(
            [config_hash, task.data, _options(options)],
            sort_keys=True, separators=(",", ":"), ensure_ascii=False,
        )  # fmt: skip
    except (TypeError, ValueError):
        return None
    digest = hashlib.blake2b(inputs.encode(), digest_size=16).hexdigest()
    kind = "prediction" if annotation.is_prediction else "annotation"
    return f"{kind} {annotation.id} updated {edited}; inputs {digest}"


def _options(options: ConvertOptions) -> dict[str, Any]:
    """The conversion options as JSON values (sets sorted)."""
    found: dict[str, Any] = {}
    for field in dataclasses.fields(options):
        value = getattr(options, field.name)
        found[field.name] = sorted(value) if isinstance(value, (set, frozenset)) else value
    return found
