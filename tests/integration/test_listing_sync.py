"""A resync converts from Label Studio's task listing (issue 14): the same store a pull of every
task makes, a newer pull never overwritten by an older listing, tasks the listing cannot give
whole left to a job that pulls them, and the store written in a few round trips per batch.
Real Redis; Label Studio is the stub (``tests/e2e/test_listing_e2e.py`` runs the real one)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from devstack.synthetic import SyntheticProject, label_config
from ls_panoptic.model import Task
from ls_panoptic.tasks import task_from_dict
from tests.stub_labelstudio import P, StubLabelStudio
from worker import reconcile, runtime
from worker.jobqueue import drain
from worker.labelstudio import PartialTask, UnusableTask, _listed

LATER = "2030-01-01T00:00:00.000000Z"


def run_burst(rt: runtime.Runtime) -> None:
    drain([rt.dispatcher.queue], rt.redis)


def load_project(stub: StubLabelStudio, project: SyntheticProject) -> list[int]:
    """The synthetic export as the stub's tasks (every region kind, some annotations skipped,
    two usable annotations per task: agreement records), plus a task whose conversion fails,
    one with only a skipped annotation, and one with no annotation."""
    stub.config = label_config()
    for task in json.loads(project.export.read_text()):
        stub.tasks[task["id"]] = task
    first = json.loads(project.export.read_text())[0]
    broken = copy.deepcopy(first)
    broken["annotations"][1]["result"][0]["value"]["brushlabels"] = ["weed"]
    skipped = copy.deepcopy(first)
    skipped["annotations"] = [{**first["annotations"][1], "was_cancelled": True}]
    bare = {**copy.deepcopy(first), "annotations": []}
    for offset, task in enumerate((broken, skipped, bare), 1):
        task_id = 100 + offset
        task["id"] = task_id
        task["data"] = {"image": f"/data/upload/1/0000abcd-extra_{task_id}.png"}
        for n, annotation in enumerate(task["annotations"]):
            annotation["id"] = 10 * task_id + n
        stub.tasks[task_id] = task
    return sorted(stub.tasks)


def stored(rt: runtime.Runtime) -> dict[str, Any]:
    """Everything the store holds about the project that a pull or the listing decides (not
    the Redis times of either)."""
    entries = {}
    for task_id in rt.store.task_ids(P):
        entry = rt.store.get_entry(P, task_id)
        if entry is not None:
            mask = entry.panoptic_mask
            entries[task_id] = (entry.key, mask.dtype.str, mask.shape, mask.tobytes(),
                                entry.inst2class, entry.meta, entry.image_url)  # fmt: skip
    states = [
        (s.task_id, s.key, s.annotation_id, s.status, s.error, s.config_hash,
         s.error_fingerprint, s.remedy)
        for s in rt.store.states(P)
    ]  # fmt: skip
    meta = rt.store.snapshot_meta(P)
    return {
        "entries": entries,
        "states": states,
        "failures": meta["failures"],
        "provenance": {k: {**v, "source_updated_at": None} for k, v in meta["entries"].items()},
        "agreement": rt.store.agreement(P),
        "counts": rt.store.status_counts(P),
        "annotation index": rt.redis.hgetall(rt.dispatcher.keys.annotations()),
    }


@pytest.mark.parametrize("batch", [reconcile.BATCH, 2], ids=["in the resync", "in processes"])
def test_entries_converted_from_the_listing_equal_pulled_ones_bit_for_bit(
    rt: runtime.Runtime,
    stub: StubLabelStudio,
    small_project: SyntheticProject,
    monkeypatch: pytest.MonkeyPatch,
    batch: int,
) -> None:
    task_ids = load_project(stub, small_project)
    monkeypatch.setattr(reconcile, "BATCH", batch)  # batches this big go to worker processes
    summary = reconcile.resync(rt, P)
    synced = len(task_ids) - 2  # not the tasks without a usable annotation, as ever
    assert (summary["converted"], summary["enqueued"], summary["stale"]) == (synced, 0, 0)
    assert not stub.pulls  # the listing carried every annotation
    from_listing = stored(rt)
    statuses = {state[0]: state[3] for state in from_listing["states"]}
    assert list(statuses.values()).count("ok") == synced - 1 and statuses[101] == "error"
    assert from_listing["agreement"][0]  # pairs were compared

    rt.redis.flushdb()
    reconcile.refresh_project(rt, P)  # known project: the pulls enqueue no first resync
    rt.dispatcher.sync_tasks(P, sorted(statuses))
    run_burst(rt)
    assert set(stub.pulls) == set(statuses)
    assert stored(rt) == from_listing


def test_an_older_listing_never_overwrites_a_newer_pull(
    rt: runtime.Runtime, stub: StubLabelStudio, small_project: SyntheticProject
) -> None:
    load_project(stub, small_project)
    listed_first = task_from_dict(stub.tasks[1])
    newer = copy.deepcopy(stub.tasks[1])
    newer["annotations"][1]["result"][0]["value"]["brushlabels"] = ["tomato"]
    newer["annotations"][1]["updated_at"] = LATER
    listing = stub.list_tasks

    def stale_listing(project_id: int) -> Iterator[Task | UnusableTask]:
        for task in listing(project_id):
            if task.id == 1:  # edited after the page was requested, and the edit's job ran
                stub.tasks[1] = newer
                rt.dispatcher.sync_tasks(P, [1])
                run_burst(rt)
                yield listed_first  # the page still holds the older state
            else:
                yield task

    stub.list_tasks = stale_listing  # type: ignore[method-assign,assignment]
    summary = reconcile.resync(rt, P)
    assert summary["stale"] == 1 and stub.pulls[1] == 1
    kept = stored(rt)["entries"][1]
    assert kept[5]["updated_at"] == LATER  # the pulled (newer) annotation's entry

    stub.list_tasks = listing  # type: ignore[method-assign]
    rt.redis.flushdb()
    reconcile.refresh_project(rt, P)
    rt.dispatcher.sync_tasks(P, [1])
    run_burst(rt)
    assert stored(rt)["entries"][1] == kept  # exactly what a pull of the newer state stores


def test_a_task_with_an_event_pending_is_left_to_its_job(
    rt: runtime.Runtime, stub: StubLabelStudio, small_project: SyntheticProject
) -> None:
    task_ids = load_project(stub, small_project)
    reconcile.refresh_project(rt, P)
    assert rt.dispatcher.sync_tasks(P, [2]) == 1  # a webhook's job, not run yet
    summary = reconcile.resync(rt, P)
    assert (summary["converted"], summary["coalesced"]) == (len(task_ids) - 3, 1)
    assert rt.store.get_entry(P, 2) is None and not stub.pulls
    run_burst(rt)
    assert stub.pulls[2] == 1 and rt.store.get_entry(P, 2) is not None


def test_a_task_the_listing_gives_incomplete_is_pulled(
    rt: runtime.Runtime, stub: StubLabelStudio, small_project: SyntheticProject
) -> None:
    load_project(stub, small_project)
    listing = stub.list_tasks

    def partial(project_id: int) -> Iterator[Task | UnusableTask]:
        for task in listing(project_id):
            yield (
                PartialTask(3, "task 3: the listing gave annotations [7]") if task.id == 3 else task
            )

    stub.list_tasks = partial  # type: ignore[method-assign,assignment]
    summary = reconcile.resync(rt, P)
    assert summary["enqueued"] == 1 and rt.store.get_entry(P, 3) is None
    run_burst(rt)
    assert stub.pulls[3] == 1 and rt.store.get_entry(P, 3) is not None


@pytest.mark.parametrize(
    ("change", "partial"),
    [({}, False),
     ({"annotations_ids": "5,6"}, True),  # an annotation left out of the listing
     ({"annotations_ids": "5", "annotations": []}, True),
     ({"total_predictions": 1}, True),
     ({"annotations_ids": None, "total_predictions": None}, False)],  # fields absent: whole
)  # fmt: skip
def test_a_listed_task_that_disagrees_with_its_counts_is_partial(
    change: dict[str, Any], partial: bool
) -> None:
    annotation = {"id": 5, "result": [], "created_at": LATER, "updated_at": LATER}
    data = {"id": 9, "data": {"image": "x.jpg"}, "annotations": [annotation], "predictions": [],
            "annotations_ids": "5", "total_predictions": 0, **change}  # fmt: skip
    listed = _listed(9, {k: v for k, v in data.items() if v is not None})
    assert isinstance(listed, PartialTask) == partial
    if partial:
        assert str(listed.error).startswith("task 9: the listing gave")  # type: ignore[union-attr]


def test_a_resync_writes_the_store_in_batches_not_per_task(
    rt: runtime.Runtime, stub: StubLabelStudio, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = {"points": [[10, 10], [60, 15], [40, 70]], "polygonlabels": ["leaf"]}
    polygon = {"id": "r1", "from_name": "poly", "to_name": "image", "type": "polygonlabels",
               "original_width": 40, "original_height": 30, "value": value}  # fmt: skip
    count = 3 * reconcile.BATCH
    for task_id in range(1, count + 1):
        stub.add(task_id, {"id": task_id, "result": [polygon], "created_at": LATER,
                           "updated_at": LATER, "completed_by": 1})  # fmt: skip
    sends = 0
    original = redis.connection.AbstractConnection.send_packed_command

    def counted(self: Any, command: Any, check_health: bool = True) -> None:
        nonlocal sends
        sends += 1
        original(self, command, check_health)  # type: ignore[no-untyped-call]

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted)
    summary = reconcile.resync(rt, P)
    monkeypatch.undo()
    assert summary["converted"] == count and len(rt.store.task_ids(P)) == count
    assert sends <= 40  # a handful per batch of 100, not several per task
