"""The live service's worker against a real Label Studio 1.23.2 and a real Redis.

A project is built through Label Studio's REST API; the events a webhook would bring are
enqueued by hand through the ``Dispatcher`` (or deliberately not: a lost webhook), and the jobs
run in-process in the service's rq ``InProcessWorker`` (JSON serializer, burst mode). After each
step the store's snapshot (written by ``ls-panoptic snapshot``) must be byte-identical to the batch
conversion (``ls-panoptic convert``'s ``run_convert``) of Label Studio's own export of the
project at that moment, and both sidecars must list the same failed tasks, with the same reasons.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from devstack.labelstudio import LabelStudioServer
from worker import reconcile

from ._services import service_process
from ._sync_helpers import (
    UNLISTED_LABEL,
    LiveProject,
    open_live_project,
    run_resync,
    service_settings,
)
from .lsclient import LabelStudioClient
from .scene import EXIF_JPEG, PLAIN_JPEG, PNG, SKIPPED_ONLY, UNLABELED, make_images

pytestmark = pytest.mark.e2e


@pytest.fixture
def live_project(
    label_studio: LabelStudioServer,
    ls_client: LabelStudioClient,
    redis_url: str,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> Iterator[LiveProject]:
    """A fresh project with the five scene images uploaded (no annotations yet)."""
    settings = service_settings(redis_url, label_studio)
    title = f"live sync {tmp_path.name}"
    with open_live_project(
        label_studio, ls_client, settings, redis_client, tmp_path, title
    ) as live:
        live.upload(make_images())
        yield live


ANNOTATED = {PNG, EXIF_JPEG, PLAIN_JPEG}


def _annotate_all(live: LiveProject) -> dict[str, int]:
    """As in build_project: the PNG's older annotation updated last, a skipped annotation over
    the plain JPEG's usable one, a task with only a skipped one; returns annotation ids."""
    ids = {"png-first": live.annotate(PNG, 1, 0), "png-second": live.annotate(PNG, 2, 1)}
    live.update(PNG, ids["png-first"], 3, 2)
    ids["exif"] = live.annotate(EXIF_JPEG, 4, 1)
    ids["plain"] = live.annotate(PLAIN_JPEG, 5, 2)
    ids["plain-skipped"] = live.annotate(PLAIN_JPEG, 6, 0, skipped=True)
    ids["skipped-only"] = live.annotate(SKIPPED_ONLY, 7, 0, skipped=True)
    return ids


def _sync_all(live: LiveProject) -> int:
    """Every task's sync enqueued (as ``TASKS_CREATED`` does) and the jobs run; returns how
    many jobs were enqueued."""
    enqueued = live.rt.dispatcher.sync_tasks(live.project, live.tasks.values())
    live.run_jobs()
    return enqueued


def test_events_keep_the_store_equal_to_a_batch_conversion(live_project: LiveProject) -> None:
    live = live_project
    ids = _annotate_all(live)
    dispatcher = live.rt.dispatcher
    assert _sync_all(live) == 5  # TASKS_CREATED
    live.assert_store_equals_batch("created", ANNOTATED)

    live.update(EXIF_JPEG, ids["exif"], 8, 0)
    bursts = [dispatcher.sync_tasks(live.project, [live.tasks[EXIF_JPEG]]) for _ in range(1000)]
    assert sum(bursts) == 1  # 1000 ANNOTATION_UPDATED events: one job
    live.run_jobs()
    live.assert_store_equals_batch("updated", ANNOTATED)

    first = live.annotate(UNLABELED, 9, 1)  # ANNOTATION_CREATED
    dispatcher.sync_tasks(live.project, [live.tasks[UNLABELED]])
    live.run_jobs()
    live.assert_store_equals_batch("annotated", ANNOTATED | {UNLABELED})
    assert live.rt.store.task_for_annotation(first) == (live.project, live.tasks[UNLABELED])


