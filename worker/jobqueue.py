"""How the service's jobs run on rq: its JSON serializer, its queue, its workers, and the
timeouts and retries every job is enqueued with. :mod:`worker.dispatcher` decides what to
enqueue, and when.

Jobs name their function by dotted path (``worker.jobs.sync_task``: :func:`job_function`) and
carry only ints, strings and lists, serialised as JSON (:class:`JobSerializer`, rq's JSON
serializer): nothing the service reads back from Redis is ever unpickled. Every queue and worker
of the service comes from :func:`make_queue` / :data:`SERIALIZER` so no pickling default can slip
in.
"""

from __future__ import annotations

import contextvars
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis
import rq
from rq import Queue, Retry
from rq.exceptions import DequeueTimeout, StopRequested
from rq.intermediate_queue import IntermediateQueue
from rq.serializers import JSONSerializer
from rq.worker import WorkerStatus

from .settings import Settings

__all__ = [
    "DEFAULT_PROJECT_TIMEOUT",
    "DEFAULT_RESULT_TTL",
    "DEFAULT_RETRY_INTERVALS",
    "DEFAULT_SYNC_TIMEOUT",
    "DEQUEUE_POLL_SECONDS",
    "JOBS_MODULE",
    "PUBSUB_POLL_SECONDS",
    "SERIALIZER",
    "SYNC_TIMEOUT_MARGIN",
    "InProcessWorker",
    "JobSerializer",
    "Worker",
    "drain",
    "job_function",
    "make_queue",
    "retry_policy",
    "sync_timeout",
]

log = logging.getLogger(__name__)


class JobSerializer(JSONSerializer):
    """rq's JSON serializer, able to save a job whose stored ``meta`` was not JSON.

    rq reads a ``meta`` its serializer cannot load as ``{"unserialized": <the raw bytes>}``
    (``rq.job.Job.restore``) and writes ``meta`` back whenever it saves the whole job: when
    it retries a failed job, when its scheduler enqueues a due one. JSON cannot hold bytes, so
    that save raised inside rq's failure handling (or its scheduler) and the worker quit,
    stranding the queue. Such a meta can only come from a foreign write into the job's hash
    (the service never sets meta, and no JSON decodes to bytes), so it is written back as
    ``{}``: the tampered job then fails (or runs) like any other and the worker keeps going.
    Loading is rq's JSON, unchanged: nothing is ever unpickled.
    """

    @staticmethod
    def dumps(*args: Any, **kwargs: Any) -> bytes:
        if args and _unreadable_meta(args[0]):
            log.warning("a job's meta in Redis was not JSON (the service never writes one); "
                        "saving it as {}")  # fmt: skip
            return b"{}"
        data: bytes = JSONSerializer.dumps(*args, **kwargs)  # type: ignore[no-untyped-call]
        return data


def _unreadable_meta(value: object) -> bool:
    """Whether ``value`` is rq's stand-in for a meta it could not load."""
    return (
        isinstance(value, dict)
        and len(value) == 1
        and isinstance(value.get("unserialized"), (bytes, bytearray))
    )


#: the only serializer the service uses (JSON, never pickle); rq's workers, queues, jobs and
#: scheduler all take it
SERIALIZER = JobSerializer
#: module holding the job functions, referenced by dotted path (the backend never imports it)
JOBS_MODULE = "worker.jobs"
#: seconds between attempts of a job that failed (Label Studio unavailable): backoff, ~1 h total;
#: ``LS_PANOPTIC_RETRY_INTERVALS`` replaces it (stamped into each job when it is enqueued)
DEFAULT_RETRY_INTERVALS = (10, 30, 120, 600, 1800)
#: seconds one task may take (download + conversion of a large image), at least; see sync_timeout
DEFAULT_SYNC_TIMEOUT = 600
#: seconds a sync job gets besides its debounce wait and the conversion's time limit: the pull
#: from Label Studio, the image download, the store's writes, and the step of the conversion
#: under way when its limit passes (the core checks the limit between steps)
SYNC_TIMEOUT_MARGIN = 300
#: seconds a resync or rebuild may take (it lists every task of a project)
DEFAULT_PROJECT_TIMEOUT = 3600
#: seconds the result of a finished job is kept (dashboard, ``resync --wait``)
DEFAULT_RESULT_TTL = 3600


