"""A worker never crashes on bad task data: each malformed task ends as a recorded per-task
error, its job returns (finished, not failed or retried), and the other tasks convert.

Label Studio is a stub here, acceptable only because these tasks hold data real Label Studio
would refuse to store (it validates results in its editor and API, timestamps are database
columns). The stub hands task JSON through the real client's translation
(``worker.labelstudio._task`` and ``_listed``), so what the jobs see is exactly what
``LabelStudio.get_task`` would give them or raise, and what ``LabelStudio.list_tasks`` would
yield. The real ``list_tasks`` is driven once more over HTTP (a mock transport speaking Label
Studio's task list API), malformed tasks and a 503 included. Jobs run in-process (rq
``InProcessWorker``, burst) against a real Redis.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from rq.job import Job, JobStatus

from ls_panoptic.images import ImageInfo
from ls_panoptic.labels import labelset_from_config
from ls_panoptic.model import Task
from worker import reconcile, runtime
from worker.jobqueue import DEFAULT_SYNC_TIMEOUT, SERIALIZER, drain, sync_timeout
from worker.labelstudio import (
    LabelStudio,
    LabelStudioError,
    LabelStudioNotFound,
    LabelStudioUnavailable,
    ProjectInfo,
    TaskStamp,
    UnusableTask,
    _listed,
    _task,
)

P = 7
CONFIG = """<View><Image name="image" value="$image"/>
<PolygonLabels name="poly" toName="image"><Label value="leaf"/><Label value="stem"/></PolygonLabels>
<BrushLabels name="brush" toName="image"><Label value="leaf"/></BrushLabels>
<BitmaskLabels name="mask" toName="image"><Label value="leaf"/></BitmaskLabels>
</View>"""
STAMP = "2024-05-01T10:00:00.000000Z"


def region(**change: Any) -> dict[str, Any]:
    """A sound polygon result item of a 40 x 30 image, with ``change`` applied."""
    value = {"points": [[10, 10], [60, 15], [40, 70]], "polygonlabels": ["leaf"]}
    item = {"id": "r1", "from_name": "poly", "to_name": "image", "type": "polygonlabels",
            "original_width": 40, "original_height": 30, "value": value}  # fmt: skip
    return item | change


def annotation(result: Any, **change: Any) -> dict[str, Any]:
    return {"id": 1, "result": result, "was_cancelled": False, "completed_by": 1,
            "created_at": STAMP, "updated_at": STAMP, "ground_truth": False} | change  # fmt: skip


def task(task_id: int, *annotations: Any, **change: Any) -> dict[str, Any]:
    data = {"image": f"/data/upload/{P}/0123abcd-img{task_id}.jpg"}
    return {"id": task_id, "data": data, "annotations": list(annotations)} | change


def brush(rle: Any) -> dict[str, Any]:
    value = {"format": "rle", "rle": rle, "brushlabels": ["leaf"]}
    return region(type="brushlabels", from_name="brush", value=value)


def bitmask(url: Any) -> dict[str, Any]:
    value = {"imageDataURL": url, "bitmasklabels": ["leaf"]}
    return region(type="bitmasklabels", from_name="mask", value=value)


# What each bad task holds, and a word its recorded error must contain.
BAD: dict[str, tuple[dict[str, Any], str]] = {
    "result not a list": (task(0, annotation("garbage")), "'result' must be a list"),
    "result item not an object": (task(0, annotation([1, 2])), "not an object"),
    "timestamp not a timestamp": (
        task(0, annotation([region()], updated_at="yesterday")), "updated_at"),
    "annotator not an id": (task(0, annotation([region()], completed_by="bob")), "completed_by"),
    "annotations not a list": (task(0, annotations={"a": 1}), "must be a list"),
    "data not an object": (task(0, annotation([region()]), data="img.jpg"), "'data'"),
    "no image url": (task(0, annotation([region()]), data={"text": "hi"}), "image"),
    "image url not text": (task(0, annotation([region()]), data={"image": 5}), "image"),
    "two points": (task(0, annotation([region(value={"points": [[1, 1], [2, 2]],
                                                     "polygonlabels": ["leaf"]})])), "3 points"),
    "NaN point": (task(0, annotation([region(value={"points": [[1, 1], [float("nan"), 2], [3, 9]],
                                                    "polygonlabels": ["leaf"]})])), "finite"),
    "label outside the set": (task(0, annotation([region(value={
        "points": [[1, 1], [50, 2], [3, 90]], "polygonlabels": ["weed"]})])), "weed"),
    "size past the float range": (task(0, annotation([region(original_width=10**400)])), "limit"),
    "absurd size": (task(0, annotation([region(original_width=10**6, original_height=10**6)])),
                    "max_pixels"),
    "sizes disagree": (task(0, annotation([region(), region(id="r2", original_width=41)])),
                       "disagree"),
    "rotation past the float range": (task(0, annotation([region(image_rotation=10**400)])),
                                      "image_rotation"),
    "too many regions": (task(0, annotation([region(id=f"r{n}") for n in range(10_001)])),
                         "max_regions"),
    "corrupt rle": (task(0, annotation([brush([255] * 12)])), "brush"),
    "rle of strings": (task(0, annotation([brush(["a", "b"])])), "brush"),
    "non-ASCII data URL": (task(0, annotation([bitmask("data:image/png;base64,\u00e9t\u00e9")])),
                           "base64"),
    "data URL not a PNG": (task(0, annotation([bitmask(
        "data:image/png;base64," + base64.b64encode(b"GIF89a").decode())])), "PNG"),
}  # fmt: skip
GOOD = (101, 102)
#: the cases Label Studio's task listing cannot read (listed as ``UnusableTask``): every resync
#: retries them; the other cases fail in the conversion of an annotation the listing shows
UNREADABLE_LISTED = frozenset({
    "result not a list", "result item not an object", "timestamp not a timestamp",
    "annotator not an id", "annotations not a list", "data not an object",
})  # fmt: skip


class StubLabelStudio:
    """Label Studio as the jobs see it, serving task JSON through the real translation."""

    def __init__(self, tasks: dict[int, dict[str, Any]]) -> None:
        self.tasks = tasks
        #: list_tasks raises this after yielding that many tasks (a listing that breaks off)
        self.listing_fails_after: int | None = None

    def get_project(self, project_id: int) -> ProjectInfo:
        if project_id != P:
            raise LabelStudioNotFound(f"project {project_id}")
        return ProjectInfo(P, CONFIG, "stub")

    def get_task(self, task_id: int) -> tuple[int, Task]:
        if task_id not in self.tasks:
            raise LabelStudioNotFound(f"task {task_id}")
        # a JSON round trip, as over HTTP (NaN survives: Python's json reads it)
        return P, _task(json.loads(json.dumps(self.tasks[task_id])))

    def list_tasks(
        self, project_id: int, ids: Collection[int] | None = None
    ) -> Iterator[Task | UnusableTask]:
        chosen = [task_id for task_id in sorted(self.tasks) if ids is None or task_id in ids]
        for n, task_id in enumerate(chosen):
            if n == self.listing_fails_after:
                raise LabelStudioUnavailable("listing tasks: Label Studio answered 503; retry")
            yield _listed(task_id, json.loads(json.dumps(self.tasks[task_id])))

    def task_stamps(self, project_id: int) -> Iterator[TaskStamp]:
        """Stamps that never move: these tasks do not change."""
        for task_id in sorted(self.tasks):
            annotations = self.tasks[task_id].get("annotations")
            count = len(annotations) if isinstance(annotations, list) else 0
            yield TaskStamp(task_id, "2024-05-01T10:00:00.000000Z", count, 0)

    def image_info(
        self, url: str, scratch_dir: Path, *, task_id: int | None = None
    ) -> ImageInfo | None:
        return None  # no image: the regions must give the size


@pytest.fixture
def tasks() -> dict[int, dict[str, Any]]:
    found = {n: {**raw, "id": n} for n, (raw, _word) in enumerate(BAD.values(), 1)}
    for task_id in GOOD:
        found[task_id] = task(task_id, annotation([region()]))
    return found


@pytest.fixture
def stub(tasks: dict[int, dict[str, Any]]) -> StubLabelStudio:
    """Label Studio for the shared ``rt`` and ``make_rt`` fixtures (tests/conftest.py)."""
    return StubLabelStudio(tasks)


def known_project(built: runtime.Runtime) -> runtime.Runtime:
    """The project is known, so a sync does not enqueue the project's first resync."""
    built.store.set_project(P, CONFIG, labelset_from_config(CONFIG).id2label)
    return built


