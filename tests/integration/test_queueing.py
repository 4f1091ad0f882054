"""The queue, the jobs and reconciliation against a real Redis, jobs run in-process by an rq
``InProcessWorker`` in burst mode. Label Studio is a stub here (``StubLabelStudio``: tasks as
Label Studio's API returns them); ``tests/e2e/test_live_sync.py`` runs the real one."""

from __future__ import annotations

import datetime as dt
import json
import pickle
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from rq import Queue
from rq.job import Job, JobStatus

from ls_panoptic.errors import ImageError
from tests.stub_labelstudio import CONFIG, P, StubLabelStudio
from worker import jobs, reconcile, runtime
from worker.jobqueue import DEFAULT_RETRY_INTERVALS, SERIALIZER, drain
from worker.labelstudio import LabelStudioError

OLD = "2024-05-01T10:00:00.000000Z"


def polygon(label: str, points: list[tuple[float, float]], region: str = "r1") -> dict[str, Any]:
    value = {"points": [list(p) for p in points], "closed": True, "polygonlabels": [label]}
    item = {"id": region, "from_name": "poly", "to_name": "image", "type": "polygonlabels"}
    return {**item, "original_width": 40, "original_height": 30, "value": value}


def annotation(annotation_id: int, label: str, updated_at: str = OLD) -> dict[str, Any]:
    result = [polygon(label, [(10, 10), (60, 15), (40, 70)])]
    return {"id": annotation_id, "result": result, "was_cancelled": False, "completed_by": 1,
            "created_at": updated_at, "updated_at": updated_at, "ground_truth": False}  # fmt: skip


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


def run_burst(rt: runtime.Runtime) -> None:
    drain([rt.dispatcher.queue], rt.redis)


def sync_and_run(rt: runtime.Runtime, task_ids: list[int]) -> None:
    """Enqueue the sync of ``task_ids`` (as a webhook does), then run the jobs."""
    rt.dispatcher.sync_tasks(P, task_ids)
    run_burst(rt)


def job_data(rt: runtime.Runtime, job_id: str) -> Any:
    """The job's stored call, decoded as JSON (it must be JSON)."""
    raw = rt.redis.hget(Job.key_for(job_id), "data")
    assert isinstance(raw, bytes)
    return json.loads(zlib.decompress(raw))


def test_a_burst_for_one_task_enqueues_one_job_and_converts_once(
    rt: runtime.Runtime, stub: StubLabelStudio
) -> None:
    stub.add(1, annotation(11, "leaf"))
    enqueued = sum(rt.dispatcher.sync_tasks(P, [1]) for _ in range(1000))
    assert enqueued == 1 and rt.dispatcher.queue.count == 1
    run_burst(rt)
    assert stub.pulls[1] == 1
    (state,) = rt.store.states(P)
    assert (state.status, state.annotation_id) == ("ok", 11)
    entry = rt.store.get_entry(P, 1)
    assert entry is not None and entry.key == "img1.jpg"


def test_events_during_a_conversion_cost_exactly_one_more(
    rt: runtime.Runtime, stub: StubLabelStudio
) -> None:
    stub.add(1, annotation(11, "leaf"))
    enqueued = [rt.dispatcher.sync_tasks(P, [1]) for _ in range(500)]

    def edit_during_first_pull(task_id: int) -> None:
        stub.on_pull = None
        stub.tasks[task_id]["annotations"] = [annotation(11, "stem", now())]
        enqueued.extend(rt.dispatcher.sync_tasks(P, [task_id]) for _ in range(500))

    stub.on_pull = edit_during_first_pull
    run_burst(rt)
    assert sum(enqueued) == 2 and stub.pulls[1] == 2  # 1000 events, two conversions
    entry = rt.store.get_entry(P, 1)
    assert entry is not None and set(entry.inst2class.values()) == {1, 2}  # stem + background


