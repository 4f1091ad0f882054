"""What the service enqueues, and when: the :class:`Dispatcher`, which coalesces the sync jobs
of each task and lets a burst of events settle first. How jobs run (rq's JSON serializer,
queue, timeouts, retries, workers) is :mod:`worker.jobqueue`'s.

Coalescing: a sync job is enqueued only when the task's pending flag (``keys.pending``: the
job's id) was newly set, and the job clears the flag *before* it pulls the task from Label
Studio. Events arriving while a job waits add nothing; events arriving while it runs enqueue
exactly one more job, which pulls the state after them: a burst for one task costs at most two
conversions, and the last state always wins. Debounce: every event also stamps its Redis time
(``keys.last_event``), and the job waits for its task to go quiet before it clears the flag
(:meth:`Dispatcher.await_quiet`).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import redis
from redis.client import Pipeline
from rq import Queue
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus

from .config_cache import ConfigCache
from .jobqueue import (
    DEFAULT_PROJECT_TIMEOUT,
    DEFAULT_RESULT_TTL,
    DEFAULT_RETRY_INTERVALS,
    DEFAULT_SYNC_TIMEOUT,
    SERIALIZER,
    job_function,
    make_queue,
    retry_policy,
    sync_timeout,
)
from .keys import Keys
from .settings import Settings

__all__ = [
    "DEBOUNCE_KEY_TTL",
    "DEFAULT_PENDING_TTL",
    "LOST_FLAG_GRACE",
    "Dispatcher",
]

#: seconds a pending flag lives: longer than any sane queue backlog; a lost job frees it then
DEFAULT_PENDING_TTL = 3600
#: seconds a task's latest-event time lives: longer than any quiet period (settings cap 60 s)
DEBOUNCE_KEY_TTL = 120
#: seconds after which a pending flag whose job is missing or over counts as lost (see
#: :data:`_FLAG_TASKS`): far longer than the enqueue that follows the flag (milliseconds)
LOST_FLAG_GRACE = 5
#: sets each pending flag KEYS[i] to job id ARGV[3 + i] (EX ARGV[1]) when it is not set, or when
#: it was set more than ARGV[2] seconds ago and its job (rq's hash ``rq:job:<id>``) is missing or
#: no longer queued, scheduled, deferred or started: a backend that died between the flag and the
#: enqueue, or a job that ended without clearing it, must not leave the task unsynced until the
#: flag expires (a resync takes one over at once: ``sync_job(revive=True)``). Returns 1 per flag
#: now held by the new id (enqueue it), else 0.
_FLAG_TASKS = """
local ttl, grace, prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local alive = {queued=true, scheduled=true, deferred=true, started=true}
local out = {}
for i, key in ipairs(KEYS) do
  local id = ARGV[3 + i]
  out[i] = 0
  if redis.call('SET', key, id, 'NX', 'EX', ttl) then
    out[i] = 1
  else
    local holder = redis.call('GET', key)
    local left = redis.call('TTL', key)
    if holder and left >= 0 and left < ttl - grace then
      local status = redis.call('HGET', prefix .. holder, 'status')
      if not status or not alive[status] then
        redis.call('SET', key, id, 'EX', ttl)
        out[i] = 1
      end
    end
  end
end
return out
"""
#: records the Redis server's time in each key of KEYS (``seconds.micros``), EX ARGV[1]: one
#: clock for every machine
_STAMP_EVENTS = """
local t = redis.call('TIME')
local now = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
for _, key in ipairs(KEYS) do
  redis.call('SET', key, now, 'EX', ARGV[1])