def sync_timeout(settings: Settings) -> int:
    """rq's timeout of a sync job, in seconds: ``DEFAULT_SYNC_TIMEOUT``, or more when the debounce
    cap and the per-image time limit (``LS_PANOPTIC_TIME_LIMIT``) need it.

    It must stay well above the time limit: an image over the limit then fails with its own
    message, recorded in its task's state (a finished job, no retry), while a job rq kills at
    its timeout would be retried with backoff and fail the same way each time, recording
    nothing. The timeout is stamped into each job by whoever enqueues it (mostly the backend),
    so the backend and the worker must agree on ``LS_PANOPTIC_TIME_LIMIT``.
    """
    needed = math.ceil(settings.debounce_max_s + settings.time_limit) + SYNC_TIMEOUT_MARGIN
    return max(DEFAULT_SYNC_TIMEOUT, needed)


def make_queue(connection: redis.Redis, name: str) -> Queue:
    """The service's RQ queue ``name``, JSON-serialised."""
    return Queue(name, connection=connection, serializer=SERIALIZER)


def retry_policy(intervals: tuple[int, ...]) -> Retry:
    """rq's retry of a failed job after each of ``intervals`` seconds."""
    return Retry(max=len(intervals), interval=list(intervals))


def job_function(name: str) -> str:
    """The dotted path of the job function ``name`` (the backend never imports it)."""
    return f"{JOBS_MODULE}.{name}"


#: seconds the thread that listens for rq's worker commands waits on Redis before it looks
#: again whether it should stop (rq's own value: 60)
PUBSUB_POLL_SECONDS = 1.0


class _PromptTeardown:
    """Listen for worker commands in short polls, so a worker stops in about a second.

    rq subscribes every worker to its command channel with redis-py's ``PubSubWorkerThread``
    polling every 60 s, and stops it with ``stop()``, which since redis-py 8 waits for the
    thread: when the thread had just gone back into its poll, the worker's teardown (every
    burst worker's end) blocked 60 s. Seen in about one burst worker in fifteen.
    """

    pubsub: Any
    pubsub_thread: Any
    connection: redis.Redis
    pubsub_channel_name: str
    handle_payload: Any
    _pubsub_exception_handler: Any

    def subscribe(self) -> None:
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(
            sleep_time=PUBSUB_POLL_SECONDS,
            daemon=True,
            exception_handler=self._pubsub_exception_handler,
        )


#: seconds each blocking dequeue of an idle worker lasts at most: a worker asked to stop while
#: it waits for a job leaves within about this long, and never holds a job for it
DEQUEUE_POLL_SECONDS = 1

#: the worker whose blocking dequeue runs in this thread (rq's dequeue is a class method)
_DEQUEUEING: contextvars.ContextVar[_StopBetweenPolls | None] = contextvars.ContextVar(
    "ls_panoptic_dequeueing", default=None
)


def _give_back(connection: redis.Redis, queue_key: str | bytes, job_id: str | bytes) -> None:
    """Put ``job_id``, dequeued but never started, back at the head of its queue (and out of
    the queue's intermediate list, where ``BLMOVE`` put it), in one transaction."""
    key = queue_key.decode() if isinstance(queue_key, bytes) else queue_key
    job = job_id.decode() if isinstance(job_id, bytes) else job_id
    with connection.pipeline(transaction=True) as pipe:
        pipe.lrem(IntermediateQueue.get_intermediate_queue_key(key), 1, job)
        pipe.lpush(key, job)
        pipe.execute()
    log.info("job %s handed back to %s: its worker is stopping", job, key)


class _PollingQueue(Queue):
    """rq's queue whose blocking dequeue, for a :class:`_StopBetweenPolls` worker, is a series
    of short blocking calls that end at once when the worker was asked to stop."""

    @classmethod
    def lmove(cls, connection: redis.Redis, queue_key: str, timeout: int | None) -> Any:
        worker = _DEQUEUEING.get()
        if worker is None or timeout is None:
            return super().lmove(connection, queue_key, timeout)

        def give_back(result: Any) -> None:  # BLMOVE put it in the intermediate list
            _give_back(connection, queue_key, result[1])

        def dequeue(wait: int) -> Any:
            return super(_PollingQueue, cls).lmove(connection, queue_key, wait)

        return worker.poll(dequeue, timeout, give_back)

    @classmethod
    def lpop(
        cls, queue_keys: Sequence[str], timeout: int | None, connection: redis.Redis | None = None
    ) -> Any:
        worker = _DEQUEUEING.get()
        if worker is None or timeout is None or connection is None:
            return super().lpop(queue_keys, timeout, connection=connection)
        conn = connection

        def give_back(result: Any) -> None:  # BLPOP took it off its queue
            _give_back(conn, result[0], result[1])

        def dequeue(wait: int) -> Any:
            return super(_PollingQueue, cls).lpop(queue_keys, wait, conn)

        return worker.poll(dequeue, timeout, give_back)


