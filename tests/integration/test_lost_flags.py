"""A pending flag whose job is lost must not keep a task from syncing until the flag expires:
the next event takes it over once it is ``LOST_FLAG_GRACE`` seconds old (real Redis, rq)."""

from __future__ import annotations

from rq.job import Job

from tests.stub_labelstudio import P, StubLabelStudio
from worker import runtime
from worker.dispatcher import DEFAULT_PENDING_TTL, LOST_FLAG_GRACE
from worker.jobqueue import SERIALIZER, drain

#: a flag set this long ago (its TTL this much below DEFAULT_PENDING_TTL)
AGED = LOST_FLAG_GRACE + 5
STAMP = "2024-05-01T10:00:00Z"
ANNOTATION = {
    "id": 11, "was_cancelled": False, "completed_by": 1, "created_at": STAMP, "updated_at": STAMP,
    "result": [{"id": "r1", "from_name": "poly", "to_name": "image", "type": "polygonlabels",
                "original_width": 40, "original_height": 30,
                "value": {"points": [[10, 10], [60, 15], [40, 70]], "polygonlabels": ["leaf"]}}],
}  # fmt: skip


def flag(rt: runtime.Runtime, task_id: int, job_id: str, age: int) -> str:
    """Set the task's pending flag to ``job_id`` as if set ``age`` seconds ago."""
    key = rt.dispatcher.keys.pending(P, task_id)
    rt.redis.set(key, job_id, ex=DEFAULT_PENDING_TTL - age)
    return key


def holder(rt: runtime.Runtime, key: str) -> str:
    raw = rt.redis.get(key)
    assert isinstance(raw, bytes)
    return raw.decode()


def test_an_aged_flag_without_its_job_is_taken_over_by_the_next_event(
    rt: runtime.Runtime, stub: StubLabelStudio
) -> None:
    stub.add(1, ANNOTATION)
    key = flag(rt, 1, "lsptest-flags-sync-lost", AGED)  # the backend died before enqueueing
    assert rt.dispatcher.sync_tasks(P, [1]) == 1
    new = holder(rt, key)
    assert new != "lsptest-flags-sync-lost"
    assert rt.dispatcher.queue.get_job_ids() == [new]
    assert rt.redis.ttl(key) > DEFAULT_PENDING_TTL - LOST_FLAG_GRACE  # a fresh flag
    assert rt.dispatcher.sync_tasks(P, [1]) == 0  # and it coalesces as usual
    drain([rt.dispatcher.queue], rt.redis)
    assert stub.pulls[1] == 1 and rt.store.get_entry(P, 1) is not None


def test_a_young_flag_is_left_alone_its_job_is_being_enqueued(rt: runtime.Runtime) -> None:
    key = flag(rt, 2, "lsptest-flags-sync-coming", 0)  # set just now: its enqueue may follow
    assert rt.dispatcher.sync_tasks(P, [2]) == 0
    assert holder(rt, key) == "lsptest-flags-sync-coming"
    assert rt.dispatcher.queue.get_job_ids() == []


def test_an_aged_flag_whose_job_waits_is_left_alone(rt: runtime.Runtime) -> None:
    assert rt.dispatcher.sync_tasks(P, [3]) == 1
    key = rt.dispatcher.keys.pending(P, 3)
    waiting = holder(rt, key)
    rt.redis.expire(key, DEFAULT_PENDING_TTL - AGED)  # a long queue: the job waits still
    assert rt.dispatcher.sync_tasks(P, [3]) == 0
    assert holder(rt, key) == waiting
    assert rt.dispatcher.queue.get_job_ids() == [waiting]


def test_an_aged_flag_whose_job_ended_without_clearing_it_is_taken_over(
    rt: runtime.Runtime,
) -> None:
    assert rt.dispatcher.sync_tasks(P, [4]) == 1
    key = rt.dispatcher.keys.pending(P, 4)
    ended = Job.fetch(holder(rt, key), connection=rt.redis, serializer=SERIALIZER)
    rt.dispatcher.queue.remove(ended)
    rt.redis.hset(ended.key, "status", "failed")  # e.g. failed before it cleared the flag
    rt.redis.expire(key, DEFAULT_PENDING_TTL - AGED)
    assert rt.dispatcher.sync_tasks(P, [4]) == 1
    assert holder(rt, key) != ended.id
    assert rt.dispatcher.queue.get_job_ids() == [holder(rt, key)]