end
return now
"""
_ALIVE = frozenset({JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.STARTED, JobStatus.DEFERRED})


class Dispatcher:
    """Enqueues the worker's jobs; used by the webhook receiver, the API, the CLI and the jobs."""

    def __init__(self, redis: redis.Redis, settings: Settings) -> None:
        self.redis = redis
        self.keys = Keys(settings.key_prefix)
        self.queue = make_queue(redis, settings.queue_name)
        self._config_cache = ConfigCache(redis, self.keys, settings.config_ttl)
        self._retry_intervals = settings.retry_intervals or DEFAULT_RETRY_INTERVALS
        self._sync_timeout = sync_timeout(settings)
        self._debounce = settings.debounce_ms > 0
        # rq job ids allow letters, digits, '_' and '-' only
        self._prefix = re.sub(r"[^A-Za-z0-9_-]", "-", settings.key_prefix) or "lsp"

    def sync_tasks(
        self, project: int, task_ids: Iterable[int], pipe: Pipeline | None = None
    ) -> int:
        """Pull and convert these tasks, coalesced per task; returns how many jobs were enqueued.

        ``pipe``: a non-transactional pipeline already holding the caller's own writes (the
        webhook's event count and annotation index), sent in the round trip that sets the
        pending flags (one instead of three), and sent even when there is no task.
        """
        pipe = self.redis.pipeline(transaction=False) if pipe is None else pipe
        project = int(project)
        ids = [int(t) for t in dict.fromkeys(task_ids)]
        job_ids = [self._new_id("sync") for _ in ids]
        first = len(pipe)  # the caller's commands come first
        if ids:
            flags = [self.keys.pending(project, task_id) for task_id in ids]
            pipe.eval(
                _FLAG_TASKS, len(flags), *flags,
                DEFAULT_PENDING_TTL, LOST_FLAG_GRACE, Job.redis_job_namespace_prefix, *job_ids,
            )  # fmt: skip
            if self._debounce:  # every event, coalesced or not, restarts the quiet period
                keys = [self.keys.last_event(project, task_id) for task_id in ids]
                pipe.eval(_STAMP_EVENTS, len(keys), *keys, DEBOUNCE_KEY_TTL)
        replies = pipe.execute()
        flagged = replies[first] if ids else []
        datas = [
            self._sync_data(project, task_id, job_id)
            for task_id, job_id, newly_set in zip(ids, job_ids, flagged, strict=True)
            if newly_set
        ]
        if datas:
            self.queue.enqueue_many(datas)
        return len(datas)

    def enqueue_sync(self, project: int, task_id: int, *, revive: bool = False) -> str | None:
        """Sync one task; the new job's id, or ``None`` when a pending job already covers it.

        With ``revive``, a flag whose job no longer exists (lost) is taken over.
        """
        job_id, new = self.sync_job(project, task_id, revive=revive)
        return job_id if new else None

    def sync_job(self, project: int, task_id: int, *, revive: bool = False) -> tuple[str, bool]:
        """The id of a job that will pull the task after this call, and whether it was enqueued
        now (``False``: the pending job that covers the task, which has not started yet).

        Flag and holder are read in one transaction, so the holder cannot start unseen: a
        caller waiting for the returned job waits for a pull made after this call.
        """
        project, task_id = int(project), int(task_id)
        key = self.keys.pending(project, task_id)
        job_id = self._new_id("sync")
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(key, job_id, nx=True, ex=DEFAULT_PENDING_TTL)
            pipe.get(key)
            newly_set, holder = pipe.execute()
        if not newly_set:
            if holder is not None and (not revive or self._job_alive(holder)):
                return _text(holder), False
            self.redis.set(key, job_id, ex=DEFAULT_PENDING_TTL)
        self.queue.enqueue_many([self._sync_data(project, task_id, job_id)])
        return job_id, True

    def await_quiet(
        self,
        project: int,
        task_id: int,
        quiet: float,
        deadline: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> float:
        """Wait until the task's latest event is ``quiet`` seconds old (Redis time) or
        ``clock()`` reaches ``deadline``; returns the seconds waited.

        The sync job calls it before :meth:`clear_pending`: a job started while events for its
        task still stream in would clear the flag mid-burst, and the rest of the burst would
        enqueue one more job, again and again. With ``quiet`` at ``LS_PANOPTIC_DEBOUNCE_MS`` and
        ``deadline`` ``LS_PANOPTIC_DEBOUNCE_MAX_S`` after the job's start, a burst whose gaps
        are shorter than ``quiet`` costs one conversion, two when the cap cuts it or an event
        lands between the clearing and the pull; an isolated event waits at most ``quiet``. The
        pull still follows the clearing of the flag, so the last state still wins.
        """
        key = self.keys.last_event(int(project), int(task_id))
        started = clock()
        while quiet > 0:
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.get(key)
                pipe.time()
                raw, (seconds, micros) = pipe.execute()
            if raw is None:
                break
            try:
                left = float(raw) + quiet - (seconds + micros / 1e6)
            except ValueError:
                break  # not a time: do not wait on garbage
            remaining = deadline - clock()
            if left <= 0 or remaining <= 0:
                break
            sleep(min(left, remaining))
        return clock() - started

    def clear_pending(self, project: int, task_id: int) -> None:
        """Called by the sync job before it pulls the task: later events enqueue a new job."""
        self.redis.delete(self.keys.pending(project, task_id))

    def drop_tasks(self, project: int, task_ids: Iterable[int]) -> str | None:
        """Remove these tasks' entries (``TASKS_DELETED``); the job id, ``None`` if no ids."""
        ids = [int(t) for t in dict.fromkeys(task_ids)]
        if not ids:
            return None
        return self._enqueue("drop_tasks", [int(project), ids], DEFAULT_SYNC_TIMEOUT)

    def drop_annotations(self, annotation_ids: Iterable[int]) -> str | None:
        """Re-sync the tasks of deleted annotations (``ANNOTATIONS_DELETED`` names only those)."""
        ids = [int(a) for a in dict.fromkeys(annotation_ids)]
        if not ids:
            return None
        return self._enqueue("drop_annotations", [ids], DEFAULT_SYNC_TIMEOUT)

    def rebuild_project(self, project: int) -> str:
        """Refresh the label config and re-convert every task of the project; the job id.

        Syncs that start before the rebuild fetch the config again too: the
        :class:`~worker.config_cache.ConfigCache` is dropped."""
        self._config_cache.forget(int(project))
        return self._enqueue("rebuild_project", [int(project)], DEFAULT_PROJECT_TIMEOUT)

    def resync_project(self, project: int) -> str:
        """Compare Label Studio with the store and repair the differences; the job id."""
        return self._enqueue("resync_project", [int(project)], DEFAULT_PROJECT_TIMEOUT)

    def schedule_resync_all(self, interval: float, now: dt.datetime | None = None) -> str | None:
        """Schedule the periodic resync of every known project at the next multiple of
        ``interval`` seconds since the epoch; the job id, ``None`` when already scheduled.

        The job id names that instant, so any number of workers scheduling it agree on one
        job (rq's ``unique``); the job schedules the next one. Needs a worker running rq's
        scheduler (``worker --with-scheduler``) to be enqueued when due.
        """
        if interval <= 0:
            return None
        now = now or dt.datetime.now(dt.timezone.utc)
        due = (math.floor(now.timestamp() / interval) + 1) * interval
        job = self.queue.create_job(
            job_function("resync_all"),
            job_id=f"{self._prefix}-resync-all-{int(due)}",
            timeout=DEFAULT_PROJECT_TIMEOUT,
            result_ttl=DEFAULT_RESULT_TTL,
        )
        try:
            self.queue.schedule_job(
                job, dt.datetime.fromtimestamp(due, dt.timezone.utc), unique=True
            )
        except DuplicateJobError:
            return None
        return job.id

    def _sync_data(self, project: int, task_id: int, job_id: str) -> Any:
        return Queue.prepare_data(
            job_function("sync_task"),
            args=[project, task_id],
            job_id=job_id,
            timeout=self._sync_timeout,
            result_ttl=DEFAULT_RESULT_TTL,
            retry=retry_policy(self._retry_intervals),
            description=f"sync project {project} task {task_id}",
        )

    def _enqueue(self, name: str, args: list[Any], timeout: int) -> str:
        job = self.queue.enqueue_call(
            job_function(name),
            args=args,
            timeout=timeout,
            result_ttl=DEFAULT_RESULT_TTL,
            retry=retry_policy(self._retry_intervals),
            job_id=self._new_id(name.replace("_", "-")),
        )
        return job.id

    def _new_id(self, kind: str) -> str:
        return f"{self._prefix}-{kind}-{uuid.uuid4().hex}"

    def _job_alive(self, job_id: bytes | str | None) -> bool:
        if job_id is None:
            return False
        try:
            job = Job.fetch(_text(job_id), connection=self.redis, serializer=SERIALIZER)
        except (NoSuchJobError, ValueError):
            return False
        return job.get_status(refresh=False) in _ALIVE


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