def test_a_pickled_payload_planted_in_redis_is_never_loaded(
    rt: runtime.Runtime, tmp_path: Path
) -> None:
    marker = tmp_path / "unpickled"

    class Exploit:
        def __reduce__(self) -> tuple[Any, ...]:
            return (open, (str(marker), "w"))  # unpickling creates the file

    planted = Queue(rt.dispatcher.queue.name, connection=rt.redis).enqueue(  # rq's pickle default
        "worker.jobs.drop_tasks", P, [Exploit()]
    )
    honest = rt.dispatcher.drop_tasks(P, [5])
    run_burst(rt)
    assert not marker.exists()
    assert rt.dispatcher.queue.failed_job_registry.get_job_ids() == [planted.id]
    assert Job.fetch(str(honest), rt.redis, SERIALIZER).get_status() == JobStatus.FINISHED
    raw = rt.redis.hget(planted.key, "data")
    assert isinstance(raw, bytes)
    pickle.loads(zlib.decompress(raw))  # control: the payload was live, the worker never loaded it
    assert marker.exists()


def test_jobs_are_stored_as_json(rt: runtime.Runtime) -> None:
    dispatcher = rt.dispatcher
    jobs: dict[str | None, tuple[str, list[Any]]] = {
        dispatcher.drop_tasks(P, [3, 4, 3]): ("drop_tasks", [P, [3, 4]]),
        dispatcher.drop_annotations([31, 32]): ("drop_annotations", [[31, 32]]),
        dispatcher.rebuild_project(P): ("rebuild_project", [P]),
        dispatcher.resync_project(P): ("resync_project", [P]),
        dispatcher.enqueue_sync(P, 9): ("sync_task", [P, 9]),
    }
    for job_id, (name, args) in jobs.items():
        assert job_data(rt, str(job_id)) == [f"worker.jobs.{name}", None, args, {}]
    assert dispatcher.drop_tasks(P, []) is None


def test_an_unavailable_label_studio_is_retried_with_backoff(
    rt: runtime.Runtime, stub: StubLabelStudio
) -> None:
    stub.add(1, annotation(11, "leaf"))
    stub.unavailable = True
    (job_id,) = [rt.dispatcher.enqueue_sync(P, 1)]
    run_burst(rt)
    job = Job.fetch(str(job_id), rt.redis, SERIALIZER)
    assert job.get_status() == JobStatus.SCHEDULED
    assert job.retries_left == len(DEFAULT_RETRY_INTERVALS) - 1
    assert job.id in rt.dispatcher.queue.scheduled_job_registry.get_job_ids()
    assert rt.redis.get(rt.dispatcher.keys.pending(P, 1)) is None  # new events still enqueue
    assert rt.store.states(P) == []


def test_image_errors_are_recorded_and_the_last_good_entry_kept(
    rt: runtime.Runtime, stub: StubLabelStudio
) -> None:
    stub.add(1, annotation(11, "leaf"))
    stub.add(2, annotation(21, "stem"))
    sync_and_run(rt, [1, 2])
    stub.tasks[1]["annotations"] = [annotation(12, "weed", now())]
    sync_and_run(rt, [1])
    states = {s.task_id: s for s in rt.store.states(P)}
    assert states[1].status == "error" and states[2].status == "ok"
    assert "'weed'" in str(states[1].error) and "region r1" in str(states[1].error)
    kept = rt.store.get_entry(P, 1)
    assert kept is not None and kept.meta["annotation_id"] == 11


def test_a_deleted_task_is_dropped(rt: runtime.Runtime, stub: StubLabelStudio) -> None:
    stub.add(1, annotation(11, "leaf"))
    sync_and_run(rt, [1])
    del stub.tasks[1]
    sync_and_run(rt, [1])  # e.g. a late ANNOTATION_UPDATED
    assert rt.store.states(P) == [] and rt.store.get_entry(P, 1) is None


def test_a_sync_that_pulled_before_the_task_was_deleted_does_not_bring_it_back(
    rt: runtime.Runtime, stub: StubLabelStudio
) -> None:
    """The sync has the task in hand when TASKS_DELETED is handled; it stores afterwards."""
    stub.add(1, annotation(11, "leaf"))
    sync_and_run(rt, [1])
    assert rt.store.get_entry(P, 1) is not None

    def deleted_during_the_pull(task_id: int) -> None:
        stub.on_pull = None
        jobs.drop_tasks(P, [task_id])  # the TASKS_DELETED job, run while this sync converts

    stub.on_pull = deleted_during_the_pull
    job_id = rt.dispatcher.sync_tasks(P, [1]) and rt.dispatcher.queue.job_ids[-1]
    run_burst(rt)
    job = Job.fetch(str(job_id), connection=rt.redis, serializer=SERIALIZER)
    assert job.return_value() == "stale"
    assert rt.store.states(P) == [] and rt.store.get_entry(P, 1) is None