@pytest.fixture
def rt(rt: runtime.Runtime) -> runtime.Runtime:
    return known_project(rt)


def run_burst(rt: runtime.Runtime) -> None:
    drain([rt.dispatcher.queue], rt.redis)


def assert_bad_recorded_good_converted(rt: runtime.Runtime) -> None:
    """Each bad task's state is an error naming the task and what is wrong; the good ones are
    entries of the image's size."""
    states = {state.task_id: state for state in rt.store.states(P)}
    for task_id, (case, (_raw, word)) in enumerate(BAD.items(), 1):
        state = states[task_id]
        assert (state.status, state.key) == ("error", None), case
        assert state.error is not None and f"task {task_id}" in state.error, (case, state.error)
        assert word in state.error, (case, state.error)
    for task_id in GOOD:
        assert states[task_id].status == "ok"
        entry = rt.store.get_entry(P, task_id)
        assert entry is not None and entry.panoptic_mask.shape == (30, 40)


def test_each_bad_task_is_a_recorded_error_and_the_good_ones_convert(
    rt: runtime.Runtime, tasks: dict[int, dict[str, Any]]
) -> None:
    ids = sorted(tasks)
    job_ids = [rt.dispatcher.enqueue_sync(P, task_id) for task_id in ids]
    run_burst(rt)

    for task_id, job_id in zip(ids, job_ids, strict=True):
        job = Job.fetch(str(job_id), connection=rt.redis, serializer=SERIALIZER)
        assert job.get_status() == JobStatus.FINISHED, (task_id, job.latest_result())
        assert job.return_value() == ("ok" if task_id in GOOD else "error")
    assert rt.dispatcher.queue.failed_job_registry.get_job_ids() == []
    assert rt.dispatcher.queue.scheduled_job_registry.get_job_ids() == []  # nothing to retry
    assert_bad_recorded_good_converted(rt)


