"""A worker stopped while it waits for a job keeps none (issue 14, found by the compose test).

rq 2.12 stops an idle worker by raising out of its blocking dequeue (``BLMOVE`` from the queue
to its intermediate list) from the SIGTERM handler, but only after it has stopped its scheduler
(about half a second with ``--with-scheduler``). The ``BLMOVE`` stays pending meanwhile, so a
job queued then was moved into the intermediate list for a worker that was leaving, and waited
there until rq's maintenance found it over a minute later. The service's workers poll the queue
in short blocking calls instead and hand back a job they took after a stop was asked.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from rq import Worker as RqWorker
from rq.job import Job, JobStatus

from devstack.redis_server import RedisServer
from devstack.services import ls_panoptic_command, service_env
from devstack.supervisor import Process, Stack, free_port, poll_until, spawn
from worker.jobqueue import SERIALIZER, InProcessWorker, make_queue

QUEUE = "lsp-stop-test"
#: a job the real worker can run without Label Studio (rq imports it by its dotted path)
JOB = "builtins.len"
#: seconds the other worker may take to run every job queued during the stop: rq's own delay
#: for a stranded job is over a minute, a live worker takes milliseconds
PICKED_WITHIN_SECONDS = 5.0
#: seconds a worker asked to stop while idle may take to exit (it stops its scheduler too)
STOPS_WITHIN_SECONDS = 5.0


def _worker_env(redis_url: str) -> dict[str, str]:
    """Settings of a real ``ls-panoptic worker`` on ``redis_url``; Label Studio is never
    reached (the jobs here need none)."""
    settings = {
        "REDIS_URL": redis_url,
        "LABEL_STUDIO_URL": f"http://127.0.0.1:{free_port()}",
        "LABEL_STUDIO_API_KEY": "0" * 40,
        "LS_PANOPTIC_QUEUE": QUEUE,
        "LS_PANOPTIC_KEY_PREFIX": QUEUE,
        "LS_PANOPTIC_RESYNC_INTERVAL": "86400",
    }
    return service_env(settings, inherit_options=False)


@pytest.fixture
def worker_env(redis_url: str) -> dict[str, str]:
    return _worker_env(redis_url)


@pytest.fixture
def stack() -> Iterator[Stack]:
    with Stack(stop_timeout=20.0) as processes:
        yield processes


def _start_worker(
    stack: Stack, env: dict[str, str], log: Path, connection: redis.Redis, workers: int
) -> Process:
    """``ls-panoptic worker --with-scheduler``, as compose runs it, once it waits for jobs (the
    ``workers``-th worker idle on the queue)."""
    command = [*ls_panoptic_command(), "worker", "--with-scheduler"]
    repo = Path(__file__).resolve().parents[2]
    process = stack.add(spawn(log.stem, command, env, log, cwd=repo))
    queue = make_queue(connection, QUEUE)

    def idle() -> bool:
        found = RqWorker.all(queue=queue)
        return len(found) == workers and all(w.get_state() == "idle" for w in found)

    process.wait_ready(idle, "the worker", timeout=30.0)
    return process


def test_a_worker_stopped_while_idle_leaves_the_next_jobs_to_the_others(
    redis_client: redis.Redis, worker_env: dict[str, str], stack: Stack, tmp_path: Path
) -> None:
    queue = make_queue(redis_client, QUEUE)
    leaving = _start_worker(stack, worker_env, tmp_path / "leaving.log", redis_client, 1)
    _start_worker(stack, worker_env, tmp_path / "staying.log", redis_client, 2)
    time.sleep(1.0)  # both are inside their blocking dequeue
    leaving_name = next(w.name for w in RqWorker.all(queue=queue) if w.pid == leaving.pid)

    leaving.popen.send_signal(signal.SIGTERM)  # what `docker compose restart worker` sends
    jobs, started = [], time.monotonic()
    while leaving.alive() and time.monotonic() - started < STOPS_WITHIN_SECONDS:
        jobs.append(queue.enqueue(JOB, [1, 2]).id)  # a burst of events meanwhile
        time.sleep(0.02)
    jobs.append(queue.enqueue(JOB, [1, 2]).id)
    assert leaving.popen.wait(timeout=STOPS_WITHIN_SECONDS) == 0, leaving.log.read_text()

    def all_done() -> bool:
        return all(
            Job.fetch(job_id, connection=redis_client, serializer=SERIALIZER).get_status()
            == JobStatus.FINISHED
            for job_id in jobs
        )

    poll_until(all_done, PICKED_WITHIN_SECONDS, 0.1)
    stranded = redis_client.lrange(queue.intermediate_queue_key, 0, -1)
    assert stranded == [], f"jobs left in rq's intermediate queue: {stranded}"
    fetched = [Job.fetch(j, connection=redis_client, serializer=SERIALIZER) for j in jobs]
    waiting = [job.id for job in fetched if job.get_status() != JobStatus.FINISHED]
    assert waiting == [], f"{len(waiting)} of {len(jobs)} jobs not run within a few seconds"
    assert all(job.worker_name != leaving_name for job in fetched), "the leaving worker ran one"


def test_a_job_taken_as_the_stop_arrives_goes_back_to_the_head_of_the_queue(
    redis_client: redis.Redis,
) -> None:
    """SIGTERM while the worker's blocking dequeue is taking a job: the job is handed back
    (first in line), not run and not left in the intermediate queue; the worker stops."""
    queue = make_queue(redis_client, QUEUE)
    worker = InProcessWorker([queue], connection=redis_client, serializer=SERIALIZER)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    taken: list[str] = []

    def stop_and_enqueue() -> None:
        poll_until(lambda: worker.get_state() == "idle", 10.0, 0.01)
        time.sleep(0.3)  # inside the blocking dequeue
        os.kill(os.getpid(), signal.SIGTERM)
        taken.append(queue.enqueue(JOB, [1, 2]).id)

    helper = threading.Thread(target=stop_and_enqueue, daemon=True)
    helper.start()
    try:
        started = time.monotonic()
        worked = worker.work(burst=False)
        elapsed = time.monotonic() - started
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    helper.join(timeout=10.0)
    assert not worked
    assert elapsed < STOPS_WITHIN_SECONDS
    assert redis_client.lrange(queue.intermediate_queue_key, 0, -1) == []
    assert queue.get_job_ids() == taken
    job = Job.fetch(taken[0], connection=redis_client, serializer=SERIALIZER)
    assert job.get_status() == JobStatus.QUEUED


def test_a_worker_stopped_while_redis_is_down_still_stops_at_once(
    stack: Stack, tmp_path: Path
) -> None:
    """No blocking call is pending while the worker waits for Redis to come back: the stop
    is immediate there, as rq's."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(binary, tmp_path / "redis")
    server.start(stack)
    connection = redis.Redis.from_url(server.url, socket_timeout=5)
    worker = _start_worker(stack, _worker_env(server.url), tmp_path / "w.log", connection, 1)
    time.sleep(1.0)
    server.stop()
    time.sleep(3.0)  # the worker has lost Redis and waits for it
    assert worker.alive(), worker.log.read_text()
    started = time.monotonic()
    worker.popen.send_signal(signal.SIGTERM)
    worker.popen.wait(timeout=STOPS_WITHIN_SECONDS + 10)
    elapsed = time.monotonic() - started
    connection.close()
    assert elapsed < STOPS_WITHIN_SECONDS, worker.log.read_text()