def test_a_deleted_annotation_falls_back_to_the_older_one(
    rt: runtime.Runtime, stub: StubLabelStudio
) -> None:
    older, newer = annotation(11, "leaf"), annotation(12, "stem", "2024-06-01T00:00:00Z")
    stub.add(1, older, newer)
    sync_and_run(rt, [1])
    assert rt.store.task_for_annotation(12) == (P, 1)
    stub.tasks[1]["annotations"] = [older]
    rt.dispatcher.drop_annotations([12])
    run_burst(rt)
    entry = rt.store.get_entry(P, 1)
    assert entry is not None and entry.meta["annotation_id"] == 11
    assert rt.store.task_for_annotation(12) is None


def test_resync_repairs_lost_webhooks_and_leaves_the_rest(
    rt: runtime.Runtime, stub: StubLabelStudio
) -> None:
    for task_id in (1, 2, 3):
        stub.add(task_id, annotation(10 * task_id, "leaf"))
    sync_and_run(rt, [1, 2, 3])
    stub.tasks[1]["annotations"][0] = annotation(10, "stem", now())  # edited, no event
    del stub.tasks[2]  # deleted, no event
    stub.add(4, annotation(40, "stem"))  # imported with an annotation, no event
    stub.add(5)  # no annotation: nothing to store
    pulls = stub.pulls.copy()
    summary = reconcile.resync(rt, P)
    run_burst(rt)
    assert (summary["to_sync"], summary["dropped"], summary["config"]) == (2, 1, "same")
    # found by the task stamps (the first sync listed in full), pulled by a sync job each, as
    # with the real client; converting from the full listing: tests/integration/test_listing_sync
    assert (summary["quick"], summary["converted"], summary["enqueued"]) == (True, 0, 2)
    assert stub.pulls == pulls + Counter({1: 1, 4: 1})
    assert [s.task_id for s in rt.store.states(P)] == [1, 3, 4]
    edited = rt.store.get_entry(P, 1)
    assert edited is not None and set(edited.inst2class.values()) == {1, 2}


def test_a_label_config_change_rebuilds_the_project(
    rt: runtime.Runtime, stub: StubLabelStudio
) -> None:
    stub.add(1, annotation(11, "leaf"))
    stub.add(2, annotation(21, "leaf"))
    sync_and_run(rt, [1, 2])
    stub.config = CONFIG.replace('<Label value="leaf"/><Label value="stem"/>',
                                 '<Label value="stem"/><Label value="leaf"/>')  # fmt: skip
    rt.redis.delete(rt.dispatcher.keys.config_checked(P))  # cached config expired (TTL)
    sync_and_run(rt, [1])  # any event: the sync notices the new config
    for task_id in (1, 2):
        entry = rt.store.get_entry(P, task_id)
        assert entry is not None and set(entry.inst2class.values()) == {1, 2}  # leaf is 1 now
    # first sync, the noticing sync (pulls); the rebuild converts from the listing
    assert stub.pulls == Counter({1: 2, 2: 1})