def test_deleted_annotations_and_tasks_leave_the_store(live_project: LiveProject) -> None:
    live = live_project
    ids = _annotate_all(live)
    dispatcher = live.rt.dispatcher
    _sync_all(live)

    live.delete(f"/api/annotations/{ids['png-first']}/")  # the selected one: the other is next
    dispatcher.drop_annotations([ids["png-first"]])  # ANNOTATIONS_DELETED carries ids only
    live.run_jobs()
    live.assert_store_equals_batch("annotation-deleted", ANNOTATED)
    entry = live.rt.store.get_entry(live.project, live.tasks[PNG])
    assert entry is not None and entry.meta["annotation_id"] == ids["png-second"]

    live.delete(f"/api/tasks/{live.tasks[EXIF_JPEG]}/")
    dispatcher.drop_tasks(live.project, [live.tasks[EXIF_JPEG]])  # TASKS_DELETED
    live.delete(f"/api/tasks/{live.tasks[PLAIN_JPEG]}/")
    dispatcher.sync_tasks(live.project, [live.tasks[PLAIN_JPEG]])  # a late, stale event
    live.run_jobs()
    live.assert_store_equals_batch("tasks-deleted", {PNG})
    states = {s.task_id: s.status for s in live.rt.store.states(live.project)}
    assert states == {live.tasks[PNG]: "ok", live.tasks[SKIPPED_ONLY]: "empty",
                      live.tasks[UNLABELED]: "empty"}  # fmt: skip


def test_resync_repairs_lost_webhooks(live_project: LiveProject) -> None:
    live = live_project
    ids = _annotate_all(live)
    _sync_all(live)

    live.update(PLAIN_JPEG, ids["plain"], 10, 1)  # none of these is enqueued: lost webhooks
    live.annotate(UNLABELED, 11, 2)
    live.delete(f"/api/tasks/{live.tasks[EXIF_JPEG]}/")
    live.run_jobs()
    stale = live.rt.store.get_entry(live.project, live.tasks[PLAIN_JPEG])
    assert stale is not None and live.rt.store.get_entry(live.project, live.tasks[EXIF_JPEG])

    with service_process(["worker"], live.env(), live.root / "worker.log"):  # rq, forking
        output = run_resync(live)
    assert "2 to sync (0 already pending), 1 dropped" in output
    live.assert_store_equals_batch("resynced", {PNG, PLAIN_JPEG, UNLABELED})
    repaired = live.rt.store.get_entry(live.project, live.tasks[PLAIN_JPEG])
    assert repaired is not None and repaired.source_updated_at > stale.source_updated_at
    summary = reconcile.resync(live.rt, live.project)
    assert (summary["to_sync"], summary["dropped"]) == (0, 0)  # now in agreement


def test_a_failing_annotation_leaves_the_task_out_of_both_snapshots(
    live_project: LiveProject,
) -> None:
    """An annotation with a label outside the label config (Label Studio's API stores it) over a
    good one: the store's snapshot leaves the task out and its sidecar lists it, exactly as
    ``convert`` does with a fresh export; the last good entry stays for review, marked stale."""
    live = live_project
    ids = _annotate_all(live)
    _sync_all(live)
    task = live.tasks[EXIF_JPEG]
    bad = live.annotate(EXIF_JPEG, 12, 0, label=UNLISTED_LABEL)  # the newest: the selected one
    live.rt.dispatcher.sync_tasks(live.project, [task])  # ANNOTATION_CREATED
    live.run_jobs()
    sidecar = live.assert_store_equals_batch(
        "failed", ANNOTATED - {EXIF_JPEG}, failed=frozenset({EXIF_JPEG})
    )
    (failure,) = sidecar["failures"]
    assert (failure["task_id"], failure["key"]) == (task, EXIF_JPEG)
    assert f"label {UNLISTED_LABEL!r} is not in the label set" in failure["message"]
    assert EXIF_JPEG not in sidecar["entries"]
    stale = live.rt.store.get_entry(live.project, task)
    assert stale is not None and stale.stale and stale.meta["annotation_id"] == ids["exif"]
    state = {s.task_id: s for s in live.rt.store.states(live.project)}[task]
    assert (state.status, state.error) == ("error", failure["message"])
    assert state.stale_version is not None
    assert reconcile.resync(live.rt, live.project)["to_sync"] == 0  # it would fail alike

    live.update(EXIF_JPEG, bad, 13, 1)  # mended: ANNOTATION_UPDATED
    live.rt.dispatcher.sync_tasks(live.project, [task])
    live.run_jobs()
    live.assert_store_equals_batch("mended", ANNOTATED)
    mended = live.rt.store.get_entry(live.project, task)
    assert mended is not None and not mended.stale and mended.meta["annotation_id"] == bad