class _StopBetweenPolls:
    """Stop an idle worker between two short blocking dequeues, never inside one.

    rq 2.12's SIGTERM handler, when the worker is idle, stops the scheduler (about half a second
    with ``--with-scheduler``) and then raises out of the blocking ``BLMOVE`` that moves the
    next job from the queue to its intermediate list. That ``BLMOVE`` is still pending on its
    connection meanwhile, so a job queued then was moved for a worker that was leaving, its
    reply thrown away with the connection, and the job waited in the intermediate list until
    rq's maintenance re-queued it over a minute later (seen after every ``docker compose
    restart worker`` under load). Here, while a blocking dequeue call is pending or a dequeued
    job is not yet started, the handler only records the stop (and stops the scheduler); the
    dequeue blocks at most :data:`DEQUEUE_POLL_SECONDS` at a time, looks for a stop between
    polls, and hands back, first in line, a job it took after the stop was asked. Anywhere else
    while idle (a heartbeat, a wait for Redis to come back) the stop raises at once, as rq's
    does. A stop during a job is rq's (warm: the job finishes first).
    """

    _stop_requested: bool
    scheduler: Any
    get_state: Callable[[], str]
    stop_scheduler: Callable[[], None]
    #: inside a blocking dequeue call, or holding a job dequeued and not yet run: a stop must
    #: not raise there (it would lose the call's reply or strand the job)
    _polling = False
    _holding = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue_class = _PollingQueue  # after rq's check of the queues given

    def _shutdown(self) -> None:  # rq's, from its SIGTERM/SIGINT handler
        if self.get_state() == WorkerStatus.BUSY:
            super()._shutdown()  # type: ignore[misc]
            return
        self._stop_requested = True
        if self.scheduler:
            self.stop_scheduler()
        if not (self._polling or self._holding):
            # nothing in hand, no call pending (a heartbeat, a wait for Redis to come back):
            # stop at once, as rq does
            raise StopRequested()

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> Any:
        token = _DEQUEUEING.set(self)
        try:
            result = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)  # type: ignore[misc]
            self._holding = result is not None
            return result
        except BaseException:
            self._holding = False
            raise
        finally:
            _DEQUEUEING.reset(token)

    def execute_job(self, job: Any, queue: Queue) -> None:
        try:
            if self._stop_requested:  # asked after the dequeue: leave the job to the others
                _give_back(queue.connection, queue.key, job.id)
                raise StopRequested()
            super().execute_job(job, queue)  # type: ignore[misc]
        finally:
            self._holding = False

    def poll(
        self, dequeue: Callable[[int], Any], timeout: int, give_back: Callable[[Any], None]
    ) -> Any:
        """``dequeue(seconds)`` (rq's blocking ``BLMOVE``/``BLPOP``) in polls of
        :data:`DEQUEUE_POLL_SECONDS`, for about ``timeout`` seconds in all (then rq's
        ``DequeueTimeout``); raises ``StopRequested`` once a stop was asked, after
        ``give_back(result)`` of a job it took meanwhile."""
        deadline = time.monotonic() + timeout
        self._holding = False
        while True:
            if self._stop_requested:
                raise StopRequested()
            self._polling = True
            try:
                result = dequeue(DEQUEUE_POLL_SECONDS)
                self._holding = True
            except DequeueTimeout:
                if time.monotonic() >= deadline - DEQUEUE_POLL_SECONDS / 2:
                    raise
                continue
            finally:
                self._polling = False
            if self._stop_requested:
                give_back(result)
                self._holding = False
                raise StopRequested()
            return result


class Worker(_StopBetweenPolls, _PromptTeardown, rq.Worker):
    """rq's forking worker (``ls-panoptic worker``), stopping promptly and never with a job
    it has not started."""


class InProcessWorker(_StopBetweenPolls, _PromptTeardown, rq.SimpleWorker):
    """rq's worker that runs jobs in its own process and thread (tests, benchmarks)."""


def drain(queues: list[Queue], connection: redis.Redis) -> None:
    """Run every job of ``queues`` in this process, and the jobs they enqueue, then return."""
    InProcessWorker(queues, connection=connection, serializer=SERIALIZER).work(burst=True)