def test_a_failed_conversion_is_not_redone_until_the_task_changes(
    rt: runtime.Runtime, stub: StubLabelStudio
) -> None:
    stub.add(1, annotation(11, "weed"))  # not in the label config: fails the same way each time
    stub.add(2, annotation(21, "leaf"))
    assert reconcile.resync(rt, P)["to_sync"] == 2
    run_burst(rt)
    failed = {s.task_id: s for s in rt.store.states(P)}[1]
    assert failed.status == "error" and "'weed'" in str(failed.error)
    assert str(failed.error_fingerprint).startswith("annotation 11 updated ")

    pulls = stub.pulls.copy()
    again = reconcile.resync(rt, P)  # nothing changed in Label Studio
    assert (again["to_sync"], again["jobs"], again["pending"]) == (0, [], [])
    assert rt.dispatcher.queue.count == 0
    run_burst(rt)
    assert stub.pulls == pulls
    assert {s.task_id: s for s in rt.store.states(P)}[1] == failed

    stub.tasks[1]["annotations"] = [annotation(11, "leaf", now())]  # mended, no event
    mended = reconcile.resync(rt, P)
    assert (mended["to_sync"], mended["converted"], mended["enqueued"]) == (1, 0, 1)
    run_burst(rt)
    assert stub.pulls == pulls + Counter({1: 1})  # its stamp moved: pulled by a sync job
    state = {s.task_id: s for s in rt.store.states(P)}[1]
    assert (state.status, state.annotation_id, state.error_fingerprint) == ("ok", 11, None)
    assert reconcile.resync(rt, P)["to_sync"] == 0


def test_a_rebuild_or_a_config_change_retries_an_unchanged_failure(
    rt: runtime.Runtime, stub: StubLabelStudio
) -> None:
    stub.add(1, annotation(11, "weed"))
    reconcile.resync(rt, P)
    run_burst(rt)
    assert [s.status for s in rt.store.states(P)] == ["error"]
    assert reconcile.resync(rt, P, force=True)["to_sync"] == 1  # a rebuild re-converts it
    run_burst(rt)
    assert stub.pulls[1] == 0  # both converted from the listing
    assert [s.status for s in rt.store.states(P)] == ["error"]
    stub.config = CONFIG.replace(
        '<Label value="stem"/>', '<Label value="stem"/><Label value="weed"/>'
    )
    summary = reconcile.resync(rt, P)
    assert (summary["config"], summary["to_sync"]) == ("changed", 1)
    run_burst(rt)
    assert [s.status for s in rt.store.states(P)] == ["ok"]


@pytest.mark.parametrize(
    "failure",
    [LabelStudioError("reading image img1.jpg: Label Studio answered 502"),
     ImageError("cannot identify image file", task_id=1)],  # bytes replaceable at this URL
    ids=["download", "unreadable file"],
)  # fmt: skip
def test_a_failure_to_get_the_image_is_retried_by_every_resync(
    rt: runtime.Runtime, stub: StubLabelStudio, monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    no_regions = {**annotation(11, "leaf"), "result": []}  # the image gives the size
    stub.add(1, no_regions)

    def image_info(url: str, scratch_dir: Path, *, task_id: int | None = None) -> None:
        raise failure

    monkeypatch.setattr(stub, "image_info", image_info)
    for _round in range(2):
        assert reconcile.resync(rt, P)["to_sync"] == 1
        run_burst(rt)
        (state,) = rt.store.states(P)
        assert (state.status, state.error_fingerprint) == ("error", None)
    assert stub.pulls[1] == 2


def test_a_lost_pending_job_is_revived_by_resync(
    rt: runtime.Runtime, stub: StubLabelStudio
) -> None:
    stub.add(1, annotation(11, "leaf"))
    rt.redis.set(rt.dispatcher.keys.pending(P, 1), "lsptest-sync-lost")
    assert rt.dispatcher.sync_tasks(P, [1]) == 0  # coalesced into a job that does not exist
    assert reconcile.resync(rt, P)["enqueued"] == 1
    run_burst(rt)
    assert stub.pulls[1] == 1 and rt.store.get_entry(P, 1) is not None


def test_the_periodic_resync_is_scheduled_once_per_period(
    rt: runtime.Runtime, stub: StubLabelStudio
) -> None:
    at = dt.datetime(2030, 1, 1, 0, 3, tzinfo=dt.timezone.utc)
    first = rt.dispatcher.schedule_resync_all(600, now=at)
    assert first == f"lsptest-resync-all-{int(at.timestamp()) - 180 + 600}"
    assert rt.dispatcher.schedule_resync_all(600, now=at) is None  # another worker: no copy
    assert rt.dispatcher.queue.scheduled_job_registry.get_job_ids() == [first]
    assert rt.dispatcher.schedule_resync_all(0) is None  # turned off
