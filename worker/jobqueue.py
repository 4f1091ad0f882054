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

import logging
import math
from typing import Any

import redis
import rq
from rq import Queue, Retry
from rq.serializers import JSONSerializer

from .settings import Settings

__all__ = [
    "DEFAULT_PROJECT_TIMEOUT",
    "DEFAULT_RESULT_TTL",
    "DEFAULT_RETRY_INTERVALS",
    "DEFAULT_SYNC_TIMEOUT",
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


class Worker(_PromptTeardown, rq.Worker):
    """rq's forking worker (``ls-panoptic worker``), stopping promptly."""


class InProcessWorker(_PromptTeardown, rq.SimpleWorker):
    """rq's worker that runs jobs in its own process and thread (tests, benchmarks)."""


def drain(queues: list[Queue], connection: redis.Redis) -> None:
    """Run every job of ``queues`` in this process, and the jobs they enqueue, then return."""
    InProcessWorker(queues, connection=connection, serializer=SERIALIZER).work(burst=True)
