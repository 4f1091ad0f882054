"""A resync of a known project lists task stamps first (issue 14): what changed without a
webhook is found by the stamps and pulled, nothing else is listed in full or converted, and
many changes go back to converting from the full listing. Real Redis; the stub lists stamps
the way Label Studio 1.23 moves them (every change of a task or its annotations)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from tests.stub_labelstudio import P, StubLabelStudio
from worker import reconcile, runtime
from worker.jobqueue import drain
from worker.labelstudio import TaskStamp

OLD = "2024-05-01T10:00:00.000000Z"


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


class StampedStub(StubLabelStudio):
    """The stub whose stamps move only on ``touch(task)`` (what any change of it does in Label
    Studio), so a test can also make a change that moves no stamp."""

    def __init__(self) -> None:
        super().__init__()
        self.stamps: dict[int, str] = {}

    def touch(self, task_id: int) -> None:
        self.stamps[task_id] = now()

    def task_stamps(self, project_id: int) -> Iterator[TaskStamp]:
        for task_id in sorted(self.tasks):
            usable = [a for a in self.tasks[task_id]["annotations"] if not a.get("was_cancelled")]
            yield TaskStamp(task_id, self.stamps.get(task_id, OLD), len(usable), 0)


@pytest.fixture
def stub() -> StampedStub:
    return StampedStub()


def annotation(annotation_id: int, label: str, updated_at: str = OLD) -> dict[str, Any]:
    value = {"points": [[10, 10], [60, 15], [40, 70]], "polygonlabels": [label]}
    region = {"id": "r1", "from_name": "poly", "to_name": "image", "type": "polygonlabels",
              "original_width": 40, "original_height": 30, "value": value}  # fmt: skip
    return {"id": annotation_id, "result": [region], "completed_by": 1,
            "created_at": updated_at, "updated_at": updated_at}  # fmt: skip


def first_sync(rt: runtime.Runtime, stub: StampedStub, tasks: int) -> None:
    for task_id in range(1, tasks + 1):
        stub.add(task_id, annotation(task_id, "weed" if task_id == 3 else "leaf"))
    summary = reconcile.resync(rt, P)
    assert (summary["quick"], summary["converted"]) == (False, tasks)  # nothing known yet
    stub.full = 0


def test_an_unchanged_resync_lists_no_annotation_and_converts_nothing(
    rt: runtime.Runtime, stub: StampedStub
) -> None:
    first_sync(rt, stub, 40)
    summary = reconcile.resync(rt, P)
    assert (summary["quick"], summary["to_sync"], summary["dropped"]) == (True, 0, 0)
    assert stub.full == 1  # the failed task (3), to compare its fingerprint; nothing else
    assert not stub.pulls and rt.dispatcher.queue.count == 0


def test_changes_without_webhooks_are_found_by_the_stamps_and_pulled(
    rt: runtime.Runtime, stub: StampedStub
) -> None:
    first_sync(rt, stub, 40)
    stub.tasks[1]["annotations"][0] = annotation(1, "stem", now())  # edited
    stub.touch(1)
    del stub.tasks[2]  # deleted
    stub.add(41, annotation(41, "stem", now()))  # imported with an annotation
    stub.touch(41)
    stub.add(42)  # no annotation: nothing to do
    summary = reconcile.resync(rt, P)
    assert summary["quick"] and (summary["to_sync"], summary["dropped"]) == (2, 1)
    drain([rt.dispatcher.queue], rt.redis)
    assert set(stub.pulls) == {1, 41} and stub.full == 1
    entry = rt.store.get_entry(P, 1)
    assert entry is not None and set(entry.inst2class.values()) == {1, 2}  # stem, background
    assert rt.store.get_entry(P, 41) is not None and 2 not in rt.store.task_ids(P)


def test_a_failure_the_settings_now_mend_is_found_without_a_stamp(
    make_rt: Any, stub: StampedStub
) -> None:
    rt = make_rt()
    first_sync(rt, stub, 40)
    (failed,) = [s for s in rt.store.states(P) if s.status == "error"]
    assert failed.task_id == 3 and failed.error_fingerprint is not None
    lenient = make_rt(
        convert=rt.options.__class__(**{**vars(rt.options), "unknown_labels": "skip"})
    )
    summary = reconcile.resync(lenient, P)
    assert summary["quick"] and summary["to_sync"] == 1
    drain([lenient.dispatcher.queue], lenient.redis)
    assert [s.status for s in lenient.store.states(P) if s.task_id == 3] == ["ok"]  # background


def test_many_changes_are_converted_from_the_full_listing(
    rt: runtime.Runtime, stub: StampedStub
) -> None:
    first_sync(rt, stub, 40)
    for task_id in range(1, 40):
        stub.tasks[task_id]["annotations"][0] = annotation(task_id, "stem", now())
        stub.touch(task_id)
    summary = reconcile.resync(rt, P)
    assert (summary["quick"], summary["converted"], summary["enqueued"]) == (False, 39, 0)
    assert not stub.pulls


def test_a_change_that_moved_no_stamp_is_found_by_the_next_full_listing(
    rt: runtime.Runtime, stub: StampedStub
) -> None:
    first_sync(rt, stub, 40)
    stub.tasks[1]["annotations"][0] = annotation(1, "stem", now())  # the stamp did not move
    assert reconcile.resync(rt, P)["to_sync"] == 0  # stamps alone cannot see it
    rt.redis.delete(rt.dispatcher.keys.listed_in_full(P))  # FULL_LISTING_SECONDS later
    summary = reconcile.resync(rt, P)
    assert (summary["quick"], summary["converted"]) == (False, 1)
    entry = rt.store.get_entry(P, 1)
    assert entry is not None and set(entry.inst2class.values()) == {1, 2}
    assert rt.redis.ttl(rt.dispatcher.keys.listed_in_full(P)) > 0  # stamps again from now on
    assert reconcile.resync(rt, P)["quick"]
