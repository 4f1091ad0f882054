"""``GET /metrics``: Prometheus text, read from Redis at scrape time.

Every number comes from Redis when scraped, so all gunicorn workers (and the RQ workers, which
share the same Redis) agree: no per-process counters. Families:

- ``ls_panoptic_queue_jobs{queue, state}``: jobs queued and in each RQ registry (started,
  finished, failed, deferred, scheduled, canceled); counted without cleanup (no side effects).
- ``ls_panoptic_queue_oldest_job_age_seconds{queue}``: how long the oldest queued job has
  waited: the event -> conversion lag (0 when the queue is empty).
- ``ls_panoptic_webhook_events_total{action, handled}``: webhook events received, by action;
  ``handled="false"`` for the ones ignored (counted by :func:`count_event`, nowhere else).
- ``ls_panoptic_tasks{project, status}``: tasks tracked per project by status (ok, empty, error),
  from counts every state write keeps (``Store.status_counts``): a scrape reads no task state.
- ``ls_panoptic_entries{project}``: entries a snapshot of the project would hold now.
- ``ls_panoptic_agreement_pq{project}`` and ``ls_panoptic_agreement_pairs{project}``: the mean
  PQ over the compared pairs of annotations the worker recorded (the ``overall`` of
  ``GET /projects/<id>/agreement``), and how many; from running totals every record write keeps
  (``Store.agreement_mean``): a scrape reads no record. Absent for a project without a pair.

Open like ``/health`` (counts and project ids only, nothing about the images).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.client import Pipeline
from rq import Queue
from rq.job import Job

from worker.jobqueue import SERIALIZER
from worker.keys import Keys

from .events import HANDLED_ACTIONS, counter_name
from .services import Services, services

__all__ = ["ServiceCollector", "blueprint", "count_event"]

blueprint = Blueprint("metrics", __name__)


def count_event(pipe: Pipeline, keys: Keys, action: str) -> None:
    """Count one received webhook event, under :func:`counter_name` of its ``action``, into
    ``pipe`` (the caller sends it)."""
    pipe.hincrby(keys.events(), counter_name(action), 1)


@blueprint.get("/metrics")
def metrics() -> Response:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceCollector(services()))
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


class ServiceCollector(Collector):
    """Reads queue, event and store numbers from Redis on every ``collect()``."""

    def __init__(self, svc: Services) -> None:
        self._svc = svc

    def collect(self) -> Iterator[Metric]:
        yield from self._queue()
        yield self._events()
        yield from self._projects()

    def _queue(self) -> Iterator[Metric]:
        svc = self._svc
        queue = svc.dispatcher.queue
        jobs = GaugeMetricFamily(
            "ls_panoptic_queue_jobs", "RQ jobs by state", labels=["queue", "state"]
        )
        jobs.add_metric([queue.name, "queued"], queue.count)
        registries = {
            "started": queue.started_job_registry,
            "finished": queue.finished_job_registry,
            "failed": queue.failed_job_registry,
            "deferred": queue.deferred_job_registry,
            "scheduled": queue.scheduled_job_registry,
            "canceled": queue.canceled_job_registry,
        }
        for state, registry in registries.items():
            jobs.add_metric([queue.name, state], registry.get_job_count(cleanup=False))
        yield jobs
        age = GaugeMetricFamily(
            "ls_panoptic_queue_oldest_job_age_seconds",
            "Seconds the oldest queued job has waited (event -> conversion lag)",
            labels=["queue"],
        )
        age.add_metric([queue.name], self._oldest_age(queue))
        yield age

    def _oldest_age(self, queue: Queue) -> float:
        for job_id in queue.get_job_ids(0, 1):
            job = Job.fetch(job_id, connection=self._svc.redis, serializer=SERIALIZER)
            if job.enqueued_at is not None:
                enqueued = job.enqueued_at.replace(tzinfo=job.enqueued_at.tzinfo or timezone.utc)
                return max(0.0, (datetime.now(timezone.utc) - enqueued).total_seconds())
        return 0.0

    def _events(self) -> Metric:
        events = CounterMetricFamily(
            "ls_panoptic_webhook_events",
            "Webhook events received, by action (handled=false: ignored)",
            labels=["action", "handled"],
        )
        counts = self._svc.redis.hgetall(self._svc.keys.events())
        for raw_action, raw_count in sorted(counts.items()):
            action = raw_action.decode() if isinstance(raw_action, bytes) else raw_action
            count = int(raw_count)
            handled = "true" if action in HANDLED_ACTIONS else "false"
            events.add_metric([action, handled], count)
        return events

    def _projects(self) -> Iterator[Metric]:
        store = self._svc.store
        tasks = GaugeMetricFamily(
            "ls_panoptic_tasks", "Tasks tracked, by status", labels=["project", "status"]
        )
        entries = GaugeMetricFamily(
            "ls_panoptic_entries", "Entries a snapshot would hold now", labels=["project"]
        )
        mean_pq = GaugeMetricFamily(
            "ls_panoptic_agreement_pq",
            "Mean PQ over the compared pairs of annotations",
            labels=["project"],
        )
        pairs = GaugeMetricFamily(
            "ls_panoptic_agreement_pairs", "Compared pairs of annotations", labels=["project"]
        )
        for project in sorted(store.project_ids()):
            for status, count in store.status_counts(project).items():
                tasks.add_metric([str(project), status], count)
            entries.add_metric([str(project)], store.entry_count(project))
            agreement = store.agreement_mean(project)
            if agreement is not None:
                mean_pq.add_metric([str(project)], agreement[0])
                pairs.add_metric([str(project)], agreement[1])
        yield from (tasks, entries, mean_pq, pairs)