def test_a_task_turning_bad_keeps_its_last_good_entry(
    rt: runtime.Runtime, tasks: dict[int, dict[str, Any]]
) -> None:
    rt.dispatcher.enqueue_sync(P, GOOD[0])
    run_burst(rt)
    tasks[GOOD[0]] = {**BAD["result not a list"][0], "id": GOOD[0]}
    rt.dispatcher.enqueue_sync(P, GOOD[0])
    run_burst(rt)
    (state,) = [s for s in rt.store.states(P) if s.task_id == GOOD[0]]
    assert state.status == "error" and state.key == f"img{GOOD[0]}.jpg"
    assert rt.store.get_entry(P, GOOD[0]) is not None


def test_an_image_over_the_time_limit_is_a_recorded_error(
    redis_client: redis.Redis, make_rt: Callable[..., runtime.Runtime]
) -> None:
    built = known_project(make_rt(time_limit=1e-9))
    job_id = built.dispatcher.enqueue_sync(P, GOOD[0])
    job = Job.fetch(str(job_id), connection=redis_client, serializer=SERIALIZER)
    assert job.timeout == sync_timeout(built.settings) >= DEFAULT_SYNC_TIMEOUT  # rq allows more
    run_burst(built)
    assert job.get_status() == JobStatus.FINISHED and job.return_value() == "error"
    assert built.dispatcher.queue.scheduled_job_registry.get_job_ids() == []  # not retried
    (state,) = built.store.states(P)
    assert state.status == "error" and state.error is not None
    assert f"task {GOOD[0]}" in state.error and "took longer than the 1e-09 s limit" in state.error


def test_a_resync_survives_a_malformed_task(rt: runtime.Runtime) -> None:
    summary = reconcile.resync(rt, P)
    assert summary["listed"] == len(BAD) + len(GOOD)
    assert summary["to_sync"] == len(BAD) + len(GOOD)
    # what the listing could not read is pulled by a job, the rest converted from the listing
    assert summary["enqueued"] == len(UNREADABLE_LISTED)
    assert summary["converted"] == summary["to_sync"] - len(UNREADABLE_LISTED)
    assert summary["dropped"] == 0
    run_burst(rt)
    assert rt.dispatcher.queue.failed_job_registry.get_job_ids() == []
    assert rt.dispatcher.queue.scheduled_job_registry.get_job_ids() == []  # nothing to retry
    assert_bad_recorded_good_converted(rt)

    again = reconcile.resync(rt, P)  # the next resync lists them all again, drops nothing
    assert (again["listed"], again["dropped"]) == (len(BAD) + len(GOOD), 0)
    # the good ones are current; of the bad ones, the tasks the listing could not read are
    # retried, the failed conversions of unchanged annotations are not (they would fail alike)
    states = {state.task_id: state for state in rt.store.states(P)}
    for task_id, case in enumerate(BAD, 1):
        fingerprinted = states[task_id].error_fingerprint is not None
        assert fingerprinted == (case not in UNREADABLE_LISTED), case
    assert again["to_sync"] == len(UNREADABLE_LISTED)


def test_a_listing_that_breaks_off_fails_the_resync_and_drops_nothing(
    rt: runtime.Runtime,
) -> None:
    reconcile.resync(rt, P)
    run_burst(rt)
    assert isinstance(rt.labelstudio, StubLabelStudio)
    rt.labelstudio.listing_fails_after = 3
    with pytest.raises(LabelStudioUnavailable):  # the resync job fails: rq retries it
        reconcile.resync(rt, P)
    assert len(list(rt.store.states(P))) == len(BAD) + len(GOOD)
    assert_bad_recorded_good_converted(rt)


# -- the real client's listing, over HTTP -------------------------------------------------------


def task_list_api(
    tasks: dict[int, dict[str, Any]], *, fail_after: int | None = None
) -> httpx.MockTransport:
    """Label Studio's ``GET /api/tasks/``: the tasks with an id above the query's filter, by id,
    one page; answers 503 for the pages after ``fail_after`` tasks were listed."""

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/tasks/", request.url
        params = request.url.params
        query = json.loads(params["query"])
        (item,) = query["filters"]["items"]
        assert (item["filter"], item["operator"]) == ("filter:tasks:id", "greater")
        after, size = int(item["value"]), int(params["page_size"])
        if fail_after is not None and after >= fail_after:
            return httpx.Response(503, json={"detail": "maintenance"})
        page = [tasks[n] | {"id": n} for n in sorted(tasks) if n > after][:size]
        body = {"tasks": page, "total": len(tasks), "total_annotations": 0,
                "total_predictions": 0}  # fmt: skip
        return httpx.Response(200, content=json.dumps(body).encode())

    return httpx.MockTransport(answer)


def client_over(transport: httpx.MockTransport) -> LabelStudio:
    ls = LabelStudio("http://label-studio.test", "legacy-token", page_size=4)
    ls._http._transport = transport  # the SDK and the downloads share this client
    return ls


def test_the_real_listing_yields_malformed_tasks_as_unusable(
    tasks: dict[int, dict[str, Any]],
) -> None:
    with client_over(task_list_api(tasks)) as ls:
        listed = list(ls.list_tasks(P))
    assert [t.id for t in listed] == sorted(tasks)
    unusable = {t.id: t.error for t in listed if isinstance(t, UnusableTask)}
    assert unusable  # some BAD tasks fail the translation itself, the others their conversion
    for task_id, error in unusable.items():
        assert error.startswith(f"task {task_id}: unusable task data: "), error
        with pytest.raises(LabelStudioError) as raised:  # what get_task raises for the same data
            _task(json.loads(json.dumps(tasks[task_id])))
        assert str(raised.value) == error
    assert not unusable.keys() & set(GOOD)


def test_the_real_listing_fails_on_an_http_error(tasks: dict[int, dict[str, Any]]) -> None:
    with client_over(task_list_api(tasks, fail_after=5)) as ls:
        listing = ls.list_tasks(P)
        assert [next(listing).id for _ in range(4)] == [1, 2, 3, 4]  # the first page
        with pytest.raises(LabelStudioUnavailable, match="503"):
            list(listing)
